"""Paired comparisons of each rate with rate 0, from lm-eval's logged samples.

Every rate answers the same documents as rate 0, so a difference is judged on the pairs: per
task and for the seven-benchmark average (the unweighted mean over tasks, like the
``latent_math`` group's "Average"),

- the accuracy difference with a paired bootstrap 95% interval (percentile method,
  :data:`N_RESAMPLES` resamples of the documents, seeded with :data:`SEED`; for the average the
  documents are resampled within each task and the task means averaged);
- an exact McNemar p-value: a two-sided binomial test (``scipy.stats.binomtest``, p = 1/2) on the
  discordant pairs. For the average it is McNemar over the pairs pooled across tasks (which
  weighs tasks by their size, unlike the average itself);
- the token ratio (mean tokens at rate r / mean tokens at rate 0; for the average, the ratio of
  the means over tasks, as the table's "tokens vs rate 0") and the token difference, each with a
  paired bootstrap 95% interval from the same resamples.

Where samples were not logged (or share no documents with rate 0), :func:`compare` falls back to
the unpaired difference, with its SE combined from the two rows' SEs, and says so.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 0
N_RESAMPLES = 2_000  # percentile intervals want >= 1000; 7 tasks of 11k documents: ~6 s per rate on 2 busy cores
AVERAGE = "average"
_SAMPLES = re.compile(r"samples_(?P<task>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl")
_RESULTS_STAMP = re.compile(r"results_(?P<stamp>.+)\.json")


@dataclass
class Pair:
    """One task's (or the average's) comparison of a rate with rate 0.

    ``paired`` False: no samples, so ``diff_lo``/``diff_hi`` are the unpaired diff ± 1.96 SE and the
    paired-only fields are NaN.
    """

    task: str
    paired: bool
    n: int  # documents paired (summed over tasks for the average)
    diff: float  # accuracy at rate r minus rate 0, as a fraction
    diff_lo: float
    diff_hi: float
    p_value: float = math.nan  # exact McNemar (two-sided binomial test on the discordant pairs)
    only_base: int = 0  # discordant pairs right at rate 0 only
    only_rate: int = 0  # discordant pairs right at rate r only
    token_ratio: float = math.nan
    ratio_lo: float = math.nan
    ratio_hi: float = math.nan
    token_diff: float = math.nan
    token_diff_lo: float = math.nan
    token_diff_hi: float = math.nan


def mcnemar_exact(only_base: int, only_rate: int) -> float:
    """Exact two-sided McNemar p-value: ``binomtest`` of one discordant count against all, p = 1/2."""
    from scipy.stats import binomtest

    total = only_base + only_rate
    return 1.0 if total == 0 else float(binomtest(only_rate, total, 0.5, alternative="two-sided").pvalue)


def _task_of(name: str) -> str:
    from lm_latent.sweep.report import OLD_TASK_NAMES

    return OLD_TASK_NAMES.get(name, name)


def read_samples(results_path: str | Path) -> dict[str, dict[int, tuple[float, float]]]:
    """``{task: {doc_id: (acc, gen_tokens)}}`` from the samples files beside a results JSON.

    The samples files of the results file's own run (same timestamp) where there are any, else the
    newest samples file per task in that folder; an empty dict where samples were not logged.
    """
    results_path = Path(results_path)
    m = _RESULTS_STAMP.fullmatch(results_path.name)
    stamp = m.group("stamp") if m else None
    found: dict[str, list[tuple[bool, float, Path]]] = {}
    for path in results_path.parent.glob("samples_*.jsonl"):
        sm = _SAMPLES.fullmatch(path.name)
        if sm:
            found.setdefault(_task_of(sm.group("task")), []).append(
                (sm.group("stamp") == stamp, path.stat().st_mtime, path))
    out = {}
    for task, paths in found.items():
        path = max(paths, key=lambda p: (p[0], p[1]))[2]
        docs = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                s = json.loads(line)
                docs[int(s["doc_id"])] = (float(s["acc"]), float(s.get("gen_tokens", math.nan)))
        out[task] = docs
    return out


def _pairs(base: dict[int, tuple[float, float]], other: dict[int, tuple[float, float]]) -> np.ndarray:
    """``(4, n)``: acc at rate 0, acc at rate r, tokens at rate 0, tokens at rate r, on the shared documents."""
    ids = sorted(set(base) & set(other))
    return np.array([[base[i][0] for i in ids], [other[i][0] for i in ids],
                     [base[i][1] for i in ids], [other[i][1] for i in ids]], dtype=float).reshape(4, len(ids))


def _resampled_means(data: np.ndarray, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """``(4, n_resamples)``: the four means over documents resampled with replacement (in chunks).

    Each resample draws ``n`` document indices; how often each document was drawn (``bincount``)
    times the data gives the resample's sums, a matrix product instead of a gather.
    """
    n = data.shape[1]
    out = np.empty((4, n_resamples))
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_resamples, chunk):
        k = min(n_resamples, start + chunk) - start
        idx = rng.integers(0, n, size=(k, n))
        counts = np.bincount((np.arange(k)[:, None] * n + idx).ravel(), minlength=k * n).reshape(k, n)
        out[:, start:start + k] = (counts @ data.T).T / n
    return out


def _interval(values: np.ndarray) -> tuple[float, float]:
    if not np.all(np.isfinite(values)):
        return math.nan, math.nan
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _ratio(num: np.ndarray | float, den: np.ndarray | float):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(den) > 0, np.asarray(num) / np.asarray(den), np.nan)


def _pair(task: str, means: np.ndarray, boot: np.ndarray, n: int, only_base: int, only_rate: int) -> Pair:
    """A :class:`Pair` from the point means ``(4,)`` and their resampled values ``(4, B)``."""
    tokens_known = bool(np.all(np.isfinite(means[2:])))
    ratio = float(_ratio(means[3], means[2])) if tokens_known else math.nan
    diff_lo, diff_hi = _interval(boot[1] - boot[0])
    ratio_lo, ratio_hi = _interval(_ratio(boot[3], boot[2])) if tokens_known else (math.nan, math.nan)
    tok_lo, tok_hi = _interval(boot[3] - boot[2]) if tokens_known else (math.nan, math.nan)
    return Pair(task=task, paired=True, n=n, diff=float(means[1] - means[0]), diff_lo=diff_lo, diff_hi=diff_hi,
                p_value=mcnemar_exact(only_base, only_rate), only_base=only_base, only_rate=only_rate,
                token_ratio=ratio, ratio_lo=ratio_lo, ratio_hi=ratio_hi,
                token_diff=float(means[3] - means[2]) if tokens_known else math.nan,
                token_diff_lo=tok_lo, token_diff_hi=tok_hi)


def paired_comparison(base: dict[str, dict[int, tuple[float, float]]],
                      other: dict[str, dict[int, tuple[float, float]]],
                      n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict[str, Pair]:
    """Per task both rates logged, and :data:`AVERAGE` (unweighted over those tasks): the paired statistics.

    Each task's documents are resampled with one seeded generator, task by task in sorted order,
    and the average's resamples are the means over tasks of the same draws.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, Pair] = {}
    means, boots, counts = [], [], []
    for task in sorted(set(base) & set(other)):
        data = _pairs(base[task], other[task])
        if data.shape[1] == 0:
            continue
        only_base = int(np.sum((data[0] > 0.5) & (data[1] <= 0.5)))
        only_rate = int(np.sum((data[0] <= 0.5) & (data[1] > 0.5)))
        mean, boot = data.mean(axis=1), _resampled_means(data, rng, n_resamples)
        out[task] = _pair(task, mean, boot, data.shape[1], only_base, only_rate)
        means.append(mean)
        boots.append(boot)
        counts.append((data.shape[1], only_base, only_rate))
    if means:
        out[AVERAGE] = _pair(AVERAGE, np.mean(means, axis=0), np.mean(boots, axis=0), sum(c[0] for c in counts),
                             sum(c[1] for c in counts), sum(c[2] for c in counts))
    return out


def unpaired(row, base) -> Pair:
    """The fallback without samples: the average's difference ± 1.96 sqrt(SE_r^2 + SE_0^2)."""
    diff = row.avg_accuracy - base.avg_accuracy
    se = math.sqrt(row.avg_stderr ** 2 + base.avg_stderr ** 2)
    ratio = row.avg_gen_tokens / base.avg_gen_tokens if base.avg_gen_tokens > 0 else math.nan
    return Pair(task=AVERAGE, paired=False, n=0, diff=diff, diff_lo=diff - 1.96 * se, diff_hi=diff + 1.96 * se,
                token_ratio=ratio, token_diff=row.avg_gen_tokens - base.avg_gen_tokens)


def compare(rows: list, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict[int, dict[str, Pair]]:
    """``{rate: {task or AVERAGE: Pair}}`` for every rate but 0, against the rate-0 row (empty without one).

    Rows whose results folder (or rate 0's) holds no samples for a task of the row get the unpaired
    fallback for the average only, so a half-paired average is never shown as paired.
    """
    base = next((r for r in rows if r.rate == 0), None)
    if base is None:
        return {}
    base_samples = read_samples(base.source) if base.source else {}
    out = {}
    for row in rows:
        if row.rate == 0:
            continue
        samples = read_samples(row.source) if row.source else {}
        tasks = set(row.tasks) | set(base.tasks)
        if tasks and tasks <= set(samples) and tasks <= set(base_samples):
            result = paired_comparison({t: base_samples[t] for t in tasks}, {t: samples[t] for t in tasks},
                                       n_resamples, seed)
            if AVERAGE in result and len(result) == len(tasks) + 1:
                out[row.rate] = result
                continue
        out[row.rate] = {AVERAGE: unpaired(row, base)}
    return out


def _pts(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:+.1f}"


def _p(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value:.2g}" if value >= 0.001 else "< 0.001"


def acc_cell(pair: Pair) -> str:
    """``-1.2 [-2.9, +0.5]`` (points, paired 95% interval) or ``-1.2 ± 3.4 (unpaired, no samples)``."""
    if not pair.paired:
        half = (pair.diff_hi - pair.diff) / 1.96
        if half != half:
            return f"{_pts(pair.diff)} (unpaired, SE unknown: no samples logged)"
        return f"{_pts(pair.diff)} ± {_pts(half).lstrip('+')} SE (unpaired: no samples logged)"
    return f"{_pts(pair.diff)} [{_pts(pair.diff_lo)}, {_pts(pair.diff_hi)}]"


def ratio_cell(pair: Pair) -> str:
    if pair.token_ratio != pair.token_ratio:
        return "n/a"
    if not pair.paired or pair.ratio_lo != pair.ratio_lo:
        return f"{pair.token_ratio:.2f}x"
    return f"{pair.token_ratio:.2f}x [{pair.ratio_lo:.2f}, {pair.ratio_hi:.2f}]"


def token_diff_cell(pair: Pair) -> str:
    if pair.token_diff != pair.token_diff:
        return "n/a"
    if not pair.paired or pair.token_diff_lo != pair.token_diff_lo:
        return f"{pair.token_diff:+.1f}"
    return f"{pair.token_diff:+.1f} [{pair.token_diff_lo:+.1f}, {pair.token_diff_hi:+.1f}]"


def reading(rate: int, pair: Pair) -> str:
    """``rate 16: -1.2 points [-2.9, +0.5], p = 0.18; 0.80x tokens [0.78, 0.82]`` (the average)."""
    if not pair.paired:
        half = (pair.diff_hi - pair.diff) / 1.96
        spread = "" if half != half else f" ± {_pts(half).lstrip('+')}"
        return (f"rate {rate}: {_pts(pair.diff)}{spread} points (unpaired{' SE' if spread else ', SE unknown'}: "
                f"no samples logged); {ratio_cell(pair)} tokens")
    return (f"rate {rate}: {_pts(pair.diff)} points [{_pts(pair.diff_lo)}, {_pts(pair.diff_hi)}], "
            f"p = {_p(pair.p_value)}; {ratio_cell(pair).replace('x [', 'x tokens [', 1)}"
            + ("" if pair.ratio_lo == pair.ratio_lo else " tokens"))


MD_COLUMNS = ["Δ average acc vs rate 0, points [paired 95% CI]", "McNemar p (pooled pairs)",
              "tokens vs rate 0 [paired 95% CI]", "Δ tokens [paired 95% CI]"]


def md_cells(pairs: dict[str, Pair] | None) -> list[str]:
    """The main table's paired cells for one row (rate 0 and rows without a comparison: ``-``)."""
    if not pairs:
        return ["-"] * len(MD_COLUMNS)
    avg = pairs[AVERAGE]
    return [acc_cell(avg), _p(avg.p_value), ratio_cell(avg), token_diff_cell(avg)]


_CSV_FIELDS = (("Δacc vs rate 0 %", lambda p: 100 * p.diff), ("Δacc CI low %", lambda p: 100 * p.diff_lo),
               ("Δacc CI high %", lambda p: 100 * p.diff_hi), ("McNemar p", lambda p: p.p_value),
               ("pairs", lambda p: p.n), ("tokens ratio", lambda p: p.token_ratio),
               ("tokens ratio CI low", lambda p: p.ratio_lo), ("tokens ratio CI high", lambda p: p.ratio_hi),
               ("Δtokens", lambda p: p.token_diff), ("Δtokens CI low", lambda p: p.token_diff_lo),
               ("Δtokens CI high", lambda p: p.token_diff_hi))


def csv_header(tasks: list[str]) -> list[str]:
    return ["paired (samples logged)"] + [f"{t} {name}" for t in [*tasks, AVERAGE] for name, _ in _CSV_FIELDS]


def csv_cells(tasks: list[str], pairs: dict[str, Pair] | None) -> list[str]:
    """Numbers only; the average's CI is ± 1.96 SE where unpaired (``paired (samples logged)`` = no)."""
    from lm_latent.sweep.report import _fmt

    if not pairs:
        return [""] + [""] * (len(_CSV_FIELDS) * (len(tasks) + 1))
    cells = ["yes" if pairs[AVERAGE].paired else "no"]
    for t in [*tasks, AVERAGE]:
        pair = pairs.get(t)
        cells += [("" if pair is None else str(get(pair)) if name == "pairs" else _fmt(get(pair), ".4g"))
                  for name, get in _CSV_FIELDS]
    return cells


def md_section(tasks: list[str], comparisons: dict[int, dict[str, Pair]],
               n_resamples: int = N_RESAMPLES, seed: int = SEED) -> str:
    """Results.md's paired section: one reading per rate and the per-task table."""
    if not comparisons:
        return ""
    lines = ["## Paired comparison with rate 0", "",
             f"Same documents at every rate: accuracy difference (points) with a paired bootstrap 95% interval "
             f"({n_resamples} resamples of the documents, seed {seed}; for the average, resampled within each "
             "task), exact McNemar p (two-sided binomial test on the discordant pairs; for the average, over the "
             "pairs pooled across tasks), token ratio and difference with paired 95% intervals. Where samples were "
             "not logged (`--log_samples`), the unpaired difference ± its SE instead.", ""]
    lines += [f"- {reading(rate, pairs[AVERAGE])}" for rate, pairs in sorted(comparisons.items())]
    lines += ["", "| rate | task | pairs | Δ acc, points [95% CI] | discordant (rate 0 only / rate r only) | "
              "McNemar p | tokens vs rate 0 [95% CI] | Δ tokens [95% CI] |", "|---|---|---|---|---|---|---|---|"]
    for rate, pairs in sorted(comparisons.items()):
        for t in [*tasks, AVERAGE]:
            p = pairs.get(t)
            if p is None:
                continue
            lines.append("| " + " | ".join([
                str(rate), t, str(p.n) if p.paired else "no samples", acc_cell(p),
                f"{p.only_base} / {p.only_rate}" if p.paired else "n/a", _p(p.p_value), ratio_cell(p),
                token_diff_cell(p)]) + " |")
    return "\n".join(lines) + "\n"
