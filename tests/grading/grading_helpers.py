"""Helpers the grading tests share: case ids, the short time limit, a sympy round trip."""

from __future__ import annotations

import time

from lm_latent.grading import is_equiv

def _id(case) -> str:
    return " | ".join(str(x) for x in case)[:80]

#: A short budget for inputs that must not hang (the worker's own start is not part of it).
LIMIT = 2.5

def _garbage(n: int = 100_000) -> str:
    import random
    import string

    rng = random.Random(0)
    return "".join(rng.choice(string.printable) for _ in range(n))

def _check_normal_comparison_still_works():
    t0 = time.perf_counter()
    assert is_equiv("x^2-1", "(x-1)(x+1)", timeout=30.0)  # needs sympy: exercises the worker
    assert not is_equiv("x^2-1", "(x-1)(x+2)", timeout=30.0)
    assert time.perf_counter() - t0 < 30
