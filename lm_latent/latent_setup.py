"""What every lm-latent backend resolves before loading a weight: rate, adapter, tokenizer, base.

``--model latent`` (HF ``generate``) and ``--model latent-vllm`` take the same plugin
arguments and must mean the same thing by them; both call :func:`prepare`. The plugin's
own arguments are consumed here and never reach ``from_pretrained`` or vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .adapter import (
    DEFAULT_BASE_MODEL,
    check_adapter,
    load_adapter_tokenizer,
    parse_rate,
    resolve_adapter,
)
from .latent_config import LatentConfig
from .vocab import LatentVocab

DEFAULT_MAX_GEN_TOKS = 2048
PLUGIN_ARGS = ("pretrained", "rate", "adapter", "adapters", "max_gen_toks")


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


def prepare(pretrained: str | None = None, rate: int | str = 16, adapter: str | None = None,
            adapters: str | None = None, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS) -> LatentSetup:
    """Resolve and check everything cheap first, so a bad adapter fails before the base loads."""
    rate = parse_rate(rate)
    adapter_path = resolve_adapter(rate, adapter, adapters)
    config = check_adapter(adapter_path, rate)
    tokenizer = load_adapter_tokenizer(adapter_path, config)
    vocab = LatentVocab.from_tokenizer(tokenizer, config.codebook_size)
    pretrained = pretrained or config.base_model or DEFAULT_BASE_MODEL
    return LatentSetup(rate=rate, adapter_path=adapter_path, config=config, tokenizer=tokenizer,
                       vocab=vocab, pretrained=pretrained, max_gen_toks=int(max_gen_toks))
