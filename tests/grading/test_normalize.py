"""normalize_answer: the string-level reading both sides get before any comparison."""

from __future__ import annotations

import pytest
from grading_helpers import _id

from lm_latent.grading import normalize_answer

# (answer, normalised text, text of the second reading that does not merge thousands)
NORMALIZE_CASES: list[tuple[str, str, str]] = [
    ("1,000", "1000", "1,000"),
    ("1 000", "1000", "(1, 000)"),  # issue 30: a space groups thousands, or separates a list
    ("1 000 000", "1000000", "(1, 000, 000)"),
    ("-1 500.5", "-1500.5", "(-1, 500.5)"),
    ("1\\,000", "1000", "1000"),
    ("1{,}000", "1000", "1000"),
    ("1~000", "1000", "(1, 000)"),
    ("12 3 0", "(12, 3, 0)", "(12, 3, 0)"),  # DeepMind's sorted lists: not thousands
    ("12 00", "(12, 00)", "(12, 00)"),
    ("1,000 000", "1,000 000", "1,000 000"),  # mixed separators: not one number
    ("3.7 m/s", "3.7", "3.7"),  # a compound unit after a value
    ("9.8 m/s^2", "9.8", "9.8"),
    ("7 km/h", "7", "7"),
    ("2 n", "2 n", "2 n"),  # a single letter is no unit
    ("$\\dfrac{1}{3} $", "\\frac{1}{3}", "\\frac{1}{3}"),
]


@pytest.mark.parametrize("answer,text,unmerged", NORMALIZE_CASES, ids=[_id(c) for c in NORMALIZE_CASES])
def test_normalize_answer(answer, text, unmerged):
    assert normalize_answer(answer).text == text
    assert normalize_answer(answer, merge_thousands=False).text == unmerged
