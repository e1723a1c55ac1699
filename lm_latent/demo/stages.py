"""The demo's stages (data, base, adapters, sweep) and the state file that lets a rerun skip finished ones.

Each stage calls the real recipe: the synthetic generator, the base pretraining, ``lm-latent
train`` through :func:`lm_latent.training.train.run` with a ``TrainConfig`` built from the plan
(:func:`train_config`), and ``lm-latent sweep``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lm_latent.demo.plan import DemoPlan, plan_record
from lm_latent.utils.run_record import StageState

STATE_FILE = "demo_state.json"


def say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


class State(StageState):
    """``OUT/demo_state.json``: plan, finished stages and their wall times."""

    def __init__(self, out: Path, plan: DemoPlan) -> None:
        record = plan_record(plan)

        def refuse(old: dict) -> Exception | None:
            if old.get("plan") == record:
                return None
            return ValueError(f"{out} holds a demo run with another plan ({old.get('plan', {}).get('name')}); "
                              f"use another --out or pass --restart")

        super().__init__(out / STATE_FILE, "plan", record, refuse)


def demo_paths(out: Path) -> dict[str, Path]:
    from lm_latent.demo.synthetic import dataset_paths

    data = dataset_paths(out / "data")  # train, test, pretrain: the generator's own layout
    return {"data": out / "data", "train": data["train"], "test": data["test"], "pretrain": data["pretrain"],
            "base": out / "base", "adapters": out / "adapters", "results": out / "results",
            "report": out / "report.md"}


# --- data and base --------------------------------------------------------------------------------------

def stage_data(plan: DemoPlan, paths: dict) -> dict:
    from lm_latent.demo.synthetic import write_dataset
    from lm_latent.training.data import read_rows

    write_dataset(paths["data"], plan.n_train, plan.n_test, plan.seed, terse_fraction=plan.terse_fraction,
                  base_corpus=plan.base_corpus)
    example = read_rows(paths["test"])[0]
    say(f"held-out example:\n  Q: {example['question']}\n  A: {example['answer']}")
    return {"n_train": plan.n_train, "n_test": plan.n_test}


def base_config(plan: DemoPlan):
    from lm_latent.demo.base import PretrainConfig

    return PretrainConfig(hidden_size=plan.base_hidden, num_layers=plan.base_layers,
                          intermediate_size=plan.base_intermediate,
                          max_steps=plan.base_steps, batch_size=plan.base_batch, learning_rate=plan.base_lr,
                          prompt_loss=plan.base_prompt_loss,
                          save_steps=max(10, plan.base_steps // 8), logging_steps=max(5, plan.base_steps // 40),
                          seed=plan.seed)


def stage_base(plan: DemoPlan, paths: dict, progress: bool = True, config=None) -> dict:
    """The shipped base copied to ``OUT/base``, or with ``plan.train_base`` a base pretrained on
    ``OUT/data/pretrain.jsonl`` (``config`` replaces :func:`base_config` in tests)."""
    from lm_latent.demo.base import pretrain
    from lm_latent.demo.pretrained import copy_pretrained

    if plan.train_base:
        record = pretrain(paths["pretrain"], paths["base"], config or base_config(plan), progress=progress)
    else:
        record = copy_pretrained(paths["base"])
        say(f"base model: the one shipped with lm-latent ({record['trained_by']})")
    say(f"base model: {record['parameters'] / 1e6:.2f}M parameters, {record['steps']} steps, "
        f"{record['seconds_per_step'] or float('nan'):.2f} s/step, final loss {record['final_loss']:.3f}")
    return {k: record[k] for k in ("parameters", "steps", "seconds_per_step", "final_loss")}


# --- adapters -------------------------------------------------------------------------------------------

def train_config(plan: DemoPlan, paths: dict, rate: int, progress: bool = True):
    """The ``lm-latent train`` settings for one rate (the same recipe for every rate).

    Rate 0 leaves the latent-only settings (codebook, compressor recipe, schedule) at
    ``TrainConfig``'s defaults, as ``lm-latent train --rate 0`` without those flags does: they are
    unused there and enter only the run record.
    """
    from lm_latent.adapter.compressor import CompressorArchitecture
    from lm_latent.training.finetune import FinetuneConfig
    from lm_latent.training.mixed_traces import parse_schedule
    from lm_latent.training.train import TrainConfig
    from lm_latent.training.train_compressor import CompressorTrainConfig

    steps = plan.steps_for(rate)
    finetune = FinetuneConfig(lora_r=plan.lora_r, lora_alpha=plan.lora_alpha, learning_rate=plan.finetune_lr,
                              batch_size=plan.finetune_batch, grad_accum=1, group_by_length=plan.group_by_length,
                              save_steps=max(10, steps // 4), logging_steps=max(5, steps // 20), seed=plan.seed)
    cfg = TrainConfig(rate=rate, base=str(paths["base"]), data=str(paths["train"]), out=str(paths["adapters"]),
                      max_steps=steps, progress=progress, compressor=CompressorTrainConfig(seed=plan.seed),
                      finetune=finetune)
    if rate:
        cfg.codebook_size = plan.codebook_size
        cfg.finetune.schedule = parse_schedule(plan.schedule)
        architecture = CompressorArchitecture(
            hidden_size=plan.compressor_hidden, num_layers=plan.compressor_layers,
            codebook_dim=plan.compressor_codebook_dim, max_prompt_len=plan.compressor_max_prompt_len)
        cfg.compressor = CompressorTrainConfig(
            model=architecture, learning_rate=plan.compressor_lr, batch_size=plan.compressor_batch,
            max_steps=plan.compressor_steps,
            save_steps=max(10, plan.compressor_steps // 4), seed=plan.seed)
    return cfg


def stage_adapters(plan: DemoPlan, paths: dict, progress: bool = True, eta=None) -> dict:
    """``lm-latent train`` per rate, skipping adapters already trained; ``eta`` (:class:`~lm_latent.demo.eta.Eta`)
    hears of each finished rate."""
    from lm_latent.adapter.config import LATENT_CONFIG_NAME
    from lm_latent.training.checkpoints import TrainingInterrupted
    from lm_latent.training.train import run

    info = {}
    for i, rate in enumerate(plan.rates, 1):
        target = paths["adapters"] / f"rate{rate}"
        label = "rate 0 (CoT baseline)" if rate == 0 else f"rate {rate}"
        if (target / LATENT_CONFIG_NAME).is_file():
            say(f"adapter {i}/{len(plan.rates)} {label}: already trained ({target})")
            if eta:
                eta.skip(f"adapter {rate}")
        else:
            cfg = train_config(plan, paths, rate, progress)
            say(f"adapter {i}/{len(plan.rates)} {label}: lm-latent train, {cfg.max_steps} steps -> {target}")
            start = time.perf_counter()
            try:
                print(f"wrote {run(cfg)}", flush=True)
            except TrainingInterrupted as exc:
                raise RuntimeError(f"lm-latent train for {label}: {exc}; rerun the demo to resume") from exc
            seconds = time.perf_counter() - start
            info[str(rate)] = {"seconds": round(seconds, 1)}
            if eta:
                eta.done(f"adapter {rate}", seconds)
                say(f"adapter {i}/{len(plan.rates)} {label}: finished in {seconds:.0f} s; {eta.line()}")
        meta = json.loads((target / LATENT_CONFIG_NAME).read_text(encoding="utf-8"))
        info.setdefault(str(rate), {})["metrics"] = meta.get("metrics", {})
    return info


# --- sweep ----------------------------------------------------------------------------------------------

def _eval_model_args(plan: DemoPlan, paths: dict) -> str:
    # the plan's own generation budget: a model that never stops would run to lm-eval's 2048
    # decode_latents: the report shows latents read back as text (off the generation clock)
    return (f"pretrained={paths['base']},adapters={paths['adapters']},max_gen_toks={plan.max_gen_toks},"
            f"dtype=float32,decode_latents=true")


def _eval_flags(plan: DemoPlan, paths: dict) -> list[str]:
    return ["--batch_size", str(plan.eval_batch), "--metadata", f"data_dir={paths['data']}", "--log_samples"]


def sweep_argv(plan: DemoPlan, paths: dict) -> list[str]:
    return ["--rates", ",".join(map(str, plan.rates)), "--tasks", "latent_math_gsm8k", "--model_args",
            _eval_model_args(plan, paths), "--out", str(paths["results"]), *_eval_flags(plan, paths)]


def by_hand_argv(plan: DemoPlan, paths: dict, rate: int, output_path: str | Path) -> list[str]:
    """``lm_eval`` arguments that evaluate one of the demo's adapters as its sweep does."""
    return ["--model", "latent", "--model_args", f"rate={rate},{_eval_model_args(plan, paths)}",
            "--tasks", "latent_math_gsm8k",
            *_eval_flags(plan, paths), "--output_path", str(output_path)]


def stage_sweep(plan: DemoPlan, paths: dict) -> dict:
    from lm_latent.sweep import run as sweep

    argv = sweep_argv(plan, paths)
    say("lm-latent sweep " + " ".join(argv))
    code = sweep.main(argv)
    if code != 0:
        raise RuntimeError(f"lm-latent sweep exited with {code} (see {paths['results']}/rate<r>/lm_eval.log); "
                           f"rerun the demo to retry the failed rates")
    return {}
