"""Which Trainer checkpoint a stage may resume: complete, and made by a run with the same settings.

Also the stop/resume vocabulary every training loop of the project shares: :class:`StopAtStep`
(stop with a checkpoint, as if killed) and :class:`TrainingInterrupted` (what the caller then
raises; rerun to resume). The settings comparison itself is :mod:`lm_latent.utils.run_record`.

Every checkpoint gets the run's settings record (``run.json``) written into it *after* the
Trainer has finished writing it, so the record is also the checkpoint's completion mark. On
resume, a checkpoint without a record (a kill mid-write, or a run that raced this one) or
with another run's record is moved to ``<stage>/set_aside/`` with a log line, and the newest
one that is left is resumed. A checkpoint at the stage's last step means the stage is done:
its weights are loaded instead of calling ``train()`` again, which would run one more step.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from lm_latent.utils.fileio import write_json_atomic
from lm_latent.utils.run_record import differing_keys, read_settings
from lm_latent.utils import events

logger = logging.getLogger(__name__)

RECORD_NAME = "run.json"
SET_ASIDE = "set_aside"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class TrainingInterrupted(RuntimeError):
    """A stage stopped early on purpose (``stop_at_step``); its checkpoint is on disk: rerun to resume.

    The one interrupt of the project's training loops (``lm-latent train``'s stages, the demo's
    base pretraining); ``lm-latent train`` exits with code 3 on it.
    """


class StopAtStep(TrainerCallback):
    """Stop a stage when it reaches optimizer step ``step``, saving a checkpoint there.

    Simulates a kill at a known point (tests, time-limited jobs). A stage that resumes past
    ``step`` never meets it again and runs to the end. After ``train()``, :func:`raise_if_stopped`.
    """

    def __init__(self, step: int) -> None:
        self.step = step
        self.triggered = False

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.triggered = True
        return control


def raise_if_stopped(callbacks, message: str) -> None:
    """Raise :class:`TrainingInterrupted` (``message``) when a :class:`StopAtStep` among ``callbacks`` fired."""
    if any(getattr(cb, "triggered", False) for cb in callbacks):
        raise TrainingInterrupted(message)


def read_record(folder: Path) -> dict | None:
    """The settings record of a checkpoint (or finished stage) folder; None when absent or damaged."""
    return read_settings(Path(folder) / RECORD_NAME)


class RecordCallback(TrainerCallback):
    """Write the settings record into each checkpoint once the Trainer has finished it."""

    def __init__(self, record: dict, stage: str) -> None:
        self.record, self.stage = record, stage

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            events.reached(f"{self.stage}:record:{state.global_step}")
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_json_atomic(folder / RECORD_NAME, self.record)
        return control


def set_aside(folder: Path, why: str, stage_dir: Path | None = None) -> Path:
    """Move ``folder`` to ``<stage>/set_aside/`` (kept for inspection until the run succeeds)."""
    folder = Path(folder)
    dest_dir = Path(stage_dir or folder.parent.parent) / SET_ASIDE
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{folder.name}.{time.strftime('%Y%m%dT%H%M%S')}"
    n = 1
    while dest.exists():
        dest = dest_dir / f"{folder.name}.{time.strftime('%Y%m%dT%H%M%S')}.{n}"
        n += 1
    folder.rename(dest)
    logger.warning("set aside %s (%s): moved to %s", folder, why, dest)
    return dest


def _problem(folder: Path, record: dict | None) -> str | None:
    if record is None:  # a caller without settings records (benchmarks): completeness only
        return None if (folder / TRAINER_STATE).is_file() else f"incomplete: no {TRAINER_STATE}"
    rec = read_record(folder)
    if rec is None:
        return "no settings record: the run that wrote it was killed while saving, or raced another run"
    if rec != record:
        return f"written by a run with other settings (differs in {differing_keys(rec, record)})"
    if not (folder / TRAINER_STATE).is_file():
        return f"incomplete: no {TRAINER_STATE}"
    return None


def resumable_checkpoint(checkpoints: Path, record: dict | None, writer: bool = True) -> Path | None:
    """The newest complete checkpoint of these settings under ``checkpoints``, or None.

    The ``writer`` (the main process) sets aside the ones that do not qualify; the other
    processes of an ``accelerate launch`` call it after the writer, read-only.
    """
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in checkpoints.iterdir()
                    if p.is_dir() and (m := _CHECKPOINT.match(p.name))), reverse=True)
    for _, folder in found:
        why = _problem(folder, record)
        if why is None:
            return folder
        if writer:
            set_aside(folder, why)
    return None


def stage_finished(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` was written at the stage's last step."""
    state = json.loads((Path(checkpoint) / TRAINER_STATE).read_text(encoding="utf-8"))
    return int(state.get("max_steps") or 0) > 0 and int(state["global_step"]) >= int(state["max_steps"])


def resume_or_finish(trainer, checkpoint: Path | None):
    """``trainer.train()`` from ``checkpoint``; a checkpoint at the last step is loaded instead, not trained on.

    Returns the ``TrainOutput``, or None when the stage was already finished.
    """
    from transformers import TrainerState

    if checkpoint is not None and stage_finished(checkpoint):
        logger.info("%s is the last step of the stage: loading it, no training left", checkpoint)
        trainer._load_from_checkpoint(str(checkpoint))  # what train(resume_from_checkpoint=...) loads
        trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE))
        return None
    return train_explaining_disk_full(trainer, resume_from_checkpoint=str(checkpoint) if checkpoint else None)


#: What torch's and safetensors' writers raise when the disk fills mid-file (the errno is lost on the way).
_WRITE_FAILED = re.compile(r"unexpected pos|file write failed|PytorchStreamWriter failed|No space left on device")


def checkpoint_bytes(trainer) -> int:
    """About what one checkpoint takes: the newest one on disk, else the trainable weights with Adam's two moments."""
    done = sorted(Path(trainer.args.output_dir).glob("checkpoint-*"), key=lambda p: p.stat().st_mtime)
    if done:
        return sum(f.stat().st_size for f in done[-1].rglob("*") if f.is_file())
    return sum(p.numel() * p.element_size() * 3 for p in trainer.model.parameters() if p.requires_grad)


def train_explaining_disk_full(trainer, **kwargs):
    """``trainer.train(**kwargs)``, refused up front when a checkpoint cannot fit, and a disk that fills
    during a checkpoint named (folder and size) instead of torch's "unexpected pos 738816 vs 738704"."""
    from lm_latent.utils.fileio import check_free_space, explain_disk_full

    out = Path(trainer.args.output_dir)
    what = "a training checkpoint"
    if trainer.args.save_strategy != "no":
        check_free_space(out, checkpoint_bytes(trainer), what)
    try:
        with explain_disk_full(out, what, need=checkpoint_bytes(trainer)):
            return trainer.train(**kwargs)
    except RuntimeError as exc:
        if _WRITE_FAILED.search(str(exc)):
            check_free_space(out, checkpoint_bytes(trainer), what)  # the disk is full: say so, by name
        raise


def prepare(label: str, checkpoints: Path, record: dict | None) -> Path | None:
    """Choose the checkpoint to resume: the main process sets aside the unusable ones, then all agree."""
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        resumable_checkpoint(checkpoints, record, writer=True)
    state.wait_for_everyone()
    last = resumable_checkpoint(checkpoints, record, writer=False)
    if last:
        logger.info("%s: resuming from %s", label, last)
    return last


def remove_set_aside(stage_dir: Path) -> None:
    shutil.rmtree(Path(stage_dir) / SET_ASIDE, ignore_errors=True)
