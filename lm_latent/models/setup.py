"""What every lm-latent backend resolves before loading a weight: rate, adapter, tokenizer, base.

``--model latent`` (HF ``generate``) and ``--model latent-vllm`` take the same plugin
arguments and must mean the same thing by them; both call :func:`prepare`. The plugin's
own arguments are consumed here and never reach ``from_pretrained`` or vLLM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lm_latent.adapter.load import (  # noqa: F401  (DEFAULT_BASE_MODEL: re-exported)
    DEFAULT_BASE_MODEL,
    AdapterError,
    check_adapter,
    check_adapter_weights,
    check_base,
    load_adapter_tokenizer,
    load_base_config,
    parse_rate,
    resolve_adapter,
    resolve_base,
)
from lm_latent.adapter.config import LatentConfig
from lm_latent.adapter.vocab import LatentVocab

DEFAULT_MAX_GEN_TOKS = 2048
PLUGIN_ARGS = ("pretrained", "rate", "adapter", "adapters", "max_gen_toks", "decode_latents", "text_only")

logger = logging.getLogger(__name__)


@dataclass
class LatentSetup:
    """A checked adapter for one rate, its tokenizer and the base it goes on."""

    rate: int
    adapter_path: Path
    config: LatentConfig
    tokenizer: object
    vocab: LatentVocab
    pretrained: str
    max_gen_toks: int
    base_config: object = None  # the base's transformers config (config.json only, no weights)


def parse_max_gen_toks(value) -> int:
    """A positive integer generation budget (``max_gen_toks=0`` would crash inside ``generate``)."""
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number <= 0:
        raise AdapterError(f"max_gen_toks must be a positive integer (tokens to generate), got {value!r}")
    return number


_DTYPES = ("auto", "float32", "float", "float16", "half", "bfloat16", "float64", "double")


def check_batch_size(value) -> None:
    """``batch_size``: a positive integer, ``auto`` or ``auto:N`` (0 would put every request in one batch)."""
    text = str(value).strip()
    if value is None or text == "auto":
        return
    if text.startswith("auto:"):
        try:
            ok = float(text[5:]) > 0
        except ValueError:
            ok = False
    else:
        try:
            ok = not isinstance(value, bool) and int(text) > 0
        except ValueError:
            ok = False
    if not ok:
        raise AdapterError(f"batch_size must be a positive integer, 'auto' or 'auto:N', got {value!r}")


def check_device(value) -> None:
    """A device that exists here (lm-eval would run ``cuda:7`` on the CPU of a machine without it)."""
    if value is None:
        return
    import torch

    try:
        device = torch.device(str(value))
    except (RuntimeError, ValueError):
        raise AdapterError(f"device={value!r} is not a device name: use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            if device.index in (None, 0):  # lm_eval's CLI passes --device cuda:0 by default; HFLM falls back
                logger.warning("lm-latent: device=%s, but no CUDA device is available here: running on the CPU",
                               value)
                return
            raise AdapterError(f"device={value!r}, but no CUDA device is available here: use device=cpu")
        if device.index is not None and device.index >= count:
            raise AdapterError(f"device={value!r}, but this machine has {count} CUDA device(s) "
                               f"(cuda:0..cuda:{count - 1})")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise AdapterError(f"device={value!r}, but MPS is not available here: use device=cpu")


def check_dtype(value) -> None:
    """``dtype``: ``auto`` or a float dtype the model can run in (``float8`` would crash in a traceback)."""
    if value is None:
        return
    import torch

    if isinstance(value, torch.dtype):
        if value.is_floating_point:
            return
    elif str(value).strip().removeprefix("torch.") in _DTYPES:
        return
    raise AdapterError(f"dtype={value!r} is not supported: use one of {', '.join(_DTYPES)}")


def check_run_args(*, batch_size=None, device=None, dtype=None) -> None:
    """The lm-eval arguments both backends pass on, checked before anything loads."""
    check_batch_size(batch_size)
    check_device(device)
    check_dtype(dtype)


def context_length(base_config, tokenizer=None) -> int | None:
    """The base's context as lm-eval resolves it (config, then tokenizer, then lm-eval's default)."""
    if base_config is None:
        return None
    try:
        from lm_eval.models.huggingface import HFLM
        from lm_eval.models.utils import resolve_max_length
    except ImportError:  # pragma: no cover - lm-eval is a dependency
        return None
    return int(resolve_max_length(base_config, tokenizer, default=HFLM._DEFAULT_MAX_LENGTH))


def check_generation_budget(max_gen_toks: int, max_length: int | None, source: str) -> None:
    """``max_gen_toks`` must leave room for a prompt; said before any weight loads, not after."""
    if max_length is not None and max_gen_toks >= max_length:
        raise AdapterError(f"{source} leaves no room for a prompt with max_gen_toks={max_gen_toks}: lower "
                           f"max_gen_toks below {max_length} (or raise the context length)")


def prepare(pretrained: str | None = None, rate: int | str = 16, adapter: str | None = None,
            adapters: str | None = None, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, *,
            check_base_model: bool = True, max_length: int | None = None, max_length_arg: str = "max_length",
            **config_kwargs) -> LatentSetup:
    """Resolve and check everything cheap first, so a bad adapter fails before the base loads.

    Order: arguments, adapter files, ``latent.json``, the adapter's tensors (damage, NaN/Inf),
    the tokenizer, then the base's ``config.json`` against the adapter. ``config_kwargs``
    (``revision``, ``trust_remote_code``, ...) go to ``AutoConfig.from_pretrained``.
    """
    rate = parse_rate(rate)
    max_gen_toks = parse_max_gen_toks(max_gen_toks)
    if max_length is not None:
        try:
            max_length = int(str(max_length).strip())
        except ValueError:
            raise AdapterError(f"{max_length_arg} must be a positive integer, got {max_length!r}") from None
        if max_length <= 0:
            raise AdapterError(f"{max_length_arg} must be a positive integer, got {max_length!r}")
        check_generation_budget(max_gen_toks, max_length, f"{max_length_arg}={max_length}")
    if not isinstance(pretrained, (str, type(None))):
        raise AdapterError("lm-latent needs pretrained= as a path or hub id, not a model object")
    if adapter and adapters:
        logger.warning("both adapter=%s and adapters=%s given: using adapter=%s (adapters= is ignored)",
                       adapter, adapters, adapter)
    adapter_path = resolve_adapter(rate, adapter, adapters)
    config = check_adapter(adapter_path, rate)
    shapes = check_adapter_weights(adapter_path)
    tokenizer = load_adapter_tokenizer(adapter_path, config)
    vocab = LatentVocab.from_tokenizer(tokenizer, config.codebook_size)
    base = resolve_base(config, adapter_path, pretrained)
    if not pretrained and str(config_kwargs.get("trust_remote_code", "")).strip().lower() in ("true", "1", "yes"):
        raise AdapterError(f"trust_remote_code=True would run code shipped with {base!r}, the base that the "
                           f"adapter's latent.json names; lm-latent trusts remote code only for a base you name "
                           f"yourself: add pretrained={base} to --model_args if you trust it")
    base_config = None
    if check_base_model:
        base_config = load_base_config(base, config, adapter_path, explicit=bool(pretrained), **config_kwargs)
        check_base(config, base, base_config, adapter_path, shapes)
        if max_length is None and max_gen_toks != DEFAULT_MAX_GEN_TOKS:  # the default: checked at generation
            context = context_length(base_config, tokenizer)
            check_generation_budget(max_gen_toks, context, f"the context of {base} ({context} tokens)")
    return LatentSetup(rate=rate, adapter_path=adapter_path, config=config, tokenizer=tokenizer,
                       vocab=vocab, pretrained=base, max_gen_toks=max_gen_toks, base_config=base_config)


USE_CACHE_REFUSED = (
    "--use_cache is refused by --model {model}: lm-eval's response cache keys on the prompt and the "
    "generation settings only, not on --model_args, so answers cached for one rate, adapter or base would "
    "be reported for another, and cached answers lose their exact token counts. Run without --use_cache "
    "(--log_samples keeps every answer; `lm-latent sweep` skips rates already done).")


def refuse_response_cache(cache_hook, model: str) -> None:
    """Called from ``set_cache_hook``: lm-eval's ``CachingLM`` (``--use_cache``) installs a hook with a database."""
    if getattr(cache_hook, "dbdict", None) is not None:
        from lm_latent.utils.errors import report_cleanly

        report_cleanly()
        raise AdapterError(USE_CACHE_REFUSED.format(model=model))


def base_identity(base: str) -> dict:
    """The resolved base for the results config: its path (or hub id) and, for a local folder, the
    sha256 of the files a model load reads. Per-file hashes are kept in the merge cache's index by
    path, size and mtime, so a 6 GiB base is read in full once, not on every run."""
    path = Path(base).expanduser()
    if not path.is_dir():
        return {"latent_base": base}
    from lm_latent.models.merge_cache import HASH_INDEX, cache_root, content_hash
    from lm_latent.utils.fileio import write_json_atomic

    index_path = cache_root() / HASH_INDEX
    try:
        import json

        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    before = dict(index)
    digest = content_hash(path, index=index)
    if index != before:
        try:
            write_json_atomic(index_path, index)
        except OSError:  # a read-only cache folder only costs the next run a re-read
            pass
    return {"latent_base": str(path.resolve()), "latent_base_sha256": digest}
