"""Agreement of lm_latent.grading with graders it did not write, on real references.

    python benchmarks/grader_agreement.py [--data ../shared/data] [--rows 200] [--seed 0]
        [--minerva-python PY] [--qwen-python PY] [--bench NAME ...] [--show 3]
        [--peer-cache FILE] [--json FILE]
    python benchmarks/grader_agreement.py --cases tests/grading/data/model_outputs.jsonl

Why: our own tables only test what we thought of. This script builds model-like outputs
from every benchmark's real references (``../shared/data``) and grades each one with

* ``ours``: :func:`lm_latent.grading.grade` (the task's grader);
* ``mv``: lm-eval 0.4.13 ``minerva_math``'s ``math_verify`` metric
  (``verify(gold=parse(solution), target=parse(output))``; here the gold solution is
  the reference boxed), run in this process;
* ``minerva``: lm-eval 0.4.13 ``minerva_math``'s ``is_equiv`` on its own extraction
  (last ``\\boxed{}``, else "Final Answer: The final answer is ..."). Its module
  asserts ``antlr4-python3-runtime`` 4.11 for sympy's ``parse_latex``, which conflicts
  with math-verify's 4.13, so it runs in a separate venv (``--minerva-python``) and is
  loaded from the installed lm_eval file by path;
* ``qwen``: the Qwen2.5-Math / DART-Math ``math_equal`` with its ``extract_answer``, as
  shipped by the PyPI package ``evalscope==1.0.0`` (``evalscope/metrics/math_parser.py``,
  "largely borrows from Qwen2.5-Math"), in its own venv (``--qwen-python``).

``--cases FILE`` grades a fixed JSONL set instead (one object a line: ``gen``, ``ref``,
``label``, ``multiple``, ``bench``, ``type``, ``style``): the hand-written model outputs of
``tests/grading/data/model_outputs.jsonl``, each labelled by a person; ``type`` takes the
place of the variant in the report, and accuracy per model style is printed too.

A peer whose venv is missing is reported and left out. The peers take ~10 minutes each on
the full default set; ``--peer-cache FILE`` keeps their verdicts (keyed by output and
reference) so a rerun after a change to our grader only re-grades ours. Make the venvs with::

    python -m venv /work/venv-grader-peer    # minerva: sympy, antlr4-python3-runtime==4.11.*,
        # pip install --no-deps math-verify==0.9.0 latex2sympy2_extended==1.11.0
    python -m venv /work/venv-grader-qwen    # qwen: sympy, antlr4-python3-runtime==4.13.2, regex,
        # word2number, latex2sympy2_extended==1.11.0; pip install --no-deps evalscope==1.0.0

Variants per reference (label = what a careful human marker says):

* ``solution``: the benchmark's own worked solution where it has one (correct);
* ``answer_is``: "The answer is: X" (correct);
* ``unboxed``: a final sentence "so the value we want is $X$." (correct);
* ``rewrite``: X rewritten (``\\dfrac``, spacing, ``1,234``) and boxed (correct);
* ``two_box``: a multi-part X with each part boxed in the final sentence; for a single
  X another problem's answer boxed earlier, then X boxed last (correct);
* ``wrong_boxed`` / ``wrong_unboxed``: another problem's answer (unequal references
  only), boxed / in the final sentence (wrong).

It prints, per benchmark and pooled: each grader's accuracy against the label, the
pairwise agreement matrix, and the disagreement classes (which graders said yes, per
variant) with who is right and examples. Timings are wall clock on whatever machine
runs it; run it on a quiet one to compare speeds.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
BENCHMARKS = ("gsm8k", "math", "college_math", "deepmind_mathematics", "fresh_gaokao_math_2023",
              "olympiadbench_math", "theoremqa")
PEER_TIMEOUT_S = 5


# --------------------------------------------------------------------------------------
# Peer side (runs under the peer venv's python: ``--peer minerva|qwen``)
# --------------------------------------------------------------------------------------


def _load_by_path(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Alarm:
    """SIGALRM time limit for one peer call (the peers run in a main thread)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self):
        import signal

        def _raise(signum, frame):
            raise TimeoutError

        self._old = signal.signal(signal.SIGALRM, _raise)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        import signal

        signal.alarm(0)
        signal.signal(signal.SIGALRM, self._old)
        return False


def _peer_main(kind: str, module_path: str) -> int:
    logging.disable(logging.CRITICAL)
    import warnings

    warnings.filterwarnings("ignore")
    mod = _load_by_path(f"peer_{kind}", module_path)
    if kind == "minerva":
        def judge(gen: str, ref: str) -> bool:
            boxed = mod.last_boxed_only_string(gen)
            ans = mod.remove_boxed(boxed) if boxed else mod.get_unnormalized_answer(gen)
            return bool(mod.is_equiv(mod.normalize_final_answer(ans), mod.normalize_final_answer(ref)))
    else:
        def judge(gen: str, ref: str) -> bool:
            pred = mod.extract_answer(gen)
            return bool(mod.math_equal(pred, mod.strip_answer_string(ref)))
    for line in sys.stdin:
        case = json.loads(line)
        try:
            with _Alarm(PEER_TIMEOUT_S):
                out = judge(case["gen"], case["ref"])
        except TimeoutError:
            out = None
        except Exception:  # noqa: BLE001 - a peer's own crash on an input counts as "no"
            out = False
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------


def build_cases(data: Path, benches, rows: int, seed: int) -> list[dict]:
    sys.path.insert(0, str(ROOT / "tests" / "grading"))
    from test_grading_real_data import (
        Item,
        _same_answer,
        answer_parts,
        load_items,
        model_form,
        rewritten,
    )

    from lm_latent.grading import split_answers

    cases = []
    for bench in benches:
        items = load_items(bench, data)
        rng = random.Random(seed)
        picked = items if len(items) <= rows else rng.sample(items, rows)
        for k, it in enumerate(picked):
            ref = it.answer  # as the task passes it: one string, all parts when `multiple`
            x = model_form(it)
            base = {"bench": bench, "idx": it.idx, "ref": ref, "multiple": it.multiple}

            def add(variant: str, gen: str, label: bool, base: dict = base) -> None:
                cases.append(dict(base, variant=variant, gen=gen, label=label))

            if it.solution:
                add("solution", it.solution, True)
            add("answer_is", f"We work it out step by step.\nThe answer is: {x}", True)
            add("unboxed", f"We work it out step by step.\nSo the value we want is ${x}$.", True)
            rw = rewritten(it)
            add("rewrite", f"So we get $\\boxed{{{rw}}}$." if "$" not in rw else f"Therefore, the answer is {rw}.",
                True)
            parts = answer_parts(it) if it.multiple else split_answers(x) if "\\text" not in x else [x]
            other = picked[(k + 1 + rng.randrange(len(picked) - 1)) % len(picked)] if len(picked) > 1 else None
            if len(parts) >= 2 and it.multiple:
                boxes = " and ".join(f"$\\boxed{{{model_form(Item(bench, it.idx, p))}}}$" for p in parts)
                add("two_box", f"Checking both cases, the solutions are {boxes}.", True)
            elif other is not None and not _same_answer(it, other):
                add("two_box", f"A first guess would be $\\boxed{{{model_form(other)}}}$, but that fails.\n\n"
                               f"Correcting the sign, the answer is $\\boxed{{{x}}}$.", True)
            if other is not None and not _same_answer(it, other):
                y = model_form(other)
                add("wrong_boxed", f"Thus the answer is $\\boxed{{{y}}}$.", False)
                add("wrong_unboxed", f"We work it out step by step.\nSo the value we want is ${y}$.", False)
    return cases


def load_cases(path: Path) -> list[dict]:
    """A labelled JSONL set; its ``type`` stands in for the variant in the report."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [dict(r, variant=r["type"], idx=r.get("id", i)) for i, r in enumerate(rows)]


# --------------------------------------------------------------------------------------
# Graders on our side
# --------------------------------------------------------------------------------------


def run_ours(cases: list[dict], timeout: float) -> tuple[list[bool], list[float]]:
    from lm_latent.grading import grade

    out, times = [], []
    for c in _progress(cases, "ours"):
        t0 = time.perf_counter()
        try:
            ok = grade(c["gen"], c["ref"], timeout, multiple=c["multiple"]).correct
        except Exception as exc:  # noqa: BLE001 - the original grader could raise (issue 14)
            print(f"  ours raised {type(exc).__name__}: {str(exc)[:80]}", file=sys.stderr)
            ok = False
        times.append(time.perf_counter() - t0)
        out.append(ok)
    return out, times


def run_mv(cases: list[dict]) -> list[bool | None]:
    """lm-eval minerva_math's ``math_verify`` metric: verify(gold=parse(solution), target=parse(output))."""
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    from math_verify import parse, verify

    out = []
    for c in _progress(cases, "mv"):
        refs = c["ref"] if isinstance(c["ref"], list) else [c["ref"]]
        gold_text = ", ".join(r.strip().strip("$") for r in refs)
        try:
            gold = parse(f"The answer is $\\boxed{{{gold_text}}}$.")
            out.append(bool(verify(gold=gold, target=parse(c["gen"]))))
        except Exception:  # noqa: BLE001
            out.append(False)
    return out


def run_peer(kind: str, python: str | None, cases: list[dict]) -> tuple[list[bool | None] | None, str]:
    if not python or not Path(python).exists():
        return None, f"{kind}: no venv at {python!r} (see the docstring to make one); left out"
    if kind == "minerva":
        spec = importlib.util.find_spec("lm_eval")
        path = str(Path(spec.submodule_search_locations[0]) / "tasks" / "minerva_math" / "utils.py")
    else:
        code = ("import importlib.util as u, pathlib; s = u.find_spec('evalscope'); "
                "print(pathlib.Path(s.submodule_search_locations[0]) / 'metrics' / 'math_parser.py')")
        probe = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
        if probe.returncode:
            return None, f"qwen: evalscope not importable in {python}: {probe.stderr.strip()[-200:]}"
        path = probe.stdout.strip()
    proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--peer", kind, "--module", path],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results: list[bool | None] = []
    try:
        for c in _progress(cases, kind):
            refs = c["ref"] if isinstance(c["ref"], list) else [c["ref"]]
            proc.stdin.write(json.dumps({"gen": c["gen"], "ref": ", ".join(refs)}) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read()[-400:]
                return None, f"{kind}: peer process failed: {err.strip()}"
            results.append(json.loads(line))
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        proc.wait(30)
    return results, f"{kind}: {path}"


def _progress(items, desc):
    try:
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, leave=False, mininterval=2.0)
    except ImportError:
        return items


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def report(cases: list[dict], verdicts: dict[str, list], title: str, show: int) -> None:
    names = list(verdicts)
    n = len(cases)
    print(f"\n=== {title}: {n} outputs ===")
    print("accuracy against the label (None = the peer timed out, counted as wrong):")
    for name in names:
        right = sum(1 for c, v in zip(cases, verdicts[name]) if bool(v) == c["label"])
        print(f"  {name:<8} {right / n:.4f} ({right}/{n})")
    print("agreement matrix (share of outputs with the same verdict):")
    print("  " + " " * 8 + "".join(f"{x:>9}" for x in ["label"] + names))
    labels = [c["label"] for c in cases]
    for a in ["label"] + names:
        va = labels if a == "label" else [bool(v) for v in verdicts[a]]
        row = []
        for b in ["label"] + names:
            vb = labels if b == "label" else [bool(v) for v in verdicts[b]]
            row.append(sum(x == y for x, y in zip(va, vb)) / n)
        print(f"  {a:<8}" + "".join(f"{r:9.4f}" for r in row))
    per_variant = collections.defaultdict(lambda: collections.Counter())
    for i, c in enumerate(cases):
        per_variant[c["variant"]]["n"] += 1
        for name in names:
            per_variant[c["variant"]][name] += bool(verdicts[name][i]) == c["label"]
    print("accuracy per variant:")
    print("  " + f"{'variant':<14}{'n':>6}" + "".join(f"{x:>9}" for x in names))
    for var, cnt in sorted(per_variant.items()):
        print("  " + f"{var:<14}{cnt['n']:>6}" + "".join(f"{cnt[x] / cnt['n']:9.4f}" for x in names))
    classes = collections.defaultdict(list)
    for i, c in enumerate(cases):
        says = tuple(bool(verdicts[x][i]) for x in names)
        if len(set(says)) > 1:
            yes = "+".join(x for x, s in zip(names, says) if s) or "none"
            right = "+".join(x for x, s in zip(names, says) if s == c["label"]) or "none"
            classes[(c["variant"], c["label"], yes, right)].append(c)
    print(f"disagreement classes ({sum(len(v) for v in classes.values())} outputs): "
          "variant, label, who said equal -> who is right")
    for (var, label, yes, right), group in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(group):5d}  {var:<13} label={label!s:<5} equal: {yes:<24} right: {right}")
        for c in group[:show]:
            gen = c["gen"].replace("\n", " ")
            print(f"           {c['bench']}#{c['idx']} ref={str(c['ref'])[:60]!r} gen=...{gen[-90:]!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--rows", type=int, default=200, help="rows sampled per benchmark (fixed seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=5.0, help="our grader's budget per answer")
    ap.add_argument("--bench", nargs="*", default=list(BENCHMARKS))
    ap.add_argument("--minerva-python", default=os.environ.get("MINERVA_PYTHON", "/work/venv-grader-peer/bin/python"))
    ap.add_argument("--qwen-python", default=os.environ.get("QWEN_PYTHON", "/work/venv-grader-qwen/bin/python"))
    ap.add_argument("--show", type=int, default=2, help="examples printed per disagreement class")
    ap.add_argument("--peer-cache", type=Path, help="JSON file of peer verdicts, read and updated")
    ap.add_argument("--json", type=Path, help="write every case with every verdict here")
    ap.add_argument("--cases", type=Path, help="grade this labelled JSONL set instead of building cases")
    ap.add_argument("--peer", choices=("minerva", "qwen"), help=argparse.SUPPRESS)
    ap.add_argument("--module", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer:
        return _peer_main(args.peer, args.module)
    if not args.cases and not args.data.is_dir():
        print(f"no benchmark data at {args.data}")
        return 1
    sys.path.insert(0, str(ROOT))
    logging.basicConfig(level=logging.ERROR)
    import lm_latent.grading as g

    print(f"our grader: {g.__file__}")
    if args.cases:
        cases = load_cases(args.cases)
        args.bench = list(dict.fromkeys(c["bench"] for c in cases))
        print(f"{len(cases)} labelled outputs from {args.cases}")
    else:
        cases = build_cases(args.data, args.bench, args.rows, args.seed)
        print(f"{len(cases)} outputs from {len(args.bench)} benchmarks ({args.rows} rows each at most, "
              f"seed {args.seed})")
    verdicts: dict[str, list] = {}
    t0 = time.perf_counter()
    verdicts["ours"], times = run_ours(cases, args.timeout)
    print(f"ours: {time.perf_counter() - t0:.1f}s, worst answer {max(times):.2f}s")
    cache: dict = {}
    if args.peer_cache and args.peer_cache.is_file():
        cache = json.loads(args.peer_cache.read_text(encoding="utf-8"))
    keys = [json.dumps([c["gen"], c["ref"], c["multiple"]]) for c in cases]
    for kind, py in (("mv", None), ("minerva", args.minerva_python), ("qwen", args.qwen_python)):
        known = cache.get(kind, {})
        todo = [i for i, k in enumerate(keys) if k not in known]
        t0 = time.perf_counter()
        if todo:
            sub = [cases[i] for i in todo]
            if kind == "mv":
                res, note = run_mv(sub), "mv: math_verify in this process"
            else:
                res, note = run_peer(kind, py, sub)
            if res is None:
                print(note)
                continue
            known.update({keys[i]: v for i, v in zip(todo, res)})
            cache[kind] = known
        else:
            note = f"{kind}: all verdicts from {args.peer_cache}"
        verdicts[kind] = [known[k] for k in keys]
        print(f"{note} ({time.perf_counter() - t0:.1f}s, {len(todo)} graded now; "
              f"timed out on {sum(v is None for v in verdicts[kind])})")
    if args.peer_cache:
        tmp = args.peer_cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        tmp.replace(args.peer_cache)  # atomic
    if args.json:
        rows = [dict(c, **{k: v[i] for k, v in verdicts.items()}) for i, c in enumerate(cases)]
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        tmp.replace(args.json)
    for bench in args.bench:
        idx = [i for i, c in enumerate(cases) if c["bench"] == bench]
        report([cases[i] for i in idx], {k: [v[i] for i in idx] for k, v in verdicts.items()}, bench, 0)
    report(cases, verdicts, "pooled", args.show)
    if args.cases:
        print("accuracy per model style:")
        for style in sorted({c["style"] for c in cases}):
            idx = [i for i, c in enumerate(cases) if c["style"] == style]
            accs = "".join(f"{sum(bool(v[i]) == cases[i]['label'] for i in idx) / len(idx):9.4f}"
                           for v in verdicts.values())
            print(f"  {style:<16}{len(idx):>5}{accs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
