"""Kill and resume ``lm-latent train``: any kill point, any leftover, the same adapter bit for bit.

The quick tests plant the leftovers a kill leaves (an empty checkpoint, a checkpoint without
its settings record, ``.partial`` folders) and rerun in-process. The kill matrix (slow) runs real
``lm-latent train`` children SIGKILLed at named points (``tests/faults/sitecustomize.py``):
during each stage, during each checkpoint write, during each final save.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from train_runs import KILLED, assert_same_adapter, run_train, tensors, train_args, write_data  # noqa: E402

from lm_latent.training.train import EXIT_INTERRUPTED, main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("resume_data") / "train.jsonl")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_base, data) -> Path:
    """One uninterrupted in-process run of the recipe."""
    out = tmp_path_factory.mktemp("resume_ref")
    assert main(train_args(tiny_base, data, out)) == 0
    return out / "rate4"


def _work(out: Path) -> Path:
    return out / ".work" / "rate4"


@pytest.mark.parametrize("stage", ["compressor", "finetune"])
def test_an_incomplete_checkpoint_is_set_aside_not_fatal(stage, tmp_path, tiny_base, data, reference, caplog):
    """Issue 11.1: a kill inside a checkpoint write left ``checkpoint-8`` holding an empty ``config.json``;
    every rerun stopped with "Can't find a valid checkpoint". Resume from the newest complete one."""
    caplog.set_level(logging.INFO, logger="lm_latent")
    out = tmp_path / "out"
    assert main(train_args(tiny_base, data, out, "--stop-at-step", "4")) == EXIT_INTERRUPTED
    if stage == "finetune":  # the compressor finishes, fine-tuning stops at 4
        assert main(train_args(tiny_base, data, out, "--stop-at-step", "4")) == EXIT_INTERRUPTED
    ckpts = _work(out) / stage / "checkpoints"
    assert (ckpts / "checkpoint-4").is_dir()
    (ckpts / "checkpoint-8").mkdir()
    (ckpts / "checkpoint-8" / "config.json").write_text("")
    caplog.clear()
    assert main(train_args(tiny_base, data, out)) == 0
    assert "set aside" in caplog.text and "checkpoint-8" in caplog.text
    assert "resuming from" in caplog.text and "checkpoint-4" in caplog.text
    assert_same_adapter(reference, out / "rate4")


def test_a_checkpoint_without_a_settings_record_is_never_resumed(tmp_path, tiny_base, data, reference, caplog):
    """Issue 11.2: a racing run left a finished ``checkpoint-8`` without ``run.json``; a later run with
    ``--overwrite --lr 0.01`` "resumed" it and wrote weights identical to the other lr's adapter."""
    caplog.set_level(logging.INFO, logger="lm_latent")
    out = tmp_path / "out"
    assert main(train_args(tiny_base, data, out, "--keep-work")) == 0
    (_work(out) / "run.json").unlink()  # what the racing run left behind
    first = tensors(out / "rate4" / "adapter_model.safetensors")
    caplog.clear()
    assert main(train_args(tiny_base, data, out, "--overwrite", "--lr", "1e-2")) == 0
    assert "resuming from" not in caplog.text and "starting fresh" in caplog.text
    second = tensors(out / "rate4" / "adapter_model.safetensors")
    lora = [k for k in first if "lora_B" in k]
    assert lora and all(not torch.equal(first[k], second[k]) for k in lora)
    assert json.loads((out / "rate4" / "latent.json").read_text())["training"]["finetune"]["learning_rate"] == 1e-2

    # Without --overwrite: checkpoints whose own record is missing are set aside, never resumed.
    out2 = tmp_path / "out2"
    assert main(train_args(tiny_base, data, out2, "--stop-at-step", "4")) == EXIT_INTERRUPTED
    for record in _work(out2).rglob("run.json"):
        record.unlink()
    caplog.clear()
    assert main(train_args(tiny_base, data, out2)) == 0
    assert "set aside" in caplog.text and "no settings record" in caplog.text
    assert "resuming from" not in caplog.text
    assert_same_adapter(reference, out2 / "rate4")


def test_a_checkpoint_of_other_settings_is_never_resumed(tmp_path, tiny_base, data, reference, caplog):
    """A checkpoint whose own record names other settings is set aside even if the run record matches."""
    caplog.set_level(logging.INFO, logger="lm_latent")
    out = tmp_path / "out"
    assert main(train_args(tiny_base, data, out, "--stop-at-step", "4")) == EXIT_INTERRUPTED
    rec_path = _work(out) / "compressor" / "checkpoints" / "checkpoint-4" / "run.json"
    rec = json.loads(rec_path.read_text())
    rec["finetune"]["learning_rate"] = 0.5
    rec_path.write_text(json.dumps(rec))
    caplog.clear()
    assert main(train_args(tiny_base, data, out)) == 0
    assert "set aside" in caplog.text and "other settings" in caplog.text and "resuming from" not in caplog.text
    assert_same_adapter(reference, out / "rate4")


def test_partial_folders_of_killed_saves_are_removed(tmp_path, tiny_base, data, caplog):
    """Issue 11.4: killed final saves left ``.rate4.*.partial`` folders that no run ever removed."""
    caplog.set_level(logging.INFO, logger="lm_latent")
    out = tmp_path / "out"
    assert main(train_args(tiny_base, data, out, "--stop-at-step", "4")) == EXIT_INTERRUPTED
    junk = [out / ".rate4.k3jd8x.partial", _work(out) / "compressor" / ".final.a1b2c3.partial"]
    for j in junk:
        (j / "compressor").mkdir(parents=True)
        (j / "adapter_model.safetensors").write_bytes(b"half")
    other = out / ".rate16.zz9.partial"  # another rate's save: not this run's business
    other.mkdir()
    assert main(train_args(tiny_base, data, out)) == 0
    assert not any(j.exists() for j in junk) and other.is_dir()
    assert "removing" in caplog.text and ".rate4.k3jd8x.partial" in caplog.text


def test_overwrite_starts_fresh(tmp_path, tiny_base, data, reference, caplog):
    """``--overwrite`` discards the checkpoints of an earlier run of the same rate."""
    caplog.set_level(logging.INFO, logger="lm_latent")
    out = tmp_path / "out"
    assert main(train_args(tiny_base, data, out, "--stop-at-step", "4", "--lr", "1e-2")) == EXIT_INTERRUPTED
    caplog.clear()
    assert main(train_args(tiny_base, data, out, "--overwrite")) == 0
    assert "starting fresh" in caplog.text and "resuming" not in caplog.text
    assert_same_adapter(reference, out / "rate4")


# --- the kill matrix: real children, SIGKILLed ------------------------------------------------------------

@pytest.fixture(scope="module")
def child_reference(tmp_path_factory, tiny_base, data) -> Path:
    out = tmp_path_factory.mktemp("kill_ref")
    proc = run_train(train_args(tiny_base, data, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "rate4"


# Each chain kills one run at each point in turn; each rerun resumes the last one. Checkpoints are
# at steps 4 and 8 (= the end) of both stages, so the points cover: before any checkpoint,
# between checkpoints, inside a checkpoint write (weights only), a checkpoint the Trainer finished
# but whose settings record is missing, the end of a stage, and inside each final save.
CHAINS = {
    "compressor": ["compressor:step:2", "compressor:step:6", "compressor:checkpoint:8", "compressor:record:8",
                   "commit:final", "compressor:done"],
    "finetune": ["finetune:step:2", "finetune:checkpoint:4", "finetune:step:6", "finetune:checkpoint:8",
                 "finetune:record:8", "commit:rate4", "adapter:done"],
}


@pytest.mark.slow
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_kill_matrix_gives_the_same_adapter(chain, tmp_path, tiny_base, data, child_reference):
    """Issue 11.3: a kill during the final compressor save resumed one step too many (21 of 20)."""
    out = tmp_path / "out"
    args = train_args(tiny_base, data, out)
    for i, point in enumerate(CHAINS[chain]):
        proc = run_train(args, kill_at=point)
        assert proc.returncode == KILLED, f"{point}: the kill point was never reached\n{proc.stderr[-3000:]}"
        if i:  # every killed run left its lock behind: the next run takes it over and says so
            assert "stale lock" in proc.stderr, proc.stderr[-3000:]
        assert not (out / "rate4" / "latent.json").exists() or point == "adapter:done"
    proc = run_train(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"wrote {out / 'rate4'}"
    assert_same_adapter(child_reference, out / "rate4")
    assert not list(out.rglob("*.partial")) and not (out / ".work").exists()
    assert {p.name for p in out.iterdir()} == {"rate4"}
