"""Fast paths: decide equality of two normalised answers without sympy where possible.

Plain numbers as exact fractions, booleans, option letters, number tuples; ``_quick``
returns None for what only the worker can decide. Standard library only.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Sequence, cast

from .normalize import _Norm, _Num, _parse_number, _poly_eq_zero

#: Relative tolerance for plain numbers when either side is written approximately.
REL_TOL = 1e-4
#: Relative difference allowed between an approximate answer and an exact reference
#: (fraction, radical, pi): math_verify's default precision is 6 decimal places.
NEAR_EXACT_REL_TOL = 1e-6
#: An evaluated constant (30+ significant digits) equals an exact value within this.
_EVAL_REL_TOL = Fraction(1, 10**20)
_REL_TOL_F = Fraction(str(REL_TOL))
_NEAR_EXACT_F = Fraction(str(NEAR_EXACT_REL_TOL))


def _num_close(p: _Num, r: _Num) -> bool:
    r"""Is the number ``p`` (answer) equal to the reference ``r``? Exact arithmetic, never raises.

    * an integer reference needs exactly that value (``3^{10}`` is not 59050);
    * another exact reference (a fraction, or a constant such as ``2\pi`` evaluated by
      sympy) needs an exact answer or an approximation within ``NEAR_EXACT_REL_TOL``
      (``0.333`` is not 1/3, ``6.28`` is not ``2\pi``; ``0.3333333`` is);
    * a reference written as a decimal or in scientific notation is itself rounded, so a
      relative ``REL_TOL`` is allowed, or either side rounding to the other when the
      rounded one has >= 3 significant digits (``\pi`` = 3.14, 1.0936 = 1.094).
    """
    if p.value == r.value:
        return True
    if r.exact or r.evaluated:
        if p.exact and r.exact:
            return False
        if r.exact and r.value.denominator == 1 and not p.evaluated:
            return False
        if p.exact or p.evaluated:  # evaluated to 30+ digits beyond the value: capped at 1e-20 absolute
            return r.value != 0 and abs(p.value - r.value) <= _EVAL_REL_TOL * min(abs(r.value), Fraction(1))
        return r.value != 0 and abs(p.value - r.value) <= _NEAR_EXACT_F * abs(r.value)
    if abs(p.value - r.value) <= _REL_TOL_F * max(abs(p.value), abs(r.value)):
        return True
    for a, o in ((p, r), (r, p)):
        if a.decimals is not None and a.decimals >= 1 and a.sig >= 3:
            if o.decimals is None or o.decimals > a.decimals:
                if abs(a.value - o.value) <= Fraction(1, 2 * 10**a.decimals):
                    return True
    return False


def _scaled_percent(n: _Num) -> _Num:
    return _Num(n.value / 100, n.exact, None if n.decimals is None else n.decimals + 2, n.sig, n.evaluated)


def _num_close_pct(p: _Num, p_pct: bool, r: _Num, r_pct: bool) -> bool:
    """The number rule when a side carries ``%``: the sign is ignored, or that side divided by 100."""
    if _num_close(p, r):
        return True
    if p_pct and not r_pct:
        return _num_close(_scaled_percent(p), r)
    if r_pct and not p_pct:
        return _num_close(p, _scaled_percent(r))
    return False


def _quick(p: _Norm, r: _Norm) -> bool | None:
    """Decide without sympy when possible: True/False, or None to ask the worker."""
    if p.key == r.key and p.key and (p.pct == r.pct or p.kind in ("num", "other")):
        return True
    if p.kind == "bool" or r.kind == "bool":
        return p.kind == r.kind and p.value == r.value
    if r.kind == "option":
        if p.kind == "option":
            return p.value == r.value
        if re.fullmatch(r"\(?\s*[A-Ea-e]\s*\)?", p.text):
            return p.text.strip("() ").lower() == r.value
        return False
    if p.kind in ("long", "prose") or r.kind in ("long", "prose") or not p.key or not r.key:
        return False
    if _poly_eq_zero(p.text) and "=" not in r.text:
        return False
    if p.kind == "num" and r.kind == "num":
        return _num_close_pct(cast(_Num, p.value), p.pct, cast(_Num, r.value), r.pct)
    pt, rt = _number_tuple(p.text), _number_tuple(r.text)
    if pt is not None and rt is not None and p.pct == r.pct:
        (po, pn, pc), (ro, rn, rc) = pt, rt
        if (po, pc) != (ro, rc) or len(pn) != len(rn):
            return None if len(pn) == len(rn) else False
        if po in ("\\{", ""):  # a set or a bare list: order does not matter
            return _match_all(pn, rn, _num_close)
        return all(_num_close(a, b) for a, b in zip(pn, rn))
    return None


_NUMBER_TUPLE_RE = re.compile(r"^(\(|\[|\\\{)(.*)(\)|\]|\\\})$", re.DOTALL)


def _number_tuple(text: str) -> tuple[str, list[_Num], str] | None:
    """``(1, 2.5)``, ``[0.333, 0.25]``, ``\\{1, 2\\}``, ``1, 1, 2``: brackets and numbers, else None.

    A bare list has empty brackets and is compared as a multiset (``1,1,2,3`` is not
    ``2,1,2,3``, which math_verify's sets would make equal).
    """
    if len(text) > 400:
        return None
    m = _NUMBER_TUPLE_RE.match(text)
    if m:
        opening, body, closing = m.group(1), m.group(2), m.group(3)
    elif "," in text and not re.search(r"[()\[\]{}]", text):
        opening, body, closing = "", text, ""
    else:
        return None
    items = body.split(",")
    if len(items) < 2:
        return None
    parsed = [_parse_number(x) for x in items]
    nums = [n for n in parsed if n is not None]
    if len(nums) != len(parsed):
        return None
    return opening, nums, closing




def _match_greedy(preds: Sequence, refs: Sequence, equal, *, stop_at_miss: bool = False) -> tuple[list, list[int]]:
    """Pair each prediction with the first still-free reference it ``equal``s (greedy, as multisets).

    Returns the predictions left unpaired and the indices of the references left free, so
    a caller can send only the rest on (to the worker). With ``stop_at_miss`` it gives up
    at the first unpaired prediction: an all-or-nothing match needs no more comparisons.
    """
    free = list(range(len(refs)))
    left = []
    for p in preds:
        for idx in free:
            if equal(p, refs[idx]):
                free.remove(idx)
                break
        else:
            left.append(p)
            if stop_at_miss:
                break
    return left, free


def _match_all(preds: Sequence, refs: Sequence, equal) -> bool:
    """Every prediction item matched to a distinct reference item (greedy, multiset)."""
    if len(preds) != len(refs):
        return False
    left, _ = _match_greedy(preds, refs, equal, stop_at_miss=True)
    return not left
