"""Adapter directories: find one for a rate, check it, build one, attach one to a base model.

An adapter directory (one per rate) holds PEFT LoRA weights plus the rows of the new
tokens, the extended tokenizer, the compressor and ``latent.json``. ``latent.json`` is
written last, so a directory without it is unfinished and never loaded.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .latent_config import LATENT_CONFIG_NAME, LatentConfig, base_fingerprint

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "meta-llama/Llama-3.2-3B"
ADAPTERS_ENV = "LM_LATENT_ADAPTERS"
HOME_ENV = "LM_LATENT_HOME"
COMPRESSOR_DIR = "compressor"
_REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json")


class AdapterError(ValueError):
    """An adapter is missing or does not fit: the message says what was found and what to do."""


def parse_rate(value) -> int:
    """``16``, ``"16"``, ``"rate16"`` -> 16; ``0``/``"cot"`` -> 0 (the chain-of-thought baseline)."""
    if isinstance(value, bool):
        raise AdapterError(f"rate must be a non-negative integer or 'cot', got {value!r}")
    if isinstance(value, int):
        rate = value
    else:
        text = str(value).strip().lower()
        if text in ("cot", "rate0"):
            return 0
        match = re.fullmatch(r"(?:rate)?(\d+)", text)
        if not match:
            raise AdapterError(f"rate must be a non-negative integer or 'cot', got {value!r}")
        rate = int(match.group(1))
    if rate < 0:
        raise AdapterError(f"rate must be >= 0, got {rate}")
    return rate


def rate_dirname(rate: int) -> str:
    return f"rate{rate}"


def default_adapters_root() -> Path:
    """Where ``lm-latent train`` writes by default: ``$LM_LATENT_HOME/adapters``."""
    home = os.environ.get(HOME_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "lm_latent")
    return Path(home) / "adapters"


def available_rates(root: str | os.PathLike) -> list[int]:
    root = Path(root)
    if not root.is_dir():
        return []
    rates = []
    for child in root.iterdir():
        m = re.fullmatch(r"rate(\d+)", child.name)
        if m and (child / LATENT_CONFIG_NAME).is_file():
            rates.append(int(m.group(1)))
    return sorted(rates)


def _looks_like_hub_id(text: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", text)) and not text.startswith((".", "/"))


def _download(repo_id: str, subfolder: str | None = None) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [f"{subfolder}/*", f"{subfolder}/**"] if subfolder else None
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:
        where = f"{repo_id}/{subfolder}" if subfolder else repo_id
        raise AdapterError(f"could not fetch adapter {where!r} from the Hugging Face hub: {exc}. "
                           f"Give a local directory instead (adapter=PATH or adapters=ROOT).") from exc
    return local / subfolder if subfolder else local


def resolve_adapter(rate, adapter: str | None = None, adapters: str | None = None) -> Path:
    """Explicit ``adapter`` > ``adapters`` root (or ``$LM_LATENT_ADAPTERS``) > the default root."""
    rate = parse_rate(rate)
    if adapter:
        path = Path(adapter).expanduser()
        if path.is_dir():
            return path
        if _looks_like_hub_id(str(adapter)):
            return _download(str(adapter))
        raise AdapterError(f"adapter={adapter!r}: no such directory (and not a hub id 'org/name').")
    searched = []
    roots = [(adapters, "adapters=")] if adapters else []
    if not adapters and os.environ.get(ADAPTERS_ENV):
        roots.append((os.environ[ADAPTERS_ENV], f"${ADAPTERS_ENV}"))
    if not roots:
        roots.append((str(default_adapters_root()), "default root"))
    for root, origin in roots:
        candidate = Path(root).expanduser() / rate_dirname(rate)
        if candidate.is_dir():
            return candidate
        if not Path(root).expanduser().exists() and _looks_like_hub_id(root):
            return _download(root, rate_dirname(rate))
        found = available_rates(Path(root).expanduser())
        searched.append(f"  {candidate} ({origin}; rates found there: {found or 'none'})")
    rate_arg = "cot" if rate == 0 else rate
    raise AdapterError(
        f"no adapter for rate={rate_arg}. Searched:\n" + "\n".join(searched) + "\n"
        f"Train one with `lm-latent train --rate {rate} --out ROOT` (writes ROOT/{rate_dirname(rate)}), "
        f"make an untrained one for a smoke test with `lm-latent init-adapter --base MODEL --rate {rate} "
        f"--out ROOT/{rate_dirname(rate)}`, or point to one with adapter=PATH or adapters=ROOT.")


def check_adapter(path: str | os.PathLike, rate: int | None = None) -> LatentConfig:
    """Validate an adapter directory without loading any weights."""
    path = Path(path)
    if not (path / LATENT_CONFIG_NAME).is_file():
        partial = " It looks half-written (training interrupted?)." if (path / "adapter_config.json").exists() else ""
        raise AdapterError(f"{path} has no {LATENT_CONFIG_NAME}: not a finished lm-latent adapter.{partial}")
    try:
        config = LatentConfig.from_pretrained(path)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise AdapterError(f"{path / LATENT_CONFIG_NAME}: {exc}") from None
    if rate is not None and config.rate != rate:
        raise AdapterError(f"{path} was trained for rate={config.rate} ({LATENT_CONFIG_NAME}), but rate={rate} "
                           f"was asked for. Use rate={config.rate} or the adapter for rate {rate}.")
    missing = [name for name in _REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise AdapterError(f"{path} lacks {missing}: the adapter directory is incomplete.")
    return config


def load_adapter_tokenizer(path: str | os.PathLike, config: LatentConfig):
    """The extended tokenizer, checked against ``latent.json``."""
    from transformers import AutoTokenizer

    from .vocab import LatentVocab

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if len(tokenizer) != config.vocab_size:
        raise AdapterError(f"tokenizer in {path} has {len(tokenizer)} tokens but {LATENT_CONFIG_NAME} says "
                           f"{config.vocab_size}: the tokenizer does not belong to this adapter. Restore the "
                           f"adapter's own tokenizer files.")
    try:
        LatentVocab.from_tokenizer(tokenizer, config.codebook_size)
    except ValueError as exc:
        raise AdapterError(f"{path}: {exc}") from None
    return tokenizer


def check_base(config: LatentConfig, base_name: str, base_config, adapter_path) -> None:
    """An adapter fits a base by architecture; a different name alone is only a warning."""
    got = base_fingerprint(base_config)
    want = config.base_fingerprint
    diff = {k: (want[k], got.get(k)) for k in want if want[k] is not None and want[k] != got.get(k)}
    if diff:
        raise AdapterError(f"adapter {adapter_path} was trained on {config.base_model!r}, which differs from "
                           f"pretrained={base_name!r} in {diff} (adapter, base). Pass pretrained="
                           f"{config.base_model} or use an adapter trained for this base.")
    if str(base_name) != config.base_model:
        logger.warning("adapter %s records base %r; loading it on %r (same architecture)",
                       adapter_path, config.base_model, base_name)


def new_token_ids(config: LatentConfig) -> list[int]:
    """Every id the extended tokenizer added (delimiters, latents, pad): the rows an adapter owns."""
    return list(range(config.base_vocab_size, config.vocab_size))


def has_tied_embeddings(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def resize_for_tokenizer(model, vocab_size: int) -> None:
    """Grow (never shrink: some bases pad their embedding matrix) to fit the extended tokenizer."""
    rows = model.get_input_embeddings().weight.shape[0]
    if vocab_size > rows:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)


def lora_config(config: LatentConfig, tied: bool, r: int = 16, alpha: int = 32, dropout: float = 0.0):
    """LoRA on all linear layers plus trainable rows for the new tokens only."""
    from peft import LoraConfig

    ids = new_token_ids(config)
    token_indices = None
    if ids:
        token_indices = {"embed_tokens": ids} if tied else {"embed_tokens": ids, "lm_head": ids}
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear",
                      trainable_token_indices=token_indices, task_type="CAUSAL_LM")


def attach_adapter(model, path: str | os.PathLike, config: LatentConfig, merge: bool = True):
    """Resize the base, load LoRA + new-token rows and (by default) merge them for fast generation."""
    from peft import PeftModel

    resize_for_tokenizer(model, config.vocab_size)
    logger.info("loading lm-latent adapter from %s (rate=%s)", path, config.rate)
    peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    return peft_model.merge_and_unload() if merge else peft_model


def save_adapter(out: str | os.PathLike, peft_model, tokenizer, config: LatentConfig,
                 compressor=None, overwrite: bool = False) -> Path:
    """Write a finished adapter directory atomically (``latent.json`` last)."""
    from .fileio import atomic_directory

    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        peft_model.save_pretrained(str(tmp), save_embedding_layers=False, safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if compressor is not None:
            compressor.save_pretrained(str(tmp / COMPRESSOR_DIR), safe_serialization=True)
        config.save_pretrained(tmp)
    return out
