"""GPU smoke test for the first GPU: the real architecture, both fine-tunings, every backend, one script.

On CUDA, with no hub access: a random-weight Llama with the Llama-3.2-3B config (see
``benchmarks/full_size.py``), the real Llama-3 tokenizer when ``llama-models`` is installed (else a
tiny BPE tokenizer with the model's 128,256-row embedding kept, so the logits cost the same),
bf16 autocast with gradient checkpointing, then for LoRA and for full fine-tuning: the compressor
(a few steps), fine-tuning steps, the adapter, ``--model latent`` greedy generation, export to a
merged checkpoint, plain HF greedy generation on it and vLLM's (if installed). It checks that
the greedy outputs are identical across backends, and prints per stage wall time, tokens/s and
peak GPU memory. Exit status 1 when a check fails.

    python benchmarks/gpu_smoke.py --out /tmp/gpu_smoke                 # one GPU, ~40 GiB for full fine-tuning
    python benchmarks/gpu_smoke.py --device cpu --out /tmp/smoke_cpu    # the same path at tiny size (a test)

Not yet run on a GPU: no GPU was available when it was written (see docs/training.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="working folder (removed afterwards unless --keep)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: the same path at tiny size, fp32 (no GPU needed)")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps of each fine-tuning")
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4, help="per device, at most")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported
    else:  # one GPU, one process: lm-latent train refuses several GPUs without a launcher (no DataParallel)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if not os.environ.get("LOCAL_RANK") and (visible is None or "," in visible):
            os.environ["CUDA_VISIBLE_DEVICES"] = (visible or "0").split(",")[0]

    import logging

    import torch
    import transformers

    from full_size import LLAMA_32_3B, TINY, TINY_COMPRESSOR, Options, run_pipeline

    transformers.logging.set_verbosity_error()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device visible; use --device cpu for the tiny CPU run", file=sys.stderr)
        return 2
    tokenizer = "tiny"
    if cuda:
        try:
            import llama_models  # noqa: F401

            tokenizer = "llama3"
        except ImportError:
            print("llama-models not installed: a tiny tokenizer on the full 128,256-row embedding", file=sys.stderr)
    opts = Options(out=Path(args.out), arch=LLAMA_32_3B if cuda else TINY, tokenizer=tokenizer, rows=200,
                   rate=16 if cuda else 4, codebook_size=1024 if cuda else 16, compressor_steps=4,
                   compressor_batch=256 if cuda else 32, lora_steps=args.steps, full_steps=args.steps,
                   batch_size=args.batch_size if cuda else 2, global_batch=args.global_batch if cuda else 4,
                   max_seq_len=args.max_seq_len if cuda else 128, prompts=4, new_tokens=16, resume=False,
                   bf16=cuda, gradient_checkpointing=True, base_dtype="bfloat16" if cuda else "float32",
                   gen_dtype="bfloat16" if cuda else "float32", compare_backends=True,
                   compressor_arch={} if cuda else TINY_COMPRESSOR)
    dev = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"gpu_smoke on {dev}: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{'Llama-3.2-3B architecture' if cuda else 'tiny Llama'}, tokenizer {tokenizer}")
    try:
        result = run_pipeline(opts)
    finally:
        if not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)
    failed = [name for name, ok in result["checks"].items() if ok is False]
    if failed:
        print(f"FAILED: {failed}")
        for name, outs in result["generations"].items():
            print(name, [str(o) for o in outs])
        return 1
    print("gpu_smoke: all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
