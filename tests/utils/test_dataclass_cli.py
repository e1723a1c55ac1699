"""Flags generated from dataclass fields (``lm_latent.utils.dataclass_cli``): every kind of knob, both directions."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from lm_latent.utils.dataclass_cli import add_arguments, from_args, option, to_argv


def _csv(text: str) -> tuple[int, ...]:
    if not text.strip():
        raise ValueError(f"empty list {text!r}")
    return tuple(int(x) for x in text.split(","))


@dataclass
class Inner:
    size: int = option(8, flag="--inner-size", help="size", group="inner")
    width: float | None = option(None, flag="--inner-width", help="width", group="inner")
    seed: int = option(0, flag="--seed")  # shared: the help lives on Outer.seed
    constant: str = "fixed"  # no flag


@dataclass
class Outer:
    rate: int = option(flag="--rate", parse=lambda t: 0 if t == "cot" else int(t), help="(required) rate")
    name: str = option("x", flag="--name", choices=("x", "y"), help="which")
    steps: tuple[int, ...] = option((1, 2), flag="--steps", parse=_csv, show=lambda v: ",".join(map(str, v)),
                                    help="list")
    seed: int = option(0, flag="--seed", help="every seed")
    fast: bool = option(False, flag="--fast", help="switch")
    progress: bool = option(True, flag="--no-progress", help="quiet")
    bf16: bool | None = option(None, flag="--bf16", help="auto when None")
    inner: Inner = field(default_factory=lambda: Inner(size=3))  # a nested default that is not the class's


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t", exit_on_error=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p, Outer, groups=("inner",))
    return p


def _parse(*argv: str) -> Outer:
    return from_args(Outer, _parser().parse_args(list(argv)))


def test_defaults_and_nested_defaults():
    cfg = _parse("--rate", "4")
    assert cfg == Outer(rate=4)
    assert cfg.inner.size == 3 and "(default: 3)" in _parser().format_help()  # the nested default instance decides


def test_every_kind_of_flag():
    cfg = _parse("--rate", "cot", "--name", "y", "--steps", "3,4,5", "--seed", "7", "--fast", "--no-progress",
                 "--no-bf16", "--inner-size", "16", "--inner-width", "0.5")
    assert (cfg.rate, cfg.name, cfg.steps, cfg.fast, cfg.progress, cfg.bf16) == (0, "y", (3, 4, 5), True, False, False)
    assert (cfg.inner.size, cfg.inner.width, cfg.inner.constant) == (16, 0.5, "fixed")
    assert cfg.seed == cfg.inner.seed == 7  # one flag, every field behind it
    assert _parse("--rate", "1", "--bf16").bf16 is True


def test_bad_values():
    with pytest.raises(argparse.ArgumentError):
        _parse("--rate", "1", "--name", "z")  # not a choice
    with pytest.raises(argparse.ArgumentError):
        _parse("--rate", "1", "--inner-size", "big")  # the field's type converts
    with pytest.raises(ValueError, match="empty list"):  # a parse error reaches the caller as itself
        _parse("--rate", "1", "--steps", " ")


def test_rate_is_required_and_the_flags_are_grouped():
    p = _parser()
    text = p.format_help().split("options:")[1]  # past the usage line
    assert "--no-progress" in text and "--bf16, --no-bf16" in text
    assert text.index("inner:") < text.index("--inner-size")
    assert "--seed" in text.split("inner:")[0]  # the shared flag sits where its help is
    assert text.count("--seed") == 1
    with pytest.raises(SystemExit):  # "the following arguments are required: --rate"
        p.parse_args([])


def test_to_argv_round_trips():
    cfg = Outer(rate=0, steps=(9,), seed=2, fast=True, progress=False, bf16=False,
                inner=Inner(size=1, width=0.25, seed=2))
    argv = to_argv(cfg)
    assert from_args(Outer, _parser().parse_args(argv)) == cfg
    assert to_argv(Outer(rate=5)) == ["--rate", "5"]  # defaults are left out


def test_to_argv_refuses_what_flags_cannot_say():
    with pytest.raises(ValueError, match="--seed"):
        to_argv(Outer(rate=1, seed=1))  # the shared flag's fields disagree
    with pytest.raises(ValueError, match="no flag"):
        to_argv(Outer(rate=1, inner=Inner(constant="other")))


def test_declaration_mistakes_fail_at_build_time():
    @dataclass
    class Clash:
        a: int = option(1, flag="--n", help="a")
        b: int = option(2, flag="--n")

    @dataclass
    class OnByDefault:
        on: bool = option(True, flag="--on", help="a switch that is on")

    for cls in (Clash, OnByDefault):
        with pytest.raises(TypeError):
            add_arguments(argparse.ArgumentParser(), cls)
    with pytest.raises(ValueError, match="--"):
        option(1, flag="n")
