"""lm-latent export: merge an adapter into a plain HF checkpoint (for --model hf / vLLM).

Latent tokens are ordinary vocabulary ids, so base + merged LoRA + new-token rows + the
extended tokenizer is a standard causal-LM directory that any HF-compatible server loads
unchanged. ``latent.json`` is copied as ``lm_latent.json`` (rate, codebook, training record)
so the checkpoint still says what it is without passing for an adapter directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
from pathlib import Path

from lm_latent.adapter.load import (COMPRESSOR_DIR, AdapterError, attach_adapter, check_adapter, check_base, find_base,
                      load_adapter_tokenizer)
from lm_latent.adapter.config import LATENT_CONFIG_NAME

logger = logging.getLogger(__name__)

EXPORTED_CONFIG_NAME = "lm_latent.json"
_DTYPES = ("auto", "float32", "bfloat16", "float16")


_MAX_SCAN = 20000  # entries of an existing --out searched for adapters before giving up the search


def _rate_dirs(folder: Path) -> list[str]:
    return sorted(c.name for c in folder.iterdir() if c.is_dir() and (re.fullmatch(r"rate\d+", c.name)
                                                                       or c.name == ".work"))


def _adapter_below(folder: Path) -> Path | None:
    seen = 0
    for root, dirs, files in os.walk(folder):
        if LATENT_CONFIG_NAME in files:
            return Path(root)
        seen += len(dirs) + len(files)
        if seen > _MAX_SCAN:
            return None
    return None


def check_out(adapter: Path, out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` whose replacement would lose adapters or other work; runs before anything is deleted.

    ``out`` may not be the adapter, sit inside it, contain it, be or hold another adapter or
    adapter root; with ``--overwrite`` an existing ``out`` is replaced only if it is empty or
    an earlier export (it has ``lm_latent.json``).
    """
    a, o = adapter.resolve(), out.resolve()
    pre = f"--out {out}"
    if o == a:
        raise FileExistsError(f"{pre} is the adapter being exported; choose another folder")
    if a in o.parents:
        raise FileExistsError(f"{pre} is inside the adapter {adapter}; choose a folder outside it")
    if o in a.parents:
        if o == a.parent and o.is_dir():
            raise FileExistsError(f"{pre} is the adapter root of {adapter} (holds {', '.join(_rate_dirs(o))}); "
                                  f"exporting there would replace every adapter in it. Use e.g. "
                                  f"--out {o.parent / ('merged_' + a.name)}")
        raise FileExistsError(f"{pre} contains the adapter {adapter}; exporting there would replace it")
    if not o.exists():
        return
    if not o.is_dir():
        raise FileExistsError(f"{pre} exists and is not a folder")
    if (o / LATENT_CONFIG_NAME).is_file():
        raise FileExistsError(f"{pre} is an adapter ({LATENT_CONFIG_NAME} there); choose another folder")
    rates = _rate_dirs(o)
    if rates:
        raise FileExistsError(f"{pre} is an adapter root (holds {', '.join(rates)}); choose another folder")
    inner = _adapter_below(o)
    if inner is not None:
        raise FileExistsError(f"{pre} contains an adapter ({inner}); choose another folder")
    if not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace an earlier export)")
    if any(o.iterdir()) and not (o / EXPORTED_CONFIG_NAME).is_file():
        raise FileExistsError(f"{pre} is not an earlier export (no {EXPORTED_CONFIG_NAME}): refusing to replace "
                              f"it with --overwrite. Remove it yourself or choose another folder")


def export(adapter: str | os.PathLike, out: str | os.PathLike, base: str | None = None, dtype: str = "auto",
           with_compressor: bool = False, overwrite: bool = False) -> Path:
    """Write ``out``: merged weights (safetensors), extended tokenizer, generation config."""
    from lm_latent.utils.fileio import atomic_directory

    adapter, out = Path(adapter), Path(out)
    check_out(adapter, out, overwrite)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        write_merged(adapter, tmp, base=base, dtype=dtype, with_compressor=with_compressor)
    logger.info("export: wrote %s", out)
    return out


def write_merged(adapter: str | os.PathLike, target: str | os.PathLike, base: str | None = None,
                 dtype: str = "auto", with_compressor: bool = False) -> None:
    """Merge ``adapter`` into ``base`` and save into the existing directory ``target``.

    The one merge both ``lm-latent export`` and ``--model latent-vllm``'s cache use; the
    caller makes ``target`` atomic (a scratch directory renamed on success).
    """
    import torch
    from transformers import AutoModelForCausalLM

    adapter, target = Path(adapter), Path(target)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    config = check_adapter(adapter)
    tokenizer = load_adapter_tokenizer(adapter, config)
    base, base_config = find_base(config, adapter, base)  # a relative recorded base, what was tried
    logger.info("merge: base %s + adapter %s (rate=%s) -> %s", base, adapter, config.rate, target)
    check_base(config, base, base_config, adapter)
    from lm_latent.utils.fileio import check_free_space, explain_disk_full

    need = merged_bytes(base, dtype, config.vocab_size - config.base_vocab_size)
    if with_compressor and (adapter / COMPRESSOR_DIR).is_dir():
        need += sum(p.stat().st_size for p in (adapter / COMPRESSOR_DIR).rglob("*") if p.is_file())
    if need:
        check_free_space(target, need, "the merged checkpoint")  # before loading, let alone writing
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    model = attach_adapter(model, adapter, config, merge=True)
    model.config.vocab_size = model.get_input_embeddings().weight.shape[0]
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    with explain_disk_full(target, "the merged checkpoint", need or None):
        model.save_pretrained(str(target), safe_serialization=True)
        tokenizer.save_pretrained(str(target))
        shutil.copyfile(adapter / LATENT_CONFIG_NAME, target / EXPORTED_CONFIG_NAME)
        if with_compressor and (adapter / COMPRESSOR_DIR).is_dir():
            shutil.copytree(adapter / COMPRESSOR_DIR, target / COMPRESSOR_DIR)


def merged_bytes(base: str, dtype: str, extra_rows: int) -> int:
    """The merged weights' size from a local base's safetensors headers (0 when unknown: a hub id)."""
    from lm_latent.models.merge_cache import estimate_merged_bytes

    base_dir = Path(base).expanduser()
    if not base_dir.is_dir():
        return 0
    try:
        return estimate_merged_bytes(base_dir, dtype, extra_rows)
    except (OSError, ValueError, KeyError):
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent export", description=__doc__.splitlines()[0])
    p.add_argument("--adapter", required=True, help="adapter directory, e.g. adapters/rate16")
    p.add_argument("--out", required=True, help="directory to write the merged checkpoint to")
    p.add_argument("--base", default=None, help="base model (default: the one recorded in latent.json)")
    p.add_argument("--dtype", default="auto", choices=_DTYPES, help="weights dtype (default: the base's)")
    p.add_argument("--with-compressor", action="store_true", help="also copy the compressor (to decode latents)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it is an earlier export")
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
