"""A tiny Llama trained from scratch on chain-of-thought traces: the demo's stand-in for Llama-3.2-3B.

The samples are exactly what ``lm-latent train`` and the evaluation tasks use
(:mod:`lm_latent.training.data`): ``PROMPT_TEMPLATE`` (with BOS) + " " + trace + "\\n" +
"The answer is: N" + EOS, loss on the response (the prompt is masked unless
``--prompt-loss``). The tokenizer is the model's own: a small byte-level BPE trained on the
same texts, digits split one by one (a space before a number stays glued to its first digit),
``<|begin_of_text|>`` prepended, ``<|end_of_text|>`` as EOS and no pad token (as Llama-3). The
output directory is a plain HF checkpoint (safetensors + tokenizer + generation config) that
``lm-latent train --base DIR`` and ``lm_eval --model latent --model_args pretrained=DIR`` take.

Training runs through the HF ``Trainer`` (progress bar, loss logs, checkpoints every
``--save-steps`` in ``OUT/.work/``); rerun the same command after a kill and it resumes from
the last checkpoint. ``OUT/pretrain.json`` is written last: its presence means "finished"
(``OUT/.work`` is removed then).

    python -m lm_latent.training.pretrain_base --data DIR/gsm8k/train.jsonl --out base/ --max-steps 800
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
from typing import Sequence

logger = logging.getLogger(__name__)

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
DONE_NAME = "pretrain.json"
WORK_DIR = ".work"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_SAMPLES = 5000  # texts the BPE is trained on (the synthetic vocabulary is small)


@dataclass
class PretrainConfig:
    """Model size and training recipe. Defaults: ~1M parameters, ~0.6-1 s per step on 2 CPU cores."""

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


# --- tokenizer -------------------------------------------------------------------------------------

def train_tokenizer(texts: Sequence[str], out: str | os.PathLike | None = None, vocab_size: int = 1024):
    """Byte-level BPE with split digits, BOS prepended, EOS, no pad; saved to ``out`` when given."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # " 34" -> " 3", "4": one digit per token, the leading space kept on the first digit.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r" ?[0-9]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, model_max_length=4096)
    if out is not None:
        fast.save_pretrained(str(out))
    return fast


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


class RightPadCollator:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        n = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), n), -100, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"])
            labels[i, :k] = torch.tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# --- model ---------------------------------------------------------------------------------------------

def build_model(tokenizer, cfg: PretrainConfig):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                         max_position_embeddings=cfg.max_position_embeddings,
                         tie_word_embeddings=cfg.tied_embeddings, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=None)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id)
    return model


def n_params(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


class _Timer:
    """Trainer callback: seconds per optimizer step of this process (resumed steps excluded)."""

    def __new__(cls):
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


class PretrainInterrupted(RuntimeError):
    """Stopped at ``stop_at_step`` with a checkpoint on disk: call again (same settings) to resume."""


def pretrain(data: str | os.PathLike, out: str | os.PathLike, cfg: PretrainConfig | None = None,
             progress: bool = True, overwrite: bool = False, stop_at_step: int | None = None) -> dict:
    """Tokenizer + tiny Llama trained on ``data`` (GSM8K/MetaMathQA-format rows), saved to ``out``.

    Returns the record written to ``out/pretrain.json``. A finished ``out`` is left alone (the
    record is returned) unless ``overwrite``; an unfinished one resumes from its last checkpoint.
    ``stop_at_step`` stops there with a checkpoint, as if killed, and raises
    :class:`PretrainInterrupted` (tests and time-boxed runs).
    """
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments, set_seed

    from lm_latent.fileio import write_json_atomic
    from lm_latent.training.data import load_examples, tokenize_examples

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
    record_path = work / "config.json"
    if record_path.is_file():
        old = json.loads(record_path.read_text(encoding="utf-8"))
        if old != {**asdict(cfg), "data": str(data)}:
            raise ValueError(f"{work} holds a pretraining run with other settings; pass --overwrite to start over")
    else:
        write_json_atomic(record_path, {**asdict(cfg), "data": str(data)})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)

    examples = load_examples(str(data), limit=cfg.limit)
    tok_dir = work / TOKENIZER_DIR
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    else:
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

    args = TrainingArguments(
        output_dir=str(work / "checkpoints"), per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, max_steps=cfg.max_steps,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup, logging_steps=cfg.logging_steps,
        logging_first_step=True, save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=1,
        seed=cfg.seed, report_to="none", remove_unused_columns=False, train_sampling_strategy="group_by_length",
        dataloader_num_workers=0, disable_tqdm=not progress, use_cpu=not torch.cuda.is_available(),
        label_names=["labels"])
    timer = _Timer()
    callbacks = [timer]
    if stop_at_step:
        from lm_latent.training.finetune import StopAtStep

        callbacks.append(StopAtStep(stop_at_step))
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=RightPadCollator(tokenizer.eos_token_id), callbacks=callbacks)
    ckpts = sorted((work / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    resume = str(ckpts[-1]) if ckpts else None
    if resume:
        logger.info("resuming base pretraining from %s", resume)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if stop_at_step and callbacks[-1].triggered:
        raise PretrainInterrupted(f"base pretraining stopped at step {stop_at_step}; checkpoint in {work}")

    model = trainer.model
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    record = {
        "kind": "lm-latent demo base model (tiny Llama trained from scratch)",
        "data": str(data), "samples": len(samples), "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "parameters": params, "vocab_size": len(tokenizer), "steps": trainer.state.global_step,
        "final_loss": losses[-1] if losses else None, "train_loss": result.training_loss,
        "seconds_per_step": timer.seconds_per_step, "wall_seconds_this_run": round(wall, 1),
        "resumed_from": resume, "config": asdict(cfg),
    }
    write_json_atomic(done, record)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("saved base model to %s (%d steps, %.3f s/step, final loss %s)", out, record["steps"],
                record["seconds_per_step"] or math.nan, record["final_loss"])
    return record


# --- a direct check (the real path is lm_eval --model latent) -------------------------------------

def greedy_eval(model_dir: str | os.PathLike, rows: Sequence[dict], batch_size: int = 64,
                max_new_tokens: int = 400, progress: bool = True) -> dict:
    """Greedy generation on GSM8K-format ``rows``; accuracy by the grader's answer extraction.

    Compares the extracted answer with the reference as numbers (no sympy worker), so it is a
    quick check, not the graded evaluation. Returns accuracy, mean generated tokens (EOS
    included), seconds and the generations.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.grading import extract_answer
    from lm_latent.prompts import format_prompt

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    eos, pad = tokenizer.eos_token_id, tokenizer.eos_token_id
    prompts = [tokenizer(format_prompt(r["question"]))["input_ids"] for r in rows]
    order = sorted(range(len(rows)), key=lambda i: len(prompts[i]))
    outputs: list[tuple[str, int]] = [("", 0)] * len(rows)
    start = time.perf_counter()
    for b in tqdm(range(0, len(order), batch_size), desc="Generating", disable=not progress):
        idx = order[b:b + batch_size]
        n = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), n), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), n), dtype=torch.long)
        for j, i in enumerate(idx):
            ids[j, n - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[j, n - len(prompts[i]):] = 1
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=eos, pad_token_id=pad)
        for j, i in enumerate(idx):
            new = gen[j, n:].tolist()
            k = new.index(eos) + 1 if eos in new else len(new)
            outputs[i] = (tokenizer.decode(new[:k], skip_special_tokens=True), k)
    seconds = time.perf_counter() - start
    correct = []
    for r, (text, _) in zip(rows, outputs):
        ref = r["answer"].split("####")[-1].strip().replace(",", "")
        got = extract_answer(text)
        try:
            correct.append(got is not None and float(got.replace(",", "")) == float(ref))
        except ValueError:
            correct.append(False)
    return {"accuracy": sum(correct) / max(1, len(correct)),
            "gen_tokens": sum(k for _, k in outputs) / max(1, len(outputs)), "seconds": round(seconds, 1),
            "n": len(rows), "generations": [t for t, _ in outputs], "correct": correct}


def build_parser() -> argparse.ArgumentParser:
    d = PretrainConfig()
    p = argparse.ArgumentParser(prog="python -m lm_latent.training.pretrain_base", description=__doc__.splitlines()[0],
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
        p.exit(2, f"pretrain_base: error: {exc}\n")
    print(json.dumps({k: v for k, v in record.items() if k != "config"}, indent=1))
    if a.eval:
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
