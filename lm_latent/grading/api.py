"""The public comparison API: :func:`grade`, :func:`is_equiv`, :func:`is_equiv_multi`.

Normalises both sides, decides what the fast paths can in this process and sends the
rest to the worker, all within one wall-time budget per answer. Nothing raises out of
these functions: errors are logged and reported as ``GradeResult.error``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from .compare import _match_greedy, _quick
from .extract import _extract
from .normalize import MAX_SYMPY_CHARS, _Norm, normalize_answer
from .split import split_answers
from .text import _LOG_CHARS, _short
from .worker import _WORKER, _Budget, _Reply

logger = logging.getLogger(__name__)


class _Outcome:
    """Accumulates what happened while grading one answer."""

    __slots__ = ("error", "timed_out")

    def __init__(self) -> None:
        self.timed_out = False
        self.error = False

    def add(self, reply: _Reply) -> bool:
        self.timed_out |= reply.timed_out
        self.error |= reply.error
        return reply.equal


def _readings(answer: str, other: str) -> list[_Norm]:
    """Normalised readings of ``answer``: usually one.

    A second one when ``1,234`` (or ``1 234``) could also be the list ``1, 234``, or when ``x = 2``
    (normally read as ``2``) meets an equation such as ``2x = 4``.
    """
    first = normalize_answer(answer)
    out = [first]
    if first.kind == "num" and ("," in answer or " " in answer.strip()):
        second = normalize_answer(answer, merge_thousands=False)
        if second.text != first.text:
            out.append(second)
    if "=" in answer and "=" in other and len(answer) <= MAX_SYMPY_CHARS:
        whole = normalize_answer(answer, strip_assignment=False)
        if whole.text != first.text:
            out.append(whole)
    return out


_SUBSCRIPTED_LHS_RE = re.compile(r"^[\s$]*(\\?[A-Za-z]+)\s*_\s*\{?\s*([A-Za-z0-9]+)\s*\}?\s*=")


def _different_subscripts(prediction: str, reference: str) -> bool:
    """``y_3 = ...`` is not ``y_2 = ...`` (the name is part of such an answer)."""
    a = _SUBSCRIPTED_LHS_RE.match(prediction)
    b = _SUBSCRIPTED_LHS_RE.match(reference)
    return bool(a and b and a.groups() != b.groups())


def _equiv_detail(prediction: str, reference: str, budget: _Budget, out: _Outcome) -> bool:
    if _different_subscripts(prediction, reference):
        return False
    for r in _readings(reference, prediction):
        for p in _readings(prediction, reference):
            q = _quick(p, r)
            if q is None:
                q = out.add(_WORKER.call("single", (p.text, r.text, p.pct, r.pct), budget, (prediction, reference)))
                if out.timed_out:
                    return False  # the budget is spent: no further readings
            if q:
                return True
    return False


def _safe_log(what: str, exc: BaseException, *inputs) -> None:
    logger.warning("%s raised %s: %s (counted as not equal): %s", what, type(exc).__name__, str(exc)[:_LOG_CHARS],
                   " ".join(_short(x) for x in inputs))


def is_equiv(prediction: str, reference: str, timeout: float = 5.0) -> bool:
    """True when ``prediction`` means the same answer as ``reference``.

    Fast paths (normalised string, plain numbers, booleans, option letters) decide most
    pairs in the parent; the rest goes to math_verify in the worker. ``timeout`` bounds
    the whole comparison (every reading, and a worker restart); a time-out, a worker
    crash or any error counts as not equal, never raises. Not symmetric in corner cases
    (math_verify treats the reference as the gold).
    """
    if prediction is None or reference is None:
        return False
    try:
        return _equiv_detail(str(prediction), str(reference), _Budget(timeout), _Outcome())
    except Exception as exc:  # noqa: BLE001 - grading must never abort a run
        _safe_log("is_equiv", exc, prediction, reference)
        return False


def _flatten_refs(reference_list: str | Iterable[str]) -> list[str]:
    if isinstance(reference_list, str):
        s = reference_list.strip()
        if s.startswith("[") and s.endswith("]") and ("'" in s or '"' in s):
            import ast

            try:
                val = ast.literal_eval(s)
                if isinstance(val, (list, tuple)):
                    return [str(v) for v in val]
            except (ValueError, SyntaxError):
                pass
        return [reference_list]
    return [str(x) for x in reference_list]


def _multi_detail(prediction: str, reference_list: str | Iterable[str], budget: _Budget, out: _Outcome) -> bool:
    refs = [item for ref in _flatten_refs(reference_list) for item in split_answers(ref)]
    preds = split_answers(prediction)
    if not refs or not preds or len(refs) != len(preds):
        return False
    p_norm = [normalize_answer(x) for x in preds]
    r_norm = [normalize_answer(x) for x in refs]
    # Pair off everything the fast paths settle; only the rest goes to the worker.
    left_p, free = _match_greedy(p_norm, r_norm, lambda p, r: _quick(p, r) is True)
    if not left_p:
        return True
    left_r = [r_norm[i] for i in free]
    if all(_quick(p, r) is False for p in left_p for r in left_r):
        return False
    return out.add(_WORKER.call("multi", (left_p, left_r), budget, (prediction, refs)))


def is_equiv_multi(prediction: str, reference_list: str | Iterable[str], timeout: float = 5.0) -> bool:
    """Multiple-answer equality (OlympiadBench ``is_multiple_answer``): order does not matter.

    ``reference_list`` is a list of answers (or a list written as a string, or one string
    with comma-separated answers); each entry is split at top-level commas too. The
    prediction is split the same way and the two must match one-to-one as multisets.
    ``timeout`` bounds the whole comparison; errors count as not equal, never raise.
    """
    if prediction is None or reference_list is None:
        return False
    try:
        return _multi_detail(str(prediction), reference_list, _Budget(timeout), _Outcome())
    except Exception as exc:  # noqa: BLE001 - grading must never abort a run
        _safe_log("is_equiv_multi", exc, prediction, reference_list)
        return False


@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one generation.

    ``timed_out``: the answer's budget ran out (counted as wrong). ``error``: something
    failed while grading it (a worker crash, an exception; counted as wrong, logged).
    """

    correct: bool
    extracted: str | None
    timed_out: bool
    error: bool = False


def _has_parts(reference: str) -> bool:
    try:
        return len(split_answers(reference)) > 1
    except Exception:  # noqa: BLE001
        return False


def grade(
    generation: str,
    reference: str | Sequence[str],
    timeout: float = 5.0,
    *,
    multiple: bool = False,
) -> GradeResult:
    """Extract the final answer from ``generation`` and compare it with ``reference``.

    ``reference`` may be a list: with ``multiple=True`` all its answers must be given
    (:func:`is_equiv_multi`); otherwise any one entry counts as correct. Several boxes in
    the final sentence are an answer set, compared as a set when the reference has
    several parts (or ``multiple``); otherwise the last box is the answer.

    ``timeout`` is the answer's whole budget in seconds: every reading, alternative
    reference and worker restart shares it, so ``grade`` returns within about
    ``timeout`` plus the parent's own bounded string work (a few ms; the first worker
    start in a process, up to ``WORKER_START_TIMEOUT``, is not charged). It never
    raises: errors are logged and give ``correct=False, error=True``.
    """
    budget = _Budget(timeout)
    out = _Outcome()
    extracted: str | None = None
    try:
        ex = _extract(generation or "")
        extracted = ex.answer
        if extracted is None or reference is None:
            return GradeResult(False, extracted, False)
        refs = [reference] if isinstance(reference, str) else [str(r) for r in reference]
        if ex.parts:
            as_set = multiple or any(_has_parts(r) for r in refs)
            candidates = [", ".join(ex.parts)] if as_set else [extracted]
        else:
            as_set = multiple
            candidates = [extracted, *ex.alternates]
        for cand in candidates:  # more than one only after "The answer is"
            if as_set:
                groups = [reference] if multiple else [[r] for r in refs]
                for group in groups:
                    if _multi_detail(cand, group, budget, out):
                        return GradeResult(True, cand, out.timed_out, out.error)
                    if out.timed_out:
                        break
            else:
                for ref in refs:
                    if _equiv_detail(cand, ref, budget, out):
                        return GradeResult(True, cand, out.timed_out, out.error)
                    if out.timed_out:
                        break
            if out.timed_out:
                break
        return GradeResult(False, candidates[0], out.timed_out, out.error)
    except Exception as exc:  # noqa: BLE001 - one bad answer must never abort a run
        _safe_log("grade", exc, generation, reference)
        return GradeResult(False, extracted, out.timed_out, True)

