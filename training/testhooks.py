"""Test-only kill points: ``LM_LATENT_TEST_KILL_AT=POINT`` SIGKILLs ``lm-latent train`` at POINT.

The kill-and-resume tests (``tests/test_train_resume.py``) use it to stop a real run at an
exact place, as a power cut or ``kill -9`` would: mid-stage, inside a checkpoint write,
inside a final save. ``POINT=stop`` sends SIGSTOP instead (the concurrency test freezes a
run while it holds its lock). Nothing here runs per step unless the variable is set: the
step and checkpoint hooks are installed only then, and the other points are one environment
lookup per checkpoint or save.

Points (``STAGE`` is ``compressor`` or ``finetune``, ``N`` an optimizer step):

- ``STAGE:step:N``        after step N (no checkpoint being written)
- ``STAGE:checkpoint:N``  checkpoint-N holds the model weights only (optimizer, state not yet written)
- ``STAGE:record:N``      the Trainer finished checkpoint-N; its settings record is not yet written
- ``commit:NAME``         an atomic directory (``final``: the compressor; ``rate4``: the adapter) is
                          fully written in its ``.partial`` folder, not yet renamed into place
- ``compressor:done``     the compressor's ``final`` is in place
- ``adapter:done``        the adapter is in place; the work directory is not yet removed
- ``lock:held``           the run has just taken its lock
"""

from __future__ import annotations

import os
import signal

ENV = "LM_LATENT_TEST_KILL_AT"


def armed(prefix: str = "") -> bool:
    """Whether a kill point starting with ``prefix`` is set (decides whether to install hooks)."""
    spec = os.environ.get(ENV)
    return bool(spec) and spec.startswith(prefix)


def reached(point: str) -> None:
    """Kill (or stop) this process if ``point`` is the one named in ``$LM_LATENT_TEST_KILL_AT``."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, action = spec.partition("=")
    if name == point:
        os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)


def trainer_hooks(stage: str):
    """A callback for ``STAGE:step:N`` and a ``save_model`` wrapper for ``STAGE:checkpoint:N``; None unarmed."""
    if not armed(f"{stage}:"):
        return None
    from transformers import TrainerCallback

    class KillCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if not control.should_save:
                reached(f"{stage}:step:{state.global_step}")
            return control

    def wrap(trainer) -> None:
        save_model = trainer.save_model

        def killing_save_model(output_dir=None, _internal_call=False):
            save_model(output_dir, _internal_call=_internal_call)
            if _internal_call:  # the Trainer's own checkpoint write, not a final save_model()
                reached(f"{stage}:checkpoint:{trainer.state.global_step}")

        trainer.save_model = killing_save_model

    return KillCallback(), wrap
