"""Bad local data: one clear error naming the file, the line and the field (issue 11, item 11).

The same reader serves benchmark data (``data_dir``) and training data (``lm-latent train --data``).
"""

from __future__ import annotations

import json
import re

import pytest

from lm_latent.utils.records import DataFileError, read_records
from lm_latent.tasks.benchmarks import data_dir_from, load_docs
from lm_latent.training.data import load_examples

GOOD = {"question": "Ann has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7.\n#### 7"}

# name -> (file bytes, what the message must say after "<file>")
CASES = {
    "broken_json_line": (
        (json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n" + '{"question": "q", "answer": oops}\n').encode(),
        r":3: not valid JSON"),
    "row_without_answer": (
        (json.dumps(GOOD) + "\n" + json.dumps({"question": "q"}) + "\n").encode(),
        r":2: .*no field 'answer'"),
    "empty_file": (b"", r": the file is empty"),
    "blank_lines_only": (b"\n  \n", r": the file is empty"),
    "not_utf8": ((json.dumps(GOOD) + "\n").encode() + b'{"question": "caf\xe9", "answer": "#### 1"}\n',
                 r":2: byte b'\\xe9' at column 18 is not UTF-8"),
    "utf16_bom": ("\ufeff".encode("utf-16-le") + json.dumps(GOOD).encode("utf-16-le"), r": the file is UTF-16"),
    "not_an_object": ((json.dumps(GOOD) + "\n[1, 2]\n").encode(), r":2: expected a JSON object"),
}


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_benchmark_data_errors_name_file_line_and_field(tmp_path, case):
    data, expected = CASES[case]
    path = _write(tmp_path / "gsm8k" / "test.jsonl", data)
    with pytest.raises(DataFileError) as err:
        load_docs("gsm8k", tmp_path)
    assert re.search(re.escape(str(path)) + expected, str(err.value)), str(err.value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_data_errors_name_file_line_and_field(tmp_path, case):
    data, expected = CASES[case]
    path = _write(tmp_path / "train.jsonl", data)
    with pytest.raises(DataFileError) as err:
        load_examples(path)
    assert re.search(re.escape(str(path)) + expected, str(err.value)), str(err.value)


def test_a_utf8_bom_is_accepted(tmp_path):
    path = _write(tmp_path / "gsm8k" / "test.jsonl", b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\n").encode())
    assert load_docs("gsm8k", tmp_path)[0]["answer"] == "7"
    assert len(load_examples(path)) == 1


def test_json_list_files_name_the_item(tmp_path):
    path = _write(tmp_path / "theoremqa" / "test.json",
                  json.dumps([{"Question": "q", "Answer": 1, "Answer_type": "integer"},
                              {"Question": "q", "Answer_type": "integer"}]).encode())
    with pytest.raises(DataFileError, match=re.escape(f"{path}, item 1") + ".*no field 'Answer'"):
        load_docs("theoremqa", tmp_path)
    _write(path, b'[{"Question": "q",\n "Answer": }]')
    with pytest.raises(DataFileError, match=re.escape(f"{path}:2: not valid JSON")):
        load_docs("theoremqa", tmp_path)
    _write(path, b'{"Question": "q"}')
    with pytest.raises(DataFileError, match="expected a JSON list"):
        load_docs("theoremqa", tmp_path)


def test_a_field_of_the_wrong_type_is_named(tmp_path):
    path = _write(tmp_path / "gsm8k" / "test.jsonl", (json.dumps({"question": "q", "answer": None}) + "\n").encode())
    with pytest.raises(DataFileError, match=re.escape(f"{path}:1: field 'answer'") + ".*must be a string"):
        load_docs("gsm8k", tmp_path)


def test_training_row_missing_the_response_field_names_the_line(tmp_path):
    rows = [{"query": "q", "response": "r\nThe answer is: 1"}, {"query": "q2"}]
    path = _write(tmp_path / "meta.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    with pytest.raises(DataFileError, match=re.escape(f"{path}:2: row has no field 'response'")):
        load_examples(path)


def test_empty_data_dir_is_an_error_not_the_hub(monkeypatch):
    monkeypatch.delenv("LM_LATENT_DATA_DIR", raising=False)
    for value in ("", "  "):
        with pytest.raises(DataFileError, match="data_dir is empty"):
            data_dir_from({"data_dir": value})
    assert data_dir_from({}) is None
    monkeypatch.setenv("LM_LATENT_DATA_DIR", "")
    assert data_dir_from({}) is None  # an empty variable is unset, as in the shell


def test_missing_data_dir_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope")) + " is not a folder"):
        load_docs("gsm8k", tmp_path / "nope")


def test_reader_keeps_locations(tmp_path):
    path = _write(tmp_path / "x.jsonl", (json.dumps(GOOD) + "\n\n" + json.dumps(GOOD) + "\n").encode())
    rows = read_records(path)
    assert len(rows) == 2 and rows.where(1) == f"{path}:3"


@pytest.mark.slow
def test_lm_eval_cli_prints_the_data_error_without_a_traceback(tmp_path, tiny_base):
    """Through the stock ``lm_eval`` command: the message, not a 25-line traceback."""
    import os
    import subprocess

    from lm_latent.adapter.init import init_adapter

    init_adapter(str(tiny_base), 0, 0, tmp_path / "adapters" / "rate0")
    path = _write(tmp_path / "data" / "gsm8k" / "test.jsonl", CASES["row_without_answer"][0])
    out = subprocess.run(["lm_eval", "--model", "latent", "--model_args",
                          f"pretrained={tiny_base},rate=0,adapters={tmp_path / 'adapters'},max_gen_toks=4",
                          "--tasks", "latent_math_gsm8k", "--limit", "1", "--metadata",
                          json.dumps({"data_dir": str(tmp_path / "data")})],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert out.returncode != 0
    assert f"{path}:2: gsm8k row has no field 'answer'" in out.stderr, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
