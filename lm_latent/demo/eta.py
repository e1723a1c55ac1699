"""The demo's ETA: each piece of work estimated from the plan, rescaled by what the finished ones took.

The costs are seconds on 2 idle CPU cores, from the runs in ``docs/demo.md`` (full run: 0.32 s
per base step at batch 32; quick run: 40.6 s for a 50-step rate-0 adapter). They only have to be
right to within a factor: after each finished piece the remaining estimate is scaled by
measured / estimated so far, so a slower or busier machine gets a later, truer ETA.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from lm_latent.demo.plan import DemoPlan

BASE_SECONDS_PER_ROW_STEP = 0.32 / 32   # base pretraining, per sample per step (4 layers, hidden 128)
FINETUNE_SECONDS_PER_ROW_STEP = 0.6 / 32  # LoRA fine-tuning, per sample per step
COMPRESSOR_SECONDS_PER_ROW_STEP = 0.25 / 64
BASE_COPY_SECONDS = 1.0                 # the shipped base, copied
ADAPTER_OVERHEAD = 10.0                 # tokenising, loading and saving, per rate
EVAL_SECONDS_PER_PROBLEM = 0.03
EVAL_OVERHEAD = 18.0                    # one lm_eval process per rate


def estimates(plan: DemoPlan) -> dict[str, float]:
    """Estimated seconds of each piece of work: ``base``, ``adapter <r>`` per rate, ``sweep``."""
    layers = plan.base_layers / 4
    out = {"base": plan.base_steps * plan.base_batch * BASE_SECONDS_PER_ROW_STEP * layers if plan.train_base
           else BASE_COPY_SECONDS}
    for rate in plan.rates:
        seconds = ADAPTER_OVERHEAD + plan.steps_for(rate) * plan.finetune_batch * FINETUNE_SECONDS_PER_ROW_STEP
        if rate:
            seconds += plan.compressor_steps * plan.compressor_batch * COMPRESSOR_SECONDS_PER_ROW_STEP
        out[f"adapter {rate}"] = seconds
    out["sweep"] = len(plan.rates) * (EVAL_OVERHEAD + plan.n_test * EVAL_SECONDS_PER_PROBLEM)
    return out


class Eta:
    """Remaining time of a demo run; :meth:`done` records a finished piece, :meth:`line` says what is left."""

    def __init__(self, plan: DemoPlan, skipped: set[str] | frozenset[str] = frozenset()) -> None:
        self.left = {k: v for k, v in estimates(plan).items() if k not in skipped}
        self.estimated_done = 0.0
        self.measured_done = 0.0

    def done(self, piece: str, seconds: float) -> None:
        estimate = self.left.pop(piece, None)
        if estimate is not None and seconds > 1.0:  # a piece too short to time says nothing of the pace
            self.estimated_done += estimate
            self.measured_done += seconds

    def skip(self, piece: str) -> None:
        self.left.pop(piece, None)

    @property
    def scale(self) -> float:
        if self.estimated_done <= 0:
            return 1.0
        return min(10.0, max(0.2, self.measured_done / self.estimated_done))

    def remaining(self) -> float:
        return sum(self.left.values()) * self.scale

    def line(self) -> str:
        left = self.remaining()
        finish = datetime.now() + timedelta(seconds=left)
        basis = "2 idle cores" if self.estimated_done == 0 else f"this machine's pace so far, x{self.scale:.2f}"
        return f"about {_minutes(left)} left (ETA {finish:%H:%M}, estimated at {basis})"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
