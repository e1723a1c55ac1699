"""Exact generated-token accounting: count the ids the model produced, never re-tokenized text."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence


class CountedText(str):
    """A generation that carries its exact token counts through lm-eval to ``process_results``.

    lm-eval has no model-to-metric channel; a ``str`` subclass survives its filters-free
    path untouched (``--use_cache`` returns plain strings, which then carry no count).
    """

    gen_tokens: int
    latent_tokens: int

    def __new__(cls, text: str, gen_tokens: int, latent_tokens: int = 0):
        obj = super().__new__(cls, text)
        obj.gen_tokens = gen_tokens
        obj.latent_tokens = latent_tokens
        return obj

    def __reduce__(self):
        return (CountedText, (str(self), self.gen_tokens, self.latent_tokens))


def generated_length(ids: Sequence[int], eos_ids: Iterable[int], pad_id: int | None,
                     stop: Sequence[str], decode: Callable[[Sequence[int]], str]) -> int:
    """Number of ids up to and including the end of a generation.

    The end is the first EOS id, else the id that completes the first stop string (found by
    binary search over decoded prefixes), else the last id that is not trailing padding.
    """
    eos = set(eos_ids)
    for i, tok in enumerate(ids):
        if tok in eos:
            return i + 1
    n = len(ids)
    if pad_id is not None and pad_id not in eos:
        while n and ids[n - 1] == pad_id:
            n -= 1
    stops = [s for s in stop if s]
    if not stops or not any(s in decode(ids[:n]) for s in stops):
        return n
    lo, hi = 1, n  # smallest prefix whose text contains a stop string
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in decode(ids[:mid]) for s in stops):
            hi = mid
        else:
            lo = mid + 1
    return lo
