"""Exact generated-token accounting: count the ids the model produced, never re-tokenized text.

Both backends (``--model latent`` on HF ``generate`` and ``--model latent-vllm``) count with
:class:`CountingMixin`, so ``gen_tokens``, ``latent_tokens`` and ``truncated`` mean the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:
    from .vocab import LatentVocab


class CountedText(str):
    """A generation that carries its exact token counts through lm-eval to ``process_results``.

    lm-eval has no model-to-metric channel; a ``str`` subclass survives its filters-free
    path untouched (``--use_cache`` returns plain strings, which then carry no count).
    ``truncated`` is True when the answer ran into ``max_gen_toks`` (no end token or stop string).
    """

    gen_tokens: int
    latent_tokens: int
    truncated: bool

    def __new__(cls, text: str, gen_tokens: int, latent_tokens: int = 0, truncated: bool = False):
        obj = super().__new__(cls, text)
        obj.gen_tokens = gen_tokens
        obj.latent_tokens = latent_tokens
        obj.truncated = truncated
        return obj

    def __reduce__(self):
        return (CountedText, (str(self), self.gen_tokens, self.latent_tokens, self.truncated))


def generation_end(ids: Sequence[int], eos_ids: Iterable[int], pad_id: int | None,
                   stop: Sequence[str], decode: Callable[[Sequence[int]], str]) -> tuple[int, bool]:
    """``(n, ended)``: ids up to and including the end of a generation, and whether it ended.

    The end is the first EOS id, else the id that completes the first stop string (found by
    binary search over decoded prefixes), else (``ended`` False: the budget ran out) the last
    id that is not trailing padding.
    """
    eos = set(eos_ids)
    for i, tok in enumerate(ids):
        if tok in eos:
            return i + 1, True
    n = len(ids)
    if pad_id is not None and pad_id not in eos:
        while n and ids[n - 1] == pad_id:
            n -= 1
    stops = [s for s in stop if s]
    if not stops or not any(s in decode(ids[:n]) for s in stops):
        return n, False
    lo, hi = 1, n  # smallest prefix whose text contains a stop string
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in decode(ids[:mid]) for s in stops):
            hi = mid
        else:
            lo = mid + 1
    return lo, True


def generated_length(ids: Sequence[int], eos_ids: Iterable[int], pad_id: int | None,
                     stop: Sequence[str], decode: Callable[[Sequence[int]], str]) -> int:
    """Number of ids up to and including the end of a generation (see :func:`generation_end`)."""
    return generation_end(ids, eos_ids, pad_id, stop, decode)[0]


class CountingMixin:
    """``count_generation`` for a backend that has ``latent_tokenizer``, ``latent_vocab`` and ``_eos_ids()``.

    Decoding uses the adapter's own tokenizer with special tokens skipped (EOS and pad vanish;
    latent tokens are ordinary added tokens, so ``<latent_17>`` stays visible in logged samples).
    """

    latent_tokenizer: Any  # the adapter's transformers tokenizer
    latent_vocab: LatentVocab

    def _eos_ids(self) -> set[int]:
        raise NotImplementedError

    def _decode_ids(self, ids: Sequence[int]) -> str:
        return self.latent_tokenizer.decode(list(ids), skip_special_tokens=True)

    def count_generation(self, ids: Sequence[int], stop: list[str]) -> CountedText:
        """Decode one generation (latent tokens visible) and count exactly what was generated."""
        from lm_eval.models.utils import postprocess_generated_text

        ids = list(ids)
        n, ended = generation_end(ids, self._eos_ids(), self.latent_tokenizer.pad_token_id, stop,
                                  self._decode_ids)
        text = postprocess_generated_text(self._decode_ids(ids[:n]), stop=stop, think_end_token=None)
        return CountedText(text, gen_tokens=n, latent_tokens=self.latent_vocab.count_latent(ids[:n]),
                           truncated=not ended)
