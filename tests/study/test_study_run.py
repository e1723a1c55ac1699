"""``lm-latent study`` running a recipe: the paper's own recipe end to end with tiny stand-ins, reruns, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builders import write_data_dir
from lm_latent.study.recipe import load_recipe
from lm_latent.study.run import State, StudyError, gpu_sets, settings_diff, settings_record, stage_data

PAPER = "token-assorted-llama3.2-3b"


def _metamathqa_rows(path: Path, n: int) -> Path:
    """MetaMathQA's format (``query``, ``response`` ending "The answer is: X"), from GSM8K-like problems."""
    from lm_latent.training.data import synthetic_gsm8k

    with open(path, "w", encoding="utf-8") as f:
        for row in synthetic_gsm8k(n):
            body, _, answer = row["answer"].rpartition("####")
            f.write(json.dumps({"query": row["question"], "type": "GSM_Rephrased",
                                "response": f"{body.strip()}\nThe answer is: {answer.strip()}"}) + "\n")
    return path


def test_settings_diff_names_each_changed_setting_as_an_override():
    old = settings_record(load_recipe(PAPER))
    new = settings_record(load_recipe(PAPER, ["train.finetune.learning_rate=2e-5", "rates=0,16"]))
    assert settings_diff(old, new) == ["rates: [0, 4, 16, 32] -> [0, 16]",
                                       "train.finetune.learning_rate: 1e-05 -> 2e-05"]
    assert settings_diff(old, settings_record(load_recipe(PAPER, ["gpus=8"]))) == []  # GPUs change no number


def test_gpu_sets_are_disjoint_and_follow_the_users_visible_devices():
    assert gpu_sets(0, 1) == [""]
    assert gpu_sets(8, 8) == ["0,1,2,3,4,5,6,7"]
    assert gpu_sets(8, 2) == ["0,1", "2,3", "4,5", "6,7"]
    assert gpu_sets(4, 2, visible="4,5,6,7") == ["4,5", "6,7"]


def test_changed_training_data_is_refused(tmp_path):
    data = _metamathqa_rows(tmp_path / "rows.jsonl", 5)
    recipe = load_recipe(PAPER, [f"data={data}", f"out={tmp_path / 'out'}"])
    state = State(tmp_path, settings_record(recipe))
    state.finish("data", 0.0, **stage_data(recipe, state, progress=False))
    assert state.data["stages"]["data"]["path"] == str(data)
    stage_data(recipe, state, progress=False)  # the same bytes: fine
    data.write_text(data.read_text().replace("The answer is: ", "The answer is:  "))
    with pytest.raises(StudyError, match="changed since this study read it"):
        stage_data(recipe, state, progress=False)


@pytest.mark.slow
def test_paper_recipe_runs_end_to_end_with_stand_ins(tmp_path):
    """The shipped paper recipe itself, with tiny stand-ins given as overrides: a random 1-layer Llama with the
    real Llama-3 tokenizer, 300 MetaMathQA-format rows, 2 documents of 2 tasks, the HF backend."""
    pytest.importorskip("llama_models")
    pytest.importorskip("tiktoken")
    from lm_latent.demo.tiny import build_llama, build_llama3_tokenizer

    base = tmp_path / "base"
    build_llama(base, build_llama3_tokenizer(base), tied=True, hidden=32, layers=1)
    data = _metamathqa_rows(tmp_path / "metamathqa.jsonl", 300)
    bench = write_data_dir(tmp_path / "bench")
    out = tmp_path / "study"
    stand_ins = [f"base={base}", f"data={data}", "eval.model=latent", "eval.limit=2",
                 "eval.tasks=latent_math_gsm8k,latent_math_math", f"eval.data_dir={bench}", "eval.max_gen_toks=16",
                 "eval.dtype=float32", "eval.batch_size=2", "train.max_steps=2", "train.codebook_size=32",
                 "train.compressor.batch_size=8", "train.compressor.model.hidden_size=32",
                 "train.compressor.model.num_layers=1", "train.compressor.model.max_prompt_len=32",
                 "train.finetune.global_batch_size=4", "train.finetune.batch_size=2", "train.finetune.max_seq_len=256"]
    cmd = [str(Path(sys.executable).parent / "lm-latent"), "study", PAPER, "--out", str(out), "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    proc = subprocess.run([*cmd, *stand_ins], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rate in (0, 4, 16, 32):  # the recipe's rates, each a full fine-tune of two optimizer steps
        meta = json.loads((out / "adapters" / f"rate{rate}" / "latent.json").read_text())
        assert meta["finetune"] == "full" and meta["rate"] == rate
        assert (out / "results" / f"rate{rate}" / "DONE.json").is_file()
    report = (out / "report.md").read_text()
    for row in ("| 0 (CoT) |", "| 4 |", "| 16 |", "| 32 |"):
        assert row in report
    assert "## Beside the seed figure" in report and "**Not comparable with the paper**" in report
    beside = report.split("## Beside the seed figure")[1]
    assert "| 27.1% | ~595 |" in beside and "| 28.1% | ~515 |" in beside and "| 27.9% | ~480 |" in beside
    assert "642.9" in report and "no GPU" in report and (out / "chart.png").is_file()
    assert "--finetune full" in (out / "logs" / "train_rate16.log").read_text().splitlines()[0]

    again = subprocess.run([*cmd, *stand_ins], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "stage 3/5 adapters: done earlier, skipped" in again.stderr
    assert "stage 4/5 sweep: done earlier, skipped" in again.stderr
    assert len(json.loads((out / "study_state.json").read_text())["runs"]) == 2

    other = subprocess.run([*cmd, *stand_ins, "train.finetune.learning_rate=2e-5"], capture_output=True, text=True,
                           env=env, timeout=300)
    assert other.returncode == 1
    assert "holds a study made with other settings" in other.stderr
    assert "train.finetune.learning_rate: 1e-05 -> 2e-05" in other.stderr and "Nothing was run" in other.stderr


def test_a_dataset_the_hub_cannot_give_stops_the_study_in_one_line(tmp_path, monkeypatch, capsys):
    """Offline (as here), the paper recipe's data stage names the dataset and the hub's reason, then stops."""
    from lm_latent.study import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(SystemExit) as info:
        main([PAPER, "--out", str(tmp_path / "study"), "--no-progress"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "error: could not read the dataset meta-math/MetaMathQA (split train)" in err
    assert not (tmp_path / "study" / "data" / "train.jsonl").exists()


def test_wall_estimates_follow_the_plan_per_driver_stage():
    from lm_latent.study.plan import build_plan
    from lm_latent.study.run import wall_estimates

    recipe = load_recipe(PAPER, ["gpus=8"])
    plan = {s.name: s.gpu_hours for s in build_plan(recipe)}
    hours = wall_estimates(recipe)
    adapters = sum(h for name, h in plan.items() if "adapter" in name)
    assert hours["adapters"] == pytest.approx(adapters / 8)
    assert hours["sweep"] == pytest.approx(plan["sweep"] / 8)
    split = wall_estimates(load_recipe(PAPER, ["gpus=8", "gpus_per_rate=2"]))  # 4 rates at once on 2 GPUs each
    assert split["adapters"] == pytest.approx(adapters / 2 / 4)


def test_the_gpu_count_is_a_setting_only_without_a_global_batch():
    per_device = "train.finetune.global_batch_size=null"
    assert settings_diff(settings_record(load_recipe(PAPER, [per_device])),
                         settings_record(load_recipe(PAPER, [per_device, "gpus=8"]))) == ["train_processes: 1 -> 8"]
