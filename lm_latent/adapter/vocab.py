"""The latent vocabulary: K latent tokens and two delimiters added to a base tokenizer.

Latent tokens are ordinary (non-special) added tokens, so a decoded generation shows
them (``<latent_17>``) in logged samples, and a merged checkpoint is a plain HF model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BO_LATENT = "<boLatent>"
EO_LATENT = "<eoLatent>"
LATENT_FORMAT = "<latent_{}>"
PAD_TOKEN = "<|latent_pad|>"

_LATENT_RE = re.compile(r"<latent_\d+>")


def latent_token(index: int) -> str:
    return LATENT_FORMAT.format(index)


def extend_tokenizer(tokenizer, codebook_size: int) -> None:
    """Add delimiters, ``codebook_size`` latent tokens and (if missing) a pad token, in place.

    A dedicated pad token keeps padding from ever being counted as generated text; the
    plain chain-of-thought adapter (``codebook_size=0``) gets only the pad token.
    """
    from tokenizers import AddedToken

    new = []
    if codebook_size > 0:
        new = [BO_LATENT, EO_LATENT] + [latent_token(i) for i in range(codebook_size)]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in new])
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})


@dataclass(frozen=True)
class LatentVocab:
    """Ids of the latent tokens in an extended tokenizer."""

    bo_id: int | None
    eo_id: int | None
    first_latent_id: int
    codebook_size: int

    @classmethod
    def from_tokenizer(cls, tokenizer, codebook_size: int) -> "LatentVocab":
        if codebook_size == 0:
            return cls(None, None, -1, 0)
        vocab = tokenizer.get_vocab()
        missing = [t for t in (BO_LATENT, EO_LATENT, latent_token(0), latent_token(codebook_size - 1))
                   if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks latent tokens {missing}: it is not the extended "
                             f"tokenizer of an lm-latent adapter with codebook size {codebook_size}")
        first = vocab[latent_token(0)]
        found = sorted(int(t[len("<latent_"):-1]) for t in vocab if _LATENT_RE.fullmatch(t))
        if len(found) != codebook_size:
            extra = [latent_token(i) for i in found if i >= codebook_size][:3]
            raise ValueError(f"the tokenizer has {len(found)} latent tokens but the codebook size is "
                             f"{codebook_size}{f' (it has {extra} beyond the codebook)' if extra else ''}: "
                             f"latent.json and the tokenizer do not belong together")
        for i in range(codebook_size):
            if vocab[latent_token(i)] != first + i:
                raise ValueError(f"latent tokens are out of order in this tokenizer: {latent_token(i)} has id "
                                 f"{vocab[latent_token(i)]}, expected {first + i} ({latent_token(0)} is {first}); "
                                 f"code i must be id {first} + i")
        return cls(vocab[BO_LATENT], vocab[EO_LATENT], first, codebook_size)

    @property
    def latent_ids(self) -> range:
        return range(self.first_latent_id, self.first_latent_id + self.codebook_size)

    @property
    def new_token_ids(self) -> list[int]:
        """Delimiters and latent tokens: the embedding rows an adapter trains."""
        if self.codebook_size == 0:
            return []
        return [self.bo_id, self.eo_id, *self.latent_ids]

    def code_to_id(self, code: int) -> int:
        return self.first_latent_id + code

    def id_to_code(self, token_id: int) -> int | None:
        return token_id - self.first_latent_id if token_id in self.latent_ids else None

    def count_latent(self, ids) -> int:
        lo, hi = self.first_latent_id, self.first_latent_id + self.codebook_size
        return sum(1 for i in ids if lo <= i < hi)


def strip_latent_text(text: str) -> str:
    """Remove ``<boLatent> ... <eoLatent>`` spans (and stray latent tokens) from decoded text."""
    out = re.sub(re.escape(BO_LATENT) + r".*?(?:" + re.escape(EO_LATENT) + r"|$)", " ", text, flags=re.S)
    return _LATENT_RE.sub(" ", out.replace(EO_LATENT, " "))
