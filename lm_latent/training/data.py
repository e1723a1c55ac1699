"""Training data: rows -> (prompt, trace, solution), split in one place, then token ids.

Sources: MetaMathQA from the hub (``query``/``response``; the response ends with "The answer
is: X"), GSM8K-format JSONL (``question``/``answer`` ending in ``#### N``, with ``<<a*b=c>>``
calculator annotations), or any JSON/JSONL file with given field names. Every row goes
through :func:`split_response`, so the trace/solution boundary is defined once.
"""

from __future__ import annotations

import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from lm_latent.prompts import format_prompt
from lm_latent.utils.records import DataFileError, Rows, read_records

logger = logging.getLogger(__name__)

ANSWER_PREFIX = "The answer is:"
GSM8K_MARK = "####"
TRACE_SEPARATOR = " "  # between the prompt ("... step by step.") and the trace
SOLUTION_SEPARATOR = "\n"  # between the trace and "The answer is: X"
_CALCULATOR = re.compile(r"<<[^<>]*>>")
_FIELD_PAIRS = (("query", "response"), ("question", "answer"), ("problem", "solution"),
                ("instruction", "output"))


@dataclass(frozen=True)
class Example:
    """One training sample X = P + C + S, as text."""

    query: str
    trace: str
    solution: str

    @property
    def prompt(self) -> str:
        return format_prompt(self.query)

    def segments(self) -> tuple[str, str, str]:
        """The exact strings tokenized for P, C and S (separators included); ``"".join`` is the text."""
        trace = TRACE_SEPARATOR + self.trace if self.trace else ""
        solution = (SOLUTION_SEPARATOR if self.trace else TRACE_SEPARATOR) + self.solution
        return self.prompt, trace, solution

    @property
    def text(self) -> str:
        return "".join(self.segments())


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of P (with the tokenizer's BOS), C and S (with EOS)."""

    prompt_ids: list[int]
    trace_ids: list[int]
    solution_ids: list[int]

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.trace_ids + self.solution_ids

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.trace_ids) + len(self.solution_ids)


def remove_calculator_annotations(text: str) -> str:
    """``48/2 = <<48/2=24>>24`` -> ``48/2 = 24`` (GSM8K's calculator markup is not prose)."""
    return _CALCULATOR.sub("", text)


def split_response(query: str, response: str) -> Example | None:
    """The one place a response becomes trace + solution; ``None`` when it has no final answer.

    MetaMathQA: trace = text before the last "The answer is:", solution = that line.
    GSM8K: trace = text before "####" without calculator annotations, solution =
    "The answer is: N" (thousands separators dropped, as GSM8K graders do).
    """
    query, response = query.strip(), response.strip()
    idx = response.rfind(ANSWER_PREFIX)
    if idx >= 0:
        answer = response[idx + len(ANSWER_PREFIX):].strip()
        if not answer:
            return None
        return Example(query, response[:idx].strip(), f"{ANSWER_PREFIX} {answer}")
    idx = response.rfind(GSM8K_MARK)
    if idx >= 0:
        answer = response[idx + len(GSM8K_MARK):].strip().replace(",", "")
        if not answer:
            return None
        trace = remove_calculator_annotations(response[:idx]).strip()
        return Example(query, trace, f"{ANSWER_PREFIX} {answer}")
    return None


def read_rows(path: str | os.PathLike) -> Rows:
    """Rows of a ``.jsonl`` (one object per line) or ``.json`` (a list) file, each with its location.

    The project's one reader (:func:`lm_latent.utils.records.read_records`): broken lines, non-objects,
    empty files and non-UTF-8 bytes are a :class:`DataFileError` naming the file and line.
    """
    return read_records(path)


def _pick_fields(row: dict, query_field: str | None, response_field: str | None, source: str) -> tuple[str, str]:
    if query_field and response_field:
        return query_field, response_field
    for q, r in _FIELD_PAIRS:
        if (query_field or q) in row and (response_field or r) in row:
            return query_field or q, response_field or r
    raise ValueError(f"{source}: cannot tell the question and response fields from {sorted(row)}; "
                     f"pass query_field/response_field (--query-field/--response-field)")


def examples_from_rows(rows: Iterable[dict], source: str = "rows", query_field: str | None = None,
                       response_field: str | None = None, limit: int | None = None) -> list[Example]:
    """Split rows; rows without a final answer are skipped and counted in the log."""
    out: list[Example] = []
    skipped, fields = 0, None
    where = rows.where if isinstance(rows, Rows) else (lambda i: f"{source}, row {i}")
    for i, row in enumerate(rows):
        if limit is not None and len(out) >= limit:
            break
        if fields is None:
            fields = _pick_fields(row, query_field, response_field, where(i))
        missing = [f for f in fields if f not in row]
        if missing:
            raise DataFileError(f"{where(i)}: row has no field {missing[0]!r} (fields found: {sorted(row)}; "
                                f"the first row set the fields to {list(fields)})")
        ex = split_response(str(row[fields[0]]), str(row[fields[1]]))
        if ex is None:
            skipped += 1
        else:
            out.append(ex)
    if skipped:
        logger.warning("%s: skipped %d rows without a final answer ('%s' or '%s')", source, skipped,
                       ANSWER_PREFIX, GSM8K_MARK)
    if not out:
        raise ValueError(f"{source}: no usable rows (need a response ending in '{ANSWER_PREFIX} X' "
                         f"or '{GSM8K_MARK} N')")
    return out


def load_examples(source: str | os.PathLike, split: str = "train", limit: int | None = None,
                  query_field: str | None = None, response_field: str | None = None) -> list[Example]:
    """A local ``.jsonl``/``.json`` file, or a hub dataset id such as ``meta-math/MetaMathQA``."""
    path = Path(source).expanduser()
    if path.is_file():
        logger.info("loading training data from file %s", path)
        return examples_from_rows(read_rows(path), str(path), query_field, response_field, limit)
    if path.exists():
        raise ValueError(f"{source} is not a file: give a .jsonl/.json file or a hub dataset id")
    if str(source).endswith((".json", ".jsonl")):
        raise FileNotFoundError(f"training data file {source} does not exist")
    import datasets

    logger.info("loading training data from the Hugging Face hub: %s (split %s)", source, split)
    ds = datasets.load_dataset(str(source), split=split)
    return examples_from_rows(ds, str(source), query_field, response_field, limit)


def tokenize_examples(examples: Sequence[Example], tokenizer, batch_size: int = 1000,
                      progress: bool = True) -> list[TokenizedExample]:
    """Tokenize P (with BOS), C and S (plus EOS) separately, so chunks align with the trace start."""
    from tqdm.auto import tqdm

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out: list[TokenizedExample] = []
    for start in tqdm(range(0, len(examples), batch_size), desc="Tokenizing", disable=not progress,
                      unit="batch"):
        parts = [ex.segments() for ex in examples[start:start + batch_size]]
        prompts = tokenizer([p for p, _, _ in parts])["input_ids"]
        traces = tokenizer([c for _, c, _ in parts], add_special_tokens=False)["input_ids"]
        solutions = tokenizer([s for _, _, s in parts], add_special_tokens=False)["input_ids"]
        out.extend(TokenizedExample(list(p), list(c), list(s) + eos)
                   for p, c, s in zip(prompts, traces, solutions, strict=True))
    return out


def shuffled_order(n: int, epochs: int, seed: int) -> list[int]:
    """Indices for ``epochs`` passes, each its own seeded permutation (a fixed, resumable order)."""
    order: list[int] = []
    for epoch in range(max(1, epochs)):
        perm = list(range(n))
        random.Random(seed * 1000 + epoch).shuffle(perm)
        order.extend(perm)
    return order


NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana")
THINGS = ("apples", "pencils", "marbles", "cookies", "stickers", "books", "coins", "eggs")


def synthetic_gsm8k(n: int, seed: int = 0) -> list[dict]:
    """GSM8K-format rows (with calculator annotations) for tests, benchmarks and smoke runs."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        who, what = rng.choice(NAMES), rng.choice(THINGS)
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
        q = (f"{who} has {a} {what} and buys {b} more. Then {who} gives away {c} {what}. "
             f"How many {what} does {who} have now?")
        ans = (f"{who} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {what} after buying.\n"
               f"After giving away {c}, {who} has {a + b} - {c} = <<{a + b}-{c}={a + b - c}>>{a + b - c} {what}.\n"
               f"#### {a + b - c}")
        rows.append({"question": q, "answer": ans})
    return rows
