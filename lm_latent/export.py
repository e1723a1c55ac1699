"""``lm-latent export``: merge an adapter into a plain HF checkpoint (for ``--model hf`` / vLLM).

Latent tokens are ordinary vocabulary ids, so base + merged LoRA + new-token rows + the
extended tokenizer is a standard causal-LM directory that any HF-compatible server loads
unchanged. ``latent.json`` is copied as ``lm_latent.json`` (rate, codebook, training record)
so the checkpoint still says what it is without passing for an adapter directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from .adapter import COMPRESSOR_DIR, AdapterError, attach_adapter, check_adapter, check_base, load_adapter_tokenizer
from .latent_config import LATENT_CONFIG_NAME

logger = logging.getLogger(__name__)

EXPORTED_CONFIG_NAME = "lm_latent.json"
_DTYPES = ("auto", "float32", "bfloat16", "float16")


def export(adapter: str | os.PathLike, out: str | os.PathLike, base: str | None = None, dtype: str = "auto",
           with_compressor: bool = False, overwrite: bool = False) -> Path:
    """Write ``out``: merged weights (safetensors), extended tokenizer, generation config."""
    from .fileio import atomic_directory

    adapter, out = Path(adapter), Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    logger.info("export: base %s + adapter %s -> %s", base or "(from latent.json)", adapter, out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        write_merged(adapter, tmp, base=base, dtype=dtype, with_compressor=with_compressor)
    return out


def write_merged(adapter: str | os.PathLike, target: str | os.PathLike, base: str | None = None,
                 dtype: str = "auto", with_compressor: bool = False) -> None:
    """Merge ``adapter`` into ``base`` and save into the existing directory ``target``.

    The one merge both ``lm-latent export`` and ``--model latent-vllm``'s cache use; the
    caller makes ``target`` atomic (a scratch directory renamed on success).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    adapter, target = Path(adapter), Path(target)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    config = check_adapter(adapter)
    tokenizer = load_adapter_tokenizer(adapter, config)
    base = base or config.base_model
    check_base(config, base, AutoConfig.from_pretrained(base), adapter)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    model = attach_adapter(model, adapter, config, merge=True)
    model.config.vocab_size = model.get_input_embeddings().weight.shape[0]
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    shutil.copyfile(adapter / LATENT_CONFIG_NAME, target / EXPORTED_CONFIG_NAME)
    if with_compressor and (adapter / COMPRESSOR_DIR).is_dir():
        shutil.copytree(adapter / COMPRESSOR_DIR, target / COMPRESSOR_DIR)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent export", description=__doc__.splitlines()[0])
    p.add_argument("--adapter", required=True, help="adapter directory, e.g. adapters/rate16")
    p.add_argument("--out", required=True, help="directory to write the merged checkpoint to")
    p.add_argument("--base", default=None, help="base model (default: the one recorded in latent.json)")
    p.add_argument("--dtype", default="auto", choices=_DTYPES, help="weights dtype (default: the base's)")
    p.add_argument("--with-compressor", action="store_true", help="also copy the compressor (to decode latents)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = export(args.adapter, args.out, base=args.base, dtype=args.dtype,
                     with_compressor=args.with_compressor, overwrite=args.overwrite)
    except (AdapterError, FileExistsError, ValueError, OSError) as exc:
        p.exit(2, f"lm-latent export: error: {exc}\n")
    print(f"wrote {out}")
    return 0
