"""Command-line flags generated from dataclass fields: each knob is declared once, where it lives.

A field becomes a flag with :func:`option` (its flag name, help, group and parsing sit in the
field's metadata, beside its default). :func:`add_arguments` walks a dataclass and the
dataclasses nested in it, :func:`from_args` builds the same nested config back from the parsed
namespace, and :func:`to_argv` writes the flags that reproduce a config. Fields without
:func:`option` are recipe constants: they keep their defaults and get no flag.

One flag may feed several fields (``--seed`` seeds every stage): each such field names the same
flag, one of them carries the help, and the defaults must agree.

Why not ``transformers.HfArgumentParser``: it names every flag after its field (``--learning_rate``),
so two nested stage configs that both have ``learning_rate`` collide, and the existing flags
(``--lr``, ``--compressor-lr``) could only be added as aliases beside the generated ones; it does not
walk nested dataclasses, cannot feed one flag to two fields, turns ``bool | None`` into
``--bf16 [BOOL]`` without ``--no-bf16``, and always converts with the field's type (so neither
``--schedule 0,8,16`` into a tuple nor ``--rate cot`` into an int can be expressed).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import MISSING, Field
from typing import Any, Callable, Iterator, Sequence

__all__ = ["option", "add_arguments", "from_args", "to_argv"]

_KEY = "lm_latent.cli"


@dataclasses.dataclass(frozen=True)
class _Spec:
    flag: str
    help: str | None
    group: str | None
    parse: Callable[[str], Any] | None
    show: Callable[[Any], str] | None
    choices: Sequence | None


def option(default: Any = MISSING, *, flag: str, help: str | None = None, group: str | None = None,
           parse: Callable[[str], Any] | None = None, show: Callable[[Any], str] | None = None,
           choices: Sequence | None = None, default_factory: Any = MISSING) -> Any:
    """A dataclass field that is also the command-line flag ``flag``.

    ``parse`` turns the flag's text into the field's value (default: the field's type) and
    ``show`` turns a value back into text (``--help``'s default, :func:`to_argv`). A ``bool``
    field is a switch: ``False`` by default -> ``--flag``; ``True`` -> ``--no-...`` (``flag``
    must be that); ``bool | None`` -> ``--flag/--no-flag`` (None: decided later).
    """
    if not flag.startswith("--"):
        raise ValueError(f"flag {flag!r} must start with '--'")
    spec = _Spec(flag=flag, help=help, group=group, parse=parse, show=show,
                 choices=tuple(choices) if choices is not None else None)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_KEY: spec})


@dataclasses.dataclass
class _Knob:
    path: tuple[str, ...]  # field names from the root config
    spec: _Spec
    kind: type  # the field's type without ``| None``
    optional: bool  # ``X | None``
    default: Any  # MISSING: required


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(hint)):
            return args[0], True
    return hint, False


def _field_default(f: Field, parent: Any) -> Any:
    if parent is not None:  # a nested config: its default instance decides
        return getattr(parent, f.name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _nested_default(f: Field, parent: Any) -> Any:
    if parent is not None:
        return getattr(parent, f.name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"nested config field {f.name!r} needs a default (or default_factory)")


def _walk(cls: type, path: tuple[str, ...] = (), parent: Any = None) -> Iterator[_Knob]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            yield from _walk(hint, path + (f.name,), _nested_default(f, parent))
        elif _KEY in f.metadata:
            kind, optional = _unwrap(hint)
            yield _Knob(path + (f.name,), f.metadata[_KEY], kind, optional, _field_default(f, parent))


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def _by_flag(cls: type) -> dict[str, list[_Knob]]:
    """The fields behind each flag (several for a shared one), checked for agreement."""
    flags: dict[str, list[_Knob]] = {}
    for knob in _walk(cls):
        flags.setdefault(knob.spec.flag, []).append(knob)
    for flag, knobs in flags.items():
        first = knobs[0]
        for other in knobs[1:]:
            if (other.default, other.kind, other.optional) != (first.default, first.kind, first.optional):
                raise TypeError(f"{flag} feeds {'.'.join(first.path)} and {'.'.join(other.path)}, "
                                f"whose types or defaults differ")
        if sum(k.spec.help is not None for k in knobs) > 1:
            raise TypeError(f"{flag} has help on more than one of its fields; keep it on one")
    return flags


def _owner(knobs: list[_Knob]) -> _Knob:
    """The field of a shared flag that carries its help (its place sets the flag's group and order)."""
    return next((k for k in knobs if k.spec.help is not None), knobs[0])


def add_arguments(parser: argparse.ArgumentParser, cls: type, groups: Sequence[str] = ()) -> None:
    """Add a flag for every :func:`option` field of ``cls`` and its nested configs, in field order.

    ``groups`` names argument groups to create first, in this order (the others follow as met).
    """
    made = {name: parser.add_argument_group(name) for name in groups}
    flags = _by_flag(cls)
    for knob in _walk(cls):
        knobs = flags[knob.spec.flag]
        if knob.path != _owner(knobs).path:
            continue
        spec = knob.spec
        target: argparse._ActionsContainer = parser
        if spec.group:
            if spec.group not in made:
                made[spec.group] = parser.add_argument_group(spec.group)
            target = made[spec.group]
        kwargs: dict[str, Any] = {"help": spec.help}
        if knob.kind is bool and spec.parse is None:
            if knob.optional:
                kwargs.update(action=argparse.BooleanOptionalAction, default=knob.default)
            elif knob.default is True:
                if not spec.flag.startswith("--no-"):
                    raise TypeError(f"{'.'.join(knob.path)} is on by default: its flag must be --no-..., "
                                    f"not {spec.flag}")
                kwargs.update(action="store_false", default=True, dest=_dest("--" + spec.flag[5:]))
            else:
                kwargs.update(action="store_true", default=False)
        else:
            if knob.default is MISSING:
                kwargs["required"] = True
            else:
                kwargs["default"] = (spec.show(knob.default) if spec.show is not None and knob.default is not None
                                     else knob.default)
            kwargs["type"] = str if spec.parse is not None else knob.kind
            if spec.choices is not None:
                kwargs["choices"] = spec.choices
        target.add_argument(spec.flag, **kwargs)


def _value(knob: _Knob, ns: argparse.Namespace) -> Any:
    spec = knob.spec
    if knob.kind is bool and spec.parse is None and not knob.optional and knob.default is True:
        return getattr(ns, _dest("--" + spec.flag[5:]))
    value = getattr(ns, _dest(spec.flag))
    if spec.parse is not None and isinstance(value, str):
        value = spec.parse(value)
    return value


def from_args(cls: type, ns: argparse.Namespace) -> Any:
    """The ``cls`` config (nested configs included) that the parsed flags describe.

    Errors of a field's ``parse`` propagate (a ``ValueError`` naming the bad value).
    """
    flags = _by_flag(cls)
    values = {knob.path: _value(knob, ns) for knobs in flags.values() for knob in knobs}
    return _build(cls, (), None, values)


def _build(cls: type, path: tuple[str, ...], default: Any, values: dict) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            kwargs[f.name] = _build(hint, path + (f.name,), _nested_default(f, default), values)
        elif path + (f.name,) in values:
            kwargs[f.name] = values[path + (f.name,)]
    return dataclasses.replace(default, **kwargs) if default is not None else cls(**kwargs)


def _get(config: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        config = getattr(config, name)
    return config


def to_argv(config: Any) -> list[str]:
    """The flags that rebuild ``config`` through :func:`from_args` (only those off their defaults).

    Raises ``ValueError`` when the config cannot be written as flags: the fields of a shared
    flag hold different values, or a field without a flag is off its default.
    """
    cls = type(config)
    argv: list[str] = []
    for flag, knobs in _by_flag(cls).items():
        owner = _owner(knobs)
        value = _get(config, owner.path)
        for other in knobs:
            if _get(config, other.path) != value:
                raise ValueError(f"{flag} sets {'.'.join(owner.path)} and {'.'.join(other.path)} together; "
                                 f"they differ ({value!r} vs {_get(config, other.path)!r})")
        if owner.default is not MISSING and value == owner.default:
            continue
        spec = owner.spec
        if owner.kind is bool and spec.parse is None:
            if owner.optional:
                argv.append(flag if value else "--no-" + flag[2:])
            else:
                argv.append(flag)  # off its default: --switch (default off) or --no-switch (default on)
        elif value is None:
            raise ValueError(f"{'.'.join(owner.path)} is None, which {flag} cannot express")
        else:
            argv += [flag, spec.show(value) if spec.show is not None else str(value)]
    rebuilt = from_args(cls, _parser_for(cls).parse_args(argv))
    if rebuilt != config:
        raise ValueError(f"{cls.__name__} has settings no flag expresses (fields without a flag are off "
                         f"their defaults): {config!r}")
    return argv


def _parser_for(cls: type) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_arguments(parser, cls)
    return parser
