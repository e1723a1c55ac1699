"""Splitting a multiple answer ("2, 3", "(1,2), (3,4)", "$69$ and $84$") into its items."""

from __future__ import annotations

import re

from .normalize import _BRACED_COMMA_RE, _clean

_OPENERS = "([{"
_CLOSERS = ")]}"
_AND_RE = re.compile(r"\s*\\text\{\s*(?:and|or)\s*\}\s*|\s+(?:and|or)\s+|\\quad|\\qquad|;")


def split_answers(answer: str) -> list[str]:
    """Split "2, 3", "(1,2), (3,4)" or "$69$, $84$" into items at top-level commas.

    Commas inside brackets stay (tuples, intervals, sets); a LaTeX thousands number
    like ``1{,}000`` stays whole. "and"/"or"/";" also separate.
    """
    text, _ = _clean(answer)  # unwraps $..$, \boxed, \left/\right
    text = _BRACED_COMMA_RE.sub("", text)
    text = _AND_RE.sub(",", text)
    items: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            i += 2 if text[i + 1] in "{}" else 1
            if text[i - 1] in "{}":
                depth += 1 if text[i - 1] == "{" else -1
            continue
        if c in _OPENERS:
            depth += 1
        elif c in _CLOSERS:
            depth -= 1
        elif c == "," and depth <= 0:
            items.append(text[start:i])
            start = i + 1
        i += 1
    items.append(text[start:])
    return [it.strip() for it in items if it.strip()]

