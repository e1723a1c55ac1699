"""The base model shipped with the package: the full plan's base, pretrained once by this demo.

A study of the method starts from a published pretrained model (Llama-3.2-3B); the demo's
counterpart is ``pretrained_base/``: the tiny Llama that the full plan's base stage trained
(2,400 steps, 20 minutes on 2 CPU cores), with its tokenizer and ``pretrain.json``. Copying it
takes a second, so ``--quick`` starts from a model that can already copy numbers from a
question, and the full run saves its longest stage. ``lm-latent demo --train-base`` trains the
base from scratch instead, with the plan's own recipe.

The shipped base was pretrained on the training problems of ``split(30000, 1000, seed=0)``: a
plan may use it only where its held-out problems are among those 1,000 (the generator draws
them as a prefix of one seeded stream), so no held-out problem was in the base's corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from lm_latent.demo.base import DONE_NAME as RECORD_NAME  # copied last, it marks the copy finished
from lm_latent.demo.plan import DemoPlan

PRETRAINED_DIR = Path(__file__).with_name("pretrained_base")


def shipped_record() -> dict:
    return json.loads((PRETRAINED_DIR / RECORD_NAME).read_text(encoding="utf-8"))


def check_fits(plan: DemoPlan) -> None:
    """Refuse a plan whose data the shipped base does not fit (held-out problems it may have seen)."""
    recipe = shipped_record()["recipe"]
    problems = []
    if plan.seed != recipe["seed"]:
        problems.append(f"seed {plan.seed} (the shipped base's data used seed {recipe['seed']})")
    if plan.n_test > recipe["n_test_excluded"]:
        problems.append(f"n_test {plan.n_test} (its corpus excluded only the first {recipe['n_test_excluded']} "
                        f"held-out problems)")
    if plan.terse_fraction != recipe["terse_fraction"]:
        problems.append(f"terse_fraction {plan.terse_fraction} (its corpus used {recipe['terse_fraction']})")
    corpus, prompt_loss = recipe.get("base_corpus", "mixed"), recipe.get("prompt_loss", False)
    if plan.base_corpus != corpus:
        problems.append(f"base corpus {plan.base_corpus!r} (its corpus was {corpus!r})")
    if plan.base_prompt_loss != prompt_loss:
        problems.append(f"base prompt loss {plan.base_prompt_loss} (the shipped base's: {prompt_loss})")
    if problems:
        raise ValueError("the shipped base does not fit this plan: " + "; ".join(problems)
                         + "; pass --train-base to pretrain a base on this plan's data")


def copy_pretrained(out: str | os.PathLike) -> dict:
    """Copy the shipped base to ``out`` (a plain HF checkpoint, files 0644); returns its record.

    The weights are checked against the record's sha256 first: an install that lost or mangled
    the file (a Git LFS pointer, a truncated download) fails here, not in training.
    """
    record = shipped_record()
    for name, digest in record["sha256"].items():
        got = hashlib.sha256((PRETRAINED_DIR / name).read_bytes()).hexdigest()
        if got != digest:
            raise RuntimeError(f"the shipped base's {name} in {PRETRAINED_DIR} is damaged (sha256 {got[:12]}..., "
                               f"expected {digest[:12]}...): reinstall lm-latent or pass --train-base")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted(PRETRAINED_DIR.iterdir()):
        if src.is_file() and src.name != RECORD_NAME:
            tmp = out / f".{src.name}.tmp"
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out / src.name)
    from lm_latent.utils.fileio import write_json_atomic

    write_json_atomic(out / RECORD_NAME, record)
    return record
