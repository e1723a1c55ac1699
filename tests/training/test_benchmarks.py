"""``benchmarks/gpu_smoke.py --device cpu`` and ``benchmarks/full_size.py --tiny``: their paths, tiny."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=900, env=env)


@pytest.mark.slow
def test_gpu_smoke_runs_its_path_on_the_cpu(tmp_path: Path):
    proc = _run("gpu_smoke.py", "--device", "cpu", "--out", str(tmp_path / "smoke"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = proc.stdout
    for stage in ("[lora] LoRA 2 steps", "[full] full fine-tuning 2 steps", "[full] export (merged checkpoint)",
                  "--model latent: load + merge + generate 16 tokens x 4 prompts"):
        assert stage in out, stage
    assert "check latent == merged (lora): True" in out and "check latent == merged (full): True" in out
    assert "gpu_smoke: all checks passed" in out
    assert not (tmp_path / "smoke").exists()  # removed afterwards


def test_gpu_smoke_without_cuda_says_so(tmp_path: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    proc = _run("gpu_smoke.py", "--out", str(tmp_path / "smoke"))
    assert proc.returncode == 2 and "--device cpu" in proc.stderr


@pytest.mark.slow
def test_full_size_tiny_runs_every_stage(tmp_path: Path):
    proc = _run("full_size.py", "--tiny", "--out", str(tmp_path / "fs"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = proc.stdout
    for stage in ("compressor (4 steps", "LoRA step 1 + checkpoint, then a simulated kill",
                  "resume: reload data, compressor, cached codes, base, checkpoint 1", "LoRA step 2",
                  "save adapter", "export (merged checkpoint)", "generate 16 tokens x 4 prompts"):
        assert stage in out, stage
    for size in ("size adapter_lora", "size compressor", "size merged_lora"):
        assert size in out
