"""What a rate's latent codes identify: the opener, person, item and number of the chunks they replace.

The compressor's encoder sees a trace chunk alone (its decoder adds the prompt), so what a
latent can pass on is what fits in its code: log2(K) bits, 8 at K=256. A chunk of the
restatement holds a name, an item and a number the prompt also holds; a code that tells them
apart lets the decoder (and the model reading it) know *which* fact the chunk restated. This
measures it on the held-out problems, for the chunk positions the plan's schedule replaces:
a table from code to the most frequent value, fitted on the first half of the problems and
scored on the second, against the same table fitted on the chunk position alone (what a code
that says nothing would score).

    python -m lm_latent.demo.analysis.code_content --out demo_out --rate 16
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lm_latent.demo.synthetic import ITEMS, NAMES

_NAME = re.compile(r"\b(" + "|".join(n for n, _ in NAMES) + r")\b")
_ITEM = re.compile(r"\b(" + "|".join(sorted({w for pair in ITEMS for w in pair}, key=len, reverse=True)) + r")\b")
_NUMBER = re.compile(r"\d+")
FEATURES: dict[str, Callable[[str], str | None]] = {
    "person": lambda text: (m := _NAME.search(text)) and m.group(1),
    "item": lambda text: (m := _ITEM.search(text)) and m.group(1),
    "number": lambda text: (m := _NUMBER.search(text)) and m.group(0),
}


@dataclass
class FeatureScore:
    """How well the chunk's code tells one feature, on the held-out half."""

    feature: str
    chunks: int          # scored chunks that hold the feature
    values: int          # distinct values among them
    by_position: float   # accuracy of the most frequent value per chunk position
    by_code: float       # accuracy of the most frequent value per (position, code)


def _majority(pairs) -> dict:
    counts: dict = defaultdict(Counter)
    for key, value in pairs:
        counts[key][value] += 1
    return {key: c.most_common(1)[0][0] for key, c in counts.items()}


def score(rows: list[tuple[int, tuple[int, ...], str, str]]) -> list[FeatureScore]:
    """``rows`` are (problem index, code tuple, chunk text, opener) per chunk, in problem order,
    with the chunk position as the problem's running count; the first half of problems fits."""
    problems = sorted({r[0] for r in rows})
    fit = set(problems[: len(problems) // 2])
    position: Counter = Counter()
    table = []
    for problem, code, text, opener in rows:
        pos = position[problem]
        position[problem] += 1
        values = {name: f(text) for name, f in FEATURES.items()}
        if pos == 0:
            values["opener"] = opener
        table.append((problem in fit, pos, code, values))
    scores = []
    for feature in ("opener", *FEATURES):
        held = [(f, pos, code, v[feature]) for f, pos, code, v in table if v.get(feature)]
        train = [(pos, code, value) for f, pos, code, value in held if f]
        test = [(pos, code, value) for f, pos, code, value in held if not f]
        if not train or not test:
            continue
        by_pos = _majority((pos, value) for pos, _, value in train)
        by_code = _majority(((pos, code), value) for pos, code, value in train)
        hit_pos = sum(by_pos.get(pos) == value for pos, _, value in test)
        # a code never seen in the fitting half falls back on its position's guess
        hit_code = sum(by_code.get((pos, code), by_pos.get(pos)) == value for pos, code, value in test)
        scores.append(FeatureScore(feature, len(test), len({v for *_, v in held}), hit_pos / len(test),
                                   hit_code / len(test)))
    return scores


def code_rows(adapter: str | Path, base: str | Path, test_file: str | Path, schedule: str) -> list:
    """(problem, codes, chunk text, opener) for the whole chunks ``schedule`` replaces in every held-out trace."""
    import torch
    from transformers import AutoTokenizer

    from lm_latent.models.decode import load_compressor
    from lm_latent.training.data import load_examples, tokenize_examples
    from lm_latent.training.mixed_traces import trace_chunks

    compressor = load_compressor(adapter)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    examples = load_examples(str(test_file))
    samples = tokenize_examples(examples, tokenizer, progress=False)
    L = compressor.config.chunk_len
    positions = replaced_positions(schedule, L)
    flat, meta = [], []
    for i, (ex, s) in enumerate(zip(examples, samples)):
        opener = ex.trace.split(".")[0]
        for chunk in trace_chunks(s.trace_ids, L)[:positions]:
            flat.append(chunk)
            meta.append((i, tokenizer.decode(chunk), opener))
    codes = []
    for start in range(0, len(flat), 1024):
        codes.extend(compressor.encode(torch.tensor(flat[start:start + 1024])).tolist())
    return [(i, tuple(c), text, opener) for (i, text, opener), c in zip(meta, codes)]


def replaced_positions(schedule: str, chunk_len: int) -> int:
    """Chunk positions the schedule's largest m replaces (at least one)."""
    return max(1, max(int(m) for m in schedule.split(",")) // chunk_len)


def markdown(by_rate: dict[int, list[FeatureScore]]) -> str:
    lines = ["| rate | feature | chunks scored | distinct values | by position % | by code % |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {rate} | {s.feature} | {s.chunks} | {s.values} | {100 * s.by_position:.1f} | {100 * s.by_code:.1f} |"
              for rate, scores in sorted(by_rate.items()) for s in scores]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lm_latent.demo.analysis.code_content",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="a demo output folder")
    p.add_argument("--rate", type=int, required=True, help="a latent rate the demo trained")
    p.add_argument("--schedule", default="0,48", help="the run's schedule (which chunk positions are replaced)")
    args = p.parse_args(argv)
    from lm_latent.demo.stages import demo_paths

    paths = demo_paths(Path(args.out))
    rows = code_rows(paths["adapters"] / f"rate{args.rate}", paths["base"], paths["test"], args.schedule)
    print(markdown({args.rate: score(rows)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
