"""lm-latent train: the compressor and the fine-tuned adapter for one compression rate.

    lm-latent train --rate 16 --base meta-llama/Llama-3.2-3B --data meta-math/MetaMathQA --out adapters/
    lm-latent train --rate 0  ...   # the plain chain-of-thought baseline, same recipe, no compressor

writes ``adapters/rate16/`` (see :mod:`lm_latent.adapter.load`). Stages: load and split the data
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
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

from lm_latent.adapter.load import DEFAULT_BASE_MODEL, AdapterError, default_adapters_root, parse_rate, rate_dirname
from lm_latent.utils.dataclass_cli import add_arguments, from_args, option
from lm_latent.utils.run_record import check_settings, read_settings, settings_digest
from lm_latent.training.checkpoints import TrainingInterrupted
from lm_latent.training.finetune import FinetuneConfig
from lm_latent.training.train_compressor import CompressorTrainConfig

logger = logging.getLogger(__name__)

EXIT_INTERRUPTED = 3
RUN_RECORD = "run.json"
_VOLATILE = ("stop_at_step", "keep_work", "overwrite", "restart", "progress")  # not in the settings record
_RUN = "run control"


@dataclass
class TrainConfig:
    """Everything one ``lm-latent train`` run depends on; stage recipes nest inside.

    Each field with :func:`~lm_latent.utils.dataclass_cli.option` is also its command-line flag
    (:func:`build_parser`); build one directly and pass it to :func:`run`, or turn it into the
    equivalent command line with :func:`lm_latent.utils.dataclass_cli.to_argv`.
    """

    rate: int = option(flag="--rate", parse=parse_rate,
                       help="(required) compression rate r (text tokens per latent); 0 or 'cot': plain CoT")
    base: str = option(DEFAULT_BASE_MODEL, flag="--base", help="base model directory or hub id")
    data: str = option("meta-math/MetaMathQA", flag="--data", help="hub dataset id or a .jsonl/.json file")
    out: str | None = option(None, flag="--out",  # None: lm_latent.adapter.load.default_adapters_root()
                             help="adapters root (writes OUT/rateR); default: $LM_LATENT_HOME/adapters")
    codebook_size: int = option(1024, flag="--codebook-size", help="latent tokens K")
    chunk_len: int | None = option(None, flag="--chunk-len", help="text tokens per chunk L (default: rate)")
    split: str = option("train", flag="--split", help="dataset split (hub data)")
    limit: int | None = option(None, flag="--limit", help="use the first N rows only")
    query_field: str | None = option(None, flag="--query-field", help="question field of the data (default: auto)")
    response_field: str | None = option(None, flag="--response-field",
                                        help="response field of the data (default: auto)")
    max_steps: int | None = option(None, flag="--max-steps", help="cap the steps of every stage")
    stop_at_step: int | None = option(None, flag="--stop-at-step", group=_RUN,
                                      help="stop a stage when it reaches this step, checkpointed, as if killed "
                                           "(exit 3; rerun resumes)")
    work_dir: str | None = option(None, flag="--work-dir", group=_RUN, help="checkpoints (default: OUT/.work/rateR)")
    keep_work: bool = option(False, flag="--keep-work", group=_RUN, help="keep checkpoints after success")
    overwrite: bool = option(False, flag="--overwrite", group=_RUN,
                             help="replace an existing OUT/rateR; starts fresh (discards the checkpoints of earlier "
                                  "runs)")
    restart: bool = option(False, flag="--restart", group=_RUN,
                           help="discard the earlier progress (checkpoints) and start over")
    progress: bool = option(True, flag="--no-progress", group=_RUN, help="no progress bars")
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
    rec["compressor"] = cfg.compressor.record()
    rec["finetune"]["schedule"] = list(rec["finetune"]["schedule"])
    # Settings added later leave the record of a run that does not use them unchanged (old runs resume).
    if rec["finetune"].get("mode") == "lora":
        rec["finetune"].pop("mode")
    if rec["finetune"].get("global_batch_size") is None:
        rec["finetune"].pop("global_batch_size", None)
    return rec


def _lock_path(cfg: TrainConfig) -> Path:
    return cfg.work.with_name(cfg.work.name + ".lock")


def _check_work_dir(cfg: TrainConfig, writer: bool = True) -> None:
    """A work directory resumes only the run that made it: other settings would mix two runs.

    ``--restart`` and ``--overwrite`` start fresh. The record here gives the clear error for a
    rerun with other settings; the copy in each checkpoint decides what may be resumed. Every
    process checks; only the ``writer`` (the main process, holding the lock) deletes or records.
    """
    work = cfg.work
    fresh = cfg.restart or cfg.overwrite
    if fresh and work.exists() and writer:
        logger.info("--%s: starting fresh, removing %s", "restart" if cfg.restart else "overwrite", work)
        shutil.rmtree(work)
    if (writer or not fresh) and check_settings(
            work / RUN_RECORD, _record(cfg), what=f"{work} holds checkpoints of a run", write=writer,
            remedy="Rerun with the same settings to resume, or pass --restart to start over."):
        logger.info("resuming the run in %s", work)


def _finished_by_this_run(cfg: TrainConfig) -> bool:
    """The adapter is in place and was written by these settings, but a kill left the work directory."""
    from lm_latent.adapter.config import LATENT_CONFIG_NAME

    meta, old = read_settings(cfg.target / LATENT_CONFIG_NAME), read_settings(cfg.work / RUN_RECORD)
    if meta is None or old is None:
        return False
    rec = _record(cfg)
    return old == rec and (meta.get("training") or {}).get("settings") == settings_digest(rec)


def _remove_work(cfg: TrainConfig) -> None:
    shutil.rmtree(cfg.work, ignore_errors=True)


def _remove_empty_work_parent(cfg: TrainConfig) -> None:
    parent = cfg.work.parent
    if parent.name == ".work" and parent.is_dir() and not any(parent.iterdir()):
        with contextlib.suppress(OSError):
            parent.rmdir()


def check_launch(cfg: TrainConfig, argv: list[str] | None = None, device_count: int | None = None,
                 env: Mapping[str, str] | None = None) -> None:
    """Several visible GPUs in one process would mean DataParallel: refused with the command to run instead."""
    from lm_latent.training.launch import launch_refusal, sharding_refusal

    if env is None:
        env = os.environ
    sharded = sharding_refusal(env)
    if sharded:
        raise ValueError(sharded)
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if launch_refusal(device_count, env, []) is None:
        return
    if argv is None:
        from lm_latent.utils.dataclass_cli import to_argv

        try:
            argv = to_argv(cfg)
        except ValueError:  # a config built in Python with settings no flag expresses
            argv = ["<your lm-latent train flags>"]
    message = launch_refusal(device_count, env, argv)
    if message:
        raise ValueError(message)


def run(cfg: TrainConfig, argv: list[str] | None = None) -> Path:
    """Train and save one adapter; returns its directory.

    Refused before anything loads: settings that do not go together, and several visible GPUs
    without a distributed launcher (``argv``: the command line, for the ``accelerate launch``
    command the error names; default: the flags that rebuild ``cfg``).

    The main process holds the work directory's lock for the whole run (a second writer gets
    a :class:`~lm_latent.utils.fileio.LockedError` naming the holder); a SIGKILLed holder's lock is
    taken over by the next run.
    """
    from accelerate import PartialState

    from lm_latent.utils.fileio import exclusive_lock, local_path_or_id
    from lm_latent.utils import events

    import torch

    from lm_latent.training.finetune import check_finetune_flags

    check_finetune_flags(cfg.finetune, argv or ())
    check_launch(cfg, argv)
    cfg.base = local_path_or_id(str(cfg.base))  # latent.json then names the base from any folder
    # Joins the process group under ``accelerate launch`` (a no-op otherwise). Without ``cpu=True`` on
    # a machine without CUDA every process would think itself the main one until the Trainer starts.
    state = PartialState(cpu=not torch.cuda.is_available())
    if not state.is_main_process:
        return _run(cfg, state)
    try:
        with exclusive_lock(_lock_path(cfg), f"the work directory {cfg.work}"):
            events.reached("lock:held")
            return _run(cfg, state)
    finally:
        _remove_empty_work_parent(cfg)


def _run(cfg: TrainConfig, state) -> Path:
    import torch
    from transformers import AutoTokenizer

    from lm_latent.adapter.load import save_adapter
    from lm_latent.utils.fileio import recover_swap, remove_partials
    from lm_latent.adapter.config import LatentConfig, base_fingerprint
    from lm_latent.utils import events
    from lm_latent.training.data import load_examples, tokenize_examples
    from lm_latent.training.finetune import StopAtStep, batch_plan_for, finetune, load_for_training
    from lm_latent.training.mixed_traces import MixConfig, MixedTraceDataset
    from lm_latent.training.train_compressor import CODES_DIR, trace_codes, train_compressor
    from lm_latent.adapter.vocab import LatentVocab, extend_tokenizer

    rate = parse_rate(cfg.rate)
    target = cfg.target
    writer = state.is_main_process
    if writer:  # scratch folders of killed saves: the target's of dead writers, the work dir's all (locked)
        recover_swap(target)
        remove_partials(target)
        remove_partials(cfg.work / "compressor" / "final", all_owners=True)
        remove_partials(cfg.work / "compressor" / "codes", all_owners=True)
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
    if cfg.finetune.group_by_length < 0:  # the dataset would refuse it too, but only after the compressor
        raise ValueError(f"--group-by-length must be >= 0, got {cfg.finetune.group_by_length}")
    plan = batch_plan_for(cfg.finetune, state.num_processes)
    _check_work_dir(cfg, writer=writer)
    state.wait_for_everyone()
    record = _record(cfg)
    logger.info("fine-tuning (%s): %s; compressor: %d chunks per step over all processes", cfg.finetune.mode,
                plan.describe(), cfg.compressor.batch_size)

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
        # Once, on the training device, by the main process; a resumed run reads the cached codes.
        codes = trace_codes(compressor, samples, cfg.work / "compressor" / CODES_DIR, record,
                            batch_size=cfg.compressor.encode_batch_size, progress=cfg.progress)
        compressor.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        mix = MixConfig(chunk_len=chunk_len, strategy=cfg.finetune.strategy, schedule=cfg.finetune.schedule)

    extend_tokenizer(tokenizer, codebook_size)
    vocab = LatentVocab.from_tokenizer(tokenizer, codebook_size)
    latent_config = LatentConfig(rate=rate, chunk_len=chunk_len, codebook_size=codebook_size, base_model=str(cfg.base),
                                 base_vocab_size=base_vocab_size, vocab_size=len(tokenizer),
                                 pad_token=tokenizer.pad_token, finetune=cfg.finetune.mode)
    peft_model, tied = load_for_training(cfg.base, tokenizer, latent_config, cfg.finetune)
    latent_config.tied_embeddings = tied
    bare = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model  # full: no PEFT
    latent_config.base_fingerprint = base_fingerprint(bare.config)

    dataset = MixedTraceDataset(samples, codes, mix, vocab, seed=cfg.finetune.seed, epochs=cfg.finetune.epochs,
                                max_len=cfg.finetune.max_seq_len, group_batches=cfg.finetune.group_by_length,
                                batch_size=plan.per_device)
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
        "num_processes": state.num_processes, "global_batch": plan.global_batch,
        "per_device_batch": plan.per_device, "grad_accum": plan.grad_accum,
        "strategy": cfg.finetune.strategy if rate else None,
        "schedule": list(cfg.finetune.schedule) if rate else None,
        "finetune": {**asdict(cfg.finetune), "schedule": list(cfg.finetune.schedule)},
        "compressor": cfg.compressor.record() if rate else None,
        "settings": settings_digest(record),  # the run record's hash: a rerun knows its own adapter
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
        events.reached("adapter:done")
    state.wait_for_everyone()
    logger.info("wrote adapter %s (%s)", target, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                                                            if isinstance(v, float)))
    if not cfg.keep_work and writer:
        _remove_work(cfg)
    return target


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default once: not for required options, ``None``/switches, or help that already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.required or "default" in text or action.default is None or action.nargs == 0
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The ``lm-latent train`` flags, generated from :class:`TrainConfig` and the stage configs in it."""
    p = argparse.ArgumentParser(prog="lm-latent train", description=__doc__.splitlines()[0],
                                formatter_class=_HelpFormatter)
    add_arguments(p, TrainConfig, groups=("fine-tuning", "compressor", _RUN))
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config that parsed flags describe.

    A bad ``--rate`` or ``--schedule`` raises ``ValueError``/``AdapterError``.
    """
    return from_args(TrainConfig, args)


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    main_process = os.environ.get("RANK", "0") == "0"  # under ``accelerate launch``: one process talks
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO if main_process else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from lm_latent.utils.fileio import LockedError, NoSpaceError

    try:
        cfg = config_from_args(args)
        out = run(cfg, argv=list(sys.argv[1:] if argv is None else argv))
    except TrainingInterrupted as exc:
        print(f"lm-latent train: {exc}. Rerun the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FileExistsError, FileNotFoundError, ValueError, AdapterError, LockedError, NoSpaceError) as exc:
        p.exit(2, f"lm-latent train: error: {exc}\n")
    if main_process:
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
