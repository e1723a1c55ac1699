"""A disk that fills during training is named (folder, size), not reported as torch's "unexpected pos"."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

Usage = namedtuple("Usage", "total used free")
TORCH_WRITE_FAILED = "[enforce fail at inline_container.cc:778] . unexpected pos 738816 vs 738704"


def _trainer(base: Path, out: Path):
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(str(base))
    rows = [{"input_ids": [1, 2, 3, 4, 5], "labels": [1, 2, 3, 4, 5]}] * 4
    args = TrainingArguments(output_dir=str(out), max_steps=2, save_strategy="steps", save_steps=1,
                             per_device_train_batch_size=2, report_to=[], use_cpu=True, disable_tqdm=True)
    return Trainer(model=model, args=args, train_dataset=rows)


def _disk(monkeypatch, free: dict) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr("lm_latent.utils.fileio.shutil.disk_usage",
                        lambda path: Usage(1 << 40, 0, free["bytes"]) if free["bytes"] is not None else real(path))


def test_a_checkpoint_that_cannot_fit_is_refused_before_training(tiny_base, tmp_path, monkeypatch):
    from lm_latent.training.checkpoints import train_explaining_disk_full
    from lm_latent.utils.fileio import NoSpaceError

    trainer = _trainer(tiny_base, tmp_path / "work")
    _disk(monkeypatch, {"bytes": 1 << 20})
    with pytest.raises(NoSpaceError, match="not enough disk for a training checkpoint") as err:
        train_explaining_disk_full(trainer)
    assert str(tmp_path / "work") in str(err.value) and trainer.state.global_step == 0


def test_a_disk_that_fills_during_a_checkpoint_is_named(tiny_base, tmp_path, monkeypatch):
    from lm_latent.training.checkpoints import train_explaining_disk_full
    from lm_latent.utils.fileio import NoSpaceError

    trainer = _trainer(tiny_base, tmp_path / "work")
    free: dict = {"bytes": None}  # the real disk until the write fails
    _disk(monkeypatch, free)

    def save_fails(*args, **kwargs):
        free["bytes"] = 0
        raise RuntimeError(TORCH_WRITE_FAILED)

    monkeypatch.setattr(trainer, "_save_checkpoint", save_fails)
    with pytest.raises(NoSpaceError) as err:
        train_explaining_disk_full(trainer)
    text = str(err.value)
    assert str(tmp_path / "work") in text and "unexpected pos" not in text and "needs about" in text


def test_other_runtime_errors_pass_through_unchanged(tiny_base, tmp_path, monkeypatch):
    from lm_latent.training.checkpoints import train_explaining_disk_full

    trainer = _trainer(tiny_base, tmp_path / "work")

    def save_fails(*args, **kwargs):
        raise RuntimeError(TORCH_WRITE_FAILED)  # a write that failed with the disk not full: not ours to rename

    monkeypatch.setattr(trainer, "_save_checkpoint", save_fails)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        train_explaining_disk_full(trainer)
