"""split_answers: a multiple answer split at top-level commas, "and", "or"."""

from __future__ import annotations

import pytest
from grading_helpers import _id

from lm_latent.grading import split_answers

SPLIT_CASES: list[tuple[str, list[str]]] = [
    ("2, 3", ["2", "3"]),
    ("$(1,2),(3,4)$", ["(1,2)", "(3,4)"]),
    ("\\{1,2\\}, 3", ["\\{1,2\\}", "3"]),
    ("[2, 3), (4, 5]", ["[2, 3)", "(4, 5]"]),
    ("1 and 2", ["1", "2"]),
    ("1{,}000", ["1000"]),
    ("f(x)=x, f(x)=-x", ["f(x)=x", "f(x)=-x"]),
]

@pytest.mark.parametrize("text,expected", SPLIT_CASES, ids=[_id(c) for c in SPLIT_CASES])
def test_split_answers(text, expected):
    assert split_answers(text) == expected
