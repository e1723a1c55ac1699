"""A full fine-tune (``--finetune full``, trained in this venv) on ``--model latent-vllm``: the same answers
as ``--model latent``. vLLM serves the merged copy, which for a full fine-tune is its own weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from builders import build_head64_llama, write_data_dir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from train_runs import train_args, write_data  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A head-64 base (vLLM's CPU attention needs it) and a full fine-tune whose answers are latents."""
    from transformers import AutoTokenizer

    from lm_latent.training.train import main

    root = tmp_path_factory.mktemp("vllm_full")
    base = build_head64_llama(root / "base", AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir)))
    data = write_data(root / "train.jsonl", n=80)
    assert main(train_args(base, data, root / "adapters", "--finetune", "full", "--strategy", "all",
                           "--lr", "1e-2")) == 0
    write_data_dir(root / "data")
    return root


def _lm_eval(setup: Path, model: str, model_args: str, out: Path):
    cmd = [str(Path(sys.executable).parent / "lm_eval"), "--model", model, "--model_args",
           f"pretrained={setup / 'base'},rate=4,adapters={setup / 'adapters'},max_gen_toks=16,{model_args}",
           "--tasks", "latent_math_gsm8k", "--limit", "3", "--batch_size", "auto", "--metadata",
           f"data_dir={setup / 'data'}", "--output_path", str(out), "--log_samples"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LM_LATENT_HOME": str(setup / "home"),
           "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    rows = [json.loads(line) for line in sorted(out.rglob("samples_*.jsonl"))[-1].read_text().splitlines()]
    return proc, sorted(rows, key=lambda r: r["doc_id"])


def test_latent_vllm_serves_a_full_finetune_like_latent(setup: Path, tmp_path: Path):
    assert json.loads((setup / "adapters" / "rate4" / "latent.json").read_text())["finetune"] == "full"
    _, hf = _lm_eval(setup, "latent", "dtype=float32", tmp_path / "hf")
    proc, vl = _lm_eval(setup, "latent-vllm", "dtype=float32,enforce_eager=True,max_model_len=1024,seed=0",
                        tmp_path / "vllm")
    keys = ("resps", "gen_tokens", "latent_tokens", "latent_usage", "truncated", "acc")
    assert len(vl) == 3 and [{k: r[k] for k in keys} for r in vl] == [{k: r[k] for k in keys} for r in hf]
    assert all(r["latent_tokens"] > 0 for r in vl)
    log = proc.stdout + proc.stderr
    assert "loading lm-latent full fine-tune" in log and "on vLLM from" in log
