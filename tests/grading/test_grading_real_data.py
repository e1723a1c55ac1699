"""Grader checks on the real benchmark reference answers (``../shared/data``).

Skipped when the folder is absent (a fresh clone has no ``../shared``). The default
tests subsample the large sets to ``SAMPLE`` rows each (fixed seed); the full sets run
in ``test_full_sets`` (marked slow, only with ``LM_LATENT_GRADING_FULL=1``) or with
``python tests/grading/test_grading_real_data.py --full [bench ...]``. Rates and failures are
printed; run ``pytest -s`` to see them. References come from the tasks' own loader
(``tasks/benchmarks.py``) and are graded the way ``tasks/scoring.py`` grades them.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lm_latent.grading import grade, is_equiv, is_equiv_multi, split_answers
from lm_latent.grading.extract import _last_boxed
from lm_latent.utils.records import read_records
from lm_latent.tasks.benchmarks import BENCHMARKS as TASK_BENCHMARKS
from lm_latent.tasks.benchmarks import load_docs

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SAMPLE = 500
SEED = 1234
TIMEOUT = 5.0
FULL = os.environ.get("LM_LATENT_GRADING_FULL", "") not in ("", "0")

#: The seven benchmarks, named as the tasks' loader (tasks/benchmarks.py) names them.
BENCHMARKS = (
    "gsm8k",
    "math",
    "college_math",
    "deepmind_mathematics",
    "fresh_gaokao_math_2023",
    "olympiadbench_math",
    "theoremqa",
)

# Thresholds met by the measured rates (see docs/grading.md), kept a little below them.
SELF_MIN = {
    "gsm8k": 1.0,
    "math": 0.998,
    "college_math": 0.98,
    "deepmind_mathematics": 1.0,
    "fresh_gaokao_math_2023": 1.0,
    "olympiadbench_math": 0.995,
    "theoremqa": 1.0,
}
SHUFFLED_UNEQUAL_MIN = 0.99
# Not asked for; a guard against leniency. CollegeMath's free-form answers (chains of
# equations, ODE solutions with renamed constants) are the known weak spot.
PERTURBED_UNEQUAL_MIN = {b: 0.99 for b in BENCHMARKS} | {"college_math": 0.94}


@dataclass(frozen=True)
class Item:
    bench: str
    idx: int
    answer: str  # the reference exactly as the task passes it to grade()
    multiple: bool = False  # the task's is_multiple_answer: all parts of `answer` must be given
    solution: str | None = None  # a worked solution whose final answer should match


def _boxed_solution(row: dict) -> str | None:
    """OlympiadBench's first worked solution with a ``\\boxed`` answer (the task's docs keep none)."""
    sols = row.get("solution") or []
    return next((x for x in ([sols] if isinstance(sols, str) else sols) if "\\boxed" in x), None)


def load_items(bench: str, data: Path = DATA) -> list[Item]:
    """Reference answers of one benchmark through the tasks' own loader (``load_docs``): the
    answer string and multiple-answer flag that ``process_results`` passes to ``grade``."""
    docs = load_docs(bench, data)
    solutions = [d.get("solution") for d in docs]
    if bench == "olympiadbench_math":
        solutions = [_boxed_solution(r) for r in read_records(data / TASK_BENCHMARKS[bench].local_file)]
    return [Item(bench, d["idx"], d["answer"], bool(d.get("is_multiple_answer")), sol)
            for d, sol in zip(docs, solutions, strict=True)]


def answer_parts(item: Item) -> list[str]:
    """The parts of a multiple answer (the task joins them into one string), else the answer."""
    return split_answers(item.answer) if item.multiple else [item.answer]


def _sample(items: list[Item], full: bool) -> list[Item]:
    if full or len(items) <= SAMPLE:
        return items
    return random.Random(SEED).sample(items, SAMPLE)


_DELIMS = re.compile(r"^\s*(?:\$\$|\$|\\\(|\\\[)\s*(.*?)\s*(?:\$\$|\$|\\\)|\\\])\s*\.?\s*$", re.DOTALL)


def model_form(item: Item) -> str:
    """The answer as a model would put it in ``\\boxed{}``: no outer ``$``."""
    m = _DELIMS.match(item.answer)
    return m.group(1) if m and "$" not in m.group(1) else item.answer


def rewritten(item: Item) -> str:
    """The same answer written differently: ``\\dfrac``, tighter spacing, separators."""
    s = model_form(item)
    s = s.replace("\\frac", "\\dfrac")
    s = re.sub(r"\s*([+=,])\s*", r"\1", s)
    if re.fullmatch(r"-?\d{4,}", s):
        s = f"{int(s):,}"
    return s


_SIMPLE_FRAC = re.compile(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}")


def slashed(item: Item) -> str | None:
    """``\\frac{a}{b}`` written as ``(a)/(b)``: a form that must go through sympy."""
    s = model_form(item)
    if "\\frac" not in s:
        return None
    out = _SIMPLE_FRAC.sub(lambda m: f"(({m.group(1)})/({m.group(2)}))", s)
    return None if out == s else out


def perturbed(item: Item) -> str | None:
    """A wrong answer close to the reference: its first non-zero digit bumped by one."""
    s = model_form(item)
    m = re.search(r"[1-9]", s)
    if m is None:
        return None
    d = int(m.group(0))
    return s[: m.start()] + str(d + 1 if d < 9 else 1) + s[m.end() :]


def _grade(generation: str, item: Item):
    """Grade as the task does (``tasks/scoring.py``): the doc's answer and multiple-answer flag."""
    return grade(generation, item.answer, TIMEOUT, multiple=item.multiple)


def self_agreement(items: list[Item]) -> tuple[int, list[tuple[str, Item, str | None]]]:
    """Each reference written as a model would (boxed / "The answer is:") must grade equal."""
    failures = []
    checks = 0
    for it in items:
        variants = {
            "boxed": f"We compute it step by step.\nThus the result is $\\boxed{{{model_form(it)}}}$.",
            "answer_is": f"We compute it step by step.\nThe answer is: {model_form(it) if it.multiple else it.answer}",
        }
        rw = rewritten(it)
        variants["rewritten"] = f"So we get $\\boxed{{{rw}}}$." if "$" in rw else f"Therefore, the answer is ${rw}$."
        sl = slashed(it)
        if sl is not None:
            variants["slashed"] = f"Hence $\\boxed{{{sl}}}$."
        if it.solution is not None:
            variants["solution"] = it.solution
        for name, gen in variants.items():
            checks += 1
            res = _grade(gen, it)
            if not res.correct:
                failures.append((name, it, res.extracted))
    return checks, failures


def _same_answer(a: Item, b: Item) -> bool:
    """Pairs whose references are genuinely the same answer (excluded from the shuffled check)."""
    sa = re.sub(r"[\s$]", "", str(a.answer))
    sb = re.sub(r"[\s$]", "", str(b.answer))
    if sa == sb:
        return True
    try:
        return float(sa.replace(",", "")) == float(sb.replace(",", ""))
    except ValueError:
        return False


def shuffled_pairs(items: list[Item]) -> list[tuple[Item, Item]]:
    """Pair each item's answer with another item's reference (fixed seed, no fixed points)."""
    n = len(items)
    perm = list(range(n))
    random.Random(SEED).shuffle(perm)
    for i in range(n):
        if perm[i] == i:
            j = (i + 1) % n
            perm[i], perm[j] = perm[j], perm[i]
    return [(items[i], items[perm[i]]) for i in range(n) if perm[i] != i]


def shuffled_unequal(items: list[Item]) -> tuple[int, int, list[tuple[Item, Item]]]:
    """(pairs checked, pairs excluded as genuinely equal, pairs wrongly graded equal)."""
    wrong = []
    checked = excluded = 0
    for pred_item, ref_item in shuffled_pairs(items):
        if _same_answer(pred_item, ref_item):
            excluded += 1
            continue
        checked += 1
        pred = model_form(pred_item)
        if ref_item.multiple:
            ok = is_equiv_multi(pred, ref_item.answer, TIMEOUT)
        else:
            ok = is_equiv(pred, ref_item.answer, TIMEOUT)
        if ok:
            wrong.append((pred_item, ref_item))
    return checked, excluded, wrong


def perturbed_unequal(items: list[Item]) -> tuple[int, list[tuple[Item, str]]]:
    """(pairs checked, perturbed answers wrongly graded equal)."""
    wrong = []
    checked = 0
    for it in items:
        p = perturbed(it)
        if p is None or "\\text" in p or len(p) > 300:
            continue
        checked += 1
        res = _grade(f"Thus $\\boxed{{{p}}}$.", it)
        if res.correct:
            wrong.append((it, p))
    return checked, wrong


#: Issue 14: self-agreement of the unboxed / two-box forms, and shuffled false positives.
READER_SELF_MIN = 0.99
READER_SHUFFLED_FP_MAX = 0.005


def unboxed(item: Item) -> str | None:
    """The answer as an unboxed final sentence, "... is $X$." (None for answers with their own ``$``)."""
    x = model_form(item)
    if "$" in x:
        return None
    return f"We work it out step by step.\nSo the value we want is ${x}$."


def two_boxes(item: Item, other: Item) -> str | None:
    """Two boxes: each part of a multiple answer boxed in the final sentence; for one answer,
    another problem's answer boxed in an earlier sentence and this one boxed last."""
    parts = answer_parts(item)
    if item.multiple and len(parts) >= 2:
        return "The solutions are " + " and ".join(
            f"$\\boxed{{{model_form(Item(item.bench, item.idx, a))}}}$" for a in parts) + "."
    if _same_answer(item, other):
        return None
    return (f"A first guess would be $\\boxed{{{model_form(other)}}}$, but it fails.\n\n"
            f"Fixing the sign, we get $\\boxed{{{model_form(item)}}}$.")


def reader_agreement(items: list[Item]) -> dict[str, tuple[int, list[tuple[Item, str | None]]]]:
    """Per variant ("unboxed", "two_box"): (checks, failures) of the reference graded against itself."""
    out: dict[str, tuple[int, list]] = {}
    pairs = shuffled_pairs(items)
    others = {id(a): b for a, b in pairs}
    for name in ("unboxed", "two_box"):
        checks, failures = 0, []
        for it in items:
            gen = unboxed(it) if name == "unboxed" else two_boxes(it, others.get(id(it), it))
            if gen is None:
                continue
            checks += 1
            res = _grade(gen, it)
            if not res.correct:
                failures.append((it, res.extracted))
        out[name] = (checks, failures)
    return out


def unboxed_shuffled_false_positives(items: list[Item]) -> tuple[int, list[tuple[Item, Item]]]:
    """Another problem's answer as an unboxed final sentence: (pairs checked, graded equal)."""
    wrong, checked = [], 0
    for pred_item, ref_item in shuffled_pairs(items):
        gen = unboxed(pred_item)
        if gen is None or _same_answer(pred_item, ref_item):
            continue
        checked += 1
        if _grade(gen, ref_item).correct:
            wrong.append((pred_item, ref_item))
    return checked, wrong


def _show(label: str, rows: list, limit: int = 40) -> None:
    if rows:
        print(f"  {label}: {len(rows)} (first {min(limit, len(rows))})")
        for row in rows[:limit]:
            print("    ", row)


# --------------------------------------------------------------------------------------
# pytest
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"benchmark data folder {DATA} not present")
    return DATA


def test_math500_solution_boxed_matches_answer(data_dir):
    """(a) The boxed answer of each MATH-500 solution grades equal to its `answer` field."""
    items = load_items("math500", data_dir)
    assert len(items) == 500
    failures = []
    for it in items:
        boxed = _last_boxed(it.solution)
        if boxed is None or not is_equiv(boxed, it.answer, TIMEOUT):
            failures.append((it.idx, boxed, it.answer))
    _show("MATH-500 solution-vs-answer failures", failures)
    rate = 1 - len(failures) / len(items)
    print(f"MATH-500 boxed solution == answer: {rate:.4f} ({len(items) - len(failures)}/{len(items)})")
    assert rate >= 0.998, failures


def test_gsm8k_thousands_and_answer_is(data_dir):
    """(b) `#### N` equals `\\boxed{N with commas}` and "The answer is: N"."""
    items = load_items("gsm8k", data_dir)
    assert len(items) == 1319
    failures = []
    for it in items:
        n = it.answer.replace(",", "")
        if re.fullmatch(r"-?\d+", n):
            with_commas = f"{int(n):,}"
        else:
            whole, _, frac = n.partition(".")
            with_commas = f"{int(whole):,}" + (f".{frac}" if frac else "")
        forms = (f"So she earns \\boxed{{{with_commas}}} dollars.", f"The answer is: {n}",
                 f"The answer is {with_commas}.")
        for gen in forms:
            res = grade(gen, it.solution, TIMEOUT)  # the reference as stored: "... #### N"
            if not res.correct:
                failures.append((it.idx, gen, it.answer, res.extracted))
    _show("GSM8K failures", failures)
    assert not failures


def _check_self(bench: str, items: list[Item]) -> None:
    t0 = time.perf_counter()
    checks, failures = self_agreement(items)
    rate = 1 - len(failures) / checks
    print(f"\n{bench}: self-agreement {rate:.4f} ({checks - len(failures)}/{checks} checks, "
          f"{len(items)} rows, {time.perf_counter() - t0:.1f}s)")
    _show("failures", [(name, it.idx, str(it.answer)[:120], (ext or "")[:80]) for name, it, ext in failures])
    assert rate >= SELF_MIN[bench]


def _check_shuffled(bench: str, items: list[Item]) -> None:
    t0 = time.perf_counter()
    checked, excluded, wrong = shuffled_unequal(items)
    rate = 1 - len(wrong) / checked
    print(f"\n{bench}: shuffled unequal {rate:.4f} ({checked - len(wrong)}/{checked}; "
          f"{excluded} identical pairs excluded; {time.perf_counter() - t0:.1f}s)")
    _show("graded equal", [(a.idx, str(a.answer)[:80], b.idx, str(b.answer)[:80]) for a, b in wrong])
    assert rate >= SHUFFLED_UNEQUAL_MIN


def _check_perturbed(bench: str, items: list[Item]) -> None:
    checked, wrong = perturbed_unequal(items)
    rate = 1 - len(wrong) / checked
    print(f"\n{bench}: perturbed unequal {rate:.4f} ({checked - len(wrong)}/{checked})")
    _show("graded equal", [(it.idx, str(it.answer)[:80], p[:80]) for it, p in wrong])
    assert rate >= PERTURBED_UNEQUAL_MIN[bench]


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_self_agreement(data_dir, bench):
    """(c) Every reference grades equal to itself written as a model would write it."""
    _check_self(bench, _sample(load_items(bench, data_dir), False))


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_shuffled_pairs_unequal(data_dir, bench):
    """(d) Answers of other problems grade unequal in at least 99% of pairs."""
    _check_shuffled(bench, _sample(load_items(bench, data_dir), False))


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_perturbed_answers_unequal(data_dir, bench):
    """(e) A near miss (first non-zero digit bumped) grades unequal."""
    _check_perturbed(bench, _sample(load_items(bench, data_dir), False))


def _check_reader(bench: str, items: list[Item]) -> None:
    t0 = time.perf_counter()
    for name, (checks, failures) in reader_agreement(items).items():
        rate = 1 - len(failures) / max(checks, 1)
        print(f"\n{bench}: {name} self-agreement {rate:.4f} ({checks - len(failures)}/{checks})")
        _show("failures", [(it.idx, str(it.answer)[:100], (ext or "")[:80]) for it, ext in failures])
        assert rate >= READER_SELF_MIN, (name, rate)
    checked, wrong = unboxed_shuffled_false_positives(items)
    fp = len(wrong) / max(checked, 1)
    print(f"{bench}: unboxed shuffled false positives {fp:.4f} ({len(wrong)}/{checked}; "
          f"{time.perf_counter() - t0:.1f}s)")
    _show("graded equal", [(a.idx, str(a.answer)[:80], b.idx, str(b.answer)[:80]) for a, b in wrong])
    assert fp <= READER_SHUFFLED_FP_MAX


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_unboxed_and_two_box_forms(data_dir, bench):
    """(f) Issue 14: the reference as an unboxed final sentence and with two boxes grades
    equal (>= 0.99 per benchmark); another problem's unboxed answer grades unequal (<= 0.5%)."""
    _check_reader(bench, _sample(load_items(bench, data_dir), False))


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="full sets take minutes; set LM_LATENT_GRADING_FULL=1")
@pytest.mark.parametrize("bench", BENCHMARKS)
def test_full_sets(data_dir, bench):
    """(c), (d), (e) on every row (MATH 5000, CollegeMath 2818, ...)."""
    items = load_items(bench, data_dir)
    _check_self(bench, items)
    _check_shuffled(bench, items)
    _check_perturbed(bench, items)
    _check_reader(bench, items)


def main(argv: list[str]) -> int:
    """Script mode: ``python tests/grading/test_grading_real_data.py [--full] [bench ...]``."""
    full = "--full" in argv
    benches = [a for a in argv if not a.startswith("--")] or list(BENCHMARKS)
    if not DATA.is_dir():
        print(f"no data at {DATA}")
        return 0
    for bench in benches:
        items = _sample(load_items(bench), full)
        t0 = time.perf_counter()
        checks, failures = self_agreement(items)
        t1 = time.perf_counter()
        checked, excluded, wrong = shuffled_unequal(items)
        t2 = time.perf_counter()
        p_checked, p_wrong = perturbed_unequal(items)
        print(f"{bench}: rows={len(items)} self-agreement={1 - len(failures) / checks:.4f} "
              f"({checks - len(failures)}/{checks}, {t1 - t0:.1f}s) "
              f"shuffled-unequal={1 - len(wrong) / max(checked, 1):.4f} "
              f"({checked - len(wrong)}/{checked}, excluded {excluded}, {t2 - t1:.1f}s) "
              f"perturbed-unequal={1 - len(p_wrong) / max(p_checked, 1):.4f} ({p_checked - len(p_wrong)}/{p_checked})")
        _show("perturbed graded equal", [(it.idx, str(it.answer)[:100], p[:100]) for it, p in p_wrong], 200)
        _show("self failures",
              [(name, it.idx, str(it.answer)[:150], (ext or "")[:100]) for name, it, ext in failures], 200)
        _show("shuffled graded equal",
              [(a.idx, str(a.answer)[:100], b.idx, str(b.answer)[:100]) for a, b in wrong], 200)
        t3 = time.perf_counter()
        for name, (n_checks, fails) in reader_agreement(items).items():
            print(f"{bench}: {name} self-agreement={1 - len(fails) / max(n_checks, 1):.4f} "
                  f"({n_checks - len(fails)}/{n_checks})")
            _show(f"{name} failures", [(it.idx, str(it.answer)[:150], (ext or "")[:100]) for it, ext in fails], 200)
        u_checked, u_wrong = unboxed_shuffled_false_positives(items)
        print(f"{bench}: unboxed shuffled false positives={len(u_wrong) / max(u_checked, 1):.4f} "
              f"({len(u_wrong)}/{u_checked}, {time.perf_counter() - t3:.1f}s)")
        _show("unboxed shuffled graded equal",
              [(a.idx, str(a.answer)[:100], b.idx, str(b.answer)[:100]) for a, b in u_wrong], 200)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    raise SystemExit(main(sys.argv[1:]))
