"""``lm_eval --model latent`` on several processes: each evaluates its share, the results equal one process's.

lm-eval 0.4.13's ``HFLM`` engages data parallelism only when it also counts more than one GPU, so on
CPU every process used to call itself rank 0 and evaluate every document. Two CPU processes (gloo)
under ``torchrun`` and ``accelerate launch --cpu`` must give the per-sample generations and counts
of a one-process run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from builders import PROBLEMS, nontrivial_adapter, write_data_dir


def test_launcher_ranks_are_used_without_gpus():
    """The unit: an accelerator with two processes sets rank and world size (HFLM left 0 and 1)."""
    import torch

    from lm_latent.models.latent_hf import LatentLM

    lm = object.__new__(LatentLM)
    lm._rank, lm._world_size = 0, 1
    lm._model = torch.nn.Linear(2, 2)
    lm.accelerator = SimpleNamespace(num_processes=2, process_index=1, device=torch.device("cpu"),
                                     is_main_process=False)
    lm._use_launcher_ranks()
    assert (lm.rank, lm.world_size) == (1, 2)
    single = object.__new__(LatentLM)
    single._rank, single._world_size = 0, 1
    single._use_launcher_ranks()  # no accelerator: one process, nothing changes
    assert (single.rank, single.world_size) == (0, 1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_base):
    root = tmp_path_factory.mktemp("dp")
    nontrivial_adapter(tiny_base, root / "adapters" / "rate4")
    return {"base": tiny_base, "adapters": root / "adapters", "data": write_data_dir(root / "data")}


def _lm_eval_args(setup, out: Path) -> list[str]:
    return ["--model", "latent",
            "--model_args", f"pretrained={setup['base']},rate=4,adapters={setup['adapters']},max_gen_toks=16",
            "--device", "cpu", "--tasks", "latent_math_gsm8k", "--limit", str(len(PROBLEMS)), "--batch_size", "2",
            "--metadata", f"data_dir={setup['data']}", "--log_samples", "--output_path", str(out)]


def _run(launcher: list[str], setup, out: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([*launcher, "-m", "lm_eval", *_lm_eval_args(setup, out)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = [json.loads(line) for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    return proc, results, samples


def _per_sample(samples: list[dict]) -> dict:
    """What each document got. ``resps`` by its first answer: with 3 documents on 2 processes lm-eval
    pads the shorter rank by repeating its last request, whose logged ``resps`` then holds the same
    answer twice (lm-eval 0.4.13's padding, as with several GPUs); the metrics use the first."""
    keys = ("filtered_resps", "acc", "gen_tokens", "latent_tokens", "truncated")
    return {s["doc_id"]: {"answer": s["resps"][0][0], **{k: s.get(k) for k in keys}} for s in samples}


@pytest.fixture(scope="module")
def one_process(setup, tmp_path_factory):
    return _run([sys.executable], setup, tmp_path_factory.mktemp("one"))


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"],
    # --multi_gpu is accelerate's torchrun-based launcher, CPU processes included; its --cpu would start
    # one process only (accelerate runs several CPU processes through mpirun)
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_equal_one(launcher, setup, one_process, tmp_path):
    _, results1, samples1 = one_process
    proc, results2, samples2 = _run(LAUNCHERS[launcher], setup, tmp_path / "out")
    log = proc.stdout + proc.stderr
    # each process built its own share: rank 1 exists and every document is logged once
    assert "latent_math_gsm8k on rank 1" in log and "latent_math_gsm8k on rank 0" in log
    assert sorted(s["doc_id"] for s in samples2) == list(range(len(PROBLEMS)))
    assert _per_sample(samples2) == _per_sample(samples1)
    # the adapter really generates something (not all answers the same) and the counts arrive
    assert len({s["resps"][0][0] for s in samples1}) > 1
    assert all(s["gen_tokens"] > 0 for s in samples1)
    m1, m2 = results1["results"]["latent_math_gsm8k"], results2["results"]["latent_math_gsm8k"]
    for key in ("acc,none", "gen_tokens,none", "latent_tokens,none", "truncated,none"):
        assert m2[key] == m1[key], key
    assert m2["sample_len"] == m1["sample_len"] == len(PROBLEMS)
