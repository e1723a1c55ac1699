"""Fine-tuning throughput: our fine-tune step vs the plain HF ``Trainer``, same model, same data.

Ours: ``lm_latent.training.finetune`` (extended tokenizer, LoRA on all linear layers plus
trainable new-token rows, response-only loss, seeded sequential order, our pad collator) on
plain-text samples (rate 0: no latents, so both sides see the same tokens). Baseline: a
stock ``Trainer`` with ``LoraConfig(target_modules="all-linear")`` and
``DataCollatorForLanguageModeling`` on the same token sequences. Runs alternate; prints
the median tokens/s of each (non-pad tokens in the batches trained on / wall time of
``trainer.train()``) and ours / baseline (target >= 0.9). ``--finetune full`` compares full
fine-tuning instead (ours: ``--finetune full``; baseline: a stock ``Trainer`` on the model itself).

    python benchmarks/bench_training.py                     # a random Llama built on the fly, LoRA
    python benchmarks/bench_training.py --finetune both     # LoRA, then full fine-tuning
    python benchmarks/bench_training.py --hidden 512 --layers 8 --steps 40 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _samples(tokenizer, n: int, seed: int):
    from lm_latent.training.data import examples_from_rows, synthetic_gsm8k, tokenize_examples

    return tokenize_examples(examples_from_rows(synthetic_gsm8k(n, seed=seed)), tokenizer, progress=False)


def run_ours(base: Path, samples, steps: int, batch_size: int, work: Path, mode: str) -> tuple[float, int]:
    from transformers import AutoTokenizer

    from lm_latent.adapter.config import LatentConfig
    from lm_latent.training.finetune import FinetuneConfig, build_trainer, load_for_training
    from lm_latent.training.mixed_traces import MixedTraceDataset
    from lm_latent.adapter.vocab import LatentVocab, extend_tokenizer

    tok = AutoTokenizer.from_pretrained(str(base))
    base_vocab = len(tok)
    extend_tokenizer(tok, 0)
    lc = LatentConfig(rate=0, chunk_len=0, codebook_size=0, base_model=str(base), base_vocab_size=base_vocab,
                      vocab_size=len(tok))
    cfg = FinetuneConfig(mode=mode, batch_size=batch_size, grad_accum=1, learning_rate=1e-4, logging_steps=10_000,
                         save_steps=10_000, gradient_checkpointing=False, bf16=False)
    model, _ = load_for_training(str(base), tok, lc, cfg)
    ds = MixedTraceDataset(samples, None, None, LatentVocab.from_tokenizer(tok, 0), seed=0)
    trainer = build_trainer(model, ds, tok.pad_token_id, cfg, work / "ours", max_steps=steps, progress=False)
    tokens = sum(len(ds[i]["input_ids"]) for i in range(min(len(ds), steps * batch_size)))
    t = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t, tokens


def run_plain(base: Path, samples, steps: int, batch_size: int, work: Path, mode: str) -> tuple[float, int]:
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments, set_seed)

    set_seed(0)
    tok = AutoTokenizer.from_pretrained(str(base))
    tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(base))
    if mode == "lora":
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    rows = [{"input_ids": s.input_ids} for s in samples]
    args = TrainingArguments(output_dir=str(work / "plain"), per_device_train_batch_size=batch_size,
                             max_steps=steps, learning_rate=1e-4, logging_steps=10_000, save_strategy="no",
                             report_to="none", train_sampling_strategy="sequential", use_cpu=True,
                             disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    tokens = sum(len(r["input_ids"]) for r in rows[:steps * batch_size])
    t = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t, tokens


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids OpenMP contention on small CPUs)")
    p.add_argument("--finetune", choices=("lora", "full", "both"), default="lora",
                   help="which fine-tuning to compare (default: lora)")
    args = p.parse_args(argv)

    import torch
    import transformers

    from lm_latent.demo.tiny import build_llama, build_tokenizer

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tok = build_tokenizer(work / "tok")
        build_llama(work / "base", tok, tied=True, hidden=args.hidden, layers=args.layers)
        samples = _samples(tok, args.steps * args.batch_size, seed=0)
        modes = ("lora", "full") if args.finetune == "both" else (args.finetune,)
        medians = {}
        for mode in modes:
            ours, plain = [], []
            for run in range(args.runs):
                for name, fn, acc in (("ours", run_ours, ours), ("plain", run_plain, plain)):
                    secs, tokens = fn(work / "base", samples, args.steps, args.batch_size, work / f"{mode}{run}",
                                      mode)
                    acc.append(tokens / secs)
                    print(f"{mode} run {run} {name:5s}: {tokens} tokens in {secs:.2f}s = {tokens / secs:,.0f} tokens/s")
            medians[mode] = statistics.median(ours), statistics.median(plain)
    print(f"model hidden={args.hidden} layers={args.layers} steps={args.steps} batch={args.batch_size} "
          f"threads={args.threads}")
    for mode, (mo, mp) in medians.items():
        print(f"{mode}: median tokens/s ours {mo:,.0f}, plain HF Trainer {mp:,.0f}; ratio ours/plain = {mo / mp:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
