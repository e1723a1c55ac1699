"""lm-latent study: a whole study (data, base, one compressor + adapter per rate, sweep, report) from a recipe.

    lm-latent study --list
    lm-latent study token-assorted-llama3.2-3b --dry-run --gpus 8 [key=value ...]
    lm-latent study token-assorted-llama3.2-3b --out study/ --gpus 8
    lm-latent study demo-quick --out demo_quick      # ``lm-latent demo --quick``
    lm-latent study my_recipe.yaml --out study/ rates=0,16 train.finetune.mode=lora

A recipe (:mod:`lm_latent.study.recipe`) is validated against the same dataclasses ``lm-latent
train`` is built from before anything runs; ``--dry-run`` prints the plan (:mod:`lm_latent.study.plan`):
each stage's exact commands and estimates of its GPU-hours, per-GPU memory and disk. A run
(:mod:`lm_latent.study.run`) executes those commands, skipping finished stages, and writes
``OUT/report.md`` (:mod:`lm_latent.study.report`). The ``demo`` recipes run the demo's driver
with the demo's plan.
"""

from __future__ import annotations

import argparse

from lm_latent.study.recipe import Recipe, RecipeError, load_recipe, shipped_recipes

__all__ = ["Recipe", "RecipeError", "load_recipe", "main", "shipped_recipes"]


def _demo_plan_text(recipe: Recipe) -> str:
    from pathlib import Path

    from lm_latent.demo.eta import estimates
    from lm_latent.demo.plan import FULL, QUICK
    from lm_latent.demo.stages import demo_paths, sweep_argv, train_config
    from lm_latent.utils.dataclass_cli import to_argv

    plan, paths = recipe.demo_plan, demo_paths(Path(recipe.out))
    same = plan == {"quick": QUICK, "full": FULL}[str(recipe.demo)]
    seconds = estimates(plan)
    lines = [f"demo recipe {recipe.name}  ({recipe.source})",
             f"  the demo's {recipe.demo!r} plan{'' if same else ' with demo_plan overrides'}; the same run as "
             f"`lm-latent demo{' --quick' if recipe.demo == 'quick' else ''} --out {recipe.out}`"
             f"{'' if same else ' with those overrides'}",
             "stage 1/5 data: synthetic GSM8K-like problems "
             f"({plan.n_train} train, {plan.n_test} test) in {paths['data']}",
             f"stage 2/5 base: {'pretrained from scratch' if plan.train_base else 'the base shipped with lm-latent'}"
             f" -> {paths['base']}  (estimate ~{seconds['base']:.0f} s)"]
    for rate in plan.rates:
        argv = to_argv(train_config(plan, paths, rate, progress=True))
        lines.append(f"stage 3/5 adapter rate {rate}: (in process) lm-latent train {' '.join(argv)}  "
                     f"(estimate ~{seconds[f'adapter {rate}']:.0f} s)")
    lines.append(f"stage 4/5 sweep: (in process) lm-latent sweep {' '.join(sweep_argv(plan, paths))}  "
                 f"(estimate ~{seconds['sweep']:.0f} s)")
    lines.append(f"stage 5/5 report: {paths['report']}")
    lines.append(f"total estimate: ~{sum(seconds.values()) / 60:.0f} min on 2 idle CPU cores "
                 f"(lm_latent.demo.eta's costs); no GPU")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent study", description=__doc__.splitlines()[0])
    p.add_argument("recipe", nargs="?", help="a shipped recipe's name (--list) or a path to a .yaml recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="override a recipe setting, e.g. gpus=8 rates=0,16 train.finetune.learning_rate=2e-5")
    p.add_argument("--list", action="store_true", help="list the shipped recipes")
    p.add_argument("--dry-run", action="store_true", help="validate the recipe and print the plan; run nothing")
    p.add_argument("--out", default=None, help="output folder (the same as the override out=DIR)")
    p.add_argument("--gpus", type=int, default=None, metavar="N",
                   help="GPUs of this node to use (the same as the override gpus=N); default: the recipe's")
    p.add_argument("--restart", action="store_true",
                   help="discard the earlier progress (the whole output folder) and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_intermixed_args(argv)  # flags and key=value overrides in any order
    if args.list:
        for name, line in shipped_recipes().items():
            print(f"{name:<32} {line}")
        return 0
    if not args.recipe:
        p.error("give a recipe (lm-latent study --list shows the shipped ones)")
    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out is not None else []) + (
        [f"gpus={args.gpus}"] if args.gpus is not None else [])
    try:
        recipe = load_recipe(args.recipe, overrides)
    except RecipeError as exc:
        p.exit(2, f"lm-latent study: error: {exc}\n")
    if recipe.kind == "demo":
        print(_demo_plan_text(recipe), flush=True)
        if args.dry_run:
            return 0
        from lm_latent.demo.run import run_demo

        try:
            report = run_demo(recipe.out, recipe.demo_plan, progress=not args.no_progress, restart=args.restart)
        except (ValueError, RuntimeError, FileExistsError, FileNotFoundError) as exc:
            p.exit(1, f"lm-latent study: error: {exc}\n")
        print(f"wrote {report}")
        return 0
    from lm_latent.study.plan import build_plan, render_plan

    stages = build_plan(recipe)
    print(render_plan(recipe, stages), flush=True)
    if args.dry_run:
        return 0
    from lm_latent.study.run import StudyError, run_study
    from lm_latent.utils.fileio import LockedError

    try:
        report = run_study(recipe, progress=not args.no_progress, restart=args.restart)
    except (StudyError, LockedError) as exc:
        p.exit(1, f"lm-latent study: error: {exc}\n")
    print(f"wrote {report}")
    return 0
