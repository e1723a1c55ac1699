"""Normalisation: an answer string becomes a ``_Norm`` (LaTeX text, exact key, kind, value).

Standard library only; the worker reads the same ``_Norm`` objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .text import _BOOL_WORDS, _TOP_EQ_RE, _fold_unicode, _match_brace, _ordinary_words

#: Longer normalised answers are compared as strings only (sympy is never asked).
MAX_SYMPY_CHARS = 2000

_UNWRAP_CMDS = ("boxed", "fbox", "text", "textbf", "textrm", "textit", "mathrm", "mathbf", "mbox")
_LEFT_RIGHT_RE = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg)\s*(?=[()\[\]|<>]|\\[{}|]|\\[lr]?(?:brace|angle|vert|floor|ceil|brack|Vert))"
)
_LEFT_RIGHT_DOT_RE = re.compile(r"\\(?:left|right)\s*\.")
_FRAC_RE = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_NOISE_RE = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|nonumber|limits)(?![a-zA-Z])")
_THIN_THOUSANDS_RE = re.compile(r"(?<=\d)(?:,\\!|\{,\}\\!|\\,|\{,\}|\\;|\\!|\\ )[ ]?(?=\d{3}(?!\d))")
_SHORT_SQRT_RE = re.compile(r"\\sqrt\s*([0-9A-Za-z])")
_SPACED_NUMBERS_RE = re.compile(r"-?\d+(?:\.\d+)?(?:\s+-?\d+(?:\.\d+)?)+")
_MIXED_NUMBER_RE = re.compile(r"^(?P<s>-?)(?P<w>\d{1,30})\s*\\frac\{(?P<a>\d{1,30})\}\{(?P<b>\d{1,30})\}$")
_BRACED_COMMA_RE = re.compile(r"(?<=\d)\{,\}(?=\d)")
_SPACING_RE = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad(?![a-zA-Z])|~")
_DOLLAR_RE = re.compile(r"\\\$|\$")
_DEGREE_RE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ(?![a-zA-Z])|°|\\degree(?![a-zA-Z])")
_PERCENT_RE = re.compile(r"(?:\\%|%|\\text\{\s*percent\s*\}|\s+percent|\s+per\s*cent)\s*$", re.IGNORECASE)
_TRAILING_TEXT_UNIT_RE = re.compile(
    r"^(?P<body>.*?\S)\s*\\(?:text|mathrm|mbox|textrm|rm|operatorname)\s*\{\s*~?\s*(?P<unit>[A-Za-z][A-Za-z .]*?)\s*\}"
    r"(?P<tail>(?:\s*\^\s*\{?\s*[23]\s*\}?)?(?:\s*/\s*\\(?:text|mathrm|mbox)\s*\{\s*~?\s*[A-Za-z]+\s*\}(?:\s*\^\s*\{?\s*[23]\s*\}?)?)*)\s*$",
    re.DOTALL,
)
_UNIT_WORD_RE = re.compile(
    r"^(?P<body>.*?[\d})\]])\s+(?P<unit>[A-Za-z]{2,}(?:\^\{?[23]\}?)?(?:(?:\s+|\s*/\s*)[A-Za-z]+(?:\^\{?[23]\}?)?)*)\.?$",
    re.DOTALL,
)
_GLUED_UNITS = (
    "cm|mm|km|m|kg|mg|g|ml|mL|L|s|sec|min|h|hr|hrs|ft|in|yd|mi|mph|kmh|lb|lbs|oz|kW|W|J|N|Pa|Hz|V|A|K|mol|dollars?|cents?"
)
#: ``5cm``, ``3.7 m/s``, ``9.8 m/s^2``: a value and a unit made of the symbols above.
_GLUED_UNIT_RE = re.compile(
    rf"^(?P<body>[-+]?\d[\d,]*(?:\.\d+)?)\s*(?:{_GLUED_UNITS})(?:\s*/\s*(?:{_GLUED_UNITS}))?(?:\^\{{?[23]\}}?)?\.?$"
)
_MATH_WORDS = frozenset(
    "pi sqrt ln log lg sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh exp inf infty "
    "and or to mod pmod bmod times cdot div i e".split()
)
#: A whole answer that is one number with its thousands grouped by commas or by spaces
#: (``1,000``, ``1 000``; ``\,`` and ``\u2009`` have become spaces by then).
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:(?:,\d{3})+|(?: \d{3})+)(?:\.\d+)?")
_EQ_PREFIX_RE = re.compile(
    r"^(?P<lhs>[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?|\\[a-zA-Z]+(?:_\{?[A-Za-z0-9]+\}?)?)\s*(?:=|\\in(?![a-zA-Z]))\s*(?P<rhs>.+)$",
    re.DOTALL,
)
_NOT_VARIABLES = frozenset(
    r"\sin \cos \tan \cot \sec \csc \log \ln \exp \lim \sum \int \frac \sqrt \angle \triangle \text \mathrm "
    r"\mathbf".split()
)
_SET_BUILDER_RE = re.compile(r"^\\\{\s*[A-Za-z]\s*(?:\||\\mid|:)\s*(?P<cond>.+?)\s*\\\}$", re.DOTALL)
_SCI_RE = re.compile(r"^(?P<m>[-+]?(?:\d+(?:\.\d*)?|\.\d+))[eE](?P<e>[-+]?\d+)$")
_SCI_TIMES_RE = re.compile(
    r"^(?P<m>[-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*\{?\s*(?P<e>[-+]?\d+)\s*\}?$"
)
_POW10_RE = re.compile(r"^(?P<sign>[-+]?)10\s*\^\s*\{?\s*(?P<e>[-+]?\d+)\s*\}?$")
_INT_RE = re.compile(r"^[-+]?\d+$")
_DEC_RE = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+)$")
_SLASH_FRAC_RE = re.compile(r"^(?P<s>[-+]?)\(?(?P<a>\d+)\)?\s*/\s*\(?(?P<b>\d+)\)?$")
_LATEX_FRAC_RE = re.compile(
    r"^(?P<s>[-+]?)\\frac\s*(?:\{\s*(?P<a>[-+]?\d+)\s*\}|(?P<a1>\d))\s*(?:\{\s*(?P<b>[-+]?\d+)\s*\}|(?P<b1>\d))$"
)
_OPTION_RE = re.compile(r"^\(\s*([A-Ea-e])\s*\)$|^([A-E])$|^([A-E])\)$")
_KEY_SUPERSCRIPT_RE = re.compile(r"([_^])\{(\w)\}")
# Plain-text math that the LaTeX parser would read as products of letters ("pi" -> p*i).
_PLAIN_FUNCS_RE = re.compile(
    r"(?<![\\A-Za-z])(sqrt|exp|log|ln|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan)(?=\s*[({])"
)
_PLAIN_PI_RE = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")
_PLAIN_INF_RE = re.compile(r"(?<![\\A-Za-z])(?:infinity|inf|oo)(?![A-Za-z])")


def _unwrap_once(s: str) -> str:
    """Strip one whole-string wrapper: ``$..$``, ``\\(..\\)``, ``\\[..\\]``, ``\\boxed{}``, ``\\text{}``."""
    if len(s) >= 4 and s.startswith("$$") and s.endswith("$$") and "$" not in s[2:-2]:
        return s[2:-2]
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and "$" not in s[1:-1].replace("\\$", ""):
        return s[1:-1]
    for a, b in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(a) and s.endswith(b) and len(s) >= 4:
            return s[2:-2]
    if s.startswith("**") and s.endswith("**") and len(s) > 4:
        return s[2:-2]
    if s.startswith("\\"):
        m = re.match(r"\\([a-zA-Z]+)\s*\{", s)
        if m and m.group(1) in _UNWRAP_CMDS:
            end = _match_brace(s, m.end() - 1)
            if end == len(s) - 1:
                return s[m.end() : end]
    return s


def _strip_trailing_punct(s: str) -> str:
    while s and s[-1] in ".,;:" and not (len(s) >= 2 and s[-2] == "\\"):
        s = s[:-1].rstrip()
    return s


def _strip_units(s: str) -> str:
    """Drop unit text after a value: ``5\\text{ cm}^2``, ``10 cm``, ``12 dollars``."""
    for _ in range(3):
        m = _TRAILING_TEXT_UNIT_RE.match(s)
        if (
            m
            and re.search(r"[\d}\])a-zA-Z]$", m.group("body"))
            and not re.fullmatch(r"(?:and|or|if|for|where)", m.group("unit").strip())
        ):
            s = m.group("body").rstrip()
            continue
        break
    m = _UNIT_WORD_RE.match(s)
    if m and m.group("unit").split()[0].split("^")[0].split("/")[0].lower() not in _MATH_WORDS:
        words = re.findall(r"[A-Za-z]+", m.group("unit"))
        if all(w.lower() not in _MATH_WORDS for w in words):
            s = m.group("body").rstrip()
    m = _GLUED_UNIT_RE.match(s)
    if m:
        s = m.group("body")
    return s


@dataclass(frozen=True)
class _Norm:
    """A normalised answer: ``text`` for math_verify, ``key`` for exact comparison."""

    text: str
    key: str
    pct: bool
    kind: str  # "bool" | "option" | "num" | "prose" | "long" | "other"
    value: object = None  # bool, option letter, or _Num


@dataclass(frozen=True)
class _Num:
    value: Fraction
    exact: bool  # written as an integer or fraction (not a decimal / scientific)
    decimals: int | None  # digits after the point when written as a plain decimal
    sig: int  # significant digits as written (0 when exact)
    evaluated: bool = False  # an exact constant (``2\pi``, ``3^{10}``) evaluated by sympy to many digits


def _parse_number(s: str) -> _Num | None:
    """Plain numbers only: ints, decimals, ``a/b``, ``\\frac{a}{b}``, ``1.2e3``, ``1.2\\times10^{3}``."""
    s = s.strip()
    if len(s) > 60:
        return None
    if _INT_RE.match(s):
        return _Num(Fraction(int(s)), True, None, 0)
    if _DEC_RE.match(s):
        digits = s.lstrip("+-")
        int_part, _, frac_part = digits.partition(".")
        sig_digits = (int_part + frac_part).lstrip("0")
        return _Num(Fraction(s if not s.endswith(".") else s[:-1]), False, len(frac_part), max(len(sig_digits), 1))
    m = _SLASH_FRAC_RE.match(s)
    if m and int(m.group("b")) != 0:
        v = Fraction(int(m.group("a")), int(m.group("b")))
        return _Num(-v if m.group("s") == "-" else v, True, None, 0)
    m = _LATEX_FRAC_RE.match(s)
    if m:
        a = int(m.group("a") or m.group("a1"))
        b = int(m.group("b") or m.group("b1"))
        if b != 0:
            v = Fraction(a, b)
            return _Num(-v if m.group("s") == "-" else v, True, None, 0)
    m = _SCI_RE.match(s) or _SCI_TIMES_RE.match(s)
    if m:
        e = int(m.group("e"))
        if abs(e) > 400:
            return None
        mant = m.group("m")
        digits = mant.lstrip("+-").replace(".", "").lstrip("0")
        return _Num(Fraction(mant) * Fraction(10) ** e, False, None, max(len(digits), 1))
    m = _POW10_RE.match(s)
    if m:
        e = int(m.group("e"))
        if abs(e) > 400:
            return None
        v = Fraction(10) ** e
        return _Num(-v if m.group("sign") == "-" else v, True, None, 0)
    return None


def _clean(s: str, merge_thousands: bool = True, strip_assignment: bool = True) -> tuple[str, bool]:
    """String-level normalisation; returns (latex text, had a percent sign).

    ``merge_thousands`` reads a whole answer like ``1,234`` as 1234; callers retry
    with False because ``45,135`` may also be a two-element list.
    """
    s = _fold_unicode(s).strip()
    if "####" in s:
        s = s.rsplit("####", 1)[1].strip()
    for _ in range(8):
        before = s
        s = _strip_trailing_punct(s.strip())
        s = _unwrap_once(s).strip()
        if s == before:
            break
    s = s.replace("\\(", " ").replace("\\)", " ").replace("\\[", " ").replace("\\]", " ")
    s = _LEFT_RIGHT_DOT_RE.sub("", s)
    s = _LEFT_RIGHT_RE.sub("", s)
    s = _FRAC_RE.sub(r"\\frac", s)
    s = _SHORT_SQRT_RE.sub(r"\\sqrt{\1}", s)  # \sqrt3 is \sqrt{3} (matters for prose, compared as text)
    s = _NOISE_RE.sub("", s)
    s = _THIN_THOUSANDS_RE.sub("", s)
    s = _BRACED_COMMA_RE.sub(",", s)
    s = _SPACING_RE.sub(" ", s)
    s = _DOLLAR_RE.sub("", s)
    s = _DEGREE_RE.sub("", s)
    s = s.replace("\\varnothing", "\\emptyset")
    s = re.sub(r"\s+", " ", s).strip()
    s = _strip_trailing_punct(s)
    pct = False
    m = _PERCENT_RE.search(s)
    if m and m.start() > 0:
        pct = True
        s = s[: m.start()].rstrip()
    s = _strip_units(s)
    s = re.sub(r"\s+degrees?$", "", s)
    for _ in range(3):  # a wrapper may only show after units/percent went
        t = _unwrap_once(s).strip()
        if t == s:
            break
        s = t
    if merge_thousands and _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "").replace(" ", "")
    if _SPACED_NUMBERS_RE.fullmatch(s):  # "12 3 0" (a sorted list), not 12*3*0
        s = "(" + ", ".join(s.split()) + ")"
    m = _MIXED_NUMBER_RE.match(s)
    if m and 0 < int(m.group("a")) < int(m.group("b")):  # 2\frac{1}{2} is 5/2
        b = int(m.group("b"))
        s = f"{m.group('s')}\\frac{{{int(m.group('w')) * b + int(m.group('a'))}}}{{{b}}}"
    m = _SET_BUILDER_RE.match(s)
    if m:
        s = m.group("cond").strip()
    m = _EQ_PREFIX_RE.match(s) if strip_assignment else None
    if m:
        lhs, rhs = m.group("lhs"), m.group("rhs").strip()
        var = lhs.split("_")[0]
        if (
            rhs
            and "=" not in rhs
            and lhs not in _NOT_VARIABLES
            and var not in _NOT_VARIABLES
            and not re.search(rf"(?<![A-Za-z\\]){re.escape(var)}(?![A-Za-z])", rhs)
        ):
            s = rhs
            if merge_thousands and _THOUSANDS_RE.fullmatch(s):
                s = s.replace(",", "").replace(" ", "")
    if "\\" not in s:  # plain-text math, not LaTeX
        s = s.replace("**", "^")
        s = re.sub(r"(?<![\\A-Za-z])sqrt\s*\(([^()]*)\)", r"\\sqrt{\1}", s)
        s = _PLAIN_FUNCS_RE.sub(lambda m: "\\" + m.group(1), s)
        s = _PLAIN_PI_RE.sub(r"\\pi", s)
        s = _PLAIN_INF_RE.sub(r"\\infty", s)
    s = re.sub(r"\s+", " ", s).strip()
    return s, pct


def _is_prose(text: str) -> bool:
    """Two or more ordinary words: a sentence, not a formula (compared as a string only)."""
    return len(_ordinary_words(text)) >= 2


def _poly_eq_zero(text: str) -> bool:
    """``x^2+4x+20=0``: an equation to solve, never a value (math_verify would read it as 0)."""
    parts = _TOP_EQ_RE.split(text)
    return len(parts) == 2 and parts[1].strip() == "0" and bool(re.search(r"[A-Za-z]", parts[0]))


def normalize_answer(answer: str, merge_thousands: bool = True, strip_assignment: bool = True) -> _Norm:
    """Normalise an answer for comparison (exposed for tests and debugging)."""
    if answer is None:
        answer = ""
    answer = str(answer)
    if len(answer) > MAX_SYMPY_CHARS:
        # Too long for sympy and for the regex-heavy cleaner: a light, linear clean-up
        # and an exact comparison only.
        text = _strip_trailing_punct(re.sub(r"\s+", " ", _DOLLAR_RE.sub("", answer)).strip())
        return _Norm(text, text.replace(" ", ""), False, "long")
    text, pct = _clean(answer, merge_thousands, strip_assignment)
    key = _KEY_SUPERSCRIPT_RE.sub(r"\1\2", text.replace(" ", ""))
    low = re.sub(r"[^a-z]", "", text.lower())
    if low in _BOOL_WORDS and re.fullmatch(r"[\sA-Za-z.!{}\\()]*", text):
        return _Norm(text, key, pct, "bool", _BOOL_WORDS[low])
    m = _OPTION_RE.match(text)
    if m:
        letter = (m.group(1) or m.group(2) or m.group(3)).lower()
        return _Norm(text, f"({letter})", pct, "option", letter)
    if len(text) > MAX_SYMPY_CHARS:
        return _Norm(text, key, pct, "long")
    num = _parse_number(text)
    if num is not None:
        return _Norm(text, key, pct, "num", num)
    if re.fullmatch(r"[A-Za-z][A-Za-z ]{2,}", text):  # a word answer: "Monday", "odd"
        key = key.lower()
    if _is_prose(text):
        return _Norm(text, key.lower(), pct, "prose")
    return _Norm(text, key, pct, "other")

