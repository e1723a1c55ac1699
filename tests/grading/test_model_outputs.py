"""Hand-written model outputs with a person's verdict (``data/model_outputs.jsonl``).

Why: the other tables test one rule each; these are whole outputs in the styles of the
models the project evaluates (Llama-3 base and instruct, Qwen2.5-Math, DeepSeek-R1
distills with ``<think>``, MetaMath's "The answer is: X") across the seven benchmarks'
answer types, each labelled by reading it. ``benchmarks/grader_agreement.py --cases``
grades the same file with math-verify and the Qwen2.5-Math grader for comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_latent.grading import grade

DATA = Path(__file__).resolve().parent / "data" / "model_outputs.jsonl"
CASES = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
BENCHMARKS = {"gsm8k", "math", "college_math", "deepmind_mathematics", "fresh_gaokao_math_2023", "olympiadbench",
              "theoremqa"}


def test_the_set_covers_the_benchmarks_and_styles():
    assert len(CASES) >= 100
    assert {c["bench"] for c in CASES} == BENCHMARKS
    assert {c["style"] for c in CASES} == {"llama3_base", "llama3_instruct", "qwen25_math", "r1_distill", "metamath"}
    assert sum(not c["label"] for c in CASES) >= 30  # near misses, not only right answers
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['id']}-{c['bench']}-{c['type']}" for c in CASES])
def test_model_output(case):
    res = grade(case["gen"], case["ref"], timeout=10.0, multiple=case["multiple"])
    assert res.correct is case["label"], (case["gen"][-120:], case["ref"], res)
    assert not res.timed_out and not res.error
