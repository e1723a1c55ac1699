"""Paired comparisons of each rate with rate 0 (issue 30.2): McNemar, paired bootstrap, the real sweep."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest

from builders import write_data_dir


def _task(both: int, only_base: int, only_rate: int, neither: int, tokens=(100.0, 80.0)) -> tuple[dict, dict]:
    """Samples of one task as ``{doc_id: (acc, gen_tokens)}`` for rate 0 and rate r, from a 2x2 table."""
    cells = [(1.0, 1.0)] * both + [(1.0, 0.0)] * only_base + [(0.0, 1.0)] * only_rate + [(0.0, 0.0)] * neither
    base = {i: (a, tokens[0] + i % 7) for i, (a, _) in enumerate(cells)}
    other = {i: (b, tokens[1] + i % 5) for i, (_, b) in enumerate(cells)}
    return base, other


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_pairs():
    from lm_latent.sweep.paired import mcnemar_exact, paired_comparison

    # 2 pairs right at rate 0 only, 8 right at rate r only: P = 2 * sum_{k<=2} C(10, k) / 2^10
    by_hand = 2 * sum(math.comb(10, k) for k in range(3)) / 2 ** 10
    assert by_hand == pytest.approx(0.109375)
    assert mcnemar_exact(2, 8) == pytest.approx(by_hand) and mcnemar_exact(8, 2) == pytest.approx(by_hand)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 2 ** 6)  # 6 of 6 one way: 2 * (1/2)^6
    base, other = _task(both=5, only_base=2, only_rate=8, neither=5)
    pair = paired_comparison({"t": base}, {"t": other}, n_resamples=2000)["t"]
    assert (pair.only_base, pair.only_rate, pair.n) == (2, 8, 20)
    assert pair.diff == pytest.approx((8 - 2) / 20)
    assert pair.p_value == pytest.approx(by_hand)
    mean0 = np.mean([v[1] for v in base.values()])
    mean_r = np.mean([v[1] for v in other.values()])
    assert pair.token_ratio == pytest.approx(mean_r / mean0)
    assert pair.token_diff == pytest.approx(mean_r - mean0)


def test_bootstrap_interval_holds_the_estimate_is_seeded_and_agrees_with_scipy():
    from scipy.stats import bootstrap

    from lm_latent.sweep.paired import paired_comparison

    base, other = _task(both=30, only_base=6, only_rate=14, neither=30)
    a = paired_comparison({"t": base}, {"t": other}, n_resamples=4000, seed=3)["t"]
    b = paired_comparison({"t": base}, {"t": other}, n_resamples=4000, seed=3)["t"]
    c = paired_comparison({"t": base}, {"t": other}, n_resamples=4000, seed=4)["t"]
    assert a == b  # seeded: the same numbers again
    assert (a.diff_lo, a.diff_hi) != (c.diff_lo, c.diff_hi)
    assert a.diff_lo < a.diff < a.diff_hi
    assert a.ratio_lo < a.token_ratio < a.ratio_hi and a.token_diff_lo < a.token_diff < a.token_diff_hi
    # an independent paired percentile bootstrap (scipy) gives nearly the same interval
    ids = sorted(base)
    acc0, acc_r = np.array([base[i][0] for i in ids]), np.array([other[i][0] for i in ids])
    ref = bootstrap((acc0, acc_r), lambda x, y, axis=-1: y.mean(axis=axis) - x.mean(axis=axis), paired=True,
                    n_resamples=4000, method="percentile", random_state=np.random.default_rng(0)).confidence_interval
    assert a.diff_lo == pytest.approx(ref.low, abs=0.02) and a.diff_hi == pytest.approx(ref.high, abs=0.02)
    # the interval's width is a paired one: narrower than the unpaired +-1.96 sqrt(SE0^2 + SEr^2)
    p0, pr = acc0.mean(), acc_r.mean()
    unpaired = 1.96 * math.sqrt(p0 * (1 - p0) / len(ids) + pr * (1 - pr) / len(ids))
    assert a.diff_hi - a.diff_lo < 2 * unpaired


def test_the_average_resamples_within_each_task_and_pools_mcnemar():
    from lm_latent.sweep.paired import AVERAGE, paired_comparison

    base1, other1 = _task(both=5, only_base=2, only_rate=8, neither=5)  # 20 documents, +30 points
    base2, other2 = _task(both=40, only_base=6, only_rate=2, neither=32, tokens=(200.0, 200.0))  # 80, -5 points
    pairs = paired_comparison({"a": base1, "b": base2}, {"a": other1, "b": other2}, n_resamples=2000)
    avg = pairs[AVERAGE]
    assert avg.diff == pytest.approx((0.30 - 0.05) / 2)  # unweighted over tasks, as the group's "Average"
    assert (avg.only_base, avg.only_rate, avg.n) == (8, 10, 100)
    assert avg.p_value == pytest.approx(2 * sum(math.comb(18, k) for k in range(9)) / 2 ** 18)
    tok = {t: (np.mean([v[1] for v in b.values()]), np.mean([v[1] for v in o.values()]))
           for t, b, o in (("a", base1, other1), ("b", base2, other2))}
    assert avg.token_ratio == pytest.approx((tok["a"][1] + tok["b"][1]) / (tok["a"][0] + tok["b"][0]))
    assert avg.diff_lo < avg.diff < avg.diff_hi and avg.ratio_lo < avg.token_ratio < avg.ratio_hi


STAMP = "2026-12-06T20-11-10.123456"


def _write_rate(root, rate: int, samples: dict[str, dict] | None):
    """A rate folder as lm-eval leaves it: results JSON and, unless ``None``, one samples file per task."""
    folder = root / f"rate{rate}" / "model"
    folder.mkdir(parents=True)
    results = {}
    for task, docs in (samples or {}).items():
        accs = [a for a, _ in docs.values()]
        results[task] = {"acc,none": float(np.mean(accs)), "gen_tokens,none": float(np.mean([t for _, t in
                                                                                             docs.values()]))}
        with open(folder / f"samples_{task}_{STAMP}.jsonl", "w") as f:
            for doc_id, (acc, tokens) in docs.items():
                f.write(json.dumps({"doc_id": doc_id, "acc": acc, "gen_tokens": tokens, "resps": [["..."]]}) + "\n")
    n = {t: {"original": len(d), "effective": len(d)} for t, d in (samples or {}).items()}
    (folder / f"results_{STAMP}.json").write_text(json.dumps({"results": results, "groups": {}, "n-samples": n}))
    return folder


def test_plot_writes_the_paired_columns_and_a_reading_per_rate(tmp_path):
    from lm_latent.cli import main
    from lm_latent.sweep.paired import AVERAGE, N_RESAMPLES, compare
    from lm_latent.sweep.report import collect

    base1, other1 = _task(both=5, only_base=2, only_rate=8, neither=5)
    base2, other2 = _task(both=40, only_base=6, only_rate=2, neither=32)
    _write_rate(tmp_path, 0, {"latent_math_gsm8k": base1, "latent_math_math": base2})
    _write_rate(tmp_path, 16, {"latent_math_gsm8k": other1, "latent_math_math": other2})
    assert main(["plot", str(tmp_path)]) == 0
    md = (tmp_path / "results.md").read_text()
    avg = compare(collect(tmp_path))[16][AVERAGE]
    line = re.search(r"^- rate 16: .*$", md, re.M).group(0)
    assert line == (f"- rate 16: +12.5 points [{100 * avg.diff_lo:+.1f}, {100 * avg.diff_hi:+.1f}], "
                    f"p = {avg.p_value:.2g}; {avg.token_ratio:.2f}x tokens [{avg.ratio_lo:.2f}, {avg.ratio_hi:.2f}]")
    assert f"{N_RESAMPLES} resamples" in md and "McNemar" in md
    assert "| 16 | latent_math_gsm8k | 20 | +30.0 [" in md and "| 2 / 8 | 0.11 |" in md
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert rows[0]["paired (samples logged)"] == "" and rows[1]["paired (samples logged)"] == "yes"
    assert float(rows[1]["latent_math_gsm8k McNemar p"]) == pytest.approx(0.109375, abs=1e-4)
    assert float(rows[1]["average Δacc vs rate 0 %"]) == pytest.approx(12.5)
    assert rows[1]["latent_math_math pairs"] == "80"


def test_without_samples_the_table_says_so_and_falls_back_to_the_unpaired_se(tmp_path):
    from lm_latent.cli import main

    for rate, acc in ((0, 0.5), (16, 0.4)):
        folder = tmp_path / f"rate{rate}" / "model"
        folder.mkdir(parents=True)
        results = {"latent_math_gsm8k": {"acc,none": acc, "acc_stderr,none": 0.05, "gen_tokens,none": 100.0 - rate}}
        (folder / "results_2026.json").write_text(json.dumps({"results": results}))
    assert main(["plot", str(tmp_path)]) == 0
    md = (tmp_path / "results.md").read_text()
    se = 100 * math.sqrt(2 * 0.05 ** 2)
    assert f"-10.0 ± {se:.1f} SE (unpaired: no samples logged)" in md
    assert f"- rate 16: -10.0 ± {se:.1f} points (unpaired SE: no samples logged); 0.84x tokens" in md
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert rows[1]["paired (samples logged)"] == "no"
    assert float(rows[1]["average Δacc CI low %"]) == pytest.approx(-10.0 - 1.96 * se, abs=0.01)


@pytest.mark.slow
def test_a_real_sweep_logs_samples_and_its_paired_columns_match_the_samples_files(tmp_path, tiny_base,
                                                                                  sweep_adapters):
    from lm_latent.cli import main

    data_dir = write_data_dir(tmp_path / "data")
    out = tmp_path / "results"
    tasks = ("latent_math_gsm8k", "latent_math_math")
    assert main(["sweep", "--rates", "0,4", "--tasks", ",".join(tasks), "--out", str(out), "--model_args",
                 f"pretrained={tiny_base},adapters={sweep_adapters},max_gen_toks=8,device=cpu", "--limit", "3",
                 "--metadata", f"data_dir={data_dir}"]) == 0  # no --log_samples: the sweep adds it
    samples = {}
    for rate in (0, 4):
        for task in tasks:
            (path,) = (out / f"rate{rate}").rglob(f"samples_{task}_*.jsonl")
            samples[rate, task] = {s["doc_id"]: s for s in map(json.loads, path.read_text().splitlines())}
    rows = list(csv.DictReader((out / "results.csv").open()))
    row = rows[1]
    assert row["rate"] == "4" and row["paired (samples logged)"] == "yes"
    diffs, ratios = [], []
    for task in tasks:
        base, other = samples[0, task], samples[4, task]
        assert set(base) == set(other) and len(base) == 3
        b = sum(base[d]["acc"] == 1 and other[d]["acc"] == 0 for d in base)
        c = sum(base[d]["acc"] == 0 and other[d]["acc"] == 1 for d in base)
        p = min(1.0, 2 * sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))
        diff = 100 * np.mean([other[d]["acc"] - base[d]["acc"] for d in base])
        tok0, tok_r = np.mean([base[d]["gen_tokens"] for d in base]), np.mean([other[d]["gen_tokens"] for d in base])
        assert float(row[f"{task} McNemar p"]) == pytest.approx(p, abs=1e-3)
        assert float(row[f"{task} Δacc vs rate 0 %"]) == pytest.approx(diff, abs=1e-3)
        assert float(row[f"{task} Δacc CI low %"]) <= diff + 1e-9 <= float(row[f"{task} Δacc CI high %"]) + 2e-9
        assert float(row[f"{task} tokens ratio"]) == pytest.approx(tok_r / tok0, rel=1e-3)
        assert float(row[f"{task} Δtokens"]) == pytest.approx(tok_r - tok0, abs=1e-2)
        assert row[f"{task} pairs"] == "3"
        diffs.append(diff)
        ratios.append((tok0, tok_r))
    assert float(row["average Δacc vs rate 0 %"]) == pytest.approx(np.mean(diffs), abs=1e-3)
    assert float(row["average tokens ratio"]) == pytest.approx(sum(r for _, r in ratios) / sum(b for b, _ in ratios),
                                                               rel=1e-3)
    md = (out / "results.md").read_text()
    assert "## Paired comparison with rate 0" in md and re.search(r"^- rate 4: [+-]\d+\.\d points \[", md, re.M)
