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

from lm_latent.utils.errors import UserError
from lm_latent.adapter.config import LATENT_CONFIG_NAME, LatentConfig, base_fingerprint

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "meta-llama/Llama-3.2-3B"
ADAPTERS_ENV = "LM_LATENT_ADAPTERS"
HOME_ENV = "LM_LATENT_HOME"
COMPRESSOR_DIR = "compressor"
_REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json")
_REQUIRED_FULL = ("config.json", "tokenizer_config.json")  # plus model.safetensors or its shards


class AdapterError(UserError):
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
        where = str(path / LATENT_CONFIG_NAME)
        raise AdapterError(str(exc) if where in str(exc) else f"{where}: {exc}") from None
    if rate is not None and config.rate != rate:
        raise AdapterError(f"{path} was trained for rate={config.rate} ({LATENT_CONFIG_NAME}), but rate={rate} "
                           f"was asked for. Use rate={config.rate} or the adapter for rate {rate}.")
    required = _REQUIRED_FULL if config.finetune == "full" else _REQUIRED_FILES
    missing = [name for name in required if not (path / name).is_file()]
    if config.finetune == "full" and not full_weight_files(path):
        missing.append("model.safetensors")
    if missing:
        raise AdapterError(f"{path} lacks {missing}: the adapter directory is incomplete.")
    return config


def load_adapter_tokenizer(path: str | os.PathLike, config: LatentConfig):
    """The extended tokenizer, checked against ``latent.json``."""
    from transformers import AutoTokenizer

    from lm_latent.adapter.vocab import LatentVocab

    try:  # never the adapter's own code (an auto_map would ask y/N, an EOFError without a terminal)
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except ValueError as exc:
        if "trust_remote_code" not in str(exc) and "custom code" not in str(exc):
            raise
        raise AdapterError(f"the tokenizer in {path} asks to run its own code (auto_map in its tokenizer "
                           f"config); lm-latent never runs code an adapter brings. Use a tokenizer saved by "
                           f"lm-latent train / init-adapter (a standard tokenizer class).") from None
    if len(tokenizer) != config.vocab_size:
        raise AdapterError(f"tokenizer in {path} has {len(tokenizer)} tokens but {LATENT_CONFIG_NAME} says "
                           f"{config.vocab_size}: the tokenizer does not belong to this adapter. Restore the "
                           f"adapter's own tokenizer files.")
    try:
        LatentVocab.from_tokenizer(tokenizer, config.codebook_size)
    except ValueError as exc:
        raise AdapterError(f"{path}: {exc}") from None
    return tokenizer


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def full_weight_files(path: str | os.PathLike) -> list[Path]:
    """The weights of a full fine-tune (``"finetune": "full"``): ``model.safetensors`` or its shards."""
    path = Path(path)
    return [path / "model.safetensors"] if (path / "model.safetensors").is_file() else sorted(
        path.glob("model-*-of-*.safetensors"))


def check_adapter_weights(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Read every adapter tensor once (safetensors, no pickle): damaged files and NaN/Inf fail here.

    Cheap next to the base (LoRA and the new-token rows only) and done before the base loads.
    Returns each tensor's shape, for the shape checks in :func:`check_base`.
    """
    import torch
    from safetensors import safe_open

    file = Path(path) / ADAPTER_WEIGHTS
    files = [file] if file.is_file() or not full_weight_files(path) else full_weight_files(path)  # full: every shard
    shapes, bad = {}, []
    try:
        for file in files:
            with safe_open(str(file), framework="pt") as weights:
                for name in weights.keys():
                    tensor = weights.get_tensor(name)
                    shapes[name] = tuple(tensor.shape)
                    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                        n_nan, n_inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
                        bad.append(f"{name} ({n_nan} NaN, {n_inf} Inf)")
    except Exception as exc:  # noqa: BLE001  (SafetensorError, OSError, header errors: all mean damaged)
        raise AdapterError(f"{file} looks damaged (truncated or corrupt: {type(exc).__name__}: {exc}). "
                           f"Rebuild the adapter: rerun `lm-latent train` for this rate (or `lm-latent "
                           f"init-adapter` for an untrained one), or copy the directory again.") from None
    if bad:
        raise AdapterError(f"{file} holds non-finite weights in {len(bad)} tensor(s): {', '.join(bad[:5])}"
                           f"{' ...' if len(bad) > 5 else ''}. The training diverged or the file was "
                           f"damaged: retrain this rate (a lower --lr helps a diverging run).")
    return shapes


def resolve_base(config: LatentConfig, adapter_path: str | os.PathLike, pretrained: str | None = None) -> str:
    """The base to load: ``pretrained`` if given, else ``latent.json``'s ``base_model``.

    A relative recorded path is tried as given (from the current folder), then against the
    adapter directory and each folder above it, so an adapter root moved together with its
    base (the demo's ``demo_out/``) still finds it. Otherwise the name is returned unchanged
    (a hub id); :func:`load_base_config` says what was tried when that fails too.
    """
    if pretrained:
        return str(pretrained)
    recorded = config.base_model or DEFAULT_BASE_MODEL
    path = Path(recorded).expanduser()
    adapter_dir = Path(adapter_path).resolve()
    if path.is_absolute() or (path.is_dir() and adapter_dir.parent not in [path.resolve(), *path.resolve().parents]):
        return str(path)
    for folder in [adapter_dir, *adapter_dir.parents]:
        # Only a path recorded from the folder a run started in (the demo's ``demo_out/base`` for an
        # adapter under ``demo_out/``): its first part is a folder the adapter itself lives in. A hub
        # id (``org/name``) is never taken from a folder inside or above the adapter root, so an
        # adapter cannot ship its own base.
        if path.parts[0] not in ("..", ".") and (folder / path.parts[0]) not in adapter_dir.parents:
            continue
        if (folder / path).is_dir():
            logger.info("base %r recorded in %s found at %s", recorded, LATENT_CONFIG_NAME, folder / path)
            return str(folder / path)
    return recorded


def load_base_config(base: str, config: LatentConfig, adapter_path, explicit: bool, **kwargs):
    """The base's ``config.json`` (no weights): a missing base names every place that was tried."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(base, **kwargs)
    except (OSError, ValueError) as exc:
        if explicit:
            tried = f"pretrained={base!r}"
        else:
            recorded = config.base_model or DEFAULT_BASE_MODEL
            tried = (f"the base recorded in {Path(adapter_path) / LATENT_CONFIG_NAME}: {recorded!r} (as a folder "
                     f"from {os.getcwd()}, and under {Path(adapter_path).resolve()} and the folders above it)")
        hub = (f"the hub id {base!r}" if _looks_like_hub_id(base) else "no hub lookup (not an 'org/name' id)")
        first = (str(exc).strip().splitlines() or [""])[0]
        raise AdapterError(f"cannot find the base model. Tried {tried}, and {hub}: {first}. "
                           f"Pass pretrained=PATH_OR_HUB_ID (the base the adapter was trained on).") from None


def find_base(config: LatentConfig, adapter_path, pretrained: str | None = None, **kwargs):
    """``(base, base_config)``: :func:`resolve_base` then :func:`load_base_config` (no weights)."""
    base = resolve_base(config, adapter_path, pretrained)
    return base, load_base_config(base, config, adapter_path, explicit=bool(pretrained), **kwargs)


def _fits(want, got) -> bool:
    return want is None or got is None or want == got


def check_base(config: LatentConfig, base_name: str, base_config, adapter_path,
               shapes: dict[str, tuple[int, ...]] | None = None) -> None:
    """An adapter fits a base by architecture; a different name alone is only a warning.

    Checked from the base's ``config.json`` alone, before any weight loads: the recorded
    fingerprint, tied embeddings, vocabulary size, and (from the adapter's tensor shapes)
    the key/value projection size that ``num_key_value_heads`` sets.
    """
    got = base_fingerprint(base_config)
    want = config.base_fingerprint or {}
    diff = {k: (want[k], got.get(k)) for k in want if not _fits(want[k], got.get(k))}
    text = getattr(base_config, "get_text_config", lambda: base_config)()
    tied = getattr(text, "tie_word_embeddings", getattr(base_config, "tie_word_embeddings", None))
    if tied is not None and bool(tied) != bool(config.tied_embeddings):
        diff["tie_word_embeddings"] = (config.tied_embeddings, bool(tied))
    vocab = getattr(text, "vocab_size", None)
    if vocab is not None and not _vocab_fits(config, vocab, base_name):
        diff["vocab_size"] = (config.base_vocab_size, vocab)
    kv = _kv_rows(text)
    for name, shape in (shapes or {}).items():
        if kv and re.search(r"\.(k_proj|v_proj)\.lora_B\.weight$", name) and shape[0] != kv:
            heads = getattr(text, "num_key_value_heads", None)
            diff["num_key_value_heads"] = (f"{shape[0]} k/v rows in {ADAPTER_WEIGHTS}", f"{heads} heads = {kv} rows")
            break
    if diff:
        raise AdapterError(f"adapter {adapter_path} was trained on {config.base_model!r}, which differs from "
                           f"the base {base_name!r} in {diff} (adapter, base). Pass pretrained="
                           f"{config.base_model} or use an adapter trained for this base.")
    if str(base_name) != config.base_model:
        logger.warning("adapter %s records base %r; loading it on %r (same architecture)",
                       adapter_path, config.base_model, base_name)


def _kv_rows(text_config) -> int | None:
    heads = getattr(text_config, "num_attention_heads", None)
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None)
    hidden = getattr(text_config, "hidden_size", None)
    if not head_dim and heads and hidden:
        head_dim = hidden // heads
    return kv_heads * head_dim if kv_heads and head_dim else None


def _vocab_fits(config: LatentConfig, vocab_size: int, base_name: str) -> bool:
    """The base's embedding rows: exactly the recorded base vocabulary, or padded above it.

    A padded matrix (more rows than tokens, as some bases ship) is told apart from another
    base by the base's own tokenizer, which is loaded only in that case.
    """
    if vocab_size == config.base_vocab_size:
        return True
    if vocab_size < config.base_vocab_size:
        return False
    try:
        from transformers import AutoTokenizer

        return len(AutoTokenizer.from_pretrained(str(base_name))) == config.base_vocab_size
    except Exception:  # noqa: BLE001  (no tokenizer to tell: trust the recorded vocabulary, refuse)
        return False


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
    """Resize the base, load LoRA + new-token rows and (by default) merge them for fast generation.

    A full fine-tune (``"finetune": "full"``) replaces every weight of the resized base instead
    (``merge`` changes nothing there): the callers load the base exactly as for LoRA.
    """
    from peft import PeftModel

    resize_for_tokenizer(model, config.vocab_size)
    if config.finetune == "full":
        return _load_full_weights(model, Path(path))
    logger.info("loading lm-latent adapter from %s (rate=%s)", path, config.rate)
    peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    return peft_model.merge_and_unload() if merge else peft_model


def _load_full_weights(model, path: Path):
    """Every weight of ``model`` from the full checkpoint in ``path`` (a tied output matrix may be absent)."""
    from safetensors.torch import load_file

    logger.info("loading lm-latent full fine-tune from %s", path)
    expected = set(model.state_dict())
    seen: set[str] = set()
    for file in full_weight_files(path):
        state = load_file(str(file), device=str(next(model.parameters()).device))
        unknown = sorted(set(state) - expected)
        if unknown:
            raise AdapterError(f"{file} holds weights the base model does not have ({unknown[:3]}...): the "
                               f"full fine-tune belongs to another architecture")
        model.load_state_dict(state, strict=False)
        seen |= set(state)
    tied = {"lm_head.weight"} if has_tied_embeddings(model) else set()
    missing = sorted(expected - seen - tied)
    if missing:
        raise AdapterError(f"{path} lacks {len(missing)} weight(s) of the base model, e.g. {missing[:3]}: "
                           f"the full fine-tune is incomplete")
    return model


def save_adapter(out: str | os.PathLike, peft_model, tokenizer, config: LatentConfig,
                 compressor=None, overwrite: bool = False) -> Path:
    """Write a finished adapter directory atomically (``latent.json`` last)."""
    from lm_latent.utils.fileio import atomic_directory

    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        if config.finetune == "full":  # a whole checkpoint in one file (attach_adapter also reads shards)
            peft_model.save_pretrained(str(tmp), safe_serialization=True, max_shard_size="1000GB")
        else:
            peft_model.save_pretrained(str(tmp), save_embedding_layers=False, safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if compressor is not None:
            compressor.save_pretrained(str(tmp / COMPRESSOR_DIR), safe_serialization=True)
        config.save_pretrained(tmp)
    return out
