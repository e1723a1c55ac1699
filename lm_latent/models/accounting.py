"""Exact generated-token accounting: count the ids the model produced, never re-tokenized text.

Both backends (``--model latent`` on HF ``generate`` and ``--model latent-vllm``) count with
:class:`CountingMixin`, so ``gen_tokens``, ``latent_tokens`` and ``truncated`` mean the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:
    from lm_latent.adapter.vocab import LatentVocab


class CountedText(str):
    """A generation that carries its exact token counts through lm-eval to ``process_results``.

    lm-eval has no model-to-metric channel; a ``str`` subclass survives its filters-free
    path untouched (``--use_cache`` returns plain strings, which then carry no count).
    ``truncated`` is True when the answer ran into ``max_gen_toks`` (no end token or stop string).
    ``latent_spans`` holds the codes of each run of latent tokens, in order, and
    ``codebook_size`` the K they come from: the eval-time codebook statistics need both.
    ``latent_text`` is the compressor's reading of those spans (``decode_latents=true`` only).
    """

    gen_tokens: int
    latent_tokens: int
    truncated: bool
    latent_spans: tuple[tuple[int, ...], ...]
    codebook_size: int
    latent_text: str | None

    def __new__(cls, text: str, gen_tokens: int, latent_tokens: int = 0, truncated: bool = False,
                latent_spans: Sequence[Sequence[int]] = (), codebook_size: int = 0,
                latent_text: str | None = None):
        obj = super().__new__(cls, text)
        obj.gen_tokens = gen_tokens
        obj.latent_tokens = latent_tokens
        obj.truncated = truncated
        obj.latent_spans = tuple(tuple(int(c) for c in span) for span in latent_spans)
        obj.codebook_size = codebook_size
        obj.latent_text = latent_text
        return obj

    def __reduce__(self):
        return (CountedText, (str(self), self.gen_tokens, self.latent_tokens, self.truncated, self.latent_spans,
                              self.codebook_size, self.latent_text))


def latent_spans(ids: Sequence[int], vocab) -> list[list[int]]:
    """The codes of each maximal run of consecutive latent ids (delimiters are not needed to end one)."""
    spans: list[list[int]] = []
    previous_was_latent = False
    for token in ids:
        code = vocab.id_to_code(token)
        if code is None:
            previous_was_latent = False
            continue
        if not previous_was_latent:
            spans.append([])
        spans[-1].append(code)
        previous_was_latent = True
    return spans


def generation_end(ids: Sequence[int], eos_ids: Iterable[int], pad_id: int | None,
                   stop: Sequence[str], decode: Callable[[Sequence[int]], str]) -> tuple[int, bool]:
    """``(n, ended)``: ids up to and including the end of a generation, and whether it ended.

    The end is whichever comes first: the first EOS id, or the id that completes the first
    stop string (found by binary search over decoded prefixes). Without either (``ended``
    False: the budget ran out) it is the last id that is not trailing padding. A batched HF
    row can run on past its stop string (the batch stops when every row has): those ids were
    never part of the answer, as vLLM, which stops the row there, agrees.
    """
    eos = set(eos_ids)
    first_eos = next((i for i, tok in enumerate(ids) if tok in eos), None)
    n = len(ids) if first_eos is None else first_eos
    if first_eos is None and pad_id is not None:
        while n and ids[n - 1] == pad_id:
            n -= 1
    stops = [s for s in stop if s]
    if stops and any(s in decode(ids[:n]) for s in stops):
        if n == 1 or not any(s in decode(ids[:n - 1]) for s in stops):
            return n, True  # the last id completes it: where vLLM stops a row (one decode, not a search)
        lo, hi = 1, n - 1  # smallest prefix whose text contains a stop string
        while lo < hi:
            mid = (lo + hi) // 2
            if any(s in decode(ids[:mid]) for s in stops):
                hi = mid
            else:
                lo = mid + 1
        return lo, True
    if first_eos is not None:
        return first_eos + 1, True
    return n, False


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
                           truncated=not ended, latent_spans=latent_spans(ids[:n], self.latent_vocab),
                           codebook_size=self.latent_vocab.codebook_size)
