"""Helpers for the training tests: a tiny recipe, real ``lm-latent train`` subprocesses, tensor compares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FAULTS = Path(__file__).resolve().parents[1] / "faults"  # sitecustomize.py: the kill points

STEPS = 8  # every stage; checkpoints at 4 and 8
KILLED = -9  # returncode of a SIGKILLed child


def write_data(path: Path, n: int = 120, seed: int = 0) -> Path:
    from lm_latent.training.data import synthetic_gsm8k

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in synthetic_gsm8k(n, seed=seed)), encoding="utf-8")
    return path


def train_args(base: Path, data: Path, out: Path, *extra: str, rate: int = 4, steps: int = STEPS) -> list[str]:
    return ["--rate", str(rate), "--base", str(base), "--data", str(data), "--out", str(out),
            "--max-steps", str(steps), "--codebook-size", "16", "--batch-size", "4", "--grad-accum", "2",
            "--lr", "5e-3", "--save-steps", "4", "--logging-steps", "2", "--max-seq-len", "256",
            "--compressor-hidden", "64", "--compressor-layers", "1", "--compressor-codebook-dim", "32",
            "--compressor-batch-size", "32", "--compressor-lr", "2e-3", "--compressor-save-steps", "4",
            "--compressor-max-prompt-len", "32", "--schedule", "0,8,16,32", "--no-progress", *extra]


def run_train(args: list[str], kill_at: str | None = None, timeout: float = 600,
              popen: bool = False) -> subprocess.CompletedProcess | subprocess.Popen:
    """``python -m lm_latent.cli train ARGS`` in a child, single-threaded, optionally killed at ``kill_at``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("LM_LATENT_TEST_KILL_AT", None)
    if kill_at:  # tests/faults/sitecustomize.py turns the variable into an observer of lm_latent.utils.events
        env["LM_LATENT_TEST_KILL_AT"] = kill_at
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULTS), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "lm_latent.cli", "train", *args]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_adapter(ref: Path, run: Path) -> None:
    """Every tensor of the adapter and its compressor bit for bit equal, and the same step counts."""
    import torch

    for rel in ("adapter_model.safetensors", "compressor/model.safetensors"):
        if not (ref / rel).exists():
            assert not (run / rel).exists(), rel
            continue
        a, b = tensors(ref / rel), tensors(run / rel)
        assert a.keys() == b.keys(), rel
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"{rel}: {len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"
    ma = json.loads((ref / "latent.json").read_text())["metrics"]
    mb = json.loads((run / "latent.json").read_text())["metrics"]
    for key in ("finetune_steps", "compressor_steps", "final_loss", "compressor_final_loss", "recon_accuracy"):
        assert ma.get(key) == mb.get(key), (key, ma.get(key), mb.get(key))


def evaluate_two_problems(adapter: Path, base: Path, tmp_path: Path) -> dict:
    """``simple_evaluate`` of a trained rate-4 adapter on two GSM8K-format problems; checks the metrics exist."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from lm_latent.autoload import task_dir

    data = tmp_path / "data" / "gsm8k"
    data.mkdir(parents=True)
    rows = [{"question": "Ann has 3 apples and buys 4 more. How many apples does Ann have?",
             "answer": "3 + 4 = 7.\n#### 7"}] * 2
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tm = TaskManager(include_path=task_dir(), include_defaults=False, metadata={"data_dir": str(tmp_path / "data")})
    args = {"pretrained": str(base), "rate": 4, "adapter": str(adapter), "device": "cpu", "max_gen_toks": 16,
            "batch_size": 2}
    out = simple_evaluate(model="latent", model_args=args, tasks=["latent_math_gsm8k"], limit=2, task_manager=tm,
                          log_samples=True)
    res = out["results"]["latent_math_gsm8k"]
    assert {"acc,none", "gen_tokens,none", "latent_tokens,none"} <= set(res)
    assert 1 <= res["gen_tokens,none"] <= 16
    return out
