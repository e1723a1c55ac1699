"""``latent.json``: what an adapter directory is, beside the PEFT files it describes."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .fileio import write_json_atomic
from .vocab import BO_LATENT, EO_LATENT, LATENT_FORMAT

LATENT_CONFIG_NAME = "latent.json"
FORMAT_VERSION = 1


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
    trained: bool = False
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
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
        write_json_atomic(Path(directory) / LATENT_CONFIG_NAME, asdict(self))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "LatentConfig":
        path = Path(directory) / LATENT_CONFIG_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} not found: {directory} is not a finished lm-latent adapter") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); the adapter directory is damaged") from None
        if raw.get("format_version", 1) > FORMAT_VERSION:
            raise ValueError(f"{path} has format_version {raw['format_version']}; this lm-latent reads "
                             f"up to {FORMAT_VERSION}: upgrade lm-latent")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def base_fingerprint(model_config) -> dict:
    """Architecture facts that an adapter depends on (names of a base model differ between machines)."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    return {k: getattr(model_config, k, None) for k in keys}
