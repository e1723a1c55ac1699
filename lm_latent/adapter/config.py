"""``latent.json``: what an adapter directory is, beside the PEFT files it describes."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from lm_latent.utils.fileio import write_json_atomic
from lm_latent.adapter.vocab import BO_LATENT, EO_LATENT, LATENT_FORMAT

LATENT_CONFIG_NAME = "latent.json"
FORMAT_VERSION = 2  # the newest this lm-latent reads; 2: a full fine-tune ("finetune": "full")
FINETUNE_KINDS = ("lora", "full")


@dataclass
class LatentConfig:
    """Rate, chunking and vocabulary of one adapter. ``rate == 0`` is plain chain-of-thought."""

    rate: int
    chunk_len: int
    codebook_size: int
    base_model: str
    base_vocab_size: int
    vocab_size: int
    base_fingerprint: dict = field(default_factory=dict)
    bo_token: str = BO_LATENT
    eo_token: str = EO_LATENT
    latent_token_format: str = LATENT_FORMAT
    pad_token: str | None = None
    tied_embeddings: bool = True
    finetune: str = "lora"  # "lora": PEFT files; "full": a whole checkpoint (config.json + model*.safetensors)
    trained: bool = False
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    format_version: int = 1

    def __post_init__(self) -> None:
        if self.finetune not in FINETUNE_KINDS:
            raise ValueError(f"finetune must be one of {FINETUNE_KINDS}, got {self.finetune!r}")
        if self.rate < 0:
            raise ValueError(f"rate must be >= 0, got {self.rate}")
        if self.rate > 0:
            if self.chunk_len % self.rate:
                raise ValueError(f"chunk_len ({self.chunk_len}) must be a multiple of rate ({self.rate})")
            if self.codebook_size <= 0:
                raise ValueError("a latent adapter (rate > 0) needs codebook_size > 0")

    @property
    def latents_per_chunk(self) -> int:
        return self.chunk_len // self.rate if self.rate else 0

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        data = asdict(self)
        if self.finetune == "full":  # an older lm-latent says "upgrade" instead of looking for LoRA files
            data["format_version"] = max(2, self.format_version)
        write_json_atomic(Path(directory) / LATENT_CONFIG_NAME, data)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "LatentConfig":
        path = Path(directory) / LATENT_CONFIG_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} not found: {directory} is not a finished lm-latent adapter") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); the adapter directory is damaged") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path} holds {json.dumps(raw)[:40]} instead of an object of adapter settings; "
                             f"the adapter directory is damaged: rebuild it (lm-latent train / init-adapter)")
        _check_fields(path, raw)
        if raw.get("format_version", 1) > FORMAT_VERSION:
            raise ValueError(f"{path} has format_version {raw['format_version']}; this lm-latent reads "
                             f"up to {FORMAT_VERSION}: upgrade lm-latent")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


_INT_FIELDS = ("rate", "chunk_len", "codebook_size", "base_vocab_size", "vocab_size")


def _check_fields(path: Path, raw: dict) -> None:
    """Required fields present and of the right type, so a hand-edited file fails here, by name."""
    missing = [name for name in (*_INT_FIELDS, "base_model") if name not in raw]
    if missing:
        raise ValueError(f"{path} lacks {missing}: the adapter directory is damaged or not an lm-latent adapter")
    for name in _INT_FIELDS:
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{path}: {name} must be a non-negative integer, found {value!r}")
    if not isinstance(raw["base_model"], (str, type(None))):
        raise ValueError(f"{path}: base_model must be a path or hub id, found {raw['base_model']!r}")
    if raw["vocab_size"] < raw["base_vocab_size"]:
        raise ValueError(f"{path}: vocab_size ({raw['vocab_size']}) is smaller than base_vocab_size "
                         f"({raw['base_vocab_size']})")
    if not isinstance(raw.get("base_fingerprint", {}), dict):
        raise ValueError(f"{path}: base_fingerprint must be an object, found {raw['base_fingerprint']!r}")


def base_fingerprint(model_config) -> dict:
    """Architecture facts that an adapter depends on (names of a base model differ between machines)."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    return {k: getattr(model_config, k, None) for k in keys}
