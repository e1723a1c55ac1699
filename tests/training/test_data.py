"""Training data: prompt / trace / solution splitting for MetaMathQA, GSM8K and custom JSONL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lm_latent.prompts import PROMPT_TEMPLATE, format_prompt
from lm_latent.training.data import (
    Example,
    examples_from_rows,
    load_examples,
    remove_calculator_annotations,
    split_response,
    synthetic_gsm8k,
    tokenize_examples,
)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_prompt_template_is_metamath():
    assert PROMPT_TEMPLATE == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n{query}\n\n### Response: Let's think step by step.")
    assert format_prompt("What is 2+2?").endswith("### Instruction:\nWhat is 2+2?\n\n### Response: Let's think step "
                                                  "by step.")


def test_split_metamath_response():
    ex = split_response(" What is 6*7? ", "First, 6*7 = 42.\nSo it is 42.\nThe answer is: 42")
    assert ex == Example("What is 6*7?", "First, 6*7 = 42.\nSo it is 42.", "The answer is: 42")
    # MetaMathQA's GSM-derived rows carry "#### N" *and* the answer line: the answer line wins.
    ex = split_response("q", "Half of 48 is 24.\n#### 24\nThe answer is: 24")
    assert ex.trace == "Half of 48 is 24.\n#### 24" and ex.solution == "The answer is: 24"
    # LaTeX answers are kept verbatim; the last answer line is the solution.
    ex = split_response("q", "The answer is: maybe 1. Then $x=\\frac{1}{2}$.\nThe answer is: \\frac{1}{2}")
    assert ex.trace == "The answer is: maybe 1. Then $x=\\frac{1}{2}$." and ex.solution == "The answer is: \\frac{1}{2}"


def test_split_gsm8k_answer():
    answer = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
              "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")
    ex = split_response("How many clips?", answer)
    assert ex.trace == ("Natalia sold 48/2 = 24 clips in May.\n"
                        "Natalia sold 48+24 = 72 clips altogether in April and May.")
    assert ex.solution == "The answer is: 72"
    assert split_response("q", "It costs 1,000 + 200 = <<1000+200=1200>>1,200.\n#### 1,200").solution == \
        "The answer is: 1200"
    assert remove_calculator_annotations("a <<2*3=6>>6 b <<x>>") == "a 6 b "


def test_rows_without_answers_are_skipped_or_rejected():
    assert split_response("q", "no final answer here") is None
    assert split_response("q", "text\nThe answer is:   ") is None
    assert split_response("q", "text\n####") is None
    rows = [{"query": "a", "response": "x\nThe answer is: 1"}, {"query": "b", "response": "nothing"}]
    assert len(examples_from_rows(rows)) == 1
    with pytest.raises(ValueError, match="no usable rows"):
        examples_from_rows([{"query": "b", "response": "nothing"}])


def test_segments_join_to_the_training_text():
    ex = Example("Q?", "Step 1.\nStep 2.", "The answer is: 3")
    prompt, trace, solution = ex.segments()
    assert prompt == format_prompt("Q?")
    assert trace == " Step 1.\nStep 2." and solution == "\nThe answer is: 3"
    assert ex.text == prompt + trace + solution
    empty = Example("Q?", "", "The answer is: 3")
    assert empty.segments()[1:] == ("", " The answer is: 3")


def test_load_jsonl_formats(tmp_path: Path):
    gsm = _write_jsonl(tmp_path / "gsm.jsonl", synthetic_gsm8k(5, seed=1))
    exs = load_examples(gsm)
    assert len(exs) == 5
    assert all("<<" not in e.trace and re.fullmatch(r"The answer is: \d+", e.solution) for e in exs)
    meta = _write_jsonl(tmp_path / "meta.jsonl", [{"query": "q1", "response": "r\nThe answer is: 7", "type": "x"}])
    assert load_examples(meta) == [Example("q1", "r", "The answer is: 7")]
    custom = _write_jsonl(tmp_path / "custom.jsonl", [{"prompt_text": "q", "target": "t\n#### 5"}] * 3)
    with pytest.raises(ValueError, match="query_field"):
        load_examples(custom)
    assert load_examples(custom, query_field="prompt_text", response_field="target", limit=2) == \
        [Example("q", "t", "The answer is: 5")] * 2
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"question": "q", "answer": "a\n#### 1"}]), encoding="utf-8")
    assert len(load_examples(listed)) == 1
    with pytest.raises(FileNotFoundError):
        load_examples(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a\\n#### 1"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_examples(bad)


def test_tokenize_examples(tiny_tokenizer_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    exs = examples_from_rows(synthetic_gsm8k(7, seed=2))
    toks = tokenize_examples(exs, tok, batch_size=3, progress=False)
    assert len(toks) == 7
    for ex, t in zip(exs, toks):
        assert t.prompt_ids[0] == tok.bos_token_id and t.solution_ids[-1] == tok.eos_token_id
        assert tok.bos_token_id not in t.trace_ids
        assert tok.decode(t.prompt_ids, skip_special_tokens=True) == ex.prompt
        assert tok.decode(t.trace_ids) == ex.segments()[1]
        assert tok.decode(t.input_ids, skip_special_tokens=True) == ex.text
        assert len(t) == len(t.input_ids)


@pytest.mark.parametrize("name,rows", [("train.jsonl", 7473), ("test.jsonl", 1319)])
def test_real_gsm8k(shared_data: Path, name: str, rows: int):
    exs = load_examples(shared_data / "gsm8k" / name)
    assert len(exs) == rows
    assert all(re.fullmatch(r"The answer is: -?\d+(\.\d+)?", e.solution) for e in exs)
    assert not any("<<" in e.trace or ">>" in e.trace or "####" in e.trace for e in exs)
    assert all(e.trace and e.query for e in exs)
    first = exs[0] if name == "train.jsonl" else None
    if first is not None:
        assert first.trace.startswith("Natalia sold 48/2 = 24 clips in May.")
        assert first.solution == "The answer is: 72"
