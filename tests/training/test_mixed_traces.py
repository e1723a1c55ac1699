"""Mixed traces: exact token layouts for every strategy, chunk boundaries, m = 0, short traces."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lm_latent.training.data import TokenizedExample
from lm_latent.training.mixed_traces import (
    DEFAULT_SCHEDULE,
    IGNORE_INDEX,
    MixConfig,
    MixedTraceDataset,
    PadCollator,
    build_mixed,
    choose_chunks,
    parse_schedule,
    trace_chunks,
)
from lm_latent.adapter.vocab import LatentVocab

BO, EO, FIRST = 100, 101, 200
VOCAB = LatentVocab(bo_id=BO, eo_id=EO, first_latent_id=FIRST, codebook_size=10)
P = [1, 2, 3]  # prompt
S = [90, 91, 99]  # solution + EOS
T = list(range(10, 20))  # trace of 10 tokens: chunks (L=4) [10..13], [14..17]; tail [18, 19]
CODES = [[3, 7], [0, 9]]  # L/r = 2 codes per chunk (r = 2)


def z(*codes: int) -> list[int]:
    return [FIRST + c for c in codes]


def test_default_schedule_is_the_papers():
    assert DEFAULT_SCHEDULE == (0, 72, 128, 160, 192, 224, 256)
    assert MixConfig(chunk_len=16).strategy == "left_to_right"
    assert parse_schedule("0, 72,128") == (0, 72, 128)
    with pytest.raises(ValueError):
        parse_schedule("a,b")
    with pytest.raises(ValueError, match="strategy"):
        MixConfig(chunk_len=16, strategy="random")
    with pytest.raises(ValueError, match="schedule"):
        MixConfig(chunk_len=16, schedule=(-1,))


def test_chunks_are_whole_and_start_at_the_trace():
    assert trace_chunks(T, 4) == [[10, 11, 12, 13], [14, 15, 16, 17]]
    assert trace_chunks(T, 16) == []
    assert trace_chunks(T[:8], 4) == [[10, 11, 12, 13], [14, 15, 16, 17]]


def test_layout_first_chunk_replaced():
    m = build_mixed(P, T, S, CODES, [0], VOCAB, chunk_len=4)
    assert m.input_ids == P + [BO] + z(3, 7) + [EO] + [14, 15, 16, 17, 18, 19] + S
    assert m.labels == [IGNORE_INDEX] * 3 + m.input_ids[3:]
    assert m.num_latents == 2


def test_layout_all_whole_chunks_replaced_tail_stays_text():
    m = build_mixed(P, T, S, CODES, [0, 1], VOCAB, chunk_len=4)
    assert m.input_ids == P + [BO] + z(3, 7, 0, 9) + [EO] + [18, 19] + S
    assert m.num_latents == 4


def test_layout_m_zero_is_plain_cot():
    m = build_mixed(P, T, S, CODES, [], VOCAB, chunk_len=4)
    assert m.input_ids == P + T + S and BO not in m.input_ids and EO not in m.input_ids
    assert m.labels == [IGNORE_INDEX] * 3 + T + S


def test_layout_random_positions_make_separate_spans():
    m = build_mixed(P, T, S, CODES, [1], VOCAB, chunk_len=4)
    assert m.input_ids == P + [10, 11, 12, 13] + [BO] + z(0, 9) + [EO] + [18, 19] + S
    t3 = list(range(10, 22))  # three whole chunks
    codes3 = [[1, 1], [2, 2], [3, 3]]
    m = build_mixed(P, t3, S, codes3, [0, 2], VOCAB, chunk_len=4)
    assert m.input_ids == (P + [BO] + z(1, 1) + [EO] + [14, 15, 16, 17] + [BO] + z(3, 3) + [EO] + S)
    m = build_mixed(P, t3, S, codes3, [1, 2], VOCAB, chunk_len=4)
    assert m.input_ids == P + [10, 11, 12, 13] + [BO] + z(2, 2, 3, 3) + [EO] + S


def test_build_mixed_rejects_bad_indices_and_rate0():
    with pytest.raises(ValueError, match="out of range"):
        build_mixed(P, T, S, CODES, [2], VOCAB, chunk_len=4)
    cot = LatentVocab(None, None, -1, 0)
    with pytest.raises(ValueError, match="rate 0"):
        build_mixed(P, T, S, CODES, [0], cot, chunk_len=4)
    assert build_mixed(P, T, S, [], [], cot, chunk_len=4).input_ids == P + T + S


class _Fixed(random.Random):
    """An rng whose ``choice`` returns a given value (to pin m)."""

    def __init__(self, m: int) -> None:
        super().__init__(0)
        self.m = m

    def choice(self, seq):
        return self.m


@pytest.mark.parametrize("m,n_chunks,expected", [
    (0, 20, 0), (72, 20, 4), (128, 20, 8), (160, 20, 10), (256, 20, 16),
    (256, 3, 3),  # capped at the trace's whole chunks
    (15, 20, 0),  # rounded down: less than one chunk replaces nothing
    (16, 20, 1),
])
def test_left_to_right_rounds_down_and_caps(m, n_chunks, expected):
    cfg = MixConfig(chunk_len=16)
    assert choose_chunks(n_chunks, cfg, _Fixed(m)) == list(range(expected))


def test_left_to_right_draws_every_schedule_value():
    cfg = MixConfig(chunk_len=16)
    rng = random.Random(0)
    seen = Counter(len(choose_chunks(100, cfg, rng)) for _ in range(7000))
    assert set(seen) == {0, 4, 8, 10, 12, 14, 16}
    assert all(800 < c < 1200 for c in seen.values())  # uniform over the 7 values


def test_all_strategy():
    cfg = MixConfig(chunk_len=4, strategy="all")
    assert choose_chunks(5, cfg, random.Random(0)) == [0, 1, 2, 3, 4]
    assert choose_chunks(0, cfg, random.Random(0)) == []


def test_curriculum_follows_progress():
    cfg = MixConfig(chunk_len=16, strategy="curriculum")
    got = [len(choose_chunks(100, cfg, random.Random(0), progress=p)) for p in (0.0, 0.2, 0.5, 0.99)]
    assert got == [0, 4, 10, 16]
    assert got == sorted(got)


def test_poisson_positions_are_random_but_count_follows_schedule():
    cfg = MixConfig(chunk_len=4, strategy="poisson", schedule=(8,))
    picks = [choose_chunks(6, cfg, random.Random(s)) for s in range(50)]
    assert all(len(p) == 2 and p == sorted(p) for p in picks)
    assert len({tuple(p) for p in picks}) > 5
    assert any(p != [0, 1] for p in picks)


@pytest.mark.parametrize("strategy", ["left_to_right", "all", "curriculum", "poisson"])
def test_short_trace_stays_text(strategy):
    cfg = MixConfig(chunk_len=16, strategy=strategy, schedule=(256,))
    assert choose_chunks(0, cfg, random.Random(0), progress=0.9) == []
    sample = TokenizedExample(P, list(range(10, 25)), S)  # 15 < 16 tokens
    ds = MixedTraceDataset([sample], [[]], cfg, VOCAB, seed=0)
    assert ds[0]["input_ids"] == P + list(range(10, 25)) + S


def _samples(n: int = 20) -> tuple[list[TokenizedExample], list[list[list[int]]]]:
    rng = random.Random(1)
    samples, codes = [], []
    for i in range(n):
        trace = [rng.randint(10, 80) for _ in range(rng.randint(0, 30))]
        samples.append(TokenizedExample([1, 2, 3 + i], trace, [90, 99]))
        codes.append([[rng.randrange(10)] for _ in range(len(trace) // 4)])  # r = L = 4
    return samples, codes


def test_dataset_is_deterministic_and_masks_the_prompt():
    samples, codes = _samples()
    cfg = MixConfig(chunk_len=4, schedule=(0, 4, 8, 100))
    a = MixedTraceDataset(samples, codes, cfg, VOCAB, seed=3, epochs=2)
    b = MixedTraceDataset(samples, codes, cfg, VOCAB, seed=3, epochs=2)
    assert len(a) == 40
    assert [a[i] for i in range(40)] == [b[i] for i in range(40)]
    assert sorted(a.order[:20]) == list(range(20)) and a.order[:20] != a.order[20:]
    for i in range(len(a)):
        item, s = a[i], samples[a.order[i]]
        assert item["input_ids"][:3] == s.prompt_ids and item["labels"][:3] == [IGNORE_INDEX] * 3
        assert item["input_ids"][3:] == item["labels"][3:]
        assert item["input_ids"][-2:] == s.solution_ids
    stats = a.stats()
    assert 0 < stats["samples_with_latents"] < 1 and stats["latent_tokens_per_sample"] > 0
    other = MixedTraceDataset(samples, codes, cfg, VOCAB, seed=4, epochs=2)
    assert [other[i] for i in range(40)] != [a[i] for i in range(40)]


def test_dataset_truncates_and_rate0():
    samples, codes = _samples()
    ds = MixedTraceDataset(samples, codes, MixConfig(chunk_len=4, strategy="all"), VOCAB, max_len=6)
    assert all(len(ds[i]["input_ids"]) <= 6 for i in range(len(ds)))
    cot = MixedTraceDataset(samples, None, None, LatentVocab(None, None, -1, 0))
    assert [cot[i]["input_ids"] for i in range(len(cot))] == [samples[j].input_ids for j in cot.order]


def test_length_grouping_serves_the_same_samples_with_less_padding():
    samples, codes = _samples(200)
    cfg = MixConfig(chunk_len=4, schedule=(0, 8))
    plain = MixedTraceDataset(samples, codes, cfg, VOCAB, seed=3, epochs=2)
    grouped = MixedTraceDataset(samples, codes, cfg, VOCAB, seed=3, epochs=2, group_batches=8, batch_size=5)
    items = [plain[i] for i in range(len(plain))]
    served = [grouped[i] for i in range(len(grouped))]
    assert sorted(map(str, served)) == sorted(map(str, items))  # the same mixed samples, draws included
    assert served == [MixedTraceDataset(samples, codes, cfg, VOCAB, seed=3, epochs=2, group_batches=8,
                                        batch_size=5)[i] for i in range(len(grouped))]  # a fixed order
    text = [len(samples[grouped.order[i]]) for i in grouped.slots]

    def padding(lengths: list[int]) -> int:
        return sum(max(lengths[k:k + 5]) * len(lengths[k:k + 5]) - sum(lengths[k:k + 5])
                   for k in range(0, len(lengths), 5))

    assert padding(text) < 0.3 * padding([len(samples[j]) for j in plain.order])
    # each window holds the slots of the same window of the plain order, in shuffled batches
    window = 40
    for start in range(0, len(served), window):
        assert sorted(grouped.slots[start:start + window]) == list(range(start, min(start + window, len(served))))
    batch_mins = [min(text[k:k + 5]) for k in range(0, window, 5)]
    assert batch_mins != sorted(batch_mins)  # batches shuffled, not served short to long
    # the key is the text length: which samples carry latents is still the draw's, not the sort's
    with_latents = [sum(1 for r in served[k:k + 5] if BO in r["input_ids"]) for k in range(0, len(served), 5)]
    assert sum(with_latents) == sum(1 for r in items if BO in r["input_ids"]) and len(set(with_latents)) > 2
    with pytest.raises(ValueError):
        MixedTraceDataset(samples, codes, cfg, VOCAB, group_batches=-1)


def test_pad_collator():
    batch = PadCollator(pad_token_id=7)([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
                                        {"input_ids": [4], "labels": [4]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 7, 7]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
