"""Answer extraction and equivalence grading for math benchmarks.

Why a package of its own: the score of every math task hangs on two steps, pulling the
final answer out of a generation and deciding whether it equals the reference. Both are
easy to get subtly wrong (thousands separators vs tuples, units, ``x=3`` vs ``3``,
latent spans that contain digits), and sympy can hang or eat memory on hostile input.

* :func:`extract_answer` is pure string work (no sympy), linear in the input: the last
  stated final answer (box, "The answer is", ``####``), else the last math span of the
  final sentence, else its last number.
* :func:`is_equiv` normalises both sides, decides by cheap fast paths (normalised
  string, plain numbers as exact fractions, booleans, option letters) and only sends
  what is left to ``math_verify`` running in a persistent **spawned** worker process.
* :func:`grade` is extract + compare, the per-sample entry point for task code.
  ``timeout`` is one wall-time budget for the whole answer (every reading, alternative
  and worker restart); on time-out the worker is killed, a warm spare takes over, and
  the answer counts as not equal. Nothing raises out of these functions: errors are
  logged and reported as ``GradeResult.error``.

Modules, in the order a generation passes through them: ``latent`` (latent spans),
``extract`` (the final answer), ``normalize`` (an answer as a ``_Norm``), ``compare``
(fast paths without sympy), ``split`` (multiple answers), ``api`` (the functions
below), ``worker`` (the worker's parent side) and ``worker_child`` (math_verify and
sympy, imported only in the worker process); ``text`` holds helpers they share.
Importing this package loads only the standard library (never torch, sympy or
math_verify in the parent process). See ``docs/grading.md`` for what is accepted as equal.
"""

from __future__ import annotations

# The limits stay readable where the single module had them (``lm_latent.grading.REL_TOL``).
from .api import GradeResult, grade, is_equiv, is_equiv_multi
from .compare import NEAR_EXACT_REL_TOL, REL_TOL  # noqa: F401
from .extract import extract_answer
from .latent import strip_latent
from .normalize import MAX_SYMPY_CHARS, normalize_answer  # noqa: F401
from .split import split_answers
from .worker import WORKER_MEMORY_BYTES, WORKER_START_TIMEOUT, shutdown_worker  # noqa: F401

__all__ = [
    "GradeResult",
    "extract_answer",
    "grade",
    "is_equiv",
    "is_equiv_multi",
    "normalize_answer",
    "shutdown_worker",
    "split_answers",
    "strip_latent",
]
