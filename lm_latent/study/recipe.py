"""A study recipe: a YAML file that names every setting of a whole study, checked before anything runs.

Shipped recipes live in ``lm_latent/study/recipes/*.yaml`` (package data); a path to any YAML
file works the same. The ``train:`` section is validated against the very dataclasses ``lm-latent
train`` is built from (:class:`~lm_latent.training.train.TrainConfig` and the stage configs nested
in it): an unknown key, a setting that has no ``lm-latent train`` flag, or a bad value is refused
by name. ``train_flags:`` holds settings given by flag name, for flags this ``lm-latent train`` may
not have yet (``--finetune full``): a flag it has is parsed by its own parser; a flag it lacks is
kept as a *pending* note that the plan prints and a real run refuses.

``key=value`` overrides address the same tree with dots: ``gpus=8``, ``rates=0,16``,
``train.finetune.learning_rate=2e-5``, ``train_flags.--finetune=lora``, ``demo_plan.n_test=30``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EvalSpec", "Estimates", "Recipe", "RecipeError", "build_dataclass", "explicit_flags", "load_recipe",
           "shipped_recipes"]

_OPTION_KEY = "lm_latent.cli"  # lm_latent.utils.dataclass_cli's metadata key: the field has a flag
_TOP_KEYS = ("name", "description", "kind", "demo", "base", "data", "rates", "gpus", "gpus_per_rate", "nodes", "out",
             "train",
             "train_flags", "eval", "estimates", "demo_plan")


class RecipeError(ValueError):
    """The recipe (or an override) is wrong; the message names the key."""


@dataclass
class EvalSpec:
    """How the sweep evaluates every rate (``lm-latent sweep``)."""

    tasks: str = "latent_math"
    model: str = "latent-vllm"
    max_gen_toks: int = 2048
    batch_size: str = "auto"
    dtype: str = "bfloat16"
    limit: int | None = None  # lm_eval --limit: documents per task (stand-in runs)
    data_dir: str | None = None  # the benchmarks' files (lm_eval --metadata data_dir=...); None: the tasks' default
    tensor_parallel_size: int = 1  # latent-vllm: GPUs per model copy; data_parallel_size = gpus / this


@dataclass
class Estimates:
    """Assumptions behind the cost estimates (each printed number is an estimate, never a measurement)."""

    train_samples: int = 395_000
    tokens_per_sample: int = 320
    eval_samples: int = 11_600
    eval_prompt_tokens: int = 200
    eval_gen_tokens: int = 600
    gpu: str = "h100-80gb"
    train_mfu: float = 0.35
    decode_mfu: float = 0.05
    data_gb: float = 0.4
    params: float | None = None  # None: from the architecture (local config.json or the built-in table)


@dataclass
class Recipe:
    name: str
    kind: str  # "study" or "demo"
    description: str = ""
    demo: str | None = None  # kind demo: "quick" or "full"
    base: str = "meta-llama/Llama-3.2-3B"
    data: str = "meta-math/MetaMathQA"
    rates: tuple[int, ...] = (0, 16)
    gpus: int = 1  # GPUs per node
    nodes: int = 1
    gpus_per_rate: int | None = None  # one node: train several rates at once, each on this many GPUs
    out: str = "study_out"
    train: Any = None  # TrainConfig, rate/base/data/out filled per stage
    train_flags: dict[str, str] = field(default_factory=dict)  # accepted by this lm-latent train
    pending: dict[str, str] = field(default_factory=dict)  # flags this lm-latent train does not have yet
    train_keys: list[tuple[str, ...]] = field(default_factory=list)  # TrainConfig paths the recipe sets
    eval: EvalSpec = field(default_factory=EvalSpec)
    estimates: Estimates = field(default_factory=Estimates)
    demo_plan: Any = None  # kind demo: the DemoPlan
    source: str = ""  # where the recipe was read from
    overrides: list[str] = field(default_factory=list)  # the key=value overrides given

    @property
    def train_world_size(self) -> int:
        """Processes each rate trains on."""
        from lm_latent.study.plan import gpus_for_each_rate

        return gpus_for_each_rate(self) * self.nodes

    @property
    def world_size(self) -> int:
        return self.gpus * self.nodes


def _recipes_dir():
    return importlib.resources.files("lm_latent.study") / "recipes"


def shipped_recipes() -> dict[str, str]:
    """name -> first line of its description, for every YAML shipped with the package."""
    import yaml

    out = {}
    for entry in sorted(_recipes_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
            out[entry.name[:-5]] = str(data.get("description", "")).strip().splitlines()[0:1]
    return {k: (v[0] if v else "") for k, v in out.items()}


def _read(name_or_path: str) -> tuple[dict, str]:
    import yaml

    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist")
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        entry = _recipes_dir() / f"{name_or_path}.yaml"
        if not entry.is_file():
            raise RecipeError(f"unknown recipe {name_or_path!r}; shipped: {', '.join(shipped_recipes())} "
                              f"(or give a path to a .yaml file)")
        text, source = entry.read_text(encoding="utf-8"), f"lm_latent/study/recipes/{name_or_path}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping of settings, got {type(data).__name__}")
    return data, source


def _apply_override(data: dict, text: str) -> None:
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {text!r} is not key=value")
    parts = key.strip().split(".")
    if parts[0] == "train_flags" and len(parts) > 2:  # train_flags.--global-batch-size=128
        parts = [parts[0], ".".join(parts[1:])]
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"override {key}: {part} is not a section")
        node = child
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node[parts[-1]] = value


# --- values checked against a dataclass's fields ---------------------------------------------------------

def _unwrap(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _convert(where: str, hint: Any, value: Any, spec: Any = None) -> Any:
    kind, optional = _unwrap(hint)
    if value is None:
        if optional:
            return None
        raise RecipeError(f"{where}: may not be empty (null)")
    if spec is not None and spec.parse is not None:  # the flag's own parser (--rate, --schedule)
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        try:
            return spec.parse(text)
        except ValueError as exc:
            raise RecipeError(f"{where}: {exc}") from None
    if kind is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise RecipeError(f"{where}: expected an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise RecipeError(f"{where}: expected a number, got {value!r}") from None
    if kind is str:
        if isinstance(value, (dict, list)):
            raise RecipeError(f"{where}: expected text, got {value!r}")
        result = str(value)
        if spec is not None and spec.choices is not None and result not in spec.choices:
            raise RecipeError(f"{where}: {result!r} is not one of {', '.join(map(str, spec.choices))}")
        return result
    if typing.get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        inner = typing.get_args(kind)[0]
        return tuple(_convert(f"{where}[{i}]", inner, item) for i, item in enumerate(items))
    return value


def build_dataclass(cls: type, values: dict, where: str, default: Any = None, flags_only: bool = False,
                    given: list[tuple[str, ...]] | None = None, _path: tuple[str, ...] = ()) -> Any:
    """``default`` (or ``cls()``) with ``values`` applied, each key checked against ``cls``'s fields.

    ``flags_only``: a field without an ``lm-latent train`` flag is refused (the study runs through
    the commands, which cannot set it). ``given`` collects the field paths the values set.
    """
    if not isinstance(values, dict):
        raise RecipeError(f"{where}: expected a section (a mapping), got {values!r}")
    base = default if default is not None else cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    changes = {}
    for key, value in values.items():
        name = f"{where}.{key}"
        if key not in fields:
            raise RecipeError(f"{name}: unknown setting; {cls.__name__} has {', '.join(fields)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            changes[key] = build_dataclass(hint, value or {}, name, getattr(base, key), flags_only, given,
                                           _path + (key,))
            continue
        spec = fields[key].metadata.get(_OPTION_KEY)
        if flags_only and spec is None:
            raise RecipeError(f"{name}: lm-latent train has no flag for it (a fixed recipe constant), so a "
                              f"study cannot set it")
        changes[key] = _convert(name, hint, value, spec)
        if given is not None:
            given.append(_path + (key,))
    return dataclasses.replace(base, **changes)


def explicit_flags(config: Any, paths: typing.Sequence[tuple[str, ...]]) -> list[str]:
    """Flags for the fields at ``paths`` (the recipe's own settings), written even when they equal the default.

    Switches and ``None`` values are left to :func:`~lm_latent.utils.dataclass_cli.to_argv`.
    """
    argv: list[str] = []
    for path in paths:
        owner, value = type(config), config
        for name in path[:-1]:
            owner, value = type(getattr(value, name)), getattr(value, name)
        spec = {f.name: f for f in dataclasses.fields(owner)}[path[-1]].metadata.get(_OPTION_KEY)
        value = getattr(value, path[-1])
        if spec is None or value is None or isinstance(value, bool) or spec.flag in argv:
            continue
        argv += [spec.flag, spec.show(value) if spec.show is not None else str(value)]
    return argv


# --- the recipe ------------------------------------------------------------------------------------------

def _train_parser():
    import argparse

    from lm_latent.training.train import build_parser

    parser = build_parser()

    def error(message: str) -> typing.NoReturn:
        raise RecipeError(f"train_flags: {message}")

    parser.error = error
    parser.exit_on_error = False
    return parser, {s for a in parser._actions for s in a.option_strings
                    if not isinstance(a, argparse._HelpAction)}


def _check_train(recipe: Recipe) -> None:
    """What ``lm-latent train`` itself would refuse, for every rate, before anything runs."""
    from lm_latent.adapter.config import LatentConfig
    from lm_latent.training.mixed_traces import MixConfig

    cfg = recipe.train
    try:  # lm-latent train's own checks of the fine-tuning flags and of the batch over the world size
        from lm_latent.training import finetune

        if hasattr(finetune, "check_finetune_flags"):
            finetune.check_finetune_flags(cfg.finetune)
        if getattr(cfg.finetune, "global_batch_size", None) is not None:
            from lm_latent.training.launch import batch_plan

            batch_plan(recipe.train_world_size, cfg.finetune.batch_size, cfg.finetune.grad_accum,
                       cfg.finetune.global_batch_size)
    except ValueError as exc:
        raise RecipeError(f"train.finetune: {exc} ({recipe.train_world_size} training processes per rate)") from None
    if cfg.finetune.group_by_length < 0:
        raise RecipeError(f"train.finetune.group_by_length must be >= 0, got {cfg.finetune.group_by_length}")
    for rate in recipe.rates:
        if not rate:
            continue
        chunk_len = cfg.chunk_len or rate
        try:
            LatentConfig(rate=rate, chunk_len=chunk_len, codebook_size=cfg.codebook_size, base_model=cfg.base,
                         base_vocab_size=0, vocab_size=0)
            MixConfig(chunk_len=chunk_len, strategy=cfg.finetune.strategy, schedule=cfg.finetune.schedule)
        except (ValueError, TypeError) as exc:
            raise RecipeError(f"train, for rate {rate}: {exc}") from None


def load_recipe(name_or_path: str, overrides: typing.Sequence[str] = ()) -> Recipe:
    """Read, override and validate a recipe; every mistake is a :class:`RecipeError` naming its key."""
    data, source = _read(name_or_path)
    for text in overrides:
        _apply_override(data, text)
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise RecipeError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(_TOP_KEYS)}")
    kind = data.get("kind", "study")
    if kind not in ("study", "demo"):
        raise RecipeError(f"kind: 'study' or 'demo', got {kind!r}")
    name = str(data.get("name") or Path(source).stem)
    recipe = Recipe(name=name, kind=kind, description=str(data.get("description", "")).strip(), source=source,
                    overrides=list(overrides))
    for key in ("gpus", "nodes", "gpus_per_rate"):
        if data.get(key) is not None:
            value = _convert(key, int, data[key])
            if value < 1:
                raise RecipeError(f"{key}: must be >= 1, got {value}")
            setattr(recipe, key, value)
    if recipe.gpus_per_rate is not None and recipe.gpus % recipe.gpus_per_rate:
        raise RecipeError(f"gpus_per_rate: {recipe.gpus_per_rate} does not divide gpus ({recipe.gpus}): the rates "
                          f"train on disjoint sets of that many GPUs")
    if "out" in data:
        recipe.out = _convert("out", str, data["out"])
    if kind == "demo":
        return _load_demo(recipe, data)
    for key in ("demo", "demo_plan"):
        if key in data:
            raise RecipeError(f"{key}: only for kind: demo")
    from lm_latent.adapter.load import AdapterError, parse_rate
    from lm_latent.training.train import TrainConfig

    recipe.base = _convert("base", str, data.get("base", recipe.base))
    recipe.data = _convert("data", str, data.get("data", recipe.data))
    rates = data.get("rates", list(recipe.rates))
    items = rates.split(",") if isinstance(rates, str) else rates if isinstance(rates, list) else [rates]
    try:
        recipe.rates = tuple(sorted({parse_rate(r) for r in items}))
    except AdapterError as exc:
        raise RecipeError(f"rates: {exc}") from None
    train = data.get("train") or {}
    for reserved in ("rate", "base", "data", "out"):
        if isinstance(train, dict) and reserved in train:
            raise RecipeError(f"train.{reserved}: set by the study (use the top-level "
                              f"{'rates' if reserved == 'rate' else reserved}: key)")
    recipe.train = build_dataclass(TrainConfig, train, "train", TrainConfig(rate=0), flags_only=True,
                                   given=recipe.train_keys)
    recipe.train = dataclasses.replace(recipe.train, base=recipe.base, data=recipe.data)
    flags = data.get("train_flags") or {}
    if not isinstance(flags, dict):
        raise RecipeError("train_flags: expected a mapping of flag -> value")
    parser, known = _train_parser()
    for flag, value in flags.items():
        flag = str(flag)
        if not flag.startswith("--"):
            raise RecipeError(f"train_flags.{flag}: a flag starts with --")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        (recipe.train_flags if flag in known else recipe.pending)[flag] = text
    if recipe.train_flags:  # parsed by lm-latent train's own parser into the same TrainConfig
        from lm_latent.training.train import config_from_args
        from lm_latent.utils.dataclass_cli import to_argv

        argv = to_argv(recipe.train)  # starts with --rate 0 (required, so always written)
        for flag, text in recipe.train_flags.items():
            argv += [flag] if text in ("", "true") else [flag, text]
        try:
            recipe.train = dataclasses.replace(config_from_args(parser.parse_args(argv)), base=recipe.base,
                                               data=recipe.data)
        except (ValueError, AdapterError) as exc:
            raise RecipeError(f"train_flags: {exc}") from None
    recipe.eval = build_dataclass(EvalSpec, data.get("eval") or {}, "eval")
    if recipe.eval.model not in ("latent", "latent-vllm"):
        raise RecipeError(f"eval.model: 'latent' or 'latent-vllm', got {recipe.eval.model!r}")
    if recipe.eval.tensor_parallel_size < 1 or recipe.gpus % recipe.eval.tensor_parallel_size:
        raise RecipeError(f"eval.tensor_parallel_size: must be >= 1 and divide gpus ({recipe.gpus}), got "
                          f"{recipe.eval.tensor_parallel_size}")
    recipe.estimates = build_dataclass(Estimates, data.get("estimates") or {}, "estimates")
    from lm_latent.study.plan import GPUS

    if recipe.estimates.gpu not in GPUS:
        raise RecipeError(f"estimates.gpu: one of {', '.join(GPUS)}, got {recipe.estimates.gpu!r}")
    _check_train(recipe)
    return recipe


def _load_demo(recipe: Recipe, data: dict) -> Recipe:
    from lm_latent.demo.plan import FULL, QUICK, DemoPlan

    plans = {"quick": QUICK, "full": FULL}
    which = data.get("demo")
    if which not in plans:
        raise RecipeError(f"demo: 'quick' or 'full', got {which!r}")
    extra = [k for k in data if k not in ("name", "description", "kind", "demo", "out", "demo_plan")]
    if extra:
        raise RecipeError(f"{', '.join(extra)}: not used by a demo recipe (set demo_plan.<field> instead)")
    recipe.demo = which
    recipe.demo_plan = build_dataclass(DemoPlan, data.get("demo_plan") or {}, "demo_plan", plans[which])
    if "out" not in data:
        recipe.out = "demo_out"
    recipe.rates = recipe.demo_plan.rates
    return recipe
