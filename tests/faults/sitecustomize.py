"""Fault injection for the kill-and-resume tests: on ``PYTHONPATH`` only in their child processes.

``LM_LATENT_TEST_KILL_AT=POINT`` SIGKILLs the process when ``lm_latent.utils.events`` reaches
POINT (``POINT=stop`` sends SIGSTOP: the concurrency test freezes a run holding its lock).
Besides the points production announces, ``STAGE:step:N`` (after optimizer step N, no
checkpoint being written) and ``STAGE:checkpoint:N`` (checkpoint-N holds the model weights
only) are made here from the ``STAGE:trainer`` point.
"""

import os

ENV = "LM_LATENT_TEST_KILL_AT"


def _kill_if(point: str) -> None:
    import signal

    name, _, action = os.environ.get(ENV, "").partition("=")
    if name == point:
        os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)


def _watch_trainer(stage: str, trainer) -> None:
    from transformers import TrainerCallback

    class KillAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if not control.should_save:
                _kill_if(f"{stage}:step:{state.global_step}")
            return control

    trainer.add_callback(KillAtStep())
    save_model = trainer.save_model

    def killing_save_model(output_dir=None, _internal_call=False):
        save_model(output_dir, _internal_call=_internal_call)
        if _internal_call:  # the Trainer's own checkpoint write, not a final save_model()
            _kill_if(f"{stage}:checkpoint:{trainer.state.global_step}")

    trainer.save_model = killing_save_model


def _observer(point: str, context: dict) -> None:
    stage, _, what = point.partition(":")
    if what == "trainer":
        if os.environ.get(ENV, "").startswith(f"{stage}:"):
            _watch_trainer(stage, context["trainer"])
        return
    _kill_if(point)


if os.environ.get(ENV):
    from lm_latent.utils import events

    events.observe(_observer)
