"""Extraction: the final answer a generation states (pure string work, linear, no sympy)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .latent import strip_latent
from .text import _BOOL_WORDS, _TOP_EQ_RE, _fold_unicode, _match_brace, _ordinary_words

_MAX_BOXES_TRIED = 20
_MAX_BOX_CHARS = 20000
#: What follows "The answer is" is read up to this many characters (a reference is never longer).
_MAX_TAIL_CHARS = 4000
#: Boxes at most this far apart, with no sentence end between them, form one answer set.
_MAX_BOX_GAP = 300
_MAX_SPAN_CHARS = 4000
#: Bare LaTeX (no delimiters) is looked for only this far back from the end of the text.
_BARE_WINDOW = 2000


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
    r"answer\s{0,20}is\s{0,20}:?"
    r"|(?:^|\n)[ \t]{0,20}[*#_]{0,6}[ \t]{0,20}(?:final\s{1,20})?answer[ \t]{0,20}[*_]{0,4}[ \t]{0,20}:",
    re.IGNORECASE,
)
_HOPE_RE = re.compile(r"I hope it is correct", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.\s+(?=[A-Z])|\n\s*\n")
#: A number as a reader reads it: thousands grouped by ``,``, a space, ``\,``, ``{,}`` or ``\!``
#: (groups of exactly three digits), a decimal part, ``/b``, a trailing ``%``.
_NUMBER_RE = re.compile(
    r"(?<![\w.])(?:\d{1,3}(?:(?:,|,?\\![ ]?|\{,\}|\\,|\\ |[ ])\d{3})+(?![\d-])|\d+)(?:\.\d+)?(?:/\d+)?(?:[ ]?\\?%)?"
    r"|(?<![\w.])\.\d+(?:[ ]?\\?%)?"
)


def _tidy_tail(rest: str) -> str:
    rest = rest.strip()
    for _ in range(3):
        rest = rest.strip().strip("*").strip()
        if rest.endswith(".") and not rest.endswith("\\."):
            rest = rest[:-1]
        if rest.startswith("$") and rest.endswith("$") and len(rest) > 1 and "$" not in rest.strip("$"):
            rest = rest.strip("$")
    return rest.strip()


#: What a sentence says just before the value it states: "The largest $n$ is 34", "x = 5".
_LINKING_RE = re.compile(
    r"(?:(?<![A-Za-z])(?:is|are|was|were|be|equals?|equal\s+to|has|have|had|gets?|got|gives?|makes?|yields?"
    r"|becomes?)|=|:|\\approx|≈)"
    r"(?:\s+(?:approximately|about|around|roughly|exactly|only|just|then|therefore|thus))*\s*$",
    re.IGNORECASE,
)
_QUALIFIER_ONLY_RE = re.compile(r"^\s*(?:approximately|about|around|roughly|exactly|only|just)\s*$", re.IGNORECASE)


def _stated_value(sentence: str) -> str | None:
    """The value a sentence states after "is"/"="/"has" (``Tom has 8 marbles left`` -> ``8``),
    when that is its last value; None when it states none that way."""
    if not _ordinary_words(sentence.replace("$", " ")):
        return None
    value, _, start = _final_statement(sentence)
    if value is None or start < 0:
        return None
    before = sentence[:start]
    if _LINKING_RE.search(before[-80:]) or _QUALIFIER_ONLY_RE.match(before):
        return value
    return None


def _answer_tails(rest: str) -> list[str]:
    """What follows "The answer is": its first sentence (outside math), then all of it.

    The first sentence is the answer ("18. I hope..." / "$5$. This is because...");
    the whole tail is kept as a second candidate because some references are
    themselves several sentences long. A sentence that states a value ("Final Answer: The
    largest $n$ is 34.") gives that value first. Only the first ``_MAX_TAIL_CHARS`` are
    read, so the work is bounded whatever follows (32,000 newlines took 5 s through a regex).
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
    stated = _stated_value(first) if first else None
    return [c for c in dict.fromkeys((stated, first, full)) if c]


_TEXT_GROUP_RE = re.compile(r"\\(?:text|mbox|textrm|textbf|textit|mathrm|operatorname)\s*\{[^{}]*\}")
_INNER_SENTENCE_RE = re.compile(r"[.!?]\s+[A-Z]")
#: ``$5 and``, ``$ 15 for``, ``$1,250.``: a ``$`` before a number that no math follows is money.
_DOLLAR_AMOUNT_RE = re.compile(r"\$[ ]?\d[\d,]*(?:\.\d+)?(?=[ \t]+[A-Za-z]{2}|[.,;:!?)](?:\s|$)|[ \t]*(?:\n|$))")


def _is_math(content: str) -> bool:
    """Can ``content`` (between two ``$``) be a formula? Not empty, not a sentence, not cut
    off after an operator (``$10 - $3 = $7`` holds no span)."""
    c = content.strip()
    if not c or c[-1] in "+-*/=^_":
        return False
    c = _TEXT_GROUP_RE.sub(" ", c)
    return len(_ordinary_words(c)) < 2 and not _INNER_SENTENCE_RE.search(c)


def _inline_close(text: str, i: int) -> int:
    """The ``$`` closing the inline span opened at ``i``, or -1 (escaped ``\\$`` skipped)."""
    j = i + 1
    limit = min(len(text), i + 1 + _MAX_SPAN_CHARS)
    while True:
        j = text.find("$", j, limit)
        if j < 0 or text[j - 1] != "\\":
            break
        j += 1
    if j < 0 or "\n\n" in text[i:j]:
        return -1
    return j


def _math_spans(text: str) -> list[tuple[int, int, str]]:
    """``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]`` as (start, end, content); linear.

    An inline span is a balanced ``$...$``. Tight against its content (pandoc's rule) it is
    always one; with spaces inside the delimiters (models write ``$ \\sqrt{2} $``) its
    content must be able to be a formula and its ``$`` must not be money, which is
    recognised by what follows the number: "paid $5 and got $3 back" and "$ 15 for the
    shirt" hold no math, ``$5$``, ``$ 5 $`` and ``$2\\,500$`` do.
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
            j = _inline_close(text, i)
            # a closing ``$`` right before a digit opens an amount ("$5 and $3" is no span)
            if j > 0 and not (j + 1 < n and text[j + 1].isdigit()):
                content = text[i + 1 : j]
                tight = not content[:1].isspace() and not content[-1:].isspace()
                if tight or (not _DOLLAR_AMOUNT_RE.match(text, i) and _is_math(content)):
                    spans.append((i, j + 1, content))
                    i = j + 1
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


def _masked(text: str, spans: list[tuple[int, int, str]], fill: str = " ") -> str:
    """``text`` with every math span blanked (same length), for searches outside math."""
    if not spans:
        return text
    out, last = [], 0
    for a, b, _ in spans:
        out.append(text[last:a])
        out.append(fill * (b - a))
        last = b
    out.append(text[last:])
    return "".join(out)


_CMD_AT_RE = re.compile(r"\\[A-Za-z]+\*?")
_SPACING_CMDS = frozenset(r"\quad \qquad \text \mbox \textrm \mathrm \rm \displaystyle".split())
#: Commands a single letter before them may be multiplied by or related with ("a \cdot b").
_BINARY_CMDS = frozenset(r"\cdot \times \div \pm \mp \le \leq \ge \geq \ne \neq \in \approx \equiv \cup \cap".split())
#: What a run may start with that is not its value: separators, or the word "a"/"I" before a
#: non-operator ("gives a \frac{1}{2} chance"; but "a \cdot b" keeps its "a").
_RUN_LEAD_RE = re.compile(r"[,'=:]*\s*(?:(?:a|A|I)\s+(?!\\(?:" + "|".join(c[1:] for c in _BINARY_CMDS) + r")\b))?")
_RUN_TRAILING_UNIT_RE = re.compile(r"(?<=[\d}])\s+[JNmsCVAKWgLT]$")


def _bare_runs(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    r"""LaTeX written without delimiters (``we get -\frac{10}{9}``), as (start, end, content).

    A run is a stretch of math tokens (commands with their brace groups, numbers,
    operators, brackets, single letters) outside the spans, in the last ``_BARE_WINDOW``
    characters; a word of two or more letters, a sentence end or a new line ends it.
    Only runs with a LaTeX command count: plain arithmetic stays the numbers' business.
    """
    base = max(0, len(text) - _BARE_WINDOW)
    s = _masked(text[base:], [(a - base, b - base, c) for a, b, c in spans if b > base], "\0")
    runs: list[tuple[int, int, str]] = []
    n = len(s)
    i = 0
    start, last, cmd = -1, -1, False

    def close() -> None:
        if start >= 0 and cmd:
            content = s[start:last]
            m = _RUN_LEAD_RE.match(content)
            lead = m.end() if m else 0
            content = _RUN_TRAILING_UNIT_RE.sub("", content[lead:].rstrip(" ,'"))
            if re.search(r"[\dA-Za-z]", _CMD_AT_RE.sub("", content)):
                runs.append((base + start + lead, base + start + lead + len(content), content))

    while i < n:
        c = s[i]
        end = -1
        is_cmd = False
        if c == "\\":
            m = _CMD_AT_RE.match(s, i)
            if m:
                end = m.end()
                is_cmd = m.group(0).rstrip("*") not in _SPACING_CMDS
                if not is_cmd and m.group(0) in (r"\text", r"\mbox", r"\textrm", r"\mathrm"):
                    k = end
                    while k < n and s[k] == " ":
                        k += 1
                    if k < n and s[k] == "{":
                        close_at = _match_brace(s, k, 400)
                        end = close_at + 1 if close_at is not None else -1
            elif i + 1 < n and s[i + 1] in ",;:!{}|% ":
                end = i + 2
        elif c == "{":
            close_at = _match_brace(s, i, 400)
            end = close_at + 1 if close_at is not None else -1
        elif c.isdigit():
            m = re.compile(r"\d+(?:\.\d+)?").match(s, i)
            assert m is not None  # s[i] is a digit
            end = m.end()
        elif c in "+-*/^_=<>()[]|',!":
            end = i + 1
        elif c.isalpha():
            j = i
            while j < n and s[j].isalpha():
                j += 1
            if j - i == 1:
                end = j
            else:
                close()
                start, cmd = -1, False
                i = j
                continue
        elif c in " \t":
            i += 1
            continue
        if end < 0:
            close()
            start, cmd = -1, False
            i += 1
            continue
        if start < 0:
            start = i
        cmd = cmd or is_cmd
        last = end
        i = end
    close()
    return runs


_NAME_RE = re.compile(r"\s*(?:[A-Za-z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?\s*")
_OPTION_END_RE = re.compile(r"\(([a-eA-E])\)[\s.!*]*$")
_LIST_ITEM_RE = re.compile(r"(?<![\w.])(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)\s*(,\s*(?:and\s+)?|\s+and\s+)$")
_TUPLE_BEFORE_RE = re.compile(r"[(\[]\s*(?:-?\d+(?:\.\d+)?\s*,\s*)+-?$")


def _number_value(masked: str, num: re.Match) -> tuple[int, str]:
    """The value a last number states, and where it starts: the number (signed), or the
    tuple ``(0.354, 0.447)`` or the list ``2, 3 and 7`` (one comma at least) it ends."""
    a, b, value = num.start(), num.end(), num.group(0)
    if a > 0 and masked[a - 1] == "-" and (a < 2 or not (masked[a - 2].isalnum() or masked[a - 2] in ")]}")):
        a, value = a - 1, "-" + value
    tup = _TUPLE_BEFORE_RE.search(masked, max(0, a - 300), a)
    after = re.compile(r"\s*[)\]]").match(masked, b)
    if tup and after:
        return tup.start(), masked[tup.start() : after.end()]
    items, pos, comma = [value], a, False
    while len(items) < 50:
        m = _LIST_ITEM_RE.search(masked, max(0, pos - 60), pos)
        if not m:
            break
        items.insert(0, m.group(1))
        comma = comma or "," in m.group(2)
        pos = m.start()
    return (pos, ", ".join(items)) if comma else (a, value)


def _final_statement(text: str) -> tuple[str | None, tuple[str, ...], int]:
    """No box, "answer is" or ``####``: the last math span of the final sentence that has
    math or a number, else that sentence's last number (signed; the list or tuple it ends).
    LaTeX without delimiters counts as a span. Returns the answer, the whole span as an
    alternate reading when it was reduced (``16-3-4=9`` -> ``9``; a reference may itself
    be ``\\log_6(1/36) = -2``), and where the answer starts (-1 when there is none)."""
    spans = _math_spans(text)
    bare = _bare_runs(text, spans)
    if bare:
        spans = sorted(spans + bare)
    masked = _masked(text, spans)
    num = None
    for num in _NUMBER_RE.finditer(masked):  # noqa: B007 - the last match is wanted
        pass
    # "The largest $n$ is 34": a span that only names a variable states no value
    values = [s for s in spans if s[2].strip() and not _NAME_RE.fullmatch(s[2])]
    last_span = values[-1] if values else next((s for s in reversed(spans) if s[2].strip()), None)
    if not values and last_span is not None and num is not None:
        last_span = None
    if last_span is None and num is None:
        opt = _OPTION_END_RE.search(masked[-200:])
        if opt:
            return f"({opt.group(1).lower()})", (), len(text) - 200 + opt.start()
        return None, (), -1

    def from_span(span: tuple[int, int, str]) -> tuple[str, tuple[str, ...], int]:
        reduced, whole = _span_answer(span[2]), span[2].strip()
        return reduced, (whole,) if whole != reduced else (), span[0]

    if last_span is not None and (num is None or num.start() < last_span[0]):
        return from_span(last_span)
    assert num is not None  # both None returned above
    # The last thing stated is a plain number: a span earlier in its sentence still wins.
    if last_span is not None:
        between = masked[last_span[1] : num.start()]
        if not re.search(r"[.!?](?=\s)|\n", between):
            return from_span(last_span)
    a, value = _number_value(masked, num)
    return value, (), a


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
    if "think>" in text:
        close = text.rfind("</think>")
        if close >= 0:
            after = _extract(text[close + 8 :])
            if after.answer is not None:
                return after  # what is said after the reasoning is the answer
        elif text.lstrip().startswith("<think>"):
            return _Extraction(None)  # cut off while thinking: no answer was given
    boxes = _boxes(text)
    box_pos = boxes[-1][0] if boxes else -1
    last_is = None
    for last_is in _ANSWER_IS_RE.finditer(text):  # noqa: B007 - the last match is wanted
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
    answer, alternates, _ = _final_statement(text)
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


