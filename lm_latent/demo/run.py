"""``lm-latent demo``: the driver (stages in order, each skipped once finished) and its command line."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

from lm_latent.demo.eta import Eta
from lm_latent.demo.plan import FULL, QUICK, DemoPlan
from lm_latent.demo.report import build_report
from lm_latent.demo.synthetic import BASE_CORPORA
from lm_latent.demo.stages import State, demo_paths, say, stage_adapters, stage_base, stage_data, stage_sweep

STAGES = ("data", "base", "adapters", "sweep", "report")
DESCRIPTION = "lm-latent demo: the whole study in miniature, offline, on a laptop CPU."


def run_demo(out: str | Path, plan: DemoPlan, progress: bool = True, restart: bool = False,
             stop_after: str | None = None, base_config=None) -> Path:
    """Run the stages not yet finished in ``out`` (``stop_after`` one of :data:`STAGES`); returns the report.

    ``base_config`` replaces the plan's base pretraining recipe (tests train a smaller base).
    """
    import shutil

    from lm_latent.utils.fileio import write_text_atomic

    if base_config is not None:  # a base recipe of its own: trained, not the shipped one
        plan = replace(plan, train_base=True)
    if not plan.train_base:
        from lm_latent.demo.pretrained import check_fits

        check_fits(plan)  # before anything is written
    out = Path(out)
    if restart and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = demo_paths(out)
    state = State(out, plan)
    state.save()
    eta: Eta | None = None  # set below, before any runner is called
    runners = {
        "data": lambda: stage_data(plan, paths),
        "base": lambda: stage_base(plan, paths, progress, config=base_config),
        "adapters": lambda: stage_adapters(plan, paths, progress, eta=eta),
        "sweep": lambda: stage_sweep(plan, paths),
    }
    done = {s for s in ("base", "sweep") if state.done(s)} | ({f"adapter {r}" for r in plan.rates}
                                                                if state.done("adapters") else set())
    eta = Eta(plan, skipped=done)
    total = time.perf_counter()
    for i, stage in enumerate(STAGES, 1):
        if state.done(stage) and stage != "report":
            say(f"stage {i}/{len(STAGES)} {stage}: done earlier ({state.data['stages'][stage]['seconds']} s), skipped")
        else:
            say(f"stage {i}/{len(STAGES)} {stage} ..." + ("" if stage in ("data", "report") else f" ({eta.line()})"))
            start = time.perf_counter()
            if stage == "report":
                state.finish("report", 0.0)
                write_text_atomic(paths["report"], build_report(plan, paths, state))
                state.finish("report", time.perf_counter() - start)
            else:
                info = runners[stage]()
                seconds = time.perf_counter() - start
                state.finish(stage, seconds, info=info)
                eta.done(stage, seconds)
            say(f"stage {i}/{len(STAGES)} {stage}: finished in {time.perf_counter() - start:.0f} s")
        if stop_after == stage:
            break
    say(f"done in {time.perf_counter() - total:.0f} s this run; report: {paths['report']}")
    return paths["report"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent demo", description=DESCRIPTION)
    p.add_argument("--quick", action="store_true",
                   help="~4 minutes on 2 cores: proves the pipeline and the latent path run; its numbers mean little")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--restart", action="store_true",
                   help="discard the earlier progress (the whole --out folder) and start over")
    p.add_argument("--stop-after", choices=STAGES, default=None, help="stop after this stage")
    p.add_argument("--rates", default=None, help="override the plan's rates, e.g. 0,4,16 (0 is always added)")
    p.add_argument("--finetune-steps", type=int, default=None,
                   help="override the plan's fine-tuning steps (the same for every rate, baseline included)")
    p.add_argument("--train-base", action="store_true",
                   help="pretrain the base model from scratch (the full plan's: ~20 min on 2 cores) instead of "
                        "copying the one shipped with lm-latent")
    p.add_argument("--base-corpus", choices=BASE_CORPORA, default=None,
                   help="the base model's corpus: 'mixed', the solution format (the shipped base's); "
                        "'equations', bare arithmetic and the questions' language, never the solution format "
                        "(pretrains the base: implies --train-base)")
    p.add_argument("--latent-finetune-steps", type=int, default=None,
                   help="fine-tuning steps of the latent rates only (e.g. to match the tokens rate 0 sees)")
    p.add_argument("--schedule", default=None,
                   help="override the plan's replacement schedule, text tokens m per sample, e.g. 0,48")
    p.add_argument("--group-by-length", type=int, default=None, metavar="N",
                   help="fine-tuning batches sorted by length in windows of N batches (lm-latent train "
                        "--group-by-length); 0: batches padded as drawn")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = QUICK if args.quick else FULL
    if args.rates:
        from lm_latent.adapter.load import parse_rate

        rates = sorted({0, *(parse_rate(r) for r in args.rates.split(",") if r.strip())})
        plan = replace(plan, rates=tuple(rates))
    if args.train_base:
        plan = replace(plan, train_base=True)
    if args.finetune_steps is not None:
        if args.finetune_steps < 1:
            p.error(f"--finetune-steps must be >= 1, got {args.finetune_steps}")
        # train caps the compressor at --max-steps; record the steps it will really take
        plan = replace(plan, finetune_steps=args.finetune_steps,
                       compressor_steps=min(plan.compressor_steps, args.finetune_steps))
    if args.base_corpus == "equations":
        plan = replace(plan, base_corpus="equations", base_prompt_loss=True, train_base=True)
    if args.latent_finetune_steps is not None:
        if args.latent_finetune_steps < 1:
            p.error(f"--latent-finetune-steps must be >= 1, got {args.latent_finetune_steps}")
        plan = replace(plan, latent_finetune_steps=args.latent_finetune_steps)
    if args.group_by_length is not None:
        if args.group_by_length < 0:
            p.error(f"--group-by-length must be >= 0, got {args.group_by_length}")
        plan = replace(plan, group_by_length=args.group_by_length)
    if args.schedule is not None:
        from lm_latent.training.mixed_traces import parse_schedule

        try:
            plan = replace(plan, schedule=",".join(map(str, parse_schedule(args.schedule))))
        except ValueError as exc:
            p.error(f"--schedule: {exc}")
    try:
        report = run_demo(args.out, plan, progress=not args.no_progress, restart=args.restart,
                          stop_after=args.stop_after)
    except (ValueError, RuntimeError, FileExistsError, FileNotFoundError) as exc:
        p.exit(1, f"lm-latent demo: error: {exc}\n")
    print(f"wrote {report}")
    return 0
