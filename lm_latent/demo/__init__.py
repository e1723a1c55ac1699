"""``lm-latent demo``: the whole study in miniature, offline, on a laptop CPU.

    lm-latent demo [--quick] [--out demo_out]

Stages (each one skipped when rerun after it finished, so an interrupted demo continues):

1. ``data``     seeded GSM8K-like word problems, train + held-out test
                (:mod:`lm_latent.demo.synthetic`) in ``OUT/data/gsm8k/``, and the base
                model's corpus ``OUT/data/pretrain.jsonl`` (training problems, half solved tersely;
                with ``--base-corpus equations`` by their bare equations)
2. ``base``     the tiny Llama shipped with the package, copied to ``OUT/base/``
                (:mod:`lm_latent.demo.pretrained`: the full plan's base, pretrained once by this
                demo), or with ``--train-base`` one trained from scratch on that corpus, with its
                own tokenizer (:mod:`lm_latent.demo.base`)
3. ``adapters`` ``lm-latent train`` for rate 0 (plain CoT, the baseline) and every latent rate,
                all with the same fine-tuning steps: ``OUT/adapters/rate<r>/``
4. ``sweep``    ``lm-latent sweep``: ``lm_eval --model latent`` per rate on the held-out set
                (the real ``gsm8k`` task and grader via ``--metadata data_dir=OUT/data``), the
                results table and the accuracy/tokens chart: ``OUT/results/``
5. ``report``   ``OUT/report.md``: what was run, the table, the chart, per-rate compressor and
                latent statistics, what the codes identify, and whether a rate met the target.

``--quick`` proves that the pipeline and the latent path run end to end (its rate-16 adapter
writes latent tokens); the full run is the miniature of the paper's rate sweep. What each
costs and what it measured is in ``docs/demo.md``.

Modules: :mod:`~lm_latent.demo.plan` (the plans), :mod:`~lm_latent.demo.synthetic` (the data),
:mod:`~lm_latent.demo.base` (pretraining the base model), :mod:`~lm_latent.demo.pretrained` (the
shipped one), :mod:`~lm_latent.demo.stages` (each stage, through
the real training and sweep recipes), :mod:`~lm_latent.demo.report` (``report.md``),
:mod:`~lm_latent.demo.analysis.code_content` (what a latent code tells of its chunk),
:mod:`~lm_latent.demo.analysis.compare` (one table over several runs, each a design variant) and
:mod:`~lm_latent.demo.run` (the driver and the command line).
"""

from __future__ import annotations

from lm_latent.demo.plan import FULL, QUICK, DemoPlan
from lm_latent.demo.run import STAGES, main, run_demo
from lm_latent.demo.stages import STATE_FILE

__all__ = ["FULL", "QUICK", "STAGES", "STATE_FILE", "DemoPlan", "main", "run_demo"]
