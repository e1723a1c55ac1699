"""Throughput of lm_latent.grading against plain math_verify on real references.

    python benchmarks/bench_grading.py [--data ../shared/data] [--timeout 5]

Pair sets (all from MATH-500, ``../shared/data/math500/test.jsonl``):

* ``ref-vs-answer``: the boxed answer of each reference solution vs the ``answer``
  field (almost all equal; what grading a good model looks like);
* ``shuffled``: each answer vs another problem's answer (unequal; a weak model);
* ``slashed``: each answer vs itself with ``\\frac{a}{b}`` written ``((a)/(b))``
  (equal, but never string-identical, so the sympy worker does the work).

For each set it times, in this order and in one process: ``math_verify`` called
directly (``verify(parse(gold), parse(pred))``, its own signal time-outs), then
``grading.is_equiv`` cold (the first call starts the worker) and warm (the rest), then
the worker alone (fast paths skipped, every pair sent to sympy). Each pair is seen
once per method, so neither side profits from a parse cache.
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

from lm_latent import grading  # noqa: E402
from lm_latent.grading import _last_boxed, is_equiv, normalize_answer  # noqa: E402

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
    return {
        "ref-vs-answer": list(zip(boxed, answers)),
        "shuffled": [(answers[i], answers[(i * 7 + 3) % n]) for i in range(n) if (i * 7 + 3) % n != i],
        "slashed": slashed,
    }


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
    args = ap.parse_args(argv)
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
        return grading._WORKER.call("single", (p.text, r.text, p.pct, r.pct), args.timeout, (pred, ref))[0]

    from importlib.metadata import version

    print(f"math_verify {version('math-verify')} (import {import_s:.2f}s); limit {args.timeout:.1f}s")
    first = True
    for name, pairs in sets.items():
        print(f"\n{name} ({len(pairs)} pairs)")
        d_times, d_res = _timed(direct, pairs)
        d = _summary("math_verify direct", d_times, d_res, args.timeout)
        if first:
            # Cold: no worker yet; the first comparison that needs sympy starts it.
            grading.shutdown_worker()
            t0 = time.perf_counter()
            is_equiv("x^2-1", "(x-1)(x+1)", timeout=args.timeout)
            cold = time.perf_counter() - t0
            print(f"  {'grading cold (1st call)':<28} {cold:.2f}s (a sympy comparison, including the worker start)")
            first = False
        # A fresh worker (empty parse cache) for each method, so no pair is pre-parsed.
        grading.shutdown_worker()
        grading._WORKER.ensure_started()
        g_times, g_res = _timed(lambda p, r: is_equiv(p, r, timeout=args.timeout), pairs)
        g = _summary("grading warm", g_times, g_res, args.timeout)
        grading.shutdown_worker()
        grading._WORKER.ensure_started()
        w_times, w_res = _timed(worker_only, pairs)
        w = _summary("grading worker only", w_times, w_res, args.timeout)
        print(f"  ratio grading/direct throughput: {g['rate'] / d['rate']:.2f}x "
              f"(worker only: {w['rate'] / d['rate']:.2f}x)")
        disagree = [(p, r, a, b) for (p, r), a, b in zip(pairs, d_res, g_res) if a != b]
        print(f"  verdicts differing from direct math_verify: {len(disagree)}")
        for p, r, a, b in disagree[:8]:
            print(f"     direct={a} grading={b}  pred={p[:60]!r}  ref={r[:60]!r}")
    stats = grading._worker_stats()
    print(f"\nworker: {stats['starts']} start(s) (one per method, on purpose), "
          f"{stats['timeouts']} time-out(s), {stats['crashes']} crash(es)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
