"""Stage 1: train the VQ-VAE compressor on chunks of whole sequences (prompt, trace, solution).

Chunks are windows of L tokens on a grid anchored at the trace's first token, so the trace
chunks that later become latents are exactly chunks the compressor was trained on, while
prompt and solution text is covered too (as the method prescribes). Training runs in the HF
``Trainer`` (progress bars, checkpoints, resume, ``accelerate launch`` for many GPUs); the
logs carry reconstruction accuracy, codebook usage and perplexity, because codebook collapse
is the failure this method is known for. The finished compressor and its held-out metrics are
written atomically to ``<work>/final`` and reused when the recipe is rerun.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from lm_latent.adapter.compressor import CompressorArchitecture
from lm_latent.utils.dataclass_cli import option
from lm_latent.utils.fileio import atomic_directory, write_json_atomic
from lm_latent.training.data import TokenizedExample

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CODES_DIR = "codes"  # <work>/compressor/codes: trace codes.npz + the settings record
CODES_FILE = "codes.npz"


@dataclass
class CompressorTrainConfig:
    """Compressor recipe: the model's architecture (nested) and how it is trained.

    Defaults target MetaMathQA + a Llama-3 tokenizer on one GPU. The paper's secondary sources
    train with Adam at lr 1e-5, batch 32 for 100k steps; a small model trained from scratch with
    EMA codebook updates converges far faster at lr 3e-4 with large batches, so that is the
    default (one pass over ~6M chunks). ``--seed`` and ``--bf16`` are shared with fine-tuning
    (their help lives on :class:`~lm_latent.training.finetune.FinetuneConfig`).
    """

    model: CompressorArchitecture = field(default_factory=CompressorArchitecture)
    learning_rate: float = option(3e-4, flag="--compressor-lr", help="learning rate", group="compressor")
    batch_size: int = option(256, flag="--compressor-batch-size",
                             help="chunks per optimizer step over all processes (split across them)",
                             group="compressor")
    epochs: int = option(1, flag="--compressor-epochs", help="passes over the chunks", group="compressor")
    max_steps: int = option(-1, flag="--compressor-steps", help="-1: one pass per epoch", group="compressor")
    warmup: float = 0.02  # < 1: share of the steps; >= 1: steps
    weight_decay: float = 0.0
    eval_fraction: float = 0.01
    max_eval_samples: int = 2000
    logging_steps: int = 50
    save_steps: int = option(1000, flag="--compressor-save-steps", help="checkpoint every N steps",
                             group="compressor")
    save_total_limit: int = 2
    bf16: bool | None = option(None, flag="--bf16")  # None: on when a bf16-capable GPU is present
    seed: int = option(0, flag="--seed")
    encode_batch_size: int = 1024

    def record(self) -> dict:
        """The recipe as one flat dict, the architecture's fields first: the shape that run records,
        ``metrics.json`` and ``latent.json`` have always had (nesting changed no file)."""
        rec = asdict(self)
        return {**rec.pop("model"), **rec}


def sequence_chunk_starts(n_prompt: int, n_total: int, chunk_len: int, n_trace: int | None = None) -> list[int]:
    """Starts of the whole windows of a sequence on the grid anchored at the trace start.

    With ``n_trace``, only the windows inside the trace (the ones that become latents).
    """
    if n_trace is not None:
        return list(range(n_prompt, n_prompt + n_trace - chunk_len + 1, chunk_len))
    first = n_prompt % chunk_len
    return list(range(first, n_total - chunk_len + 1, chunk_len))


class ChunkDataset:
    """(chunk, prompt) pairs from whole sequences, in a fixed seeded order (resumable)."""

    def __init__(self, samples: Sequence[TokenizedExample], chunk_len: int, max_prompt_len: int,
                 seed: int = 0, epochs: int = 1, shuffle: bool = True, trace_only: bool = False) -> None:
        import numpy as np

        self.samples, self.chunk_len, self.max_prompt_len = samples, chunk_len, max_prompt_len
        owners, starts = [], []
        for i, ex in enumerate(samples):
            s = sequence_chunk_starts(len(ex.prompt_ids), len(ex), chunk_len,
                                      len(ex.trace_ids) if trace_only else None)
            owners.extend([i] * len(s))
            starts.extend(s)
        self.owner = np.asarray(owners, dtype=np.int64)
        self.start = np.asarray(starts, dtype=np.int64)
        n = len(self.owner)
        if shuffle:
            self.order = np.concatenate([np.random.default_rng(seed * 1000 + e).permutation(n)
                                         for e in range(max(1, epochs))]) if n else np.zeros(0, np.int64)
        else:
            self.order = np.arange(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> dict:
        j = int(self.order[k])
        ex = self.samples[int(self.owner[j])]
        s = int(self.start[j])
        ids = ex.input_ids
        return {"chunks": ids[s:s + self.chunk_len], "prompt_ids": ex.prompt_ids[-self.max_prompt_len:]}


def collate_chunks(features: list[dict]) -> dict:
    """Stack chunks; right-pad prompts (id 0) with a boolean mask."""
    import torch

    chunks = torch.tensor([f["chunks"] for f in features], dtype=torch.long)
    longest = max(1, max(len(f["prompt_ids"]) for f in features))
    prompt = torch.zeros((len(features), longest), dtype=torch.long)
    mask = torch.zeros((len(features), longest), dtype=torch.bool)
    for row, f in enumerate(features):
        n = len(f["prompt_ids"])
        prompt[row, :n] = torch.tensor(f["prompt_ids"], dtype=torch.long)
        mask[row, :n] = True
    return {"chunks": chunks, "prompt_ids": prompt, "prompt_mask": mask}


def split_train_eval(samples: Sequence[TokenizedExample], eval_fraction: float, max_eval: int,
                     seed: int) -> tuple[list[TokenizedExample], list[TokenizedExample]]:
    """A seeded held-out split by sample (never by chunk: chunks of one sample are correlated)."""
    import random

    n = len(samples)
    n_eval = min(max_eval, int(n * eval_fraction)) if n > 1 else 0
    n_eval = max(n_eval, 1) if n > 1 and eval_fraction > 0 else n_eval
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    held = set(idx[:n_eval])
    return [s for i, s in enumerate(samples) if i not in held], [samples[i] for i in sorted(held)]


def auto_bf16(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def evaluate_compressor(model, samples: Sequence[TokenizedExample], batch_size: int = 1024,
                        progress: bool = False, trace_only: bool = False) -> dict:
    """Held-out reconstruction through the inference path (encode -> codes -> decode).

    Returns token accuracy, exact-chunk accuracy, codebook usage (share of the K codes used)
    and perplexity (exp entropy of code use; K means perfectly even use) over all chunks of
    the sequences, or (``trace_only``) over the trace chunks that become latents.
    """
    import torch
    from tqdm.auto import tqdm

    from lm_latent.adapter.compressor import code_stats

    cfg = model.config
    ds = ChunkDataset(samples, cfg.chunk_len, cfg.max_prompt_len, shuffle=False, trace_only=trace_only)
    if len(ds) == 0:
        return {"eval_chunks": 0}
    correct = exact = total = 0
    all_codes = []
    for start in tqdm(range(0, len(ds), batch_size), desc="Evaluating compressor", disable=not progress):
        batch = collate_chunks([ds[k] for k in range(start, min(start + batch_size, len(ds)))])
        codes = model.encode(batch["chunks"])
        rec = model.decode(codes, batch["prompt_ids"], batch["prompt_mask"]).cpu()
        hit = rec == batch["chunks"]
        correct += int(hit.sum())
        exact += int(hit.all(dim=1).sum())
        total += hit.numel()
        all_codes.append(codes.cpu())
    usage, ppl = code_stats(torch.cat(all_codes), cfg.codebook_size)
    return {"recon_accuracy": correct / total, "recon_exact_chunks": exact / len(ds), "codebook_usage": usage,
            "codebook_perplexity": ppl, "eval_chunks": len(ds)}


def encode_traces(model, samples: Sequence[TokenizedExample], batch_size: int = 1024,
                  progress: bool = True) -> list:
    """Codes of every whole trace chunk: one ``[n_chunks, L/r]`` int array per sample."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    L = model.config.chunk_len
    n_lat = model.config.latents_per_chunk
    counts = [len(s.trace_ids) // L for s in samples]
    flat = [s.trace_ids[i * L:(i + 1) * L] for s, c in zip(samples, counts) for i in range(c)]
    codes = np.zeros((len(flat), n_lat), dtype=np.int32)
    for start in tqdm(range(0, len(flat), batch_size), desc="Encoding trace chunks", disable=not progress):
        batch = torch.tensor(flat[start:start + batch_size], dtype=torch.long)
        codes[start:start + len(batch)] = model.encode(batch).cpu().numpy()
    out, pos = [], 0
    for c in counts:
        out.append(codes[pos:pos + c])
        pos += c
    return out


def _read_codes(folder: Path, counts: list[int], latents_per_chunk: int) -> list | None:
    """The cached codes, if they fit these samples (one row per whole trace chunk); else ``None``."""
    import numpy as np

    try:
        with np.load(folder / CODES_FILE, allow_pickle=False) as data:
            flat, stored = data["codes"], data["counts"]
    except (OSError, KeyError, ValueError):
        return None
    if stored.tolist() != counts or flat.shape != (sum(counts), latents_per_chunk):
        return None
    out, pos = [], 0
    for c in counts:
        out.append(flat[pos:pos + c])
        pos += c
    return out


def trace_codes(model, samples: Sequence[TokenizedExample], cache: str | Path | None, record: dict | None,
                batch_size: int = 1024, progress: bool = True) -> list:
    """:func:`encode_traces` done once per run: by the main process, on the training device, cached on disk.

    ``cache`` (``<work>/compressor/codes``) holds ``codes.npz`` and the run's settings ``record``;
    a resumed run whose record matches reads it (no encoding at all), and under ``accelerate
    launch`` the other processes wait for the main one and read the same file instead of each
    encoding every trace on its own. Without ``cache`` it simply encodes, on the training device.
    """
    import numpy as np
    from accelerate import PartialState

    from lm_latent.utils import events
    from lm_latent.utils.run_record import same_settings
    from lm_latent.training.checkpoints import RECORD_NAME

    state = PartialState()
    if cache is None:
        model.to(state.device)
        return encode_traces(model, samples, batch_size=batch_size, progress=progress)
    cache = Path(cache)
    L, n_lat = model.config.chunk_len, model.config.latents_per_chunk
    counts = [len(s.trace_ids) // L for s in samples]

    def usable() -> list | None:
        if record is not None and not same_settings(cache / RECORD_NAME, record):
            return None
        return _read_codes(cache, counts, n_lat)

    if state.is_main_process:
        codes = usable()
        if codes is not None:
            logger.info("trace codes already encoded: reading %s", cache / CODES_FILE)
        else:
            model.to(state.device)
            logger.info("encoding %d trace chunks on %s (once; cached in %s)", sum(counts), state.device, cache)
            codes = encode_traces(model, samples, batch_size=batch_size, progress=progress)
            with atomic_directory(cache, overwrite=True) as tmp:
                flat = np.concatenate(codes) if codes else np.zeros((0, n_lat), np.int32)
                np.savez(tmp / CODES_FILE, codes=flat.reshape(-1, n_lat).astype(np.int32),
                         counts=np.asarray(counts, dtype=np.int64))
                if record is not None:
                    write_json_atomic(tmp / RECORD_NAME, record)
            events.reached("codes:done")
    state.wait_for_everyone()
    if not state.is_main_process:
        codes = usable()
    if codes is None:
        raise RuntimeError(f"{cache / CODES_FILE} is missing or does not fit this run after the main process "
                           f"wrote it (a shared filesystem is required between processes)")
    return codes


def _make_trainer_class():
    from transformers import Trainer

    class CompressorTrainer(Trainer):
        """Adds running reconstruction accuracy, codebook usage and perplexity to the logs."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._sums: dict = defaultdict(float)  # 0-d tensors on the training device: no sync per step
            self._count = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(**inputs)
            if model.training:
                for key in ("recon_loss", "commit_loss", "accuracy", "usage", "perplexity"):
                    self._sums[key] = self._sums[key] + getattr(out, key).detach().float()
                self._count += 1
            return (out.loss, out) if return_outputs else out.loss

        def log(self, logs: dict, *args, **kwargs) -> None:
            if self._count and "loss" in logs:
                logs.update({f"batch_{k}" if k in ("accuracy", "usage", "perplexity") else k:
                             round(float(v) / self._count, 4)
                             for k, v in self._sums.items()})
                self._sums.clear()
                self._count = 0
            super().log(logs, *args, **kwargs)

    return CompressorTrainer


def train_compressor(samples: Sequence[TokenizedExample], *, vocab_size: int, rate: int, chunk_len: int,
                     codebook_size: int, config: CompressorTrainConfig, work_dir: str | Path,
                     max_steps: int | None = None, callbacks: Sequence = (), progress: bool = True,
                     record: dict | None = None):
    """Train (or resume, or reuse a finished) compressor; returns ``(compressor, metrics)``.

    ``work_dir/checkpoints`` holds Trainer checkpoints; ``work_dir/final`` the finished model
    and ``metrics.json`` (written atomically, so its presence means "done"). With a settings
    ``record``, only checkpoints and a ``final`` that carry the same record are used; the others
    are set aside (:mod:`lm_latent.training.checkpoints`).
    """
    import torch
    from accelerate import PartialState
    from transformers import TrainingArguments, set_seed

    from lm_latent.adapter.compressor import LatentCompressor, LatentCompressorConfig
    from lm_latent.utils import events
    from lm_latent.utils.run_record import same_settings
    from lm_latent.training.checkpoints import RECORD_NAME, prepare, raise_if_stopped, resume_or_finish, set_aside
    from lm_latent.training.finetune import prepare_trainer

    work_dir = Path(work_dir)
    final = work_dir / "final"
    state = PartialState()
    if (final / METRICS_FILE).is_file():
        if record is None or same_settings(final / RECORD_NAME, record):
            logger.info("compressor already trained: loading %s", final)
            model = LatentCompressor.from_pretrained(str(final))
            return model, json.loads((final / METRICS_FILE).read_text())
        if state.is_main_process:
            set_aside(final, "a compressor of a run with other settings, or without a settings record", work_dir)
        state.wait_for_everyone()

    train, held = split_train_eval(samples, config.eval_fraction, config.max_eval_samples, config.seed)
    dataset = ChunkDataset(train, chunk_len, config.model.max_prompt_len, seed=config.seed, epochs=config.epochs)
    if len(dataset) == 0:
        raise ValueError(f"no whole chunks of {chunk_len} tokens in the training data")
    steps = config.max_steps
    if max_steps is not None and max_steps > 0:
        steps = max_steps if steps <= 0 else min(steps, max_steps)
    logger.info("compressor: %d training chunks from %d samples, %d held-out samples, steps=%s",
                len(dataset), len(train), len(held), steps if steps > 0 else "1 pass")

    set_seed(config.seed)
    comp_config = LatentCompressorConfig(vocab_size=vocab_size, rate=rate, chunk_len=chunk_len,
                                         codebook_size=codebook_size, **asdict(config.model))
    model = LatentCompressor(comp_config)
    bf16 = auto_bf16(config.bf16)
    from lm_latent.training.finetune import world_size
    from lm_latent.training.launch import batch_plan

    # The global batch (and so the steps of one pass) is the same for every world size.
    plan = batch_plan(world_size(), config.batch_size, 1, config.batch_size)
    args = TrainingArguments(
        output_dir=str(work_dir / "checkpoints"), per_device_train_batch_size=plan.per_device,
        gradient_accumulation_steps=plan.grad_accum,
        learning_rate=config.learning_rate, weight_decay=config.weight_decay, num_train_epochs=1,
        max_steps=steps if steps > 0 else -1, lr_scheduler_type="cosine", warmup_steps=config.warmup,
        logging_steps=config.logging_steps, logging_first_step=True, save_strategy="steps",
        save_steps=config.save_steps, save_total_limit=config.save_total_limit, bf16=bf16,
        seed=config.seed, report_to="none", remove_unused_columns=False, train_sampling_strategy="sequential",
        dataloader_num_workers=0, disable_tqdm=not progress, use_cpu=not torch.cuda.is_available(),
        label_names=[])
    trainer = _make_trainer_class()(model=model, args=args, train_dataset=dataset, data_collator=collate_chunks,
                                    callbacks=list(callbacks))
    prepare_trainer(trainer, "compressor", record)
    last = prepare("compressor", work_dir / "checkpoints", record)
    result = resume_or_finish(trainer, last)
    raise_if_stopped(callbacks, f"compressor training stopped at step {trainer.state.global_step}; "
                                f"checkpoint in {work_dir / 'checkpoints'}")

    model = trainer.model
    metrics = evaluate_compressor(model, held, batch_size=config.encode_batch_size, progress=progress)
    trace = evaluate_compressor(model, held, batch_size=config.encode_batch_size, trace_only=True)
    metrics.update({f"trace_{k}": v for k, v in trace.items()})
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    metrics.update({"final_loss": losses[-1] if losses else (result.training_loss if result else float("nan")),
                    "steps": trainer.state.global_step, "train_chunks": len(dataset),
                    "heldout_samples": len(held), "chance_accuracy": 1.0 / vocab_size,
                    "recipe": config.record()})
    logger.info("compressor held-out: token accuracy %.4f (trace chunks %.4f), exact chunks %.4f, codebook usage "
                "%.3f, perplexity %.1f / %d", metrics.get("recon_accuracy", float("nan")),
                metrics.get("trace_recon_accuracy", float("nan")),
                metrics.get("recon_exact_chunks", float("nan")), metrics.get("codebook_usage", float("nan")),
                metrics.get("codebook_perplexity", float("nan")), codebook_size)
    state = PartialState()  # the Trainer's arguments re-created the process state
    if state.is_main_process:  # under ``accelerate launch`` every process holds the same model
        with atomic_directory(final, overwrite=True) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            write_json_atomic(tmp / METRICS_FILE, metrics)
            if record is not None:
                write_json_atomic(tmp / RECORD_NAME, record)
        events.reached("compressor:done")
    state.wait_for_everyone()
    return model, metrics
