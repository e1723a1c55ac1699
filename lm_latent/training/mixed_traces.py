"""Mixed traces: P + <boLatent> z_1 .. z_k <eoLatent> + (rest of C) + S.

The trace C is cut into whole chunks of L tokens from its first token; a chunk becomes its
L/r latent codes. Which chunks are replaced is a *strategy*:

- ``left_to_right`` (the method): m text tokens drawn per sample from the schedule
  (default {0, 72, 128, 160, 192, 224, 256}), rounded down to whole chunks, capped at the
  trace's whole chunks; the first m/L chunks are replaced. m = 0 keeps the plain CoT sample.
- ``all`` (All-Replace ablation): every whole chunk is replaced.
- ``curriculum`` (Curriculum-Replace ablation): m grows with training progress p in [0, 1):
  the sorted schedule is walked in equal stages, so early samples are text and late ones
  carry the most latents.
- ``poisson`` (Poisson-Replace ablation): as many chunks as ``left_to_right`` would replace,
  but at uniformly random positions (a Poisson process conditioned on its count); adjacent
  replaced chunks share one ``<boLatent> .. <eoLatent>`` span.

A trace shorter than one chunk always stays text. Labels mask the prompt with -100; the
latents, delimiters, remaining trace and solution are all predicted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from lm_latent.adapter.vocab import LatentVocab
from lm_latent.training.data import TokenizedExample, shuffled_order

DEFAULT_SCHEDULE: tuple[int, ...] = (0, 72, 128, 160, 192, 224, 256)
STRATEGIES = ("left_to_right", "all", "curriculum", "poisson")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class MixConfig:
    """How chunks are chosen; ``schedule`` is in text tokens (m), not chunks."""

    chunk_len: int
    strategy: str = "left_to_right"
    schedule: tuple[int, ...] = field(default=DEFAULT_SCHEDULE)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.chunk_len <= 0:
            raise ValueError(f"chunk_len must be > 0, got {self.chunk_len}")
        if not self.schedule or any(m < 0 for m in self.schedule):
            raise ValueError(f"schedule must be a non-empty list of m >= 0 text tokens, got {self.schedule}")
        object.__setattr__(self, "schedule", tuple(int(m) for m in self.schedule))


@dataclass(frozen=True)
class MixedSample:
    input_ids: list[int]
    labels: list[int]
    num_latents: int


def parse_schedule(text: str) -> tuple[int, ...]:
    """``"0,72,128"`` -> ``(0, 72, 128)``."""
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"schedule must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError("schedule is empty")
    return values


def whole_chunks(n_tokens: int, chunk_len: int) -> int:
    return n_tokens // chunk_len


def trace_chunks(trace_ids: Sequence[int], chunk_len: int) -> list[list[int]]:
    """The whole chunks of a trace, from its first token; a partial tail is not a chunk."""
    return [list(trace_ids[i * chunk_len:(i + 1) * chunk_len]) for i in range(whole_chunks(len(trace_ids), chunk_len))]


def _chunks_for_m(m: int, n_chunks: int, chunk_len: int) -> int:
    return min(m // chunk_len, n_chunks)


def choose_chunks(n_chunks: int, config: MixConfig, rng: random.Random, progress: float = 0.0) -> list[int]:
    """Sorted indices of the trace chunks to replace with latents."""
    if n_chunks <= 0:
        return []
    if config.strategy == "all":
        return list(range(n_chunks))
    if config.strategy == "curriculum":
        stages = sorted(config.schedule)
        stage = min(int(max(progress, 0.0) * len(stages)), len(stages) - 1)
        return list(range(_chunks_for_m(stages[stage], n_chunks, config.chunk_len)))
    k = _chunks_for_m(rng.choice(config.schedule), n_chunks, config.chunk_len)
    if config.strategy == "poisson":
        return sorted(rng.sample(range(n_chunks), k))
    return list(range(k))


def build_mixed(prompt_ids: Sequence[int], trace_ids: Sequence[int], solution_ids: Sequence[int],
                chunk_codes: Sequence[Sequence[int]], replace: Sequence[int], vocab: LatentVocab,
                chunk_len: int) -> MixedSample:
    """Assemble one sample; ``chunk_codes[i]`` are the L/r codes of trace chunk ``i``."""
    replace_set = set(replace)
    n_chunks = whole_chunks(len(trace_ids), chunk_len)
    if replace_set and (min(replace_set) < 0 or max(replace_set) >= n_chunks):
        raise ValueError(f"chunk indices {sorted(replace_set)} out of range for a trace with {n_chunks} whole chunks")
    if replace_set and vocab.codebook_size == 0:
        raise ValueError("cannot replace chunks with a vocabulary that has no latent tokens (rate 0)")
    bo_id, eo_id = vocab.bo_id, vocab.eo_id
    if replace_set and (bo_id is None or eo_id is None):
        raise ValueError("the vocabulary has no latent delimiters")
    body: list[int] = []
    in_span = False
    n_lat = 0
    for i in range(n_chunks):
        if i in replace_set:
            if not in_span:
                assert bo_id is not None  # checked above: there are chunks to replace
                body.append(bo_id)
                in_span = True
            codes = chunk_codes[i]
            body.extend(vocab.code_to_id(int(c)) for c in codes)
            n_lat += len(codes)
        else:
            if in_span:
                assert eo_id is not None
                body.append(eo_id)
                in_span = False
            body.extend(trace_ids[i * chunk_len:(i + 1) * chunk_len])
    if in_span:
        assert eo_id is not None
        body.append(eo_id)
    body.extend(trace_ids[n_chunks * chunk_len:])
    body.extend(solution_ids)
    prompt = list(prompt_ids)
    return MixedSample(prompt + body, [IGNORE_INDEX] * len(prompt) + body, n_lat)


class MixedTraceDataset:
    """A map-style dataset of mixed traces in a fixed, seeded order (resumable, curriculum-aware).

    Slot ``i`` is pass ``i // N`` of a seeded permutation, and its random draw is seeded by
    ``(seed, i)``: a rerun (or a resumed run that skips the first batches) sees exactly the
    same samples. Use it with a sequential sampler; ``progress = i / len`` drives curricula.

    ``group_batches=b`` (with ``batch_size``) serves the same slots in another fixed order: each
    window of ``b`` batches is sorted by the samples' text lengths, cut into batches, and the
    batches are shuffled (seeded), so a batch pads to a near-equal length. It is the idea of
    Hugging Face's ``group_by_length``, kept inside the dataset so the order stays sequential
    and resumable. The key is the text length, not the mixed one: sorted by mixed length, the
    latent samples (shorter) filled batches of their own, and the demo's latent rates lost
    2-5 points at 500 steps (docs/demo.md); by text length, which samples carry latents stays
    the seeded draw's, as without grouping. A curriculum's stages then blur by one window.
    """

    def __init__(self, samples: Sequence[TokenizedExample], codes: Sequence[Sequence[Sequence[int]]] | None,
                 config: MixConfig | None, vocab: LatentVocab, seed: int = 0, epochs: int = 1,
                 max_len: int | None = None, group_batches: int = 0, batch_size: int = 1) -> None:
        if codes is not None and len(codes) != len(samples):
            raise ValueError(f"{len(codes)} code lists for {len(samples)} samples")
        if group_batches < 0 or batch_size < 1:
            raise ValueError(f"group_batches must be >= 0 and batch_size >= 1, got {group_batches}, {batch_size}")
        self.samples, self.codes, self.config, self.vocab = samples, codes, config, vocab
        self.seed, self.max_len = seed, max_len
        self.order = shuffled_order(len(samples), epochs, seed)
        self.slots = list(range(len(self.order)))
        if group_batches > 1:  # one batch alone pads to its longest whatever its order
            self.slots = self._grouped(group_batches, batch_size)

    def _text_length(self, i: int) -> int:
        """The grouping key: slot ``i``'s sample as text, whatever its draw (see :meth:`_grouped`)."""
        n = len(self.samples[self.order[i]])
        return n if self.max_len is None else min(n, self.max_len)

    def _grouped(self, group_batches: int, batch_size: int) -> list[int]:
        rng = random.Random(self.seed * 1_000_003 + 7)
        window = batch_size * group_batches
        slots: list[int] = []
        for start in range(0, len(self.order), window):
            part = sorted(range(start, min(start + window, len(self.order))), key=self._text_length)
            batches = [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
            rng.shuffle(batches)
            slots.extend(i for b in batches for i in b)
        return slots

    def __len__(self) -> int:
        return len(self.order)

    def chosen(self, i: int) -> list[int]:
        if self.config is None or self.codes is None or self.vocab.codebook_size == 0:
            return []
        sample = self.samples[self.order[i]]
        n = whole_chunks(len(sample.trace_ids), self.config.chunk_len)
        rng = random.Random(self.seed * 1_000_003 + i)
        return choose_chunks(n, self.config, rng, progress=i / max(len(self), 1))

    def mixed(self, i: int) -> MixedSample:
        idx = self.order[i]
        s = self.samples[idx]
        chunk_len = self.config.chunk_len if self.config else 1
        codes = self.codes[idx] if self.codes is not None else []
        return build_mixed(s.prompt_ids, s.trace_ids, s.solution_ids, codes, self.chosen(i), self.vocab, chunk_len)

    def __getitem__(self, i: int) -> dict:
        m = self.mixed(self.slots[i])
        ids, labels = m.input_ids, m.labels
        if self.max_len is not None and len(ids) > self.max_len:
            ids, labels = ids[:self.max_len], labels[:self.max_len]
        return {"input_ids": ids, "labels": labels}

    def stats(self) -> dict:
        """Share of samples with latents and latent tokens per sample, over the whole dataset."""
        counts: list[int] = []
        for i in range(len(self)):
            chosen = self.chosen(i)
            codes = self.codes[self.order[i]] if self.codes is not None and chosen else ()
            counts.append(sum(len(codes[j]) for j in chosen) if chosen else 0)
        n = max(len(counts), 1)
        return {"samples_with_latents": sum(1 for c in counts if c) / n,
                "latent_tokens_per_sample": sum(counts) / n}


class PadCollator:
    """Right-pad ``input_ids`` with the pad id and ``labels`` with -100; build the attention mask."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id, self.multiple = pad_token_id, pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            longest = -(-longest // self.multiple) * self.multiple
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(f["labels"], dtype=torch.long)
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
