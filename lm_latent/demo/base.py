"""The demo's base model: a tiny Llama trained from scratch on chain-of-thought traces (its Llama-3.2-3B).

The samples are exactly what ``lm-latent train`` and the evaluation tasks use
(:mod:`lm_latent.training.data`): ``PROMPT_TEMPLATE`` (with BOS) + " " + trace + "\\n" +
"The answer is: N" + EOS, loss on the response (the prompt is masked unless
``--prompt-loss``). The tokenizer is the model's own: a small byte-level BPE trained on the
same texts, digits split one by one, ``<|begin_of_text|>`` prepended, ``<|end_of_text|>`` as EOS
and no pad token (as Llama-3); it and the model come from the shared builders in
:mod:`lm_latent.demo.tiny`. The output directory is a plain HF checkpoint (safetensors + tokenizer
+ generation config) that ``lm-latent train --base DIR`` and ``lm_eval --model latent
--model_args pretrained=DIR`` take.

Training runs through the HF ``Trainer`` with the training recipes' pieces: their collator
(:class:`~lm_latent.training.mixed_traces.PadCollator`), their logging and their resume rules
(:mod:`lm_latent.training.checkpoints`: every checkpoint carries the settings record, and a rerun
resumes the newest complete one of the same settings). ``OUT/pretrain.json`` is written last: its
presence means "finished" (``OUT/.work`` is removed then).

    python -m lm_latent.demo.base --data DIR/pretrain.jsonl --out base/ --max-steps 800
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger(__name__)

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
DONE_NAME = "pretrain.json"
WORK_DIR = ".work"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_SAMPLES = 5000  # texts the BPE is trained on (the synthetic vocabulary is small)


@dataclass
class PretrainConfig:
    """Model size and training recipe; the defaults are the demo's base model (docs/demo.md has its timings)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 384
    vocab_size: int = 1024  # BPE target; the synthetic corpus needs fewer, BPE stops early
    max_position_embeddings: int = 4096  # RoPE: free; lets lm-eval's default max_gen_toks=2048 fit
    tied_embeddings: bool = True
    max_steps: int = 800
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup: float = 0.05
    weight_decay: float = 0.01
    lr_scheduler: str = "cosine"
    prompt_loss: bool = False
    save_steps: int = 100
    logging_steps: int = 20
    max_seq_len: int = 512
    limit: int | None = None
    seed: int = 0
    threads: int | None = None


# --- data ----------------------------------------------------------------------------------------------

class CoTDataset:
    """Token ids of P + C + S with labels on C + S (and on P without its BOS when ``prompt_loss``)."""

    def __init__(self, samples, max_len: int, prompt_loss: bool = False) -> None:
        self.items = []
        for s in samples:
            ids = s.input_ids[:max_len]
            n_prompt = len(s.prompt_ids)
            labels = list(ids)
            masked = 1 if prompt_loss else n_prompt
            labels[:masked] = [-100] * min(masked, len(labels))
            self.items.append((ids, labels))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        ids, labels = self.items[i]
        return {"input_ids": ids, "labels": labels}


# --- model ---------------------------------------------------------------------------------------------

def train_tokenizer(texts: Sequence[str], out: str | os.PathLike | None = None, vocab_size: int = 1024):
    """The base model's BPE (split digits, Llama-3's specials, no pad); saved to ``out`` when given."""
    from lm_latent.demo.tiny import bpe_tokenizer

    return bpe_tokenizer(texts, BOS, EOS, vocab_size, out=out, split_digits=True, min_frequency=2,
                         model_max_length=4096)


def build_model(tokenizer, cfg: PretrainConfig):
    from lm_latent.demo.tiny import tiny_llama

    return tiny_llama(tokenizer, hidden=cfg.hidden_size, layers=cfg.num_layers, heads=cfg.num_heads,
                      kv_heads=cfg.num_kv_heads, intermediate=cfg.intermediate_size, tied=cfg.tied_embeddings,
                      max_positions=cfg.max_position_embeddings, seed=cfg.seed)


def n_params(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


class _Timer:
    """Trainer callback: seconds per optimizer step of this process (resumed steps excluded)."""

    def __new__(cls) -> Any:
        from transformers import TrainerCallback

        class Timer(TrainerCallback):
            def __init__(self) -> None:
                self.start_step, self.start, self.last_step, self.last = None, None, None, None

            def on_step_end(self, args, state, control, **kwargs):
                now = time.perf_counter()
                if self.start is None:
                    self.start_step, self.start = state.global_step, now
                self.last_step, self.last = state.global_step, now

            @property
            def seconds_per_step(self) -> float | None:
                if self.start is None or self.last_step == self.start_step:
                    return None
                return (self.last - self.start) / (self.last_step - self.start_step)

        return Timer()


def is_finished(out: str | os.PathLike) -> bool:
    return (Path(out) / DONE_NAME).is_file()


def pretrain(data: str | os.PathLike, out: str | os.PathLike, cfg: PretrainConfig | None = None,
             progress: bool = True, overwrite: bool = False, stop_at_step: int | None = None) -> dict:
    """Tokenizer + tiny Llama trained on ``data`` (GSM8K/MetaMathQA-format rows), saved to ``out``.

    Returns the record written to ``out/pretrain.json``. A finished ``out`` is left alone (the
    record is returned) unless ``overwrite``; an unfinished one resumes from its newest complete
    checkpoint of the same settings (one of other settings is set aside, and training starts
    over). ``stop_at_step`` stops there with a checkpoint, as if killed, and raises
    :class:`~lm_latent.training.finetune.TrainingInterrupted` (tests and time-boxed runs).
    """
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments, set_seed

    from lm_latent.utils.fileio import write_json_atomic
    from lm_latent.training.checkpoints import prepare, resume_or_finish
    from lm_latent.training.data import load_examples, tokenize_examples
    from lm_latent.training.checkpoints import StopAtStep, TrainingInterrupted
    from lm_latent.training.finetune import prepare_trainer
    from lm_latent.training.mixed_traces import PadCollator

    cfg = cfg or PretrainConfig()
    out = Path(out)
    done = out / DONE_NAME
    if done.is_file() and not overwrite:
        logger.info("base model in %s is already trained; skipping", out)
        return json.loads(done.read_text(encoding="utf-8"))
    if overwrite and out.exists():
        shutil.rmtree(out)
    work = out / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    record = {**asdict(cfg), "data": str(data)}  # in every checkpoint: only these settings resume it
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)

    args = TrainingArguments(
        output_dir=str(work / "checkpoints"), per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, max_steps=cfg.max_steps,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup, logging_steps=cfg.logging_steps,
        logging_first_step=True, save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=1,
        seed=cfg.seed, report_to="none", remove_unused_columns=False, train_sampling_strategy="group_by_length",
        dataloader_num_workers=0, disable_tqdm=not progress, use_cpu=not torch.cuda.is_available(),
        label_names=["labels"])
    resume = prepare("base pretraining", work / "checkpoints", record)

    examples = load_examples(str(data), limit=cfg.limit)
    tok_dir = work / TOKENIZER_DIR
    if resume is None or not (tok_dir / "tokenizer.json").is_file():  # a resumed checkpoint keeps its tokenizer
        logger.info("training a byte-level BPE tokenizer (target %d ids) on %d samples", cfg.vocab_size,
                    min(len(examples), TOKENIZER_SAMPLES))
        train_tokenizer([ex.text for ex in examples[:TOKENIZER_SAMPLES]], tok_dir, vocab_size=cfg.vocab_size)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    samples = tokenize_examples(examples, tokenizer, progress=progress)
    lengths = [len(s) for s in samples]
    dataset = CoTDataset(samples, cfg.max_seq_len, cfg.prompt_loss)
    model = build_model(tokenizer, cfg)
    params = n_params(model)
    logger.info("tiny Llama: %.2fM parameters, vocab %d; %d samples, %.0f tokens each on average (max %d)",
                params / 1e6, len(tokenizer), len(samples), sum(lengths) / len(lengths), max(lengths))

    timer = _Timer()
    callbacks = [timer, *([StopAtStep(stop_at_step)] if stop_at_step else [])]
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=PadCollator(tokenizer.eos_token_id), callbacks=callbacks)
    prepare_trainer(trainer, "pretrain", record)
    start = time.perf_counter()
    result = resume_or_finish(trainer, resume)
    wall = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if stop_at_step and callbacks[-1].triggered:
        raise TrainingInterrupted(f"base pretraining stopped at step {stop_at_step}; checkpoint in {work}")

    model = trainer.model
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    record = {
        "kind": "lm-latent demo base model (tiny Llama trained from scratch)",
        "data": str(data), "samples": len(samples), "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "parameters": params, "vocab_size": len(tokenizer), "steps": trainer.state.global_step,
        "final_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss if result is not None else None,
        "seconds_per_step": timer.seconds_per_step, "wall_seconds_this_run": round(wall, 1),
        "resumed_from": str(resume) if resume else None, "config": asdict(cfg),
    }
    write_json_atomic(done, record)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("saved base model to %s (%d steps, %.3f s/step, final loss %s)", out, record["steps"],
                record["seconds_per_step"] or math.nan, record["final_loss"])
    return record


def build_parser() -> argparse.ArgumentParser:
    d = PretrainConfig()
    p = argparse.ArgumentParser(prog="python -m lm_latent.demo.base", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="training rows (.jsonl, GSM8K or MetaMathQA format)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.learning_rate)
    p.add_argument("--hidden", type=int, default=d.hidden_size)
    p.add_argument("--layers", type=int, default=d.num_layers)
    p.add_argument("--heads", type=int, default=d.num_heads)
    p.add_argument("--intermediate", type=int, default=d.intermediate_size)
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help="BPE target size")
    p.add_argument("--prompt-loss", action="store_true", help="train on the prompt tokens too")
    p.add_argument("--limit", type=int, default=None, help="use the first N rows only")
    p.add_argument("--save-steps", type=int, default=d.save_steps)
    p.add_argument("--logging-steps", type=int, default=d.logging_steps)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--overwrite", action="store_true", help="discard an existing model or run in --out")
    p.add_argument("--eval", default=None, help="after training, greedy-check this held-out .jsonl")
    p.add_argument("--eval-limit", type=int, default=200)
    p.add_argument("--show", type=int, default=3, help="generations to print with --eval")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = PretrainConfig(hidden_size=a.hidden, num_layers=a.layers, num_heads=a.heads, num_kv_heads=a.heads,
                         intermediate_size=a.intermediate, vocab_size=a.vocab_size, max_steps=a.max_steps,
                         batch_size=a.batch_size, learning_rate=a.lr, prompt_loss=a.prompt_loss,
                         save_steps=a.save_steps, logging_steps=a.logging_steps, limit=a.limit, seed=a.seed,
                         threads=a.threads)
    try:
        record = pretrain(a.data, a.out, cfg, progress=not a.no_progress, overwrite=a.overwrite)
    except (FileNotFoundError, ValueError) as exc:
        p.exit(2, f"lm_latent.demo.base: error: {exc}\n")
    print(json.dumps({k: v for k, v in record.items() if k != "config"}, indent=1))
    if a.eval:
        from lm_latent.demo.tiny import greedy_eval
        from lm_latent.training.data import read_rows

        rows = read_rows(a.eval)[: a.eval_limit]
        res = greedy_eval(a.out, rows, progress=not a.no_progress)
        print(f"greedy check on {res['n']} held-out problems: accuracy {res['accuracy']:.1%}, "
              f"{res['gen_tokens']:.1f} generated tokens, {res['seconds']} s")
        for row, text, ok in list(zip(rows, res["generations"], res["correct"]))[: a.show]:
            print(f"\n[{'correct' if ok else 'wrong'}] Q: {row['question']}\nGEN: {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
