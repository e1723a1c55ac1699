"""The seven math benchmarks: where their rows come from and how a row becomes a doc.

Every doc has ``problem`` and ``answer`` (a string the grader compares with), plus
``answer_type`` and ``is_multiple_answer`` where a benchmark has them. By default rows come
from public sources; ``--metadata '{"data_dir": PATH}'`` or ``$LM_LATENT_DATA_DIR`` switch to
a local folder laid out like the project's ``shared/data``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DATA_DIR_ENV = "LM_LATENT_DATA_DIR"
_DART = "https://raw.githubusercontent.com/hkust-nlp/dart-math/219b324/data/dsets"
_QWEN = "https://raw.githubusercontent.com/QwenLM/Qwen2.5-Math/a45202b/evaluation/data"
_MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                  "number_theory", "prealgebra", "precalculus")


def _read_local(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def _hub(path: str, name: str | None = None, split: str = "test") -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        import datasets

        return list(datasets.load_dataset(path, name, split=split))
    return load


def _url(url: str) -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        import datasets

        return list(datasets.load_dataset("json", data_files={"test": url}, split="test"))
    return load


def _math_hub() -> list[dict]:
    import datasets

    rows = []
    for subject in _MATH_SUBJECTS:
        rows.extend(datasets.load_dataset("EleutherAI/hendrycks_math", subject, split="test"))
    return rows


def _answer_text(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_answer_text(v) for v in value) + "]"
    return str(value).strip()


def _gsm8k(row: dict) -> dict:
    return {"problem": row["question"], "answer": row["answer"].split("####")[-1].strip().replace(",", ""),
            "solution": row["answer"]}


def _math(row: dict) -> dict:
    from lm_latent.grading import extract_answer

    answer = row.get("answer") or extract_answer(row["solution"]) or ""
    return {"problem": row["problem"], "answer": answer, "solution": row["solution"],
            "level": row.get("level", ""), "type": row.get("type") or row.get("subject", "")}


def _question_answer(row: dict) -> dict:
    return {"problem": row["question"], "answer": _answer_text(row["answer"])}


def _olympiad(row: dict) -> dict:
    answers = [a.strip() for a in row["final_answer"]]
    question = row["question"] if not row.get("context") else f"{row['context']}\n{row['question']}"
    return {"problem": question, "answer": ", ".join(answers), "answer_type": row.get("answer_type") or "",
            "is_multiple_answer": bool(row.get("is_multiple_answer")), "unit": row.get("unit") or ""}


def _theoremqa(row: dict) -> dict:
    return {"problem": row["Question"], "answer": _answer_text(row["Answer"]),
            "answer_type": row["Answer_type"], "has_picture": bool(row.get("Picture"))}


@dataclass(frozen=True)
class Benchmark:
    name: str
    local_file: str
    rows: int
    public: Callable[[], list[dict]]
    to_doc: Callable[[dict], dict]


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("gsm8k", "gsm8k/test.jsonl", 1319, _hub("openai/gsm8k", "main"), _gsm8k),
    Benchmark("math", "math/test.jsonl", 5000, _math_hub, _math),
    Benchmark("math500", "math500/test.jsonl", 500, _hub("HuggingFaceH4/MATH-500"), _math),
    Benchmark("college_math", "college_math/test.jsonl", 2818,
              _url(f"{_QWEN}/college_math/test.jsonl"), _question_answer),
    Benchmark("deepmind_mathematics", "deepmind_mathematics/test.json", 1000,
              _url(f"{_DART}/deepmind-mathematics.json"), _question_answer),
    Benchmark("fresh_gaokao_math_2023", "fresh_gaokao_math_2023/test.jsonl", 30,
              _url(f"{_DART}/mwpbench/fresh-gaokao-math-2023.jsonl"), _question_answer),
    Benchmark("olympiadbench_math", "olympiadbench/test.json", 675,
              _url(f"{_DART}/olympiadbench/OE_TO_maths_en_COMP.json"), _olympiad),
    Benchmark("theoremqa", "theoremqa/test.json", 800, _url(f"{_DART}/theoremqa.json"), _theoremqa),
]}


def data_dir_from(metadata: dict) -> Path | None:
    value = metadata.get("data_dir") or os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def load_docs(name: str, data_dir: str | os.PathLike | None = None) -> list[dict]:
    """All test docs of one benchmark, from ``data_dir`` when given, else from its public source."""
    bench = BENCHMARKS[name]
    if data_dir is not None:
        path = Path(data_dir) / bench.local_file
        if not path.is_file():
            raise FileNotFoundError(f"{name}: {path} not found; data_dir must be laid out like shared/data "
                                    f"(expected {bench.local_file} under {data_dir})")
        rows = _read_local(path)
    else:
        rows = bench.public()
    docs = [bench.to_doc(dict(row)) for row in rows]
    for i, doc in enumerate(docs):
        doc["idx"] = i
    return docs


def _dataset(name: str):
    def custom_dataset(**metadata):
        """lm-eval's ``custom_dataset`` hook: called with task metadata, model args and --metadata."""
        import datasets

        docs = load_docs(name, data_dir_from(metadata))
        columns = sorted({k for d in docs for k in d})
        table = {k: [_column_value(d.get(k)) for d in docs] for k in columns}
        return datasets.DatasetDict({"test": datasets.Dataset.from_dict(table)})
    custom_dataset.__name__ = f"load_{name}"
    return custom_dataset


def _column_value(value):
    return "" if value is None else value


load_gsm8k = _dataset("gsm8k")
load_math = _dataset("math")
load_math500 = _dataset("math500")
load_college_math = _dataset("college_math")
load_deepmind_mathematics = _dataset("deepmind_mathematics")
load_fresh_gaokao_math_2023 = _dataset("fresh_gaokao_math_2023")
load_olympiadbench_math = _dataset("olympiadbench_math")
load_theoremqa = _dataset("theoremqa")
