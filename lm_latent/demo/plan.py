"""The demo's plans: every number a demo run depends on, ``--quick`` and the full run.

Why each value is what it is (the measurements behind them) is in ``docs/demo.md``,
"Why the plans are what they are"; the code keeps only the settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class DemoPlan:
    """Every number the demo depends on; ``--quick`` and the full run differ only here."""

    name: str
    n_train: int
    n_test: int
    base_steps: int
    base_batch: int
    base_lr: float
    rates: tuple[int, ...]
    finetune_steps: int
    compressor_steps: int
    # the base model's size (the defaults of lm_latent.demo.base.PretrainConfig)
    base_hidden: int = 128
    base_layers: int = 4
    base_intermediate: int = 384
    codebook_size: int = 256
    finetune_lr: float = 2e-3
    finetune_batch: int = 32
    lora_r: int = 16
    lora_alpha: int = 32
    # m, text tokens replaced per sample (``lm-latent train --schedule``): 48 mostly stays inside
    # the trace's opening restatement, which holds nothing the prompt lacks; "0,48" keeps half
    # the samples plain CoT
    schedule: str = "0,48"
    # share of the base model's corpus solved without the restatement (synthetic.pretrain_rows)
    terse_fraction: float = 0.5
    # the base model's corpus (synthetic.BASE_CORPORA): "mixed", the solution format (restating
    # and terse, as above); "equations", the bare arithmetic, so that neither CoT nor latent
    # fine-tuning continues a format the base already writes. base_prompt_loss: the base also
    # models the questions (the problems' language, which "mixed" teaches through restating)
    base_corpus: str = "mixed"
    base_prompt_loss: bool = False
    # fine-tuning steps of the latent rates (None: finetune_steps, as rate 0); a larger value
    # matches the tokens they see to rate 0's, their samples being shorter
    latent_finetune_steps: int | None = None
    # fine-tuning batches sorted by length in windows of this many batches (lm-latent train
    # --group-by-length): adapters 17-21% faster, but the latent rates scored 1.6-4.8 points
    # lower with it (docs/demo.md), so the plans pad each batch as drawn (0)
    group_by_length: int = 0
    compressor_lr: float = 2e-3
    compressor_batch: int = 64
    compressor_hidden: int = 128
    compressor_layers: int = 2
    compressor_codebook_dim: int = 32
    compressor_max_prompt_len: int = 128
    eval_batch: int = 64
    max_gen_toks: int = 320
    seed: int = 0
    # False: the base shipped with the package (FULL's base recipe, trained once by this demo), as a
    # study starts from a published pretrained model; True: pretrain the base_* recipe above
    train_base: bool = False

    def steps_for(self, rate: int) -> int:
        """Fine-tuning steps of one rate's adapter."""
        return self.latent_finetune_steps if rate and self.latent_finetune_steps else self.finetune_steps


# the miniature of the paper's rate sweep, on the seed figure's rates
FULL = DemoPlan(name="full", n_train=30000, n_test=1000, base_steps=2400, base_batch=32, base_lr=3e-3,
                rates=(0, 4, 16, 32), finetune_steps=500, compressor_steps=500)
# proves the method's path runs (latents generated, counted, stripped before grading) on the
# shipped base; schedule 48 puts latents in every rate-16 training sample. Its base_* recipe
# (a 500-step base) is used only with --train-base
QUICK = DemoPlan(name="quick", n_train=4000, n_test=60, base_steps=500, base_batch=32, base_lr=3e-3,
                 rates=(0, 16), finetune_steps=80, compressor_steps=40, codebook_size=64, max_gen_toks=200,
                 schedule="48")


def plan_record(plan: DemoPlan) -> dict:
    """The plan as ``demo_state.json`` keeps it (JSON lists for tuples): a rerun resumes only the same plan."""
    rec = asdict(plan)
    rec["rates"] = list(plan.rates)
    return rec


def plan_from_record(record: dict) -> DemoPlan:
    """The inverse of :func:`plan_record` (fields added since the record was written take their defaults)."""
    return DemoPlan(**{**record, "rates": tuple(record["rates"])})
