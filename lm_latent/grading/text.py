"""String helpers shared by extraction, normalisation and the log lines.

Unicode folding, brace matching, the top-level ``=`` and the yes/no words: both
extraction and normalisation read them, so they live below both. Standard library only.
"""

from __future__ import annotations

import re

#: How much of an input goes into a log line.
_LOG_CHARS = 200
_BOOL_WORDS = {"true": True, "yes": True, "false": False, "no": False}
#: An ``=`` that is not part of ``<=``, ``>=``, ``!=``, ``==`` or ``\\=``.
_TOP_EQ_RE = re.compile(r"(?<![<>!=\\])=(?!=)")

# zero-width characters and the soft hyphen go; the many widths of space become one space
_UNICODE_MAP: dict[int, str | None] = {ord(c): None for c in "\u200b\u200c\u200d\u2060\ufeff\u00ad"}
_UNICODE_MAP.update({ord(c): " " for c in "\u00a0\u202f\u2007\u2009\u2008\u2002\u2003\u2004\u2005\u2006\u200a\u3000"})
_UNICODE_MAP.update({ord(k): v for k, v in {
    # Cyrillic letters that look Latin (models trained on mixed text write "х" for x)
    "\u0445": "x", "\u0425": "X", "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c",
    "\u0443": "y", "\u0410": "A", "\u0412": "B", "\u0415": "E", "\u041c": "M", "\u041e": "O", "\u0420": "P",
    "\u0421": "C", "\u0422": "T",
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "\\times ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ",
    "\u00f7": "\\div ", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ",
    "\u2260": "\\ne ", "\u221a": "\\sqrt", "\u2032": "'",
    "\u00bd": "\\frac{1}{2}", "\u2153": "\\frac{1}{3}", "\u2154": "\\frac{2}{3}", "\u00bc": "\\frac{1}{4}",
    "\u00be": "\\frac{3}{4}", "\u2155": "\\frac{1}{5}", "\u2156": "\\frac{2}{5}", "\u2157": "\\frac{3}{5}",
    "\u2158": "\\frac{4}{5}", "\u2159": "\\frac{1}{6}", "\u215a": "\\frac{5}{6}", "\u215b": "\\frac{1}{8}",
    "\u215c": "\\frac{3}{8}", "\u215d": "\\frac{5}{8}", "\u215e": "\\frac{7}{8}",
}.items()})
_SUPERSCRIPT_DIGITS = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
_SUPERSCRIPT_RUN_RE = re.compile(f"[{_SUPERSCRIPT_DIGITS}\u207b]+")
_SUPERSCRIPT_TO_ASCII = str.maketrans(_SUPERSCRIPT_DIGITS + "\u207b", "0123456789-")


def _fold_unicode(text: str) -> str:
    """Zero-width characters go, odd spaces become spaces, ``½``/``²``/``х``/``−`` become LaTeX/ASCII.

    Linear; a no-op (and nearly free) for ASCII text.
    """
    if text.isascii():
        return text
    if any(c in text for c in _SUPERSCRIPT_DIGITS):
        text = _SUPERSCRIPT_RUN_RE.sub(lambda m: "^{" + m.group(0).translate(_SUPERSCRIPT_TO_ASCII) + "}", text)
    return text.translate(_UNICODE_MAP)



_PROSE_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}(?![A-Za-z])")
_MATH_NAMES = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log exp max min det lim mod gcd lcm "
    "sqrt frac infty deg dim ker arg sgn rank span".split()
)
_NOT_PROSE_RE = re.compile(r"\\(?:begin|end|operatorname|mathrm|mathbf|mathbb|mathcal|mathit)\s*\{[^{}]*\}")


def _ordinary_words(text: str) -> list[str]:
    """Words of three or more letters that are not LaTeX commands or function names.

    Two of them make a sentence rather than a formula: what normalisation compares as
    prose, and what extraction refuses to read as the inside of a ``$...$`` span.
    """
    text = _NOT_PROSE_RE.sub(" ", text)
    return [w for w in _PROSE_WORD_RE.findall(text) if w.lower() not in _MATH_NAMES]


def _match_brace(s: str, open_pos: int, limit: int | None = None) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_pos`` (escaped ``\\{ \\}`` skipped)."""
    depth = 0
    end = len(s) if limit is None else min(len(s), open_pos + limit)
    i = open_pos
    while i < end:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _short(x) -> str:
    """``repr(x)`` cut to ``_LOG_CHARS`` for a log line."""
    s = repr(x)
    return s if len(s) <= _LOG_CHARS else s[:_LOG_CHARS] + "...'"
