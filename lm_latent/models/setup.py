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


def prepare(pretrained: str | None = None, rate: int | str = 16, adapter: str | None = None,
            adapters: str | None = None, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, *,
            check_base_model: bool = True, **config_kwargs) -> LatentSetup:
    """Resolve and check everything cheap first, so a bad adapter fails before the base loads.

    Order: arguments, adapter files, ``latent.json``, the adapter's tensors (damage, NaN/Inf),
    the tokenizer, then the base's ``config.json`` against the adapter. ``config_kwargs``
    (``revision``, ``trust_remote_code``, ...) go to ``AutoConfig.from_pretrained``.
    """
    rate = parse_rate(rate)
    max_gen_toks = parse_max_gen_toks(max_gen_toks)
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
    base_config = None
    if check_base_model:
        base_config = load_base_config(base, config, adapter_path, explicit=bool(pretrained), **config_kwargs)
        check_base(config, base, base_config, adapter_path, shapes)
    return LatentSetup(rate=rate, adapter_path=adapter_path, config=config, tokenizer=tokenizer,
                       vocab=vocab, pretrained=base, max_gen_toks=max_gen_toks, base_config=base_config)
