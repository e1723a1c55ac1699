"""The study's data stage: a hub dataset written once to a local ``.jsonl`` that every rate trains from.

    python -m lm_latent.study.data meta-math/MetaMathQA --split train --out study_out/data/train.jsonl

Why a file: each ``lm-latent train`` (and each of its ranks) then reads the same bytes with no
network, and the study records their sha256, so a rerun can tell that the data did not change.
Rows are written as the hub has them (every field); ``lm-latent train`` picks the question and
response fields as it would from the hub.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

__all__ = ["download_rows", "main"]


def download_rows(source: str, split: str, out: str | os.PathLike, progress: bool = True) -> Path:
    """``datasets.load_dataset(source, split=split)`` as JSON lines at ``out`` (written atomically)."""
    import datasets
    from tqdm.auto import tqdm

    out = Path(out)
    ds = datasets.load_dataset(source, split=split)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in tqdm(ds, total=len(ds), desc=f"writing {out.name}", unit="row", disable=not progress):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lm_latent.study.data", description=__doc__.splitlines()[0])
    p.add_argument("source", help="a hub dataset id, e.g. meta-math/MetaMathQA")
    p.add_argument("--split", default="train", help="the split to write (default: train)")
    p.add_argument("--out", required=True, help="the .jsonl file to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    print(f"wrote {download_rows(args.source, args.split, args.out, progress=not args.no_progress)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
