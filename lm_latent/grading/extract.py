"""Extraction: the final answer a generation states (pure string work, linear, no sympy)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .latent import strip_latent
from .text import _BOOL_WORDS, _TOP_EQ_RE, _fold_unicode, _match_brace

_MAX_BOXES_TRIED = 20
_MAX_BOX_CHARS = 20000
#: What follows "The answer is" is read up to this many characters (a reference is never longer).
_MAX_TAIL_CHARS = 4000
#: Boxes at most this far apart, with no sentence end between them, form one answer set.
_MAX_BOX_GAP = 300
_MAX_SPAN_CHARS = 4000



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


