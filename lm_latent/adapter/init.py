"""lm-latent init-adapter: an untrained adapter directory in the final format.

The LoRA weights start as a no-op (PEFT initialises B to zero), the new-token rows and
the compressor are random. Use it to smoke-test a new base model through the whole
evaluation path before spending anything on training.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lm_latent.adapter.load import (
    has_tied_embeddings,
    lora_config,
    parse_rate,
    resize_for_tokenizer,
    save_adapter,
)
from lm_latent.adapter.config import LatentConfig, base_fingerprint
from lm_latent.adapter.vocab import extend_tokenizer

logger = logging.getLogger(__name__)


def init_adapter(base: str, rate: int, codebook_size: int, out: str | Path, chunk_len: int | None = None,
                 lora_r: int = 16, lora_alpha: int = 32, seed: int = 0, overwrite: bool = False) -> Path:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.utils.fileio import local_path_or_id

    base = local_path_or_id(str(base))  # recorded in latent.json: absolute, so it works from any folder
    rate = parse_rate(rate)
    if rate == 0:
        codebook_size, chunk_len = 0, 0
    chunk_len = chunk_len or rate
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    base_vocab_size = len(tokenizer)
    extend_tokenizer(tokenizer, codebook_size)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    resize_for_tokenizer(model, len(tokenizer))
    tied = has_tied_embeddings(model)
    config = LatentConfig(rate=rate, chunk_len=chunk_len, codebook_size=codebook_size, base_model=str(base),
                          base_vocab_size=base_vocab_size, vocab_size=len(tokenizer),
                          base_fingerprint=base_fingerprint(model.config), pad_token=tokenizer.pad_token,
                          tied_embeddings=tied, trained=False,
                          training={"recipe": "init-adapter (untrained)", "seed": seed, "lora_r": lora_r})
    peft_model = get_peft_model(model, lora_config(config, tied=tied, r=lora_r, alpha=lora_alpha))
    compressor = None
    if rate > 0:
        from lm_latent.adapter.compressor import LatentCompressor, LatentCompressorConfig

        compressor = LatentCompressor(LatentCompressorConfig(
            vocab_size=base_vocab_size, rate=rate, chunk_len=chunk_len, codebook_size=codebook_size,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id < base_vocab_size else None))
    out = save_adapter(out, peft_model, tokenizer, config, compressor=compressor, overwrite=overwrite)
    logger.info("wrote untrained adapter for rate=%s to %s", rate, out)
    return out


def adapter_dir(root: str | Path, rate: int, warn=print) -> Path:
    """``ROOT/rate<r>``, as ``lm-latent train --out ROOT`` writes; a ``--out`` that already ends in
    ``rate<r>`` is the old (0.1.0) leaf spelling, kept for one release with a deprecation message."""
    root = Path(root)
    if root.name == f"rate{rate}":
        warn(f"lm-latent init-adapter: --out now names the adapters root (it writes OUT/rate{rate}, as "
             f"lm-latent train does); writing {root} as before: pass --out {root.parent} instead")
        return root
    return root / f"rate{rate}"


def main(argv: list[str] | None = None) -> int:
    import sys

    p = argparse.ArgumentParser(prog="lm-latent init-adapter", description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="base model directory or hub id")
    p.add_argument("--rate", required=True, help="compression rate (0 or 'cot' for plain chain-of-thought)")
    p.add_argument("--codebook-size", type=int, default=1024, help="number of latent tokens K (default: 1024)")
    p.add_argument("--chunk-len", type=int, default=None, help="text tokens per chunk L (default: rate)")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random new-token rows and compressor (default: 0)")
    p.add_argument("--out", required=True, help="adapters root: writes OUT/rate<r>, as lm-latent train does")
    p.add_argument("--overwrite", action="store_true", help="replace an existing adapter directory")
    args = p.parse_args(argv)
    try:
        target = adapter_dir(args.out, parse_rate(args.rate), warn=lambda text: print(text, file=sys.stderr))
        out = init_adapter(args.base, args.rate, args.codebook_size, target, chunk_len=args.chunk_len,
                           lora_r=args.lora_r, seed=args.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError, OSError) as exc:
        p.exit(2, f"lm-latent init-adapter: error: {exc}\n")
    print(f"wrote {out}")
    return 0
