"""Cost of the ``latent`` wrapper: ``--model latent`` vs ``--model hf`` on the same merged weights.

Same prompts, same greedy settings, one process, runs alternated; prints the median wall
time of each, tokens/s, their ratio (target <= 1.05) and whether the outputs are identical.

    python benchmarks/bench_wrapper.py                      # a random Llama built on the fly
    python benchmarks/bench_wrapper.py --base DIR --adapter DIR --prompts 32 --max-gen-toks 256
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def build_default(work: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    from lm_latent.adapter.init import init_adapter
    from lm_latent.demo.tiny import build_llama, build_tokenizer

    tok = build_tokenizer(work / "tok")
    build_llama(work / "base", tok, tied=True, hidden=hidden, layers=layers)
    init_adapter(str(work / "base"), 4, 64, work / "adapters" / "rate4")
    return work / "base", work / "adapters" / "rate4"


def export_merged(base: Path, adapter: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM

    from lm_latent.adapter.load import attach_adapter, check_adapter, load_adapter_tokenizer

    config = check_adapter(adapter)
    attach_adapter(AutoModelForCausalLM.from_pretrained(str(base)), adapter, config).save_pretrained(str(out))
    load_adapter_tokenizer(adapter, config).save_pretrained(str(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base")
    p.add_argument("--adapter")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--max-gen-toks", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from lm_latent.adapter.load import check_adapter
    from lm_latent.models.latent_hf import LatentLM
    from lm_latent.prompts import PROMPT_TEMPLATE
    from lm_latent.demo.tiny import math_corpus

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(tempfile.mkdtemp(prefix="bench_wrapper_"))
    if args.base and args.adapter:
        base, adapter = Path(args.base), Path(args.adapter)
    else:
        base, adapter = build_default(work, args.hidden, args.layers)
    export_merged(base, adapter, work / "merged")
    rate = check_adapter(adapter).rate

    questions = [line for line in math_corpus(200, seed=1) if line.endswith("?")][: args.prompts]
    gen = {"until": ["### Instruction"], "do_sample": False, "max_gen_toks": args.max_gen_toks}
    requests = [Instance("generate_until", {}, (PROMPT_TEMPLATE.format(query=q), dict(gen)), i)
                for i, q in enumerate(questions)]
    latent = LatentLM(pretrained=str(base), rate=rate, adapter=str(adapter), device=device,
                      batch_size=args.batch_size, max_gen_toks=args.max_gen_toks)
    hf = HFLM(pretrained=str(work / "merged"), device=device, batch_size=args.batch_size)

    times = {"latent": [], "hf": []}
    outputs = {}
    for i in range(args.repeats + 1):  # first round warms both up and is not timed
        for name, lm in (("latent", latent), ("hf", hf)) if i % 2 else (("hf", hf), ("latent", latent)):
            start = time.perf_counter()
            out = lm.generate_until([Instance(r.request_type, r.doc, (r.args[0], dict(r.args[1])), r.idx)
                                     for r in requests], disable_tqdm=True)
            if i:
                times[name].append(time.perf_counter() - start)
            outputs[name] = out
    tokens = sum(o.gen_tokens for o in outputs["latent"])
    med = {k: statistics.median(v) for k, v in times.items()}
    identical = [str(o) for o in outputs["latent"]] == list(outputs["hf"])
    print(f"device={device} prompts={len(requests)} batch={args.batch_size} max_gen_toks={args.max_gen_toks} "
          f"repeats={args.repeats} generated_tokens={tokens}")
    for name in ("hf", "latent"):
        print(f"{name:>7}: median {med[name]:.3f} s  ({tokens / med[name]:.1f} tok/s)  runs "
              + ", ".join(f"{t:.3f}" for t in times[name]))
    print(f"ratio latent/hf (wall time): {med['latent'] / med['hf']:.3f}   (target <= 1.05)")
    print(f"outputs identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
