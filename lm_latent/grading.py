"""Answer extraction and equivalence grading for math benchmarks.

Why a module of its own: the score of every math task hangs on two steps, pulling the
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

This module imports only the standard library (never torch, sympy or math_verify in
the parent process). See ``docs/grading.md`` for what is accepted as equal.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import re
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, NamedTuple, Sequence

logger = logging.getLogger(__name__)

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

#: Longer normalised answers are compared as strings only (sympy is never asked).
MAX_SYMPY_CHARS = 2000
#: Relative tolerance for plain numbers when either side is written approximately.
REL_TOL = 1e-4
#: Seconds allowed for a fresh worker to import sympy/math_verify (not part of `timeout`).
WORKER_START_TIMEOUT = 120.0
#: Address-space cap for the worker, so a ``10^{10^{10}}`` cannot take the machine down.
WORKER_MEMORY_BYTES = 4 * 1024**3
#: How much of an input goes into a log line.
_LOG_CHARS = 200

# --------------------------------------------------------------------------------------
# Latent spans
# --------------------------------------------------------------------------------------

_BO = "<boLatent>"
_EO = "<eoLatent>"
_LATENT_RUN_RE = re.compile(r"(?:\s*<latent_\d+>)*")
_STRAY_LATENT_RE = re.compile(r"<latent_\d+>|<eoLatent>|<boLatent>")


def strip_latent(text: str) -> str:
    """Remove latent spans so digits in ``<latent_17>`` never look like answers.

    ``<boLatent> ... <eoLatent>`` is removed whole; an unclosed ``<boLatent>`` takes the
    run of latent tokens after it; stray ``<latent_N>``/delimiters go too. Spans become
    one space so numbers on either side are not glued together. Linear time.
    """
    if "<" not in text:
        return text
    out: list[str] = []
    i = 0
    last_eo = text.rfind(_EO)
    while True:
        j = text.find(_BO, i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        out.append(" ")
        k = text.find(_EO, j + len(_BO)) if j < last_eo else -1
        if k >= 0:
            i = k + len(_EO)
        else:
            i = _LATENT_RUN_RE.match(text, j + len(_BO)).end()
    return _STRAY_LATENT_RE.sub(" ", "".join(out))


# --------------------------------------------------------------------------------------
# Unicode clean-up (shared by extraction and normalisation)
# --------------------------------------------------------------------------------------

_UNICODE_MAP = {ord(c): None for c in "\u200b\u200c\u200d\u2060\ufeff\u00ad"}  # zero-width, soft hyphen
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


# --------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------

_MAX_BOXES_TRIED = 20
_MAX_BOX_CHARS = 20000
#: What follows "The answer is" is read up to this many characters (a reference is never longer).
_MAX_TAIL_CHARS = 4000
#: Boxes at most this far apart, with no sentence end between them, form one answer set.
_MAX_BOX_GAP = 300
_MAX_SPAN_CHARS = 4000


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


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """The last complete, non-empty ``\\boxed{}``/``\\fbox{}`` (up to 20), as (start, end, content), in order."""
    found: list[tuple[int, int, str]] = []
    pos = len(text)
    for _ in range(_MAX_BOXES_TRIED):
        b = text.rfind("\\boxed", 0, pos)
        f = text.rfind("\\fbox", 0, pos)
        i = max(b, f)
        if i < 0:
            break
        j = i + (6 if i == b else 5)
        k = j
        while k < len(text) and text[k] in " \t":
            k += 1
        if k < len(text) and text[k] == "{":
            end = _match_brace(text, k, _MAX_BOX_CHARS)
            if end is not None:
                content = text[k + 1 : end].strip()
                if content:
                    found.append((i, end + 1, content))
        elif k > j:  # "\boxed 5"
            m = re.match(r"[^\s$]+", text[k : k + 200])
            if m:
                found.append((i, k + m.end(), m.group(0)))
        pos = i
    found.reverse()
    # A box inside a box (``\boxed{\boxed{5}}``) is the same answer: keep the outer one.
    out: list[tuple[int, int, str]] = []
    for box in found:  # sorted by start: only an earlier box can contain a later one
        if out and out[-1][0] <= box[0] and box[1] <= out[-1][1]:
            continue
        out.append(box)
    return out


def _last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{}``/``\\fbox{}``."""
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


_SENTENCE_BREAK_RE = re.compile(r"[.!?](?=\s)|\n[ \t]*\n")


def _final_box_group(text: str, boxes: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The last box and the boxes before it in the same sentence (``\\boxed{-2}`` and ``\\boxed{1}``)."""
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        gap = text[box[1] : group[0][0]]
        if len(gap) > _MAX_BOX_GAP or _SENTENCE_BREAK_RE.search(gap.replace("$", " ")):
            break
        group.insert(0, box)
    return group


_ANSWER_IS_RE = re.compile(
    r"answer\s{0,20}is\s{0,20}:?|(?:^|\n)[ \t]{0,20}[*#_]{0,6}[ \t]{0,20}(?:final\s{1,20})?answer[ \t]{0,20}[*_]{0,4}[ \t]{0,20}:",
    re.IGNORECASE,
)
_HOPE_RE = re.compile(r"I hope it is correct", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.\s+(?=[A-Z])|\n\s*\n")
_NUMBER_RE = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])\.\d+")


def _tidy_tail(rest: str) -> str:
    rest = rest.strip()
    for _ in range(3):
        rest = rest.strip().strip("*").strip()
        if rest.endswith(".") and not rest.endswith("\\."):
            rest = rest[:-1]
        if rest.startswith("$") and rest.endswith("$") and len(rest) > 1 and "$" not in rest.strip("$"):
            rest = rest.strip("$")
    return rest.strip()


def _answer_tails(rest: str) -> list[str]:
    """What follows "The answer is": its first sentence (outside math), then all of it.

    The first sentence is the answer ("18. I hope..." / "$5$. This is because...");
    the whole tail is kept as a second candidate because some references are
    themselves several sentences long. Only the first ``_MAX_TAIL_CHARS`` are read, so
    the work is bounded whatever follows (32,000 newlines took 5 s through a regex).
    """
    rest = rest[:_MAX_TAIL_CHARS]
    hope = _HOPE_RE.search(rest)
    if hope:
        rest = rest[: hope.start()]
    full = _tidy_tail(rest)
    dollars = 0
    last = 0
    first = full
    for m in _SENTENCE_END_RE.finditer(rest):
        dollars += rest.count("$", last, m.start())
        last = m.start()
        if dollars % 2 == 0:
            first = _tidy_tail(rest[: m.start()])
            break
    return [c for c in dict.fromkeys((first, full)) if c]


def _math_spans(text: str) -> list[tuple[int, int, str]]:
    """``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]`` as (start, end, content); linear.

    An inline ``$`` opens only before a non-space and closes only after a non-space and
    not before a digit (pandoc's rule), so "paid $5 and got $3 back" holds no math.
    """
    spans: list[tuple[int, int, str]] = []
    n = len(text)
    i = text.find("$") if "\\" not in text else 0
    if i < 0:
        return spans
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            nx = text[i + 1]
            if nx in "([":
                close = "\\)" if nx == "(" else "\\]"
                j = text.find(close, i + 2, i + 2 + _MAX_SPAN_CHARS)
                if j >= 0:
                    spans.append((i, j + 2, text[i + 2 : j]))
                    i = j + 2
                    continue
            i += 2
            continue
        if c == "$":
            if text.startswith("$$", i):
                j = text.find("$$", i + 2, i + 2 + _MAX_SPAN_CHARS)
                if j >= 0:
                    spans.append((i, j + 2, text[i + 2 : j]))
                    i = j + 2
                else:
                    i += 2
                continue
            if i + 1 < n and not text[i + 1].isspace():
                j = i + 1
                limit = min(n, i + 1 + _MAX_SPAN_CHARS)
                closed = -1
                while True:
                    j = text.find("$", j, limit)
                    if j < 0 or "\n\n" in text[i:j]:
                        break
                    if text[j - 1] == "\\":
                        j += 1
                        continue
                    if not text[j - 1].isspace() and not (j + 1 < n and text[j + 1].isdigit()):
                        closed = j
                    break
                if closed > 0:
                    spans.append((i, closed + 1, text[i + 1 : closed]))
                    i = closed + 1
                    continue
            i += 1
            continue
        # jump to the next character that can start math
        nd = text.find("$", i + 1)
        nb = text.find("\\", i + 1)
        cand = [x for x in (nd, nb) if x >= 0]
        if not cand:
            break
        i = min(cand)
    return spans


_APPROX_RE = re.compile(r"\\approx|\\simeq|≈")
_CMD_RE = re.compile(r"\\[A-Za-z]+")


def _span_answer(content: str) -> str:
    r"""The answer a math span states: ``\\frac{10}{9} \\approx 1.11`` -> the exact part,
    ``16 - 3 - 4 = 9`` -> ``9``; ``x = 5`` and ``f(y) = y`` stay whole (normalisation reads them)."""
    s = content.strip()
    parts = [p.strip() for p in _APPROX_RE.split(s)]
    if len(parts) > 1:
        first = parts[0]
        s = first if first and not re.fullmatch(r"[A-Za-z](?:_\{?\w+\}?)?", first) else parts[-1]
    pieces = _TOP_EQ_RE.split(s)
    if len(pieces) > 1 and all(not re.search(r"[A-Za-z]", _CMD_RE.sub("", p)) for p in pieces[:-1]):
        s = pieces[-1].strip()
    return s


def _masked(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with every math span blanked (same length), for searches outside math."""
    if not spans:
        return text
    out, last = [], 0
    for a, b, _ in spans:
        out.append(text[last:a])
        out.append(" " * (b - a))
        last = b
    out.append(text[last:])
    return "".join(out)


def _final_statement(text: str) -> tuple[str | None, tuple[str, ...]]:
    """No box, "answer is" or ``####``: the last math span of the final sentence that has
    math or a number, else that sentence's last number (signed). Returns the answer and,
    when the span was reduced (``16-3-4=9`` -> ``9``), the whole span as an alternate
    reading (a reference may itself be ``\\log_6(1/36) = -2``)."""
    spans = _math_spans(text)
    masked = _masked(text, spans)
    num = None
    for num in _NUMBER_RE.finditer(masked):
        pass
    last_span = next((s for s in reversed(spans) if s[2].strip()), None)
    if last_span is None and num is None:
        return None, ()

    def from_span(content: str) -> tuple[str, tuple[str, ...]]:
        reduced, whole = _span_answer(content), content.strip()
        return reduced, (whole,) if whole != reduced else ()

    if last_span is not None and (num is None or num.start() < last_span[0]):
        return from_span(last_span[2])
    # The last thing stated is a plain number: a span earlier in its sentence still wins.
    if last_span is not None:
        between = masked[last_span[1] : num.start()]
        if not re.search(r"[.!?](?=\s)|\n", between):
            return from_span(last_span[2])
    value = num.group(0)
    s = num.start()
    if s > 0 and masked[s - 1] == "-" and (s < 2 or not (masked[s - 2].isalnum() or masked[s - 2] in ")]}")):
        value = "-" + value
    return value, ()


def _states_a_value(tail: str) -> bool:
    """Does an "answer is" tail state something (math, a number, a yes/no, an option)?"""
    t = tail.strip().lower().rstrip(".")
    return bool(re.search(r"[\d$\\=]", tail)) or t in _BOOL_WORDS or bool(re.fullmatch(r"\(?[a-e]\)?", t))


@dataclass(frozen=True)
class _Extraction:
    """What a generation states as its final answer.

    ``answer`` is what :func:`extract_answer` returns; ``alternates`` are further readings
    :func:`grade` tries (the whole "answer is" tail); ``parts`` holds the boxes of the
    final sentence when there are several (an answer set, or one answer in two forms:
    MATH solutions write ``\\boxed{\\frac{25}{13}}`` or ``\\boxed{1\\frac{12}{13}}``), of which
    ``answer`` is the last.
    """

    answer: str | None
    alternates: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()


def _extract(text: str) -> _Extraction:
    """The last stated final answer, whichever form it takes (see :func:`extract_answer`)."""
    if not text:
        return _Extraction(None)
    text = _fold_unicode(strip_latent(str(text)))
    boxes = _boxes(text)
    box_pos = boxes[-1][0] if boxes else -1
    last_is = None
    for last_is in _ANSWER_IS_RE.finditer(text):
        pass
    is_pos = last_is.start() if last_is is not None else -1
    hash_pos = text.rfind("####")
    tails = _answer_tails(text[last_is.end() :]) if last_is is not None else []
    if box_pos >= 0 and is_pos > box_pos and not (tails and _states_a_value(tails[0])):
        is_pos = -1  # "\boxed{-5}. ... so our answer is correct": prose after the box is no answer
    best = max(box_pos, is_pos, hash_pos)
    if best >= 0 and best == box_pos:
        group = _final_box_group(text, boxes)
        parts = tuple(b[2] for b in group)
        return _Extraction(parts[-1], (), parts if len(parts) > 1 else ())
    if best >= 0 and best == is_pos and tails:
        return _Extraction(tails[0], tuple(tails[1:]))
    if best >= 0 and best == hash_pos:
        ans = text[hash_pos + 4 : hash_pos + 4 + _MAX_TAIL_CHARS].strip().split("\n", 1)[0].strip()
        ans = ans.rstrip(".").strip().strip("$").strip()
        if ans:
            return _Extraction(ans)
    answer, alternates = _final_statement(text)
    return _Extraction(answer, alternates)


def extract_answer(text: str) -> str | None:
    """Final answer of a generation, or None.

    The last stated final answer wins, whichever form it takes: the last
    ``\\boxed{}``/``\\fbox{}`` (nested braces kept; :func:`grade` reads several boxes in
    the final sentence as an answer set where the reference has several parts), the text
    after the last "The (final) answer is[:]" (first sentence, trailing period and ``$``
    stripped; after a box only when it states a value), or the rest of the line after
    the last ``####``. With none of those: the last math span (``$..$``,
    ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``) of the final sentence, else its last number.
    Latent spans are removed first. Linear in the input.
    """
    return _extract(text).answer


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------

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
_GLUED_UNIT_RE = re.compile(rf"^(?P<body>[-+]?\d[\d,]*(?:\.\d+)?)\s*(?:{_GLUED_UNITS})(?:\^\{{?[23]\}}?)?\.?$")
_MATH_WORDS = frozenset(
    "pi sqrt ln log lg sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh exp inf infty "
    "and or to mod pmod bmod times cdot div i e".split()
)
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_EQ_PREFIX_RE = re.compile(
    r"^(?P<lhs>[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?|\\[a-zA-Z]+(?:_\{?[A-Za-z0-9]+\}?)?)\s*(?:=|\\in(?![a-zA-Z]))\s*(?P<rhs>.+)$",
    re.DOTALL,
)
_NOT_VARIABLES = frozenset(
    r"\sin \cos \tan \cot \sec \csc \log \ln \exp \lim \sum \int \frac \sqrt \angle \triangle \text \mathrm \mathbf".split()
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
_LATEX_FRAC_RE = re.compile(r"^(?P<s>[-+]?)\\frac\s*(?:\{\s*(?P<a>[-+]?\d+)\s*\}|(?P<a1>\d))\s*(?:\{\s*(?P<b>[-+]?\d+)\s*\}|(?P<b1>\d))$")
_BOOL_WORDS = {"true": True, "yes": True, "false": False, "no": False}
_OPTION_RE = re.compile(r"^\(\s*([A-Ea-e])\s*\)$|^([A-E])$|^([A-E])\)$")
_KEY_SUPERSCRIPT_RE = re.compile(r"([_^])\{(\w)\}")
# Plain-text math that the LaTeX parser would read as products of letters ("pi" -> p*i).
_PLAIN_FUNCS_RE = re.compile(
    r"(?<![\\A-Za-z])(sqrt|exp|log|ln|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan)(?=\s*[({])"
)
_PLAIN_PI_RE = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")
_PLAIN_INF_RE = re.compile(r"(?<![\\A-Za-z])(?:infinity|inf|oo)(?![A-Za-z])")
_PROSE_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}(?![A-Za-z])")
_MATH_NAMES = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log exp max min det lim mod gcd lcm "
    "sqrt frac infty deg dim ker arg sgn rank span".split()
)
_NOT_PROSE_RE = re.compile(r"\\(?:begin|end|operatorname|mathrm|mathbf|mathbb|mathcal|mathit)\s*\{[^{}]*\}")
_TOP_EQ_RE = re.compile(r"(?<![<>!=\\])=(?!=)")


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
        if m and re.search(r"[\d}\])a-zA-Z]$", m.group("body")) and not re.fullmatch(r"(?:and|or|if|for|where)", m.group("unit").strip()):
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
        s = s.replace(",", "")
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
                s = s.replace(",", "")
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
    text = _NOT_PROSE_RE.sub(" ", text)
    words = [w for w in _PROSE_WORD_RE.findall(text) if w.lower() not in _MATH_NAMES]
    return len(words) >= 2


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
            return r.value != 0 and abs(p.value - r.value) <= _EVAL_REL_TOL * min(abs(r.value), 1)
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
        return _num_close_pct(p.value, p.pct, r.value, r.pct)
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
    nums = [_parse_number(x) for x in items]
    if any(n is None for n in nums):
        return None
    return opening, nums, closing


# --------------------------------------------------------------------------------------
# Splitting multiple answers
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# The sympy worker (child side)
# --------------------------------------------------------------------------------------

_MV_STATE: dict = {}


def _mv_setup() -> None:
    import math_verify
    import math_verify.grader
    import math_verify.parser

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
    parsed = parse("\\boxed{" + text.replace("\n", " ") + "}", extraction_config=_MV_STATE["config"], parsing_timeout=None)
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
    import sympy

    try:
        return 1e-4 if any(e.atoms(sympy.Float) for e in exprs) else 1e-15
    except Exception:  # noqa: BLE001
        return 1e-4


def _probe_point(symbols, rng) -> dict:
    """Random positive values spread over two decades (0.03 .. 3), as exact rationals."""
    import sympy

    return {x: sympy.Rational(round(10 ** rng.uniform(-1.5, 0.5), 4)).limit_denominator(10**4) for x in symbols}


def _equation_relation(g, t) -> str | None:
    """"different", "proportional" or None (undecided) for two equations, by evaluation.

    math_verify compares equations by solving them, and two equations without real
    solutions (``4x^2+8x+19=0`` vs ``5x^2+8x+19=0``) or that sympy cannot solve come
    out "equal", while ``2x = 4`` vs ``x = 2`` comes out unequal. Different unknowns,
    a true vs a false constant statement (``\\log_2 32 = 5`` vs ``\\log_3 32 = 5``), or
    non-proportional ``lhs - rhs`` at two random points mean different equations;
    proportional ``lhs - rhs`` (same unknowns) mean the same equation.
    """
    import random

    import sympy

    try:
        if g.free_symbols != t.free_symbols:
            return "different"
        sides = (g.lhs, g.rhs, t.lhs, t.rhs)
        if not all(isinstance(x, sympy.Expr) for x in sides):
            return None
        banned = (sympy.Sum, sympy.Product, sympy.Integral, sympy.Limit, sympy.Derivative, sympy.UnevaluatedExpr)
        if any(x.has(*banned) or x.atoms(sympy.core.function.AppliedUndef) for x in sides):
            return None
        symbols = sorted(g.free_symbols, key=str)
        assignment = isinstance(g.lhs, sympy.Symbol) or isinstance(t.lhs, sympy.Symbol)
        rng = random.Random(len(symbols))
        bad = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)
        tol = _probe_tol(*sides)
        ratios = []
        for _ in range(3 if symbols else 1):
            point = _probe_point(symbols, rng)
            gl, gr, tl, tr = (x.subs(point).evalf(30) for x in sides)
            if not all(v.is_number and not v.has(*bad) for v in (gl, gr, tl, tr)):
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
    import sympy

    g = next((x for x in gold if not isinstance(x, str)), None)
    t = next((x for x in target if not isinstance(x, str)), None)
    if not (isinstance(g, sympy.Eq) and isinstance(t, sympy.Eq)):
        return False
    return _equation_relation(g, t) == "proportional"


def _number_vs_constant(pred: str, ref: str, gold: list, target: list) -> bool | None:
    """``0.866`` vs ``\\frac{\\sqrt{3}}{2}``, ``\\boxed{3^{10}}`` vs ``59050``: one side a plain
    number, the other a constant expression. The constant is evaluated to well beyond the
    number's digits and the number rule decides (True/False); None when not applicable."""
    import sympy

    pn, rn = _parse_number(pred), _parse_number(ref)
    if (pn is None) == (rn is None):
        return None
    num = pn if pn is not None else rn
    other = gold if pn is not None else target
    expr = next((x for x in other if not isinstance(x, str)), None)
    if not isinstance(expr, sympy.Expr) or expr.free_symbols or expr.has(sympy.UnevaluatedExpr):
        return None
    try:
        digits = 30 + len(str(abs(num.value.numerator))) + len(str(num.value.denominator))
        value = expr.evalf(digits)
        if not value.is_real or not value.is_Number or value.has(sympy.oo, -sympy.oo, sympy.nan, sympy.zoo):
            return None
        const = _Num(Fraction(str(value)), False, None, digits, evaluated=True)
    except Exception:  # noqa: BLE001 - not evaluable: let math_verify decide
        return None
    return _num_close(num, const) if pn is not None else _num_close(const, num)


def _accidental_empty_set(parsed: list, text: str) -> bool:
    import sympy

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
    import sympy

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
    import random

    import sympy

    try:
        symbols = sorted(g.free_symbols | t.free_symbols, key=str)
        if len(symbols) > 8:
            return False
        rng = random.Random(len(symbols))
        tol = _probe_tol(g, t)
        for _ in range(2):
            point = _probe_point(symbols, rng)
            a = sympy.Matrix(g.subs(point).doit()).evalf(30)
            b = sympy.Matrix(t.subs(point).doit()).evalf(30)
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
    import random

    import sympy

    g = next((x for x in gold if not isinstance(x, str)), None)
    t = next((x for x in target if not isinstance(x, str)), None)
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
    banned = (sympy.Sum, sympy.Product, sympy.Integral, sympy.Limit, sympy.UnevaluatedExpr, sympy.Derivative)
    try:
        if g.has(*banned) or t.has(*banned):
            # Not probed; but series or integrals in different unknowns are different
            # answers, and sympy's simplify on them can take many seconds.
            return not g.has(sympy.UnevaluatedExpr) and g.free_symbols != t.free_symbols
        if g.atoms(sympy.core.function.AppliedUndef) or t.atoms(sympy.core.function.AppliedUndef):
            return False
        symbols = sorted(g.free_symbols | t.free_symbols, key=str)
        if len(symbols) > 8:
            return False
        rng = random.Random(len(symbols))
        bad = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)
        tol = _probe_tol(g, t)
        for _ in range(2):
            point = _probe_point(symbols, rng)
            a = g.subs(point).evalf(30)
            b = t.subs(point).evalf(30)
            if not (a.is_number and b.is_number) or a.has(*bad) or b.has(*bad):
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


def _match_all(preds: Sequence[_Norm], refs: Sequence[_Norm], equiv) -> bool:
    """Every prediction item matched to a distinct reference item (greedy, multiset)."""
    if len(preds) != len(refs):
        return False
    free = list(range(len(refs)))
    for p in preds:
        for idx in free:
            if equiv(p, refs[idx]):
                free.remove(idx)
                break
        else:
            return False
    return True


def _worker_job(kind: str, payload) -> bool:
    if kind == "single":
        return _mv_equiv(*payload)
    if kind == "multi":
        preds, refs = payload
        return _match_all(preds, refs, _pair_equiv_local)
    if kind == "_sleep":  # test hook: a comparison that never finishes in time
        import time

        time.sleep(float(payload))
        return True
    if kind == "_crash":  # test hook: the worker dies mid-comparison
        os._exit(70)
    raise ValueError(f"unknown job {kind!r}")


def _worker_main(conn) -> None:
    """Child process loop: import math_verify once, then answer jobs until told to stop."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    except (ValueError, OSError):
        pass
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = WORKER_MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(WORKER_MEMORY_BYTES, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except Exception:  # noqa: BLE001 - not on every platform; the parent's timeout still holds
        pass
    _mv_setup()
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
            result = bool(_worker_job(kind, payload))
            ok = True
        except BaseException as exc:  # noqa: BLE001 - RecursionError, MemoryError, sympy bugs
            result, ok = f"{type(exc).__name__}: {exc}"[:_LOG_CHARS], False
        try:
            conn.send((seq, ok, result))
        except (OSError, ValueError):
            return


# --------------------------------------------------------------------------------------
# The sympy worker (parent side)
# --------------------------------------------------------------------------------------


def _short(x) -> str:
    s = repr(x)
    return s if len(s) <= _LOG_CHARS else s[:_LOG_CHARS] + "...'"


def _start_without_main(proc) -> None:
    """``proc.start()`` without making the child re-run the caller's ``__main__``.

    Spawn normally re-imports the parent's main script in the child; the worker needs
    nothing from it, and an unguarded script (no ``if __name__ == "__main__"``) would
    otherwise fail or re-run itself. Hiding ``__file__``/``__spec__`` for the instant
    of ``start()`` makes spawn skip that step.
    """
    import sys

    main = sys.modules.get("__main__")
    if main is None:
        proc.start()
        return
    missing = object()
    saved_file = main.__dict__.get("__file__", missing)
    saved_spec = main.__dict__.get("__spec__", missing)
    try:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
        proc.start()
    finally:
        if saved_file is not missing:
            main.__dict__["__file__"] = saved_file
        if saved_spec is missing:
            main.__dict__.pop("__spec__", None)
        else:
            main.__dict__["__spec__"] = saved_spec


class _Budget:
    """One answer's wall-clock allowance, shared by every reading, alternative and restart."""

    __slots__ = ("deadline", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = max(float(seconds), 0.0)
        self.deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def extend(self, seconds: float) -> None:
        self.deadline += seconds


def _as_budget(budget: _Budget | float) -> _Budget:
    return budget if isinstance(budget, _Budget) else _Budget(budget)


class _Reply(NamedTuple):
    equal: bool
    timed_out: bool
    error: bool = False


class _SympyWorker:
    """One persistent spawned process; calls are serialised by a lock (thread-safe).

    After a time-out the worker is killed and replaced by a spare that has already
    imported sympy; a new spare starts in the background (from the first time-out on,
    one extra process is kept). So a restart costs the next answer nothing unless two
    time-outs come within the ~1 s a start takes; then whoever needs the worker waits for
    it within their own budget. Only the first start in a process is not charged to a
    budget (it is bounded by ``WORKER_START_TIMEOUT``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None
        self._owner_pid = None
        self._pending = None  # (proc, conn, spawned_at, owner_pid) of the next worker, maybe still starting
        self._spare = None  # same, kept warm once a time-out has happened
        self._ever_ready_pid = None
        self._seq = 0
        self.starts = 0
        self.timeouts = 0
        self.crashes = 0

    def _alive(self) -> bool:
        return self._proc is not None and self._owner_pid == os.getpid() and self._proc.is_alive()

    def _spawn(self) -> tuple:
        """Start a worker process without waiting for it (it says "ready" when it is)."""
        ctx = mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=_worker_main,
            args=(child_conn,),
            name="lm-latent-grading-worker",
            daemon=True,  # never outlives the parent
        )
        try:
            _start_without_main(proc)
        except Exception as exc:  # e.g. "daemonic processes are not allowed to have children"
            parent_conn.close()
            child_conn.close()
            raise RuntimeError(f"cannot start the grading worker process: {exc}") from exc
        child_conn.close()
        self.starts += 1
        return (proc, parent_conn, time.monotonic(), os.getpid())

    @staticmethod
    def _kill_started(started) -> None:
        if started is not None and started[3] == os.getpid():
            try:
                started[0].kill()
                started[0].join(5)
                started[1].close()
            except Exception:  # noqa: BLE001
                pass

    def _drop_pending(self) -> None:
        pending, self._pending = self._pending, None
        self._kill_started(pending)

    def _ready(self, budget: _Budget | None) -> bool:
        """Make a worker available; False when ``budget`` ran out first (it keeps starting)."""
        if self._alive():
            return True
        self._discard()
        if self._pending is not None and self._pending[3] != os.getpid():
            self._pending = None  # inherited through fork: not ours
        if self._spare is not None and self._spare[3] != os.getpid():
            self._spare = None
        if self._pending is None:
            self._pending = self._spawn()
        proc, conn, spawned, _ = self._pending
        first = self._ever_ready_pid != os.getpid()
        t0 = time.monotonic()
        left_to_start = WORKER_START_TIMEOUT - (t0 - spawned)
        wait = left_to_start if (first or budget is None) else min(left_to_start, max(budget.remaining(), 0.0))
        got = conn.poll(max(wait, 0.0))
        if first and budget is not None:
            budget.extend(time.monotonic() - t0)  # the one-time start is not the answer's fault
        if not got:
            if time.monotonic() - spawned >= WORKER_START_TIMEOUT:
                self._drop_pending()
                raise RuntimeError(f"grading worker did not start within {WORKER_START_TIMEOUT:.0f}s")
            return False
        self._pending = None
        try:
            msg = conn.recv()
        except EOFError as exc:
            proc.join(5)
            raise RuntimeError(f"grading worker died while starting (exit code {proc.exitcode})") from exc
        if not (isinstance(msg, tuple) and msg and msg[0] == "ready"):
            proc.kill()
            raise RuntimeError(f"grading worker sent {msg!r} instead of 'ready'")
        self._proc, self._conn, self._owner_pid = proc, conn, os.getpid()
        self._ever_ready_pid = os.getpid()
        return True

    def _discard(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None and self._owner_pid == os.getpid():
            try:
                proc.kill()
                proc.join(5)
            except Exception:  # noqa: BLE001
                pass
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _replace(self) -> None:
        """Kill the current worker; the warm spare takes over and a new spare starts."""
        self._discard()
        try:
            if self._pending is None:
                spare = self._spare if self._spare is not None and self._spare[3] == os.getpid() else None
                self._spare = None
                self._pending = spare if spare is not None else self._spawn()
            if self._spare is None:
                self._spare = self._spawn()
        except Exception as exc:  # noqa: BLE001 - the next call retries and reports
            logger.warning("could not respawn the grading worker: %s", exc)

    def ensure_started(self) -> None:
        with self._lock:
            self._ready(None)

    def call(self, kind: str, payload, budget: _Budget | float, what: tuple) -> _Reply:
        """Run one job within ``budget``; time-outs, crashes and errors count as unequal."""
        budget = _as_budget(budget)
        with self._lock:
            if budget.remaining() <= 0:
                return _Reply(False, True)
            if not self._ready(budget):
                self.timeouts += 1
                logger.warning(
                    "grading budget of %.1fs ran out while the worker restarted (counted as not equal): "
                    "prediction=%s reference=%s", budget.seconds, _short(what[0]), _short(what[1]),
                )
                return _Reply(False, True)
            self._seq += 1
            seq = self._seq
            wait = max(budget.remaining(), 0.0)
            try:
                self._conn.send((seq, kind, payload))
                ready = self._conn.poll(wait)
            except (OSError, ValueError, BrokenPipeError):
                ready = None
            if ready is False:
                self.timeouts += 1
                logger.warning(
                    "grading comparison timed out (budget %.1fs for the answer; worker killed; counted as not "
                    "equal): prediction=%s reference=%s", budget.seconds, _short(what[0]), _short(what[1]),
                )
                self._replace()
                return _Reply(False, True)
            try:
                if ready is None:
                    raise EOFError
                got_seq, ok, result = self._conn.recv()
            except (EOFError, OSError, ValueError):
                self.crashes += 1
                code = self._proc.exitcode if self._proc is not None else None
                logger.warning(
                    "grading worker crashed (exit code %s; counted as not equal): prediction=%s reference=%s",
                    code, _short(what[0]), _short(what[1]),
                )
                self._replace()
                return _Reply(False, False, True)
            if got_seq != seq:  # cannot happen with one caller at a time; be safe
                self._replace()
                return _Reply(False, False, True)
            if not ok:
                logger.warning("grading worker raised %s (counted as not equal): prediction=%s reference=%s",
                               result, _short(what[0]), _short(what[1]))
                return _Reply(False, False, True)
            return _Reply(bool(result), False)

    def shutdown(self) -> None:
        with self._lock:
            if self._conn is not None and self._alive():
                try:
                    self._conn.send(None)
                    self._proc.join(2)
                except Exception:  # noqa: BLE001
                    pass
            self._discard()
            self._drop_pending()
            spare, self._spare = self._spare, None
            self._kill_started(spare)


_WORKER = _SympyWorker()
atexit.register(_WORKER.shutdown)


def shutdown_worker() -> None:
    """Stop the sympy worker now (a later comparison starts a fresh one)."""
    _WORKER.shutdown()


def _worker_stats() -> dict:
    return {"starts": _WORKER.starts, "timeouts": _WORKER.timeouts, "crashes": _WORKER.crashes}


# --------------------------------------------------------------------------------------
# Public comparison API
# --------------------------------------------------------------------------------------


class _Outcome:
    """Accumulates what happened while grading one answer."""

    __slots__ = ("error", "timed_out")

    def __init__(self) -> None:
        self.timed_out = False
        self.error = False

    def add(self, reply: _Reply) -> bool:
        self.timed_out |= reply.timed_out
        self.error |= reply.error
        return reply.equal


def _readings(answer: str, other: str) -> list[_Norm]:
    """Normalised readings of ``answer``: usually one.

    A second one when ``1,234`` could also be the list ``1, 234``, or when ``x = 2``
    (normally read as ``2``) meets an equation such as ``2x = 4``.
    """
    first = normalize_answer(answer)
    out = [first]
    if first.kind == "num" and "," in answer:
        second = normalize_answer(answer, merge_thousands=False)
        if second.text != first.text:
            out.append(second)
    if "=" in answer and "=" in other and len(answer) <= MAX_SYMPY_CHARS:
        whole = normalize_answer(answer, strip_assignment=False)
        if whole.text != first.text:
            out.append(whole)
    return out


_SUBSCRIPTED_LHS_RE = re.compile(r"^[\s$]*(\\?[A-Za-z]+)\s*_\s*\{?\s*([A-Za-z0-9]+)\s*\}?\s*=")


def _different_subscripts(prediction: str, reference: str) -> bool:
    """``y_3 = ...`` is not ``y_2 = ...`` (the name is part of such an answer)."""
    a = _SUBSCRIPTED_LHS_RE.match(prediction)
    b = _SUBSCRIPTED_LHS_RE.match(reference)
    return bool(a and b and a.groups() != b.groups())


def _equiv_detail(prediction: str, reference: str, budget: _Budget, out: _Outcome) -> bool:
    if _different_subscripts(prediction, reference):
        return False
    for r in _readings(reference, prediction):
        for p in _readings(prediction, reference):
            q = _quick(p, r)
            if q is None:
                q = out.add(_WORKER.call("single", (p.text, r.text, p.pct, r.pct), budget, (prediction, reference)))
                if out.timed_out:
                    return False  # the budget is spent: no further readings
            if q:
                return True
    return False


def _safe_log(what: str, exc: BaseException, *inputs) -> None:
    logger.warning("%s raised %s: %s (counted as not equal): %s", what, type(exc).__name__, str(exc)[:_LOG_CHARS],
                   " ".join(_short(x) for x in inputs))


def is_equiv(prediction: str, reference: str, timeout: float = 5.0) -> bool:
    """True when ``prediction`` means the same answer as ``reference``.

    Fast paths (normalised string, plain numbers, booleans, option letters) decide most
    pairs in the parent; the rest goes to math_verify in the worker. ``timeout`` bounds
    the whole comparison (every reading, and a worker restart); a time-out, a worker
    crash or any error counts as not equal, never raises. Not symmetric in corner cases
    (math_verify treats the reference as the gold).
    """
    if prediction is None or reference is None:
        return False
    try:
        return _equiv_detail(str(prediction), str(reference), _Budget(timeout), _Outcome())
    except Exception as exc:  # noqa: BLE001 - grading must never abort a run
        _safe_log("is_equiv", exc, prediction, reference)
        return False


def _flatten_refs(reference_list: str | Iterable[str]) -> list[str]:
    if isinstance(reference_list, str):
        s = reference_list.strip()
        if s.startswith("[") and s.endswith("]") and ("'" in s or '"' in s):
            import ast

            try:
                val = ast.literal_eval(s)
                if isinstance(val, (list, tuple)):
                    return [str(v) for v in val]
            except (ValueError, SyntaxError):
                pass
        return [reference_list]
    return [str(x) for x in reference_list]


def _multi_detail(prediction: str, reference_list: str | Iterable[str], budget: _Budget, out: _Outcome) -> bool:
    refs = [item for ref in _flatten_refs(reference_list) for item in split_answers(ref)]
    preds = split_answers(prediction)
    if not refs or not preds or len(refs) != len(preds):
        return False
    p_norm = [normalize_answer(x) for x in preds]
    r_norm = [normalize_answer(x) for x in refs]
    # Pair off everything the fast paths settle; only the rest goes to the worker.
    left_p: list[_Norm] = []
    free = list(range(len(r_norm)))
    for p in p_norm:
        for idx in free:
            if _quick(p, r_norm[idx]) is True:
                free.remove(idx)
                break
        else:
            left_p.append(p)
    if not left_p:
        return True
    left_r = [r_norm[i] for i in free]
    if all(_quick(p, r) is False for p in left_p for r in left_r):
        return False
    return out.add(_WORKER.call("multi", (left_p, left_r), budget, (prediction, refs)))


def is_equiv_multi(prediction: str, reference_list: str | Iterable[str], timeout: float = 5.0) -> bool:
    """Multiple-answer equality (OlympiadBench ``is_multiple_answer``): order does not matter.

    ``reference_list`` is a list of answers (or a list written as a string, or one string
    with comma-separated answers); each entry is split at top-level commas too. The
    prediction is split the same way and the two must match one-to-one as multisets.
    ``timeout`` bounds the whole comparison; errors count as not equal, never raise.
    """
    if prediction is None or reference_list is None:
        return False
    try:
        return _multi_detail(str(prediction), reference_list, _Budget(timeout), _Outcome())
    except Exception as exc:  # noqa: BLE001 - grading must never abort a run
        _safe_log("is_equiv_multi", exc, prediction, reference_list)
        return False


@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one generation.

    ``timed_out``: the answer's budget ran out (counted as wrong). ``error``: something
    failed while grading it (a worker crash, an exception; counted as wrong, logged).
    """

    correct: bool
    extracted: str | None
    timed_out: bool
    error: bool = False


def _has_parts(reference: str) -> bool:
    try:
        return len(split_answers(reference)) > 1
    except Exception:  # noqa: BLE001
        return False


def grade(
    generation: str,
    reference: str | Sequence[str],
    timeout: float = 5.0,
    *,
    multiple: bool = False,
) -> GradeResult:
    """Extract the final answer from ``generation`` and compare it with ``reference``.

    ``reference`` may be a list: with ``multiple=True`` all its answers must be given
    (:func:`is_equiv_multi`); otherwise any one entry counts as correct. Several boxes in
    the final sentence are an answer set, compared as a set when the reference has
    several parts (or ``multiple``); otherwise the last box is the answer.

    ``timeout`` is the answer's whole budget in seconds: every reading, alternative
    reference and worker restart shares it, so ``grade`` returns within about
    ``timeout`` plus the parent's own bounded string work (a few ms; the first worker
    start in a process, up to ``WORKER_START_TIMEOUT``, is not charged). It never
    raises: errors are logged and give ``correct=False, error=True``.
    """
    budget = _Budget(timeout)
    out = _Outcome()
    extracted: str | None = None
    try:
        ex = _extract(generation or "")
        extracted = ex.answer
        if extracted is None or reference is None:
            return GradeResult(False, extracted, False)
        refs = [reference] if isinstance(reference, str) else [str(r) for r in reference]
        if ex.parts:
            as_set = multiple or any(_has_parts(r) for r in refs)
            candidates = [", ".join(ex.parts)] if as_set else [extracted]
        else:
            as_set = multiple
            candidates = [extracted, *ex.alternates]
        for cand in candidates:  # more than one only after "The answer is"
            if as_set:
                groups = [reference] if multiple else [[r] for r in refs]
                for group in groups:
                    if _multi_detail(cand, group, budget, out):
                        return GradeResult(True, cand, out.timed_out, out.error)
                    if out.timed_out:
                        break
            else:
                for ref in refs:
                    if _equiv_detail(cand, ref, budget, out):
                        return GradeResult(True, cand, out.timed_out, out.error)
                    if out.timed_out:
                        break
            if out.timed_out:
                break
        return GradeResult(False, candidates[0], out.timed_out, out.error)
    except Exception as exc:  # noqa: BLE001 - one bad answer must never abort a run
        _safe_log("grade", exc, generation, reference)
        return GradeResult(False, extracted, out.timed_out, True)
