"""strip_latent: latent spans (``<boLatent>...<eoLatent>``, stray ``<latent_N>``) become one space."""

from __future__ import annotations

import pytest
from grading_helpers import _id

from lm_latent.grading import strip_latent

STRIP_LATENT_CASES: list[tuple[str, str]] = [
    ("a<boLatent><latent_1><latent_2><eoLatent>b", "a b"),
    ("a <boLatent><latent_1>", "a  "),
    ("a <latent_7> b", "a   b"),
    ("no latent", "no latent"),
    ("<boLatent>x<eoLatent>1<boLatent>y<eoLatent>2", " 1 2"),
    ("<boLatent><latent_1> <latent_2> tail", "  tail"),
]

@pytest.mark.parametrize("text,expected", STRIP_LATENT_CASES, ids=[_id(c) for c in STRIP_LATENT_CASES])
def test_strip_latent(text, expected):
    assert strip_latent(text) == expected
