"""The seven benchmarks: row counts on the real files, docs, and the ``latent_math`` group."""

from __future__ import annotations

import json

import pytest

from lm_latent.tasks.benchmarks import BENCHMARKS, load_docs
from builders import PROBLEMS, plugin_task_manager, write_data_dir


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_real_files_have_the_published_row_counts(name, shared_data):
    docs = load_docs(name, shared_data)
    assert len(docs) == BENCHMARKS[name].rows
    assert all(doc["problem"].strip() and str(doc["answer"]).strip() for doc in docs)


def test_doc_fields_per_benchmark(shared_data):
    gsm = load_docs("gsm8k", shared_data)[0]
    assert gsm["answer"] == "18"  # "#### 18", thousands separators removed elsewhere
    math_doc = load_docs("math", shared_data)[0]
    assert math_doc["answer"] == "2"  # the last \boxed{} of the reference solution
    olymp = [d for d in load_docs("olympiadbench_math", shared_data) if d["is_multiple_answer"]]
    assert olymp and all(isinstance(d["answer"], str) for d in olymp)
    tqa = load_docs("theoremqa", shared_data)
    assert {d["answer_type"] for d in tqa} >= {"bool", "integer", "float", "list of integer"}
    assert sum(d["has_picture"] for d in tqa) == 53  # kept, as DART-Math keeps them (800 rows)
    assert next(d for d in tqa if d["answer_type"] == "bool")["answer"] in ("True", "False")


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="laid out like shared/data"):
        load_docs("theoremqa", tmp_path)


def write_all_benchmarks(root):
    """Tiny files for every benchmark, in each one's own format; sizes differ on purpose."""
    write_data_dir(root)
    for sub in ("college_math", "deepmind_mathematics", "fresh_gaokao_math_2023", "olympiadbench", "theoremqa"):
        (root / sub).mkdir()
    with open(root / "college_math" / "test.jsonl", "w") as f:
        for q, a in PROBLEMS:
            f.write(json.dumps({"question": q, "answer": f"${a}$"}) + "\n")
    (root / "deepmind_mathematics" / "test.json").write_text(json.dumps(
        [{"question": q, "answer": a} for q, a in PROBLEMS]))
    with open(root / "fresh_gaokao_math_2023" / "test.jsonl", "w") as f:
        f.write(json.dumps({"question": PROBLEMS[0][0], "answer": f"\\( {PROBLEMS[0][1]} \\)"}) + "\n")
    (root / "olympiadbench" / "test.json").write_text(json.dumps(
        [{"question": q, "final_answer": [a], "is_multiple_answer": False, "answer_type": "Numerical",
          "unit": None, "context": None} for q, a in PROBLEMS]))
    (root / "theoremqa" / "test.json").write_text(json.dumps(
        [{"Question": q, "Answer": int(a), "Answer_type": "integer", "Picture": None} for q, a in PROBLEMS]))
    return root


def test_group_reports_the_unweighted_mean_of_the_seven(tmp_path, adapters, tiny_base):  # noqa: F811
    from lm_eval import simple_evaluate

    data_dir = write_all_benchmarks(tmp_path / "data")
    out = simple_evaluate(model="latent", model_args={"pretrained": str(tiny_base), "rate": 4,
                                                      "adapters": str(adapters / "tied"), "max_gen_toks": 12,
                                                      "batch_size": 3},
                          tasks=["latent_math"], limit=3, task_manager=plugin_task_manager({"data_dir": str(data_dir)}))
    seven = [f"latent_math_{name}" for name in ("gsm8k", "math", "college_math", "deepmind_mathematics",
                                                "fresh_gaokao_math_2023", "olympiadbench_math", "theoremqa")]
    res = out["results"]
    assert set(seven) <= set(res) and "latent_math_math500" not in res
    for metric in ("acc,none", "gen_tokens,none"):
        assert res["latent_math"][metric] == pytest.approx(sum(res[t][metric] for t in seven) / 7)
    # sizes differ, the mean stays unweighted
    assert out["n-samples"]["latent_math_fresh_gaokao_math_2023"]["effective"] == 1
