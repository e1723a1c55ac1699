"""Throughput of lm_latent.grading against plain math_verify on real references.

    python benchmarks/bench_grading.py [--data ../shared/data] [--timeout 5] [--skip-adversarial | --only-adversarial]

Pair sets (all from MATH-500, ``../shared/data/math500/test.jsonl``):

* ``ref-vs-answer``: the boxed answer of each reference solution vs the ``answer``
  field (almost all equal; what grading a good model looks like);
* ``shuffled``: answers of the first half of the problems vs answers of the second
  half (unequal; a weak model). Every string occurs once in the set, duplicates
  dropped, so no comparison reuses a parse;
* ``slashed``: each answer vs itself with ``\\frac{a}{b}`` written ``((a)/(b))``
  (equal, but never string-identical, so the sympy worker does the work). Here the
  reference string is also the other set's prediction: only a fresh worker is fair.

For each set it times, in one process: ``math_verify`` called directly
(``verify(parse(gold), parse(pred))``, its own signal time-outs), then
``grading.is_equiv`` on a **fresh worker** (started, empty parse cache: the headline
figure), then the same pairs again on that now warm worker (what the worker's
4,096-entry parse cache buys; not a fair comparison, shown to size it), then the worker
alone on another fresh worker (fast paths skipped, every pair sent to sympy).

The adversarial set (issue 14's inputs) times ``grade`` per answer under the budget
and checks the bound ``timeout + 1.5 s``. Timings depend on the machine: compare the
ratios in one run, on a quiet machine for absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lm_latent.grading import grade, is_equiv, normalize_answer, shutdown_worker  # noqa: E402
from lm_latent.grading.extract import _last_boxed  # noqa: E402
from lm_latent.grading.worker import _WORKER, _worker_stats  # noqa: E402

_FRAC = re.compile(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}")


def load_pairs(data: Path) -> dict[str, list[tuple[str, str]]]:
    rows = [json.loads(line) for line in (data / "math500" / "test.jsonl").open(encoding="utf-8")]
    answers = [r["answer"] for r in rows]
    boxed = [_last_boxed(r["solution"]) or "" for r in rows]
    n = len(rows)
    slashed = []
    for a in answers:
        s = _FRAC.sub(lambda m: f"(({m.group(1)})/({m.group(2)}))", a)
        if s != a:
            slashed.append((s, a))
    # Distinct strings: predictions from one half, references from the other, each used once.
    seen: set[str] = set()
    half = n // 2
    preds, refs = [], []
    for a in answers[:half]:
        if a not in seen:
            seen.add(a)
            preds.append(a)
    for a in answers[half:]:
        if a not in seen:
            seen.add(a)
            refs.append(a)
    return {
        "ref-vs-answer": list(zip(boxed, answers)),
        "shuffled": list(zip(preds, refs)),
        "slashed": slashed,
    }


#: Issue 14's adversarial answers: (generation, reference(s), multiple).
ADVERSARIAL = [
    ("The answer is y = 9^{9^{9^{9}}} + x. So y = 9^{9^{9^{9}}} + x", "y = 2x + 3", False),
    ("The answer is y = 9^{9^{9^{9}}} + x. So y = 9^{9^{9^{9}}} + x", ["y = 2x + 3", "y=2x+4", "y = x^{9^{9}}"], False),
    ("\\boxed{y=\\int_0^{10^{10}}e^{x^2}dx}", "y=\\int_0^{10^{10}}e^{x^3}dx", False),
    ("The answer is 5" + "\n" * 32000, "5", False),
    ("\\boxed{1\\frac{" + "1" * 5000 + "}{" + "2" * 5000 + "}}", ["1", "2"], True),
    ("The answer is: " + "7" * 4400, "18", False),
    ("The answer is 1e400.", "18", False),
    ("\\boxed{10^{400}}", "0.5", False),
    ("\\boxed{10^{10^{10}}}", "1", False),
    ("\\boxed{1000000!}", "1", False),
    ("\\boxed{2^{2^{2^{2^{2^{2}}}}}}", "3", False),
    ("\\boxed{" + "(" * 500 + "1" + ")" * 500 + "}", "1", False),
    ("\\boxed{" + "\\frac{1}{" * 50 + "2" + "}" * 50 + "}", "1", False),
]


def adversarial(timeout: float) -> float:
    """Time ``grade`` on each adversarial answer; returns the worst seconds per answer."""
    _WORKER.ensure_started()
    worst = 0.0
    print(f"\nadversarial answers ({len(ADVERSARIAL)}), budget {timeout:.1f}s per answer")
    for gen, ref, multiple in ADVERSARIAL:
        t0 = time.perf_counter()
        try:
            res = grade(gen, ref, timeout, multiple=multiple)
            what = f"correct={res.correct} timed_out={res.timed_out} error={getattr(res, 'error', 'n/a')}"
        except Exception as exc:  # noqa: BLE001 - the grader before issue 14 raised on some
            what = f"RAISED {type(exc).__name__}"
        dt = time.perf_counter() - t0
        worst = max(worst, dt)
        print(f"  {dt:7.2f}s  {what:<45} {gen[:50]!r}")
    bound = timeout + 1.5
    print(f"  worst {worst:.2f}s per answer; bound {bound:.1f}s: {'OK' if worst <= bound else 'EXCEEDED'}")
    return worst


def _timed(fn, pairs):
    times, results = [], []
    for pred, ref in pairs:
        t0 = time.perf_counter()
        results.append(bool(fn(pred, ref)))
        times.append(time.perf_counter() - t0)
    return times, results


def _summary(name: str, times: list[float], results: list[bool], limit: float) -> dict:
    total = sum(times)
    over = sum(t > limit for t in times)
    print(f"  {name:<28} n={len(times):4d}  {len(times) / total:8.1f} answers/s  "
          f"median {statistics.median(times) * 1e3:7.2f} ms  worst {max(times) * 1e3:8.1f} ms  "
          f"over limit {over}  equal {sum(results)}")
    return {"rate": len(times) / total, "worst": max(times), "over": over}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--skip-adversarial", action="store_true")
    ap.add_argument("--only-adversarial", action="store_true")
    args = ap.parse_args(argv)
    if args.only_adversarial:
        logging.basicConfig(level=logging.ERROR)
        adversarial(args.timeout)
        return 0
    if not (args.data / "math500" / "test.jsonl").is_file():
        print(f"no MATH-500 data under {args.data}")
        return 1
    logging.basicConfig(level=logging.ERROR)
    sets = load_pairs(args.data)

    t0 = time.perf_counter()
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    import_s = time.perf_counter() - t0
    cfg = [LatexExtractionConfig(), ExprExtractionConfig()]
    limit_int = max(1, int(args.timeout))

    def direct(pred: str, ref: str) -> bool:
        gold = parse(f"\\boxed{{{ref}}}", extraction_config=cfg, parsing_timeout=limit_int)
        target = parse(f"\\boxed{{{pred}}}", extraction_config=cfg, parsing_timeout=limit_int)
        return verify(gold, target, timeout_seconds=limit_int)

    def worker_only(pred: str, ref: str) -> bool:
        p, r = normalize_answer(pred), normalize_answer(ref)
        return _WORKER.call("single", (p.text, r.text, p.pct, r.pct), args.timeout, (pred, ref))[0]

    from importlib.metadata import version

    print(f"math_verify {version('math-verify')} (import {import_s:.2f}s); limit {args.timeout:.1f}s")
    first = True
    headline: dict[str, float] = {}
    for name, pairs in sets.items():
        print(f"\n{name} ({len(pairs)} pairs)")
        d_times, d_res = _timed(direct, pairs)
        d = _summary("math_verify direct", d_times, d_res, args.timeout)
        if first:
            # Cold: no worker yet; the first comparison that needs sympy starts it.
            shutdown_worker()
            t0 = time.perf_counter()
            is_equiv("x^2-1", "(x-1)(x+1)", timeout=args.timeout)
            cold = time.perf_counter() - t0
            print(f"  {'grading cold (1st call)':<28} {cold:.2f}s (a sympy comparison, including the worker start)")
            first = False
        # A fresh worker (empty parse cache) for each method, so no pair is pre-parsed.
        shutdown_worker()
        _WORKER.ensure_started()
        g_times, g_res = _timed(lambda p, r: is_equiv(p, r, timeout=args.timeout), pairs)
        g = _summary("grading, fresh worker", g_times, g_res, args.timeout)
        headline[name] = g["rate"]
        c_times, c_res = _timed(lambda p, r: is_equiv(p, r, timeout=args.timeout), pairs)
        c = _summary("  again, parse cache warm", c_times, c_res, args.timeout)
        print(f"  cache effect (not a fair figure): {c['rate'] / g['rate']:.2f}x")
        shutdown_worker()
        _WORKER.ensure_started()
        w_times, w_res = _timed(worker_only, pairs)
        w = _summary("grading worker only", w_times, w_res, args.timeout)
        print(f"  ratio grading/direct throughput: {g['rate'] / d['rate']:.2f}x "
              f"(worker only: {w['rate'] / d['rate']:.2f}x)")
        disagree = [(p, r, a, b) for (p, r), a, b in zip(pairs, d_res, g_res) if a != b]
        print(f"  verdicts differing from direct math_verify: {len(disagree)}")
        for p, r, a, b in disagree[:8]:
            print(f"     direct={a} grading={b}  pred={p[:60]!r}  ref={r[:60]!r}")
    stats = _worker_stats()
    print(f"\nworker: {stats['starts']} start(s) (one per method, on purpose), "
          f"{stats['timeouts']} time-out(s), {stats['crashes']} crash(es)")
    print("\nHEADLINE (fresh worker, each string parsed once): "
          + ", ".join(f"{k} {v:.1f} pairs/s" for k, v in headline.items()))
    if not args.skip_adversarial:
        adversarial(args.timeout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
