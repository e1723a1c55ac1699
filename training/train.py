"""``lm-latent train``: the compressor and the LoRA adapter for one compression rate.

    lm-latent train --rate 16 --base meta-llama/Llama-3.2-3B --data meta-math/MetaMathQA --out adapters/
    lm-latent train --rate 0  ...   # the plain chain-of-thought baseline, same recipe, no compressor

writes ``adapters/rate16/`` (see :mod:`lm_latent.adapter`). Stages: load and split the data
-> train the compressor on chunks of whole sequences -> encode trace chunks -> LoRA
fine-tuning on mixed traces -> save the adapter atomically (``latent.json`` last). Working
files live in ``<out>/.work/rate16/``, locked by ``<out>/.work/rate16.lock`` (one writer at a
time): rerun the same command after a kill and it resumes from the newest complete checkpoint
of the stage it was in, written by a run with the same settings (each checkpoint carries the
settings record). ``--overwrite`` starts fresh. Runs under ``accelerate launch`` for many GPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lm_latent.adapter import DEFAULT_BASE_MODEL, AdapterError, default_adapters_root, parse_rate, rate_dirname
from lm_latent.training.finetune import FinetuneConfig, TrainingInterrupted
from lm_latent.training.mixed_traces import STRATEGIES, parse_schedule
from lm_latent.training.train_compressor import CompressorTrainConfig

logger = logging.getLogger(__name__)

EXIT_INTERRUPTED = 3
RUN_RECORD = "run.json"
_VOLATILE = ("stop_at_step", "keep_work", "overwrite", "restart", "progress")


@dataclass
class TrainConfig:
    """Everything one ``lm-latent train`` run depends on; stage recipes nest inside."""

    rate: int
    base: str = DEFAULT_BASE_MODEL
    data: str = "meta-math/MetaMathQA"
    out: str | None = None  # adapters root; None: lm_latent.adapter.default_adapters_root()
    codebook_size: int = 1024
    chunk_len: int | None = None  # None: = rate
    split: str = "train"
    limit: int | None = None
    query_field: str | None = None
    response_field: str | None = None
    max_steps: int | None = None  # caps every stage
    stop_at_step: int | None = None  # stop a stage at this step (checkpointed), as if killed
    work_dir: str | None = None
    keep_work: bool = False
    overwrite: bool = False
    restart: bool = False
    progress: bool = True
    compressor: CompressorTrainConfig = field(default_factory=CompressorTrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    @property
    def out_root(self) -> Path:
        return Path(self.out).expanduser() if self.out else default_adapters_root()

    @property
    def target(self) -> Path:
        return self.out_root / rate_dirname(parse_rate(self.rate))

    @property
    def work(self) -> Path:
        return Path(self.work_dir).expanduser() if self.work_dir else self.out_root / ".work" / rate_dirname(
            parse_rate(self.rate))


def _record(cfg: TrainConfig) -> dict:
    """The settings a run's results depend on: checkpoints resume only under an identical record."""
    rec = asdict(cfg)
    for key in _VOLATILE:
        rec.pop(key, None)
    rec["finetune"]["schedule"] = list(rec["finetune"]["schedule"])
    return rec


def _digest(rec: dict) -> str:
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode("utf-8")).hexdigest()


def _lock_path(cfg: TrainConfig) -> Path:
    return cfg.work.with_name(cfg.work.name + ".lock")


def _check_work_dir(cfg: TrainConfig, writer: bool = True) -> None:
    """A work directory resumes only the run that made it: other settings would mix two runs.

    ``--restart`` and ``--overwrite`` start fresh. The record here gives the clear error for a
    rerun with other settings; the copy in each checkpoint decides what may be resumed. Every
    process checks; only the ``writer`` (the main process, holding the lock) deletes or records.
    """
    from lm_latent.fileio import write_json_atomic

    work = cfg.work
    fresh = cfg.restart or cfg.overwrite
    if fresh and work.exists() and writer:
        logger.info("--%s: starting fresh, removing %s", "restart" if cfg.restart else "overwrite", work)
        shutil.rmtree(work)
    path = work / RUN_RECORD
    rec = _record(cfg)
    if path.is_file() and (writer or not fresh):
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != rec:
            diff = sorted(k for k in set(old) | set(rec) if old.get(k) != rec.get(k))
            raise ValueError(f"{work} holds checkpoints of a run with different settings (differs in {diff}). "
                             f"Rerun with the same settings to resume, or pass --restart to start over.")
        logger.info("resuming the run in %s", work)
    elif writer:
        write_json_atomic(path, rec)


def _finished_by_this_run(cfg: TrainConfig) -> bool:
    """The adapter is in place and was written by these settings, but a kill left the work directory."""
    from lm_latent.latent_config import LATENT_CONFIG_NAME

    try:
        meta = json.loads((cfg.target / LATENT_CONFIG_NAME).read_text(encoding="utf-8"))
        old = json.loads((cfg.work / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    rec = _record(cfg)
    return isinstance(meta, dict) and old == rec and (meta.get("training") or {}).get("settings") == _digest(rec)


def _remove_work(cfg: TrainConfig) -> None:
    shutil.rmtree(cfg.work, ignore_errors=True)


def _remove_empty_work_parent(cfg: TrainConfig) -> None:
    parent = cfg.work.parent
    if parent.name == ".work" and parent.is_dir() and not any(parent.iterdir()):
        with contextlib.suppress(OSError):
            parent.rmdir()


def run(cfg: TrainConfig) -> Path:
    """Train and save one adapter; returns its directory.

    The main process holds the work directory's lock for the whole run (a second writer gets
    a :class:`~lm_latent.fileio.LockedError` naming the holder); a SIGKILLed holder's lock is
    taken over by the next run.
    """
    from accelerate import PartialState

    from lm_latent.fileio import exclusive_lock, local_path_or_id
    from lm_latent.training import testhooks

    import torch

    cfg.base = local_path_or_id(str(cfg.base))  # latent.json then names the base from any folder
    # Joins the process group under ``accelerate launch`` (a no-op otherwise). Without ``cpu=True`` on
    # a machine without CUDA every process would think itself the main one until the Trainer starts.
    state = PartialState(cpu=not torch.cuda.is_available())
    if not state.is_main_process:
        return _run(cfg, state)
    try:
        with exclusive_lock(_lock_path(cfg), f"the work directory {cfg.work}"):
            testhooks.reached("lock:held")
            return _run(cfg, state)
    finally:
        _remove_empty_work_parent(cfg)


def _run(cfg: TrainConfig, state) -> Path:
    import torch
    from transformers import AutoTokenizer

    from lm_latent.adapter import save_adapter
    from lm_latent.fileio import recover_swap, remove_partials
    from lm_latent.latent_config import LatentConfig, base_fingerprint
    from lm_latent.training import testhooks
    from lm_latent.training.data import load_examples, tokenize_examples
    from lm_latent.training.finetune import StopAtStep, finetune, load_for_training
    from lm_latent.training.mixed_traces import MixConfig, MixedTraceDataset
    from lm_latent.training.train_compressor import encode_traces, train_compressor
    from lm_latent.vocab import LatentVocab, extend_tokenizer

    rate = parse_rate(cfg.rate)
    target = cfg.target
    writer = state.is_main_process
    if writer:  # scratch folders of killed saves: the target's of dead writers, the work dir's all (locked)
        recover_swap(target)
        remove_partials(target)
        remove_partials(cfg.work / "compressor" / "final", all_owners=True)
    if (target.exists() and any(target.iterdir())) and not cfg.overwrite:
        done = _finished_by_this_run(cfg)
        state.wait_for_everyone()  # every process has decided before the writer cleans up
        if done:
            logger.info("%s was already written by this command (a kill stopped the clean-up)", target)
            if writer and not cfg.keep_work:
                _remove_work(cfg)
            return target
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
    codebook_size = cfg.codebook_size if rate else 0
    chunk_len = (cfg.chunk_len or rate) if rate else 0
    if rate:
        LatentConfig(rate=rate, chunk_len=chunk_len, codebook_size=codebook_size, base_model=cfg.base,
                     base_vocab_size=0, vocab_size=0)  # validates chunk_len % rate and codebook_size
        MixConfig(chunk_len=chunk_len, strategy=cfg.finetune.strategy, schedule=cfg.finetune.schedule)
    _check_work_dir(cfg, writer=writer)
    state.wait_for_everyone()
    record = _record(cfg)

    logger.info("loading tokenizer of base model %s", cfg.base)
    tokenizer = AutoTokenizer.from_pretrained(cfg.base)
    base_vocab_size = len(tokenizer)
    examples = load_examples(cfg.data, split=cfg.split, limit=cfg.limit, query_field=cfg.query_field,
                             response_field=cfg.response_field)
    logger.info("%d training samples from %s", len(examples), cfg.data)
    samples = tokenize_examples(examples, tokenizer, progress=cfg.progress)

    def stopper() -> list:
        return [StopAtStep(cfg.stop_at_step)] if cfg.stop_at_step else []

    compressor, comp_metrics, codes, mix = None, {}, None, None
    if rate:
        compressor, comp_metrics = train_compressor(
            samples, vocab_size=base_vocab_size, rate=rate, chunk_len=chunk_len, codebook_size=codebook_size,
            config=cfg.compressor, work_dir=cfg.work / "compressor", max_steps=cfg.max_steps, callbacks=stopper(),
            progress=cfg.progress, record=record)
        codes = encode_traces(compressor, samples, batch_size=cfg.compressor.encode_batch_size,
                              progress=cfg.progress)
        compressor.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        mix = MixConfig(chunk_len=chunk_len, strategy=cfg.finetune.strategy, schedule=cfg.finetune.schedule)

    extend_tokenizer(tokenizer, codebook_size)
    vocab = LatentVocab.from_tokenizer(tokenizer, codebook_size)
    latent_config = LatentConfig(rate=rate, chunk_len=chunk_len, codebook_size=codebook_size, base_model=str(cfg.base),
                                 base_vocab_size=base_vocab_size, vocab_size=len(tokenizer),
                                 pad_token=tokenizer.pad_token)
    peft_model, tied = load_for_training(cfg.base, tokenizer, latent_config, cfg.finetune)
    latent_config.tied_embeddings = tied
    latent_config.base_fingerprint = base_fingerprint(peft_model.get_base_model().config)

    dataset = MixedTraceDataset(samples, codes, mix, vocab, seed=cfg.finetune.seed, epochs=cfg.finetune.epochs,
                                max_len=cfg.finetune.max_seq_len)
    mix_stats = dataset.stats() if rate else {"samples_with_latents": 0.0, "latent_tokens_per_sample": 0.0}
    logger.info("mixed traces: %.1f%% of samples carry latents, %.1f latent tokens per sample",
                100 * mix_stats["samples_with_latents"], mix_stats["latent_tokens_per_sample"])
    ft_metrics = finetune(peft_model, dataset, tokenizer.pad_token_id, cfg.finetune, cfg.work / "finetune",
                          max_steps=cfg.max_steps, callbacks=stopper(), progress=cfg.progress, record=record)

    from lm_latent import __version__

    latent_config.trained = True
    latent_config.training = {
        "data": str(cfg.data), "split": cfg.split, "limit": cfg.limit, "samples": len(samples),
        "recipe": "lm-latent train", "lm_latent_version": __version__, "max_steps": cfg.max_steps,
        "num_processes": state.num_processes,
        "strategy": cfg.finetune.strategy if rate else None,
        "schedule": list(cfg.finetune.schedule) if rate else None,
        "finetune": {**asdict(cfg.finetune), "schedule": list(cfg.finetune.schedule)},
        "compressor": asdict(cfg.compressor) if rate else None,
        "settings": _digest(record),  # the run record's hash: a rerun knows its own adapter
    }
    metrics = {"final_loss": ft_metrics["final_loss"], "finetune_steps": ft_metrics["steps"], **mix_stats}
    if rate:
        metrics.update({"recon_accuracy": comp_metrics.get("recon_accuracy"),
                        "recon_exact_chunks": comp_metrics.get("recon_exact_chunks"),
                        "trace_recon_accuracy": comp_metrics.get("trace_recon_accuracy"),
                        "codebook_usage": comp_metrics.get("codebook_usage"),
                        "codebook_perplexity": comp_metrics.get("codebook_perplexity"),
                        "compressor_final_loss": comp_metrics.get("final_loss"),
                        "compressor_steps": comp_metrics.get("steps"),
                        "compressor_eval_chunks": comp_metrics.get("eval_chunks")})
    latent_config.metrics = metrics
    if writer:  # one writer under ``accelerate launch``; the others wait for it
        save_adapter(target, peft_model, tokenizer, latent_config, compressor=compressor, overwrite=cfg.overwrite)
        testhooks.reached("adapter:done")
    state.wait_for_everyone()
    logger.info("wrote adapter %s (%s)", target, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                                                            if isinstance(v, float)))
    if not cfg.keep_work and writer:
        _remove_work(cfg)
    return target


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default once: not for required options, ``None``/off flags, or help that already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.required or "default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    c, f = CompressorTrainConfig(), FinetuneConfig()
    p = argparse.ArgumentParser(prog="lm-latent train", description=__doc__.splitlines()[0],
                                formatter_class=_HelpFormatter)
    p.add_argument("--rate", required=True,
                   help="(required) compression rate r (text tokens per latent); 0 or 'cot': plain CoT")
    p.add_argument("--base", default=DEFAULT_BASE_MODEL, help="base model directory or hub id")
    p.add_argument("--data", default="meta-math/MetaMathQA", help="hub dataset id or a .jsonl/.json file")
    p.add_argument("--out", default=None, help="adapters root (writes OUT/rateR); default: $LM_LATENT_HOME/adapters")
    p.add_argument("--codebook-size", type=int, default=1024, help="latent tokens K")
    p.add_argument("--chunk-len", type=int, default=None, help="text tokens per chunk L (default: rate)")
    p.add_argument("--split", default="train", help="dataset split (hub data)")
    p.add_argument("--limit", type=int, default=None, help="use the first N rows only")
    p.add_argument("--query-field", default=None, help="question field of the data (default: auto)")
    p.add_argument("--response-field", default=None, help="response field of the data (default: auto)")
    p.add_argument("--max-steps", type=int, default=None, help="cap the steps of every stage")
    p.add_argument("--strategy", choices=STRATEGIES, default=f.strategy, help="which trace chunks become latents")
    p.add_argument("--schedule", default=",".join(map(str, f.schedule)),
                   help="text tokens m replaced per sample, drawn at random (whole chunks, capped)")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage (data order, init)")
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--lr", type=float, default=f.learning_rate, help="peak learning rate (cosine schedule)")
    g.add_argument("--batch-size", type=int, default=f.batch_size, help="per device")
    g.add_argument("--grad-accum", type=int, default=f.grad_accum, help="gradient accumulation steps")
    g.add_argument("--epochs", type=int, default=f.epochs, help="passes over the data")
    g.add_argument("--max-seq-len", type=int, default=f.max_seq_len, help="longest training sequence in tokens")
    g.add_argument("--lora-r", type=int, default=f.lora_r, help="LoRA rank")
    g.add_argument("--lora-alpha", type=int, default=f.lora_alpha, help="LoRA alpha")
    g.add_argument("--save-steps", type=int, default=f.save_steps, help="checkpoint every N steps")
    g.add_argument("--logging-steps", type=int, default=f.logging_steps, help="log the loss every N steps")
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 mixed precision (default: when a bf16 GPU is present)")
    g.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on with CUDA")
    h = p.add_argument_group("compressor")
    h.add_argument("--compressor-lr", type=float, default=c.learning_rate, help="learning rate")
    h.add_argument("--compressor-batch-size", type=int, default=c.batch_size, help="chunks per batch")
    h.add_argument("--compressor-epochs", type=int, default=c.epochs, help="passes over the chunks")
    h.add_argument("--compressor-steps", type=int, default=c.max_steps, help="-1: one pass per epoch")
    h.add_argument("--compressor-hidden", type=int, default=c.hidden_size, help="hidden size")
    h.add_argument("--compressor-layers", type=int, default=c.num_layers, help="transformer layers")
    h.add_argument("--compressor-heads", type=int, default=c.num_heads, help="attention heads")
    h.add_argument("--compressor-codebook-dim", type=int, default=c.codebook_dim, help="codebook vector size")
    h.add_argument("--compressor-max-prompt-len", type=int, default=c.max_prompt_len,
                   help="prompt tokens the decoder sees")
    h.add_argument("--compressor-save-steps", type=int, default=c.save_steps, help="checkpoint every N steps")
    r = p.add_argument_group("run control")
    r.add_argument("--work-dir", default=None, help="checkpoints (default: OUT/.work/rateR)")
    r.add_argument("--keep-work", action="store_true", help="keep checkpoints after success")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT/rateR; starts fresh (discards the checkpoints of earlier runs)")
    r.add_argument("--restart", action="store_true", help="discard checkpoints of an earlier run")
    r.add_argument("--stop-at-step", type=int, default=None,
                   help="stop a stage when it reaches this step, checkpointed, as if killed (exit 3; rerun resumes)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    schedule = parse_schedule(args.schedule)
    comp = CompressorTrainConfig(
        hidden_size=args.compressor_hidden, num_layers=args.compressor_layers, num_heads=args.compressor_heads,
        codebook_dim=args.compressor_codebook_dim, max_prompt_len=args.compressor_max_prompt_len,
        learning_rate=args.compressor_lr, batch_size=args.compressor_batch_size, epochs=args.compressor_epochs,
        max_steps=args.compressor_steps, save_steps=args.compressor_save_steps, bf16=args.bf16, seed=args.seed)
    ft = FinetuneConfig(
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, learning_rate=args.lr, batch_size=args.batch_size,
        grad_accum=args.grad_accum, epochs=args.epochs, max_seq_len=args.max_seq_len, bf16=args.bf16,
        gradient_checkpointing=args.gradient_checkpointing, logging_steps=args.logging_steps,
        save_steps=args.save_steps, seed=args.seed, strategy=args.strategy, schedule=schedule)
    return TrainConfig(
        rate=parse_rate(args.rate), base=args.base, data=args.data, out=args.out, codebook_size=args.codebook_size,
        chunk_len=args.chunk_len, split=args.split, limit=args.limit, query_field=args.query_field,
        response_field=args.response_field, max_steps=args.max_steps, stop_at_step=args.stop_at_step,
        work_dir=args.work_dir, keep_work=args.keep_work, overwrite=args.overwrite, restart=args.restart,
        progress=not args.no_progress, compressor=comp, finetune=ft)


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    main_process = os.environ.get("RANK", "0") == "0"  # under ``accelerate launch``: one process talks
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO if main_process else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from lm_latent.fileio import LockedError

    try:
        cfg = config_from_args(args)
        out = run(cfg)
    except TrainingInterrupted as exc:
        print(f"lm-latent train: {exc}. Rerun the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FileExistsError, FileNotFoundError, ValueError, AdapterError, LockedError) as exc:
        p.exit(2, f"lm-latent train: error: {exc}\n")
    if main_process:
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
