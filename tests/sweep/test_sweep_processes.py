"""``lm-latent sweep --num-processes 2``: each rate's lm_eval on two data-parallel processes (accelerate, gloo on
CPU) gives the table and per-sample answers of one process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from builders import write_data_dir


def _samples(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.rglob("samples_*.jsonl")):
        task = path.name.split("_20")[0].removeprefix("samples_")
        for line in path.read_text().splitlines():
            row = json.loads(line)
            out[(task, row["doc_id"])] = (row["filtered_resps"], row["acc"], row["gen_tokens"])
    return out


def _table(out: Path) -> list[dict]:
    timing = ("generation s", "time vs rate 0")
    return [{k: v for k, v in row.items() if k not in timing} for row in csv.DictReader((out / "results.csv").open())]


@pytest.mark.slow
def test_two_processes_per_rate_equal_one(tmp_path, tiny_base, sweep_adapters, capsys):
    from lm_latent.cli import main

    data_dir = write_data_dir(tmp_path / "data")
    common = ["sweep", "--rates", "0,4", "--tasks", "latent_math_gsm8k,latent_math_math",
              "--model_args", f"pretrained={tiny_base},adapters={sweep_adapters},max_gen_toks=8",
              "--limit", "3", "--batch_size", "2", "--metadata", f"data_dir={data_dir}"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--out", str(tmp_path / "two"), "--num-processes", "2"]) == 0
    log = (tmp_path / "two" / "rate4" / "lm_eval.log").read_text()
    assert "accelerate.commands.launch --multi_gpu --num_processes 2" in log.splitlines()[0]
    assert _table(tmp_path / "one") == _table(tmp_path / "two")
    for rate in (0, 4):
        one, two = _samples(tmp_path / "one" / f"rate{rate}"), _samples(tmp_path / "two" / f"rate{rate}")
        assert len(one) == 6 and one == two


def test_num_processes_is_for_the_hf_backend(capsys):
    from lm_latent.sweep.run import main

    with pytest.raises(SystemExit):
        main(["--rates", "0", "--out", "x", "--model", "latent-vllm", "--num-processes", "2"])
    assert "data_parallel_size=N" in capsys.readouterr().err
