"""The worker's side: math_verify and sympy, run only inside the spawned worker process.

This is the one module of the package that imports sympy or math_verify, and only the
worker process imports it (``worker._child_process``), so the parent never loads sympy,
by structure. Besides calling math_verify it re-checks what math_verify gets wrong or
slow: equations, numbers against constants, matrices and plain expressions, by
evaluation at random points.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import re
from fractions import Fraction
from typing import Callable

import math_verify
import math_verify.grader
import math_verify.parser
import sympy

from .compare import _match_all, _num_close, _quick
from .normalize import _Norm, _Num, _parse_number
from .text import _LOG_CHARS

#: Evaluations that say nothing about equality.
_NOT_FINITE = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)
#: Never probed at random points: unevaluated sums, integrals, limits, derivatives.
_UNPROBED = (sympy.Sum, sympy.Product, sympy.Integral, sympy.Limit, sympy.Derivative, sympy.UnevaluatedExpr)

_MV_STATE: dict = {}


def _first_expr(parsed: list):
    """The parsed expression of a math_verify result (its other entry is the matched text)."""
    return next((x for x in parsed if not isinstance(x, str)), None)


def _mv_setup() -> None:
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True  # the parent enforces the limit
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _MV_STATE["parse"] = math_verify.parse
    _MV_STATE["verify"] = math_verify.verify
    # LaTeX only: ExprExtractionConfig pulls the first number out of text it cannot
    # parse ("3" from "d=3\\sqrt{5}, M=..."), which made unrelated answers equal. It is
    # kept as a fallback that must cover the whole string (see _mv_parse).
    _MV_STATE["config"] = [
        math_verify.LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False),
    ]
    _MV_STATE["expr_config"] = [math_verify.ExprExtractionConfig(try_extract_without_anchor=True)]
    _MV_STATE["cache"] = {}


def _mv_parse(text: str):
    cache = _MV_STATE["cache"]
    hit = cache.get(text)
    if hit is not None:
        return hit
    # \boxed{} marks the whole string as the answer, so math-verify parses all of it.
    parse = _MV_STATE["parse"]
    boxed = "\\boxed{" + text.replace("\n", " ") + "}"
    parsed = parse(boxed, extraction_config=_MV_STATE["config"], parsing_timeout=None)
    if not any(not isinstance(x, str) for x in parsed) and _PLAIN_EXPR_RE.fullmatch(text):
        alt = parse(text, extraction_config=_MV_STATE["expr_config"], parsing_timeout=None)
        if len(alt) == 2 and isinstance(alt[1], str) and alt[1].strip() == text.strip():
            parsed = alt
    if len(cache) > 4096:
        cache.clear()
    cache[text] = parsed
    return parsed


def _probe_tol(*exprs) -> float:
    """Relative tolerance for probes: loose when a side holds decimals (math_verify
    rounds those), tight when everything is exact (evaluated with 30 digits)."""
    try:
        return 1e-4 if any(e.atoms(sympy.Float) for e in exprs) else 1e-15
    except Exception:  # noqa: BLE001
        return 1e-4


def _probe_point(symbols, rng) -> dict:
    """Random positive values spread over two decades (0.03 .. 3), as exact rationals."""
    return {x: sympy.Rational(round(10 ** rng.uniform(-1.5, 0.5), 4)).limit_denominator(10**4) for x in symbols}


def _value_at(expr, point):
    return expr.subs(point).evalf(30)


def _matrix_at(expr, point):
    return sympy.Matrix(expr.subs(point).doit()).evalf(30)


def _probes(exprs, symbols: list, count: int, at=_value_at):
    """``exprs`` evaluated at ``count`` random points (one list of values per point, lazily).

    The points are the same for every expression and depend only on the number of
    unknowns (a fixed seed), so a comparison gives the same verdict every time.
    """
    rng = random.Random(len(symbols))
    for _ in range(count):
        point = _probe_point(symbols, rng)
        yield [at(x, point) for x in exprs]


def _finite(value) -> bool:
    """A number, and not nan/zoo/oo/-oo (an evaluation that says nothing)."""
    return value.is_number and not value.has(*_NOT_FINITE)


def _equation_relation(g, t) -> str | None:
    """"different", "proportional" or None (undecided) for two equations, by evaluation.

    math_verify compares equations by solving them, and two equations without real
    solutions (``4x^2+8x+19=0`` vs ``5x^2+8x+19=0``) or that sympy cannot solve come
    out "equal", while ``2x = 4`` vs ``x = 2`` comes out unequal. Different unknowns,
    a true vs a false constant statement (``\\log_2 32 = 5`` vs ``\\log_3 32 = 5``), or
    non-proportional ``lhs - rhs`` at two random points mean different equations;
    proportional ``lhs - rhs`` (same unknowns) mean the same equation.
    """
    try:
        if g.free_symbols != t.free_symbols:
            return "different"
        sides = (g.lhs, g.rhs, t.lhs, t.rhs)
        if not all(isinstance(x, sympy.Expr) for x in sides):
            return None
        if any(x.has(*_UNPROBED) or x.atoms(sympy.core.function.AppliedUndef) for x in sides):
            return None
        symbols = sorted(g.free_symbols, key=str)
        assignment = isinstance(g.lhs, sympy.Symbol) or isinstance(t.lhs, sympy.Symbol)
        tol = _probe_tol(*sides)
        ratios = []
        for gl, gr, tl, tr in _probes(sides, symbols, 3 if symbols else 1):
            if not all(_finite(v) for v in (gl, gr, tl, tr)):
                return None
            g_zero = abs(gl - gr) <= tol * max(abs(gl), abs(gr), 1e-30)
            t_zero = abs(tl - tr) <= tol * max(abs(tl), abs(tr), 1e-30)
            if g_zero != t_zero:
                return "different"
            if not g_zero:
                ratios.append((gl - gr) / (tl - tr))
        if len(ratios) == 3:
            a = ratios[0]
            if all(abs(a - b) <= min(tol, 1e-6) * max(abs(a), abs(b)) for b in ratios[1:]):
                return "proportional"
            return None if assignment else "different"
        return None
    except Exception:  # noqa: BLE001 - not evaluable: let math_verify decide
        return None


def _both_equations_proportional(gold: list, target: list) -> bool:
    g, t = _first_expr(gold), _first_expr(target)
    if not (isinstance(g, sympy.Eq) and isinstance(t, sympy.Eq)):
        return False
    return _equation_relation(g, t) == "proportional"


def _number_vs_constant(pred: str, ref: str, gold: list, target: list) -> bool | None:
    """``0.866`` vs ``\\frac{\\sqrt{3}}{2}``, ``\\boxed{3^{10}}`` vs ``59050``: one side a plain
    number, the other a constant expression. The constant is evaluated to well beyond the
    number's digits and the number rule decides (True/False); None when not applicable."""
    pn, rn = _parse_number(pred), _parse_number(ref)
    if (pn is None) == (rn is None):
        return None
    num = pn if pn is not None else rn
    assert num is not None  # exactly one side parsed
    other = gold if pn is not None else target
    expr = _first_expr(other)
    if not isinstance(expr, sympy.Expr) or expr.free_symbols or expr.has(sympy.UnevaluatedExpr):
        return None
    try:
        digits = 30 + len(str(abs(num.value.numerator))) + len(str(num.value.denominator))
        value = expr.evalf(digits)
        if not value.is_real or not value.is_Number or value.has(*_NOT_FINITE):
            return None
        const = _Num(Fraction(str(value)), False, None, digits, evaluated=True)
    except Exception:  # noqa: BLE001 - not evaluable: let math_verify decide
        return None
    return _num_close(num, const) if pn is not None else _num_close(const, num)


def _accidental_empty_set(parsed: list, text: str) -> bool:
    return any(x is sympy.S.EmptySet for x in parsed) and not re.search(
        r"\\emptyset|\\varnothing|\\\{\s*\\\}|∅|\{\s*\}", text
    )


_PLAIN_EXPR_RE = re.compile(r"[0-9A-Za-z\s.+\-*/^()]+")


def _mv_equiv(pred: str, ref: str, pred_pct: bool = False, ref_pct: bool = False) -> bool:
    verify = _MV_STATE["verify"]
    gold = _mv_parse(ref)
    target = _mv_parse(pred)
    if not gold or not target:
        return False
    if _accidental_empty_set(gold, ref) or _accidental_empty_set(target, pred):
        return False  # "[a, b)" with a > b is not the empty set the user meant
    kw = dict(timeout_seconds=None, allow_set_relation_comp=True)
    if pred_pct == ref_pct:
        decided = _number_vs_constant(pred, ref, gold, target)
        if decided is not None:
            return decided
    if pred_pct == ref_pct and _numerically_different(gold, target):
        return False
    if _both_equations_proportional(gold, target):
        return True
    if verify(gold, target, **kw):
        return True
    if pred_pct != ref_pct:  # 25\% vs 1/4: compare the percent side divided by 100
        if ref_pct and verify(_mv_parse(f"\\frac{{{ref}}}{{100}}"), target, **kw):
            return True
        if pred_pct and verify(gold, _mv_parse(f"\\frac{{{pred}}}{{100}}"), **kw):
            return True
    return False


def _has_matrix(expr) -> bool:
    if isinstance(expr, (sympy.MatrixBase, sympy.MatrixExpr)):
        return True
    if not isinstance(expr, sympy.Basic) or isinstance(expr, sympy.Set):
        return False
    try:
        return any(isinstance(a, (sympy.MatrixBase, sympy.MatrixExpr)) for a in sympy.preorder_traversal(expr))
    except Exception:  # noqa: BLE001
        return False


def _matrices_differ(g, t) -> bool:
    """Matrix answers (``c_1 [v] e^{2t} + ...``) evaluated entry by entry at random points."""
    try:
        symbols = sorted(g.free_symbols | t.free_symbols, key=str)
        if len(symbols) > 8:
            return False
        tol = _probe_tol(g, t)
        for a, b in _probes((g, t), symbols, 2, at=_matrix_at):
            if a.shape != b.shape:
                return True
            for x, y in zip(a, b):
                if not (x.is_number and y.is_number):
                    return False
                mx, my = abs(x), abs(y)
                if max(mx, my) > 1e-20 and abs(x - y) > tol * max(mx, my):
                    return True
        return False
    except Exception:  # noqa: BLE001 - not evaluable: let math_verify decide
        return False


def _numerically_different(gold: list, target: list) -> bool:
    """Cheap negative filter before math_verify's ``simplify``.

    Two plain expressions that differ numerically at two random positive points are
    not equal; deciding that by evaluation takes microseconds where ``simplify`` can
    take seconds. Only plain scalar expressions without sums, integrals, limits,
    percentages or undefined functions are probed; anything else goes to math_verify.
    """
    g, t = _first_expr(gold), _first_expr(target)
    # Mirror math_verify's unwrapping of assignments (``y = ...``) so they can be probed.
    g_eq, t_eq = isinstance(g, sympy.Eq), isinstance(t, sympy.Eq)
    if g_eq and t_eq:
        if g.lhs != t.lhs:  # same left side (``y``, ``S(t)``): compare the right sides
            return _equation_relation(g, t) == "different"
        g, t = g.rhs, t.rhs
    elif g_eq:
        if not isinstance(g.lhs, sympy.Symbol):
            return False
        g = g.rhs
    elif t_eq:
        t = t.rhs
    # A matrix (vector) never equals a scalar.
    if g is not None and t is not None and _has_matrix(g) != _has_matrix(t):
        return True
    # A single value never equals a set of two or more values.
    if isinstance(g, sympy.FiniteSet) and isinstance(t, sympy.Expr) and len(g) >= 2:
        return True
    if isinstance(t, sympy.FiniteSet) and isinstance(g, sympy.Expr) and len(t) >= 2:
        return True
    if g is not None and t is not None and _has_matrix(g) and _has_matrix(t):
        return _matrices_differ(g, t)
    if not isinstance(g, sympy.Expr) or not isinstance(t, sympy.Expr):
        return False
    try:
        if g.has(*_UNPROBED) or t.has(*_UNPROBED):
            # Not probed; but series or integrals in different unknowns are different
            # answers, and sympy's simplify on them can take many seconds.
            return not g.has(sympy.UnevaluatedExpr) and g.free_symbols != t.free_symbols
        if g.atoms(sympy.core.function.AppliedUndef) or t.atoms(sympy.core.function.AppliedUndef):
            return False
        symbols = sorted(g.free_symbols | t.free_symbols, key=str)
        if len(symbols) > 8:
            return False
        tol = _probe_tol(g, t)
        for a, b in _probes((g, t), symbols, 2):
            if not (_finite(a) and _finite(b)):
                return False
            # sympy Floats keep any exponent: 1/2004! and 2/2004! stay apart here,
            # where math_verify's evalf(chop=True) would call both zero.
            ma, mb = abs(a), abs(b)
            if ma == 0 or mb == 0:
                if max(ma, mb) <= 1e-20:
                    return False
            elif abs(a - b) <= tol * max(ma, mb):
                return False
        return True
    except Exception:  # noqa: BLE001 - not evaluable: let math_verify decide
        return False


def _pair_equiv_local(p: _Norm, r: _Norm) -> bool:
    q = _quick(p, r)
    if q is not None:
        return q
    return _mv_equiv(p.text, r.text, p.pct, r.pct)


def _multi(preds: list[_Norm], refs: list[_Norm]) -> bool:
    return _match_all(preds, refs, _pair_equiv_local)


#: What the parent may ask for: job kind -> function of the payload. Tests add their own
#: kinds through ``serve(..., jobs_module)`` (see ``worker._SympyWorker``), never here.
JOBS: dict[str, Callable[..., bool]] = {
    "single": lambda payload: _mv_equiv(*payload),
    "multi": lambda payload: _multi(*payload),
}


def _job_table(jobs_module: str | None) -> dict[str, Callable[..., bool]]:
    table = dict(JOBS)
    if jobs_module:
        table.update(importlib.import_module(jobs_module).JOBS)
    return table


def serve(conn, jobs_module: str | None = None) -> None:
    """The worker's loop: set math_verify up once, then answer jobs until told to stop.

    ``jobs_module`` names a module whose ``JOBS`` mapping adds job kinds (the tests' jobs
    that sleep or exit); a production worker has none.
    """
    _mv_setup()
    table = _job_table(jobs_module)
    try:  # warm the ANTLR parser and sympy's lazily imported simplify before saying ready
        _mv_equiv("\\frac{1}{2}", "0.5")
        _mv_equiv("x^2-1", "(x-1)(x+1)")
        _mv_equiv("\\sqrt{8}", "2\\sqrt{2}")
    except Exception:  # noqa: BLE001
        pass
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        seq, kind, payload = msg
        try:
            result: bool | str
            job = table.get(kind)
            if job is None:
                raise ValueError(f"unknown job {kind!r}")
            result = bool(job(payload))
            ok = True
        except BaseException as exc:  # noqa: BLE001 - RecursionError, MemoryError, sympy bugs
            result, ok = f"{type(exc).__name__}: {exc}"[:_LOG_CHARS], False
        try:
            conn.send((seq, ok, result))
        except (OSError, ValueError):
            return
