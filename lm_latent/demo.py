"""``lm-latent demo``: the whole study in miniature, offline, on a laptop CPU.

    lm-latent demo [--quick] [--out demo_out]

Stages (each one skipped when rerun after it finished, so an interrupted demo continues):

1. ``data``     seeded GSM8K-like word problems, train + held-out test
                (:mod:`lm_latent.training.synthetic`) in ``OUT/data/gsm8k/``, and the base
                model's corpus ``OUT/data/pretrain.jsonl`` (training problems, half solved tersely)
2. ``base``     a tiny Llama trained from scratch on that corpus, with its own tokenizer
                (:mod:`lm_latent.training.pretrain_base`): ``OUT/base/``
3. ``adapters`` ``lm-latent train`` for rate 0 (plain CoT, the baseline) and every latent rate,
                all with the same fine-tuning steps: ``OUT/adapters/rate<r>/``
4. ``sweep``    ``lm-latent sweep``: ``lm_eval --model latent`` per rate on the held-out set
                (the real ``gsm8k`` task and grader via ``--metadata data_dir=OUT/data``), the
                results table and the accuracy/tokens chart: ``OUT/results/``
5. ``report``   ``OUT/report.md``: what was run, the table, the chart, per-rate compressor and
                latent statistics, and whether a rate matched the baseline with fewer tokens.

``--quick`` (about 8 minutes on 2 cores) proves that the pipeline and the latent path run
end to end (its rate-16 adapter writes latent tokens); the full run (about 35 minutes) is
the miniature of the paper's rate sweep.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

logger = logging.getLogger(__name__)

STATE_FILE = "demo_state.json"
STAGES = ("data", "base", "adapters", "sweep", "report")


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
    # the base model's size (PretrainConfig's defaults: 0.94M parameters)
    base_hidden: int = 128
    base_layers: int = 4
    base_intermediate: int = 384
    codebook_size: int = 256
    finetune_lr: float = 2e-3
    finetune_batch: int = 32
    lora_r: int = 16
    lora_alpha: int = 32
    # m (text tokens replaced per sample): a trace's first 44-79 tokens (opener, restatement,
    # goal; median 59 in the full run's tokenizer) hold nothing the prompt lacks, so 48 replaces
    # no arithmetic in 97% of held-out problems; half the samples stay plain CoT. (A schedule
    # weighted to small m made greedy decoding stop after one chunk, mid-restatement, always.)
    schedule: str = "0,48"
    # share of the base model's corpus solved without the restatement (synthetic.pretrain_rows)
    terse_fraction: float = 0.5
    # many small steps beat few large ones at equal compute: batch 64 x 500 steps reconstructs
    # 26% of held-out tokens in ~100 s, batch 256 x 200 steps 18% in ~170 s (full-run base, rate 16)
    compressor_lr: float = 2e-3
    compressor_batch: int = 64
    compressor_hidden: int = 128
    compressor_layers: int = 2
    compressor_codebook_dim: int = 32
    compressor_max_prompt_len: int = 128
    eval_batch: int = 64
    max_gen_toks: int = 320
    seed: int = 0
    extra_train_args: tuple[str, ...] = field(default_factory=tuple)


# 500 fine-tuning steps, not 200: CoT 81.3 -> 86.7%, rate 16 73.7 -> 80.3% on the same base; three
# rates keep the full run at ~35 minutes (``--rates 0,4,8,16`` adds rate 4, ~7 min more)
FULL = DemoPlan(name="full", n_train=30000, n_test=300, base_steps=2400, base_batch=32, base_lr=3e-3,
                rates=(0, 8, 16), finetune_steps=500, compressor_steps=500)
# --quick must still show the method's path (latents generated, counted, stripped before grading).
# 60 base + 20 fine-tuning steps wrote 0 latents in 60 answers and solved 1 (the fine-tuned model
# never learned to open with <boLatent>; the base could not yet copy numbers from the question).
# Most of the budget goes to the base (its steps cost half a fine-tuning step); schedule 48 puts
# latents in every rate-16 training sample. Measured on a fresh clone (2 cores, 7.6 min): CoT 1/60,
# rate 16 latents in 6/60 answers (on a 300-step base the same recipe opened all 60 with
# <boLatent>, 31 with codes). Not yet "most answers" (issue 15.6 stays open on that point).
QUICK = DemoPlan(name="quick", n_train=4000, n_test=60, base_steps=500, base_batch=32, base_lr=3e-3,
                 rates=(0, 16), finetune_steps=50, compressor_steps=40, codebook_size=64, max_gen_toks=200,
                 schedule="48")


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


class _State:
    """``OUT/demo_state.json``: plan, finished stages and their wall times."""

    def __init__(self, out: Path, plan: DemoPlan) -> None:
        self.path = out / STATE_FILE
        self.data = {"plan": _plan_record(plan), "stages": {}}
        if self.path.is_file():
            old = json.loads(self.path.read_text(encoding="utf-8"))
            if old.get("plan") != self.data["plan"]:
                raise ValueError(f"{out} holds a demo run with another plan ({old.get('plan', {}).get('name')}); "
                                 f"use another --out or pass --restart")
            self.data = old

    def done(self, stage: str) -> bool:
        return stage in self.data["stages"]

    def finish(self, stage: str, seconds: float, **info) -> None:
        from lm_latent.fileio import write_json_atomic

        self.data["stages"][stage] = {"seconds": round(seconds, 1), **info}
        write_json_atomic(self.path, self.data)

    def save(self) -> None:
        from lm_latent.fileio import write_json_atomic

        write_json_atomic(self.path, self.data)


def _plan_record(plan: DemoPlan) -> dict:
    rec = asdict(plan)
    rec["rates"] = list(plan.rates)
    rec["extra_train_args"] = list(plan.extra_train_args)
    return rec


def _paths(out: Path) -> dict[str, Path]:
    from lm_latent.training.synthetic import dataset_paths

    data = dataset_paths(out / "data")  # train, test, pretrain: the generator's own layout
    return {"data": out / "data", "train": data["train"], "test": data["test"], "pretrain": data["pretrain"],
            "base": out / "base", "adapters": out / "adapters", "results": out / "results",
            "report": out / "report.md"}


# --- stages -----------------------------------------------------------------------------------------------

def stage_data(plan: DemoPlan, paths: dict) -> dict:
    from lm_latent.training.data import read_rows
    from lm_latent.training.synthetic import write_dataset

    write_dataset(paths["data"], plan.n_train, plan.n_test, plan.seed, terse_fraction=plan.terse_fraction)
    example = read_rows(paths["test"])[0]
    _say(f"held-out example:\n  Q: {example['question']}\n  A: {example['answer']}")
    return {"n_train": plan.n_train, "n_test": plan.n_test}


def base_config(plan: DemoPlan):
    from lm_latent.training.pretrain_base import PretrainConfig

    return PretrainConfig(hidden_size=plan.base_hidden, num_layers=plan.base_layers,
                          intermediate_size=plan.base_intermediate,
                          max_steps=plan.base_steps, batch_size=plan.base_batch, learning_rate=plan.base_lr,
                          save_steps=max(10, plan.base_steps // 8), logging_steps=max(5, plan.base_steps // 40),
                          seed=plan.seed)


def stage_base(plan: DemoPlan, paths: dict, progress: bool = True) -> dict:
    from lm_latent.training.pretrain_base import pretrain

    record = pretrain(paths["pretrain"], paths["base"], base_config(plan), progress=progress)
    _say(f"base model: {record['parameters'] / 1e6:.2f}M parameters, {record['steps']} steps, "
         f"{record['seconds_per_step'] or float('nan'):.2f} s/step, final loss {record['final_loss']:.3f}")
    return {k: record[k] for k in ("parameters", "steps", "seconds_per_step", "final_loss")}


def train_argv(plan: DemoPlan, paths: dict, rate: int, progress: bool = True) -> list[str]:
    """The ``lm-latent train`` command line for one rate (the same recipe for every rate)."""
    argv = ["--rate", str(rate), "--base", str(paths["base"]), "--data", str(paths["train"]),
            "--out", str(paths["adapters"]), "--max-steps", str(plan.finetune_steps),
            "--lr", str(plan.finetune_lr), "--batch-size", str(plan.finetune_batch), "--grad-accum", "1",
            "--lora-r", str(plan.lora_r), "--lora-alpha", str(plan.lora_alpha),
            "--save-steps", str(max(10, plan.finetune_steps // 4)),
            "--logging-steps", str(max(5, plan.finetune_steps // 20)), "--seed", str(plan.seed)]
    if rate:
        argv += ["--codebook-size", str(plan.codebook_size), "--schedule", plan.schedule,
                 "--compressor-steps", str(plan.compressor_steps), "--compressor-lr", str(plan.compressor_lr),
                 "--compressor-batch-size", str(plan.compressor_batch),
                 "--compressor-hidden", str(plan.compressor_hidden),
                 "--compressor-layers", str(plan.compressor_layers),
                 "--compressor-codebook-dim", str(plan.compressor_codebook_dim),
                 "--compressor-max-prompt-len", str(plan.compressor_max_prompt_len),
                 "--compressor-save-steps", str(max(10, plan.compressor_steps // 4))]
    if not progress:
        argv.append("--no-progress")
    return argv + list(plan.extra_train_args)


def stage_adapters(plan: DemoPlan, paths: dict, progress: bool = True) -> dict:
    from lm_latent.latent_config import LATENT_CONFIG_NAME
    from lm_latent.training import train

    info = {}
    for i, rate in enumerate(plan.rates, 1):
        target = paths["adapters"] / f"rate{rate}"
        label = "rate 0 (CoT baseline)" if rate == 0 else f"rate {rate}"
        if (target / LATENT_CONFIG_NAME).is_file():
            _say(f"adapter {i}/{len(plan.rates)} {label}: already trained ({target})")
        else:
            argv = train_argv(plan, paths, rate, progress)
            _say(f"adapter {i}/{len(plan.rates)} {label}: lm-latent train {' '.join(argv)}")
            start = time.perf_counter()
            code = train.main(argv)
            if code != 0:
                raise RuntimeError(f"lm-latent train for {label} exited with {code}; rerun the demo to resume")
            info[str(rate)] = {"seconds": round(time.perf_counter() - start, 1)}
        meta = json.loads((target / LATENT_CONFIG_NAME).read_text(encoding="utf-8"))
        info.setdefault(str(rate), {})["metrics"] = meta.get("metrics", {})
    return info


def _eval_model_args(plan: DemoPlan, paths: dict) -> str:
    # the plan's own generation budget: a model that never stops would run to lm-eval's 2048
    return (f"pretrained={paths['base']},adapters={paths['adapters']},max_gen_toks={plan.max_gen_toks},"
            f"dtype=float32")


def _eval_flags(plan: DemoPlan, paths: dict) -> list[str]:
    return ["--batch_size", str(plan.eval_batch), "--metadata", f"data_dir={paths['data']}", "--log_samples"]


def sweep_argv(plan: DemoPlan, paths: dict) -> list[str]:
    return ["--rates", ",".join(map(str, plan.rates)), "--tasks", "gsm8k", "--model_args",
            _eval_model_args(plan, paths), "--out", str(paths["results"]), *_eval_flags(plan, paths)]


def by_hand_argv(plan: DemoPlan, paths: dict, rate: int, output_path: str | Path) -> list[str]:
    """``lm_eval`` arguments that evaluate one of the demo's adapters as its sweep does."""
    return ["--model", "latent", "--model_args", f"rate={rate},{_eval_model_args(plan, paths)}", "--tasks", "gsm8k",
            *_eval_flags(plan, paths), "--output_path", str(output_path)]


def stage_sweep(plan: DemoPlan, paths: dict) -> dict:
    from lm_latent import sweep

    argv = sweep_argv(plan, paths)
    _say("lm-latent sweep " + " ".join(argv))
    code = sweep.main(argv)
    if code != 0:
        raise RuntimeError(f"lm-latent sweep exited with {code} (see {paths['results']}/rate<r>/lm_eval.log); "
                           f"rerun the demo to retry the failed rates")
    return {}


# --- report -----------------------------------------------------------------------------------------------

def _eval_seconds(results_dir: Path, rate: int) -> float:
    from lm_latent.report import latest_results_json

    path = latest_results_json(results_dir / f"rate{rate}")
    if path is None:
        return math.nan
    try:
        return float(json.loads(path.read_text(encoding="utf-8")).get("total_evaluation_time_seconds", math.nan))
    except (ValueError, TypeError):
        return math.nan


def build_report(plan: DemoPlan, paths: dict, state: _State) -> str:
    from lm_latent.report import _fmt, collect

    rows = {r.rate: r for r in collect(paths["results"])}
    stages = state.data["stages"]
    base = json.loads((paths["base"] / "pretrain.json").read_text(encoding="utf-8"))
    table = (paths["results"] / "results.md").read_text(encoding="utf-8") if (paths["results"] / "results.md").is_file() else ""
    lines = [f"# lm-latent demo ({plan.name})", "",
             "A miniature of the Token Assorted rate sweep, run offline on CPU by `lm-latent demo"
             + (" --quick" if plan.name == "quick" else "") + "`.", ""]
    if plan.name == "quick":
        lines += ["**Quick mode: the numbers only prove that the pipeline runs end to end.**", ""]
    lines += ["## What was run", "",
              f"- data: {plan.n_train} synthetic GSM8K-like training problems (2-4 steps), {plan.n_test} held-out "
              f"(`{paths['data']}`)",
              f"- base model: tiny Llama, {base['parameters'] / 1e6:.2f}M parameters, own BPE tokenizer "
              f"({base['vocab_size']} ids), {base['steps']} steps at batch {plan.base_batch} "
              f"({_fmt(base.get('seconds_per_step'), '.2f')} s/step, final loss {_fmt(base.get('final_loss'), '.3f')})",
              f"- adapters: rates {', '.join(map(str, plan.rates))}; every rate fine-tuned {plan.finetune_steps} steps "
              f"(LoRA r={plan.lora_r}, lr {plan.finetune_lr}, batch {plan.finetune_batch}); compressors "
              f"{plan.compressor_steps} steps, codebook {plan.codebook_size}; schedule m in {{{plan.schedule}}}",
              f"- evaluation: `lm_eval --model latent --tasks gsm8k --metadata data_dir=...` on the held-out set, "
              f"greedy, max_gen_toks={plan.max_gen_toks}", "",
              "## Results", "", table, "![accuracy and generated tokens vs rate](results/chart.png)", "",
              # the sweep's table above has accuracy, tokens, usage and times: only what it lacks here
              "Latents and adapters per rate (latent tokens per answer; compressor reconstruction "
              "accuracy on held-out chunks; share of fine-tuning samples that carried latents):", "",
              "| rate | latent tokens | lm-eval s | codebook usage | recon acc % (all / trace) | "
              "mixed samples with latents % |",
              "|---|---|---|---|---|---|"]
    adapters = stages.get("adapters", {}).get("info", {})
    for rate in plan.rates:
        r = rows.get(rate)
        m = adapters.get(str(rate), {}).get("metrics", {})
        lat_tok = r._mean(r.latent_tokens) if r else math.nan
        lines.append("| " + " | ".join([
            "0 (CoT)" if rate == 0 else str(rate), _fmt(lat_tok, ".2f"),
            _fmt(_eval_seconds(paths["results"], rate), ".0f"),
            _fmt(m.get("codebook_usage"), ".2f"),
            f"{_fmt(m.get('recon_accuracy'), pct=True)} / {_fmt(m.get('trace_recon_accuracy'), pct=True)}",
            _fmt(m.get("samples_with_latents"), pct=True)]) + " |")
    lines += ["", "## The target", ""]
    b = rows.get(0)
    if b is None:
        lines.append("No rate-0 result: no comparison possible.")
    else:
        hits = [r for rate, r in sorted(rows.items()) if rate and r.avg_accuracy >= b.avg_accuracy
                and r.avg_gen_tokens <= 0.83 * b.avg_gen_tokens]
        if hits:
            best = min(hits, key=lambda r: r.avg_gen_tokens)
            g0, g1 = b.generation_seconds, best.generation_seconds
            wall = (f"; generation wall time {g1:.1f} s vs {g0:.1f} s ({100 * (g1 / g0 - 1):+.0f}%)"
                    if g0 == g0 and g1 == g1 and g0 > 0 else "")
            lines.append(f"Met at rate {best.rate}: accuracy {100 * best.avg_accuracy:.1f}% vs {100 * b.avg_accuracy:.1f}% "
                         f"(CoT) with {100 * (1 - best.avg_gen_tokens / b.avg_gen_tokens):.1f}% fewer generated "
                         f"tokens{wall}.")
        else:
            lines.append(f"Not met (accuracy >= CoT's {100 * b.avg_accuracy:.1f}% with >= 17% fewer tokens than its "
                         f"{b.avg_gen_tokens:.1f}). Trade-offs per rate:")
            for rate, r in sorted(rows.items()):
                if rate:
                    time = (f", {100 * (r.generation_seconds / b.generation_seconds - 1):+.1f}% generation time"
                            if b.generation_seconds > 0 else "")
                    lines.append(f"- rate {rate}: {100 * (r.avg_accuracy - b.avg_accuracy):+.1f} points, "
                                 f"{100 * (r.avg_gen_tokens / b.avg_gen_tokens - 1):+.1f}% tokens{time}")
    top = max(plan.rates)
    lines += ["", "## By hand", "",
              f"One rate as the sweep ran it (the demo's generation budget and batch size; without "
              f"`max_gen_toks` a model that never stops runs to lm-eval's default of 2048 tokens per problem):", "",
              "    lm_eval " + " ".join(by_hand_argv(plan, paths, top, paths["report"].parent / "by_hand"))]
    lines += ["", "## Stage times", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {info['seconds']} |" for name, info in stages.items()]
    lines += ["", "Rerun `lm-latent demo" + (" --quick" if plan.name == "quick" else "") + f" --out {paths['report'].parent}` "
              "to continue an interrupted run; finished stages are skipped.", ""]
    return "\n".join(lines)


# --- driver -----------------------------------------------------------------------------------------------

def run_demo(out: str | Path, plan: DemoPlan, progress: bool = True, restart: bool = False,
             stop_after: str | None = None) -> Path:
    import shutil

    from lm_latent.fileio import write_text_atomic

    out = Path(out)
    if restart and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = _paths(out)
    state = _State(out, plan)
    state.save()
    runners = {
        "data": lambda: stage_data(plan, paths),
        "base": lambda: stage_base(plan, paths, progress),
        "adapters": lambda: stage_adapters(plan, paths, progress),
        "sweep": lambda: stage_sweep(plan, paths),
    }
    total = time.perf_counter()
    for i, stage in enumerate(STAGES, 1):
        if state.done(stage) and stage != "report":
            _say(f"stage {i}/{len(STAGES)} {stage}: done earlier ({state.data['stages'][stage]['seconds']} s), skipped")
        else:
            _say(f"stage {i}/{len(STAGES)} {stage} ...")
            start = time.perf_counter()
            if stage == "report":
                state.finish("report", 0.0)
                write_text_atomic(paths["report"], build_report(plan, paths, state))
                state.finish("report", time.perf_counter() - start)
            else:
                info = runners[stage]()
                state.finish(stage, time.perf_counter() - start, info=info)
            _say(f"stage {i}/{len(STAGES)} {stage}: finished in {time.perf_counter() - start:.0f} s")
        if stop_after == stage:
            break
    _say(f"done in {time.perf_counter() - total:.0f} s this run; report: {paths['report']}")
    return paths["report"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent demo", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="~8 minutes on 2 cores: proves the pipeline and the latent path run; its numbers mean little")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--restart", action="store_true", help="delete --out and start over")
    p.add_argument("--stop-after", choices=STAGES, default=None, help="stop after this stage")
    p.add_argument("--rates", default=None, help="override the plan's rates, e.g. 0,4,16 (0 is always added)")
    p.add_argument("--finetune-steps", type=int, default=None,
                   help="override the plan's fine-tuning steps (the same for every rate, baseline included)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = QUICK if args.quick else FULL
    if args.rates:
        from lm_latent.adapter import parse_rate

        rates = sorted({0, *(parse_rate(r) for r in args.rates.split(",") if r.strip())})
        plan = replace(plan, rates=tuple(rates))
    if args.finetune_steps is not None:
        if args.finetune_steps < 1:
            p.error(f"--finetune-steps must be >= 1, got {args.finetune_steps}")
        # train caps the compressor at --max-steps; record the steps it will really take
        plan = replace(plan, finetune_steps=args.finetune_steps,
                       compressor_steps=min(plan.compressor_steps, args.finetune_steps))
    try:
        report = run_demo(args.out, plan, progress=not args.no_progress, restart=args.restart,
                          stop_after=args.stop_after)
    except (ValueError, RuntimeError, FileExistsError, FileNotFoundError) as exc:
        p.exit(1, f"lm-latent demo: error: {exc}\n")
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
