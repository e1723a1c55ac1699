"""The seven math benchmarks: where their rows come from and how a row becomes a doc.

Every doc has ``problem`` and ``answer`` (a string the grader compares with), plus
``answer_type`` and ``is_multiple_answer`` where a benchmark has them. By default rows come
from public sources; ``--metadata '{"data_dir": PATH}'`` or ``$LM_LATENT_DATA_DIR`` switch to
a local folder laid out like the project's ``shared/data``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lm_latent.utils.records import DataFileError, read_records, row_error

DATA_DIR_ENV = "LM_LATENT_DATA_DIR"
_DART = "https://raw.githubusercontent.com/hkust-nlp/dart-math/219b324/data/dsets"
_QWEN = "https://raw.githubusercontent.com/QwenLM/Qwen2.5-Math/a45202b/evaluation/data"
_MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                  "number_theory", "prealgebra", "precalculus")


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


_TEXT, _LIST, _VALUE = "text", "list", "value"  # what a required field must hold


@dataclass(frozen=True)
class Benchmark:
    name: str
    local_file: str
    rows: int
    public: Callable[[], list[dict]]
    to_doc: Callable[[dict], dict]
    required: dict = field(default_factory=dict)  # field -> _TEXT / _LIST / _VALUE, checked per row

    def doc(self, row: dict, where: str) -> dict:
        """``to_doc`` after checking the fields it needs: one clear error per bad row."""
        for name, kind in self.required.items():
            if name not in row:
                raise DataFileError(f"{where}: {self.name} row has no field {name!r} (fields found: "
                                    f"{sorted(row)})")
            value = row[name]
            ok = {_TEXT: isinstance(value, str), _LIST: isinstance(value, list), _VALUE: value is not None}[kind]
            if not ok:
                want = {_TEXT: "a string", _LIST: "a list", _VALUE: "a value"}[kind]
                raise DataFileError(f"{where}: field {name!r} of this {self.name} row must be {want}, "
                                    f"found {value!r:.60}")
        try:
            return self.to_doc(dict(row))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise row_error(where, row, exc, f"{self.name} row") from None


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("gsm8k", "gsm8k/test.jsonl", 1319, _hub("openai/gsm8k", "main"), _gsm8k,
              {"question": _TEXT, "answer": _TEXT}),
    Benchmark("math", "math/test.jsonl", 5000, _math_hub, _math,
              {"problem": _TEXT, "solution": _TEXT}),
    Benchmark("math500", "math500/test.jsonl", 500, _hub("HuggingFaceH4/MATH-500"), _math,
              {"problem": _TEXT, "solution": _TEXT}),
    Benchmark("college_math", "college_math/test.jsonl", 2818,
              _url(f"{_QWEN}/college_math/test.jsonl"), _question_answer,
              {"question": _TEXT, "answer": _VALUE}),
    Benchmark("deepmind_mathematics", "deepmind_mathematics/test.json", 1000,
              _url(f"{_DART}/deepmind-mathematics.json"), _question_answer,
              {"question": _TEXT, "answer": _VALUE}),
    Benchmark("fresh_gaokao_math_2023", "fresh_gaokao_math_2023/test.jsonl", 30,
              _url(f"{_DART}/mwpbench/fresh-gaokao-math-2023.jsonl"), _question_answer,
              {"question": _TEXT, "answer": _VALUE}),
    Benchmark("olympiadbench_math", "olympiadbench/test.json", 675,
              _url(f"{_DART}/olympiadbench/OE_TO_maths_en_COMP.json"), _olympiad,
              {"question": _TEXT, "final_answer": _LIST}),
    Benchmark("theoremqa", "theoremqa/test.json", 800, _url(f"{_DART}/theoremqa.json"), _theoremqa,
              {"Question": _TEXT, "Answer": _VALUE, "Answer_type": _TEXT}),
]}


def data_dir_from(metadata: dict) -> Path | None:
    """``data_dir`` from ``--metadata``, else ``$LM_LATENT_DATA_DIR``; ``None`` means the public sources.

    An explicit but empty ``data_dir`` is an error, never a silent switch to the hub. An empty
    environment variable counts as unset (the shell convention).
    """
    if "data_dir" in metadata and metadata["data_dir"] is not None:
        value = str(metadata["data_dir"]).strip()
        if not value:
            raise DataFileError("data_dir is empty: give the folder that holds the benchmark files "
                                "(laid out like shared/data), or leave data_dir out to use the public sources")
    else:
        value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def load_docs(name: str, data_dir: str | os.PathLike | None = None) -> list[dict]:
    """All test docs of one benchmark, from ``data_dir`` when given, else from its public source."""
    bench = BENCHMARKS[name]
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise FileNotFoundError(f"{name}: data_dir {data_dir} is not a folder; it must be laid out like "
                                    f"shared/data (expected {bench.local_file} under it)")
        path = data_dir / bench.local_file
        if not path.is_file():
            raise FileNotFoundError(f"{name}: {path} not found; data_dir must be laid out like shared/data "
                                    f"(expected {bench.local_file} under {data_dir})")
        local = read_records(path)
        rows: list[dict] = local
        where: Callable[[int], str] = local.where
    else:
        rows = bench.public()
        where = lambda i: f"{name} (public source), row {i}"  # noqa: E731
    docs = [bench.doc(row, where(i)) for i, row in enumerate(rows)]
    for i, doc in enumerate(docs):
        doc["idx"] = i
    return docs


def _dataset(name: str):
    def custom_dataset(**metadata):
        """lm-eval's ``custom_dataset`` hook: called with task metadata, model args and --metadata."""
        import datasets

        from lm_latent.utils.errors import report_cleanly

        try:
            docs = load_docs(name, data_dir_from(metadata))
        except (DataFileError, FileNotFoundError) as exc:
            report_cleanly()
            if isinstance(exc, FileNotFoundError):
                raise DataFileError(str(exc)) from None
            raise
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
