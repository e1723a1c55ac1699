"""Seeded GSM8K-like word problems (2-4 arithmetic steps) for the demo, in GSM8K JSONL format.

Each row is ``{"question": ..., "answer": <reasoning trace> + "\\n#### N"}``, like ``openai/gsm8k``
(without the ``<<...>>`` calculator notes). The traces are written the way a model's
chain-of-thought reads: they first *restate the question* (its facts again, as it words them,
after an opening phrase), say what is asked, then walk through the steps, each step naming
the quantities it combines before the arithmetic. That redundancy is what latent tokens can
compress: the first chunks of a trace carry nothing that the prompt does not already hold (the
compressor's decoder sees the prompt), while the few computed numbers sit in the later chunks.

A folder written by :func:`write_dataset` is laid out like ``shared/data``::

    DIR/gsm8k/train.jsonl    training problems
    DIR/gsm8k/test.jsonl     held-out problems (no question text shared with train)
    DIR/pretrain.jsonl       the base model's corpus: the training problems, each solved either
                             verbosely (as in train.jsonl) or tersely (the steps alone), or
                             (base corpus "equations") by their bare equations
    DIR/synthetic.json       how it was made (written last: its presence means "finished")

so ``lm_eval --model latent ... --tasks latent_math_gsm8k --metadata data_dir=DIR`` grades the held-out set
with the real task and grader, and ``lm-latent train --data DIR/gsm8k/train.jsonl`` trains on it.

    python -m lm_latent.demo.synthetic --out DIR [--train 30000] [--test 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from lm_latent.utils.fileio import write_json_atomic, write_text_atomic
from lm_latent.training.data import read_rows

META_NAME = "synthetic.json"
TASK_DIR = "gsm8k"
PRETRAIN_NAME = "pretrain.jsonl"
FORMAT_VERSION = 2
TERSE_FRACTION = 0.5
# "mixed": the solution format itself, verbose and terse; "equations": the bare arithmetic
BASE_CORPORA = ("mixed", "equations")

NAMES = [("Ann", "she"), ("Ben", "he"), ("Cara", "she"), ("Dev", "he"), ("Eli", "he"), ("Fay", "she"),
         ("Gus", "he"), ("Hana", "she"), ("Ivan", "he"), ("Jade", "she"), ("Kofi", "he"), ("Lena", "she"),
         ("Mia", "she"), ("Noah", "he"), ("Omar", "he"), ("Priya", "she"), ("Quinn", "he"), ("Rosa", "she"),
         ("Sam", "he"), ("Tara", "she"), ("Uma", "she"), ("Victor", "he"), ("Wes", "he"), ("Yara", "she")]
# (plural, singular) items and the containers they come in.
ITEMS = [("apples", "apple"), ("marbles", "marble"), ("stickers", "sticker"), ("pencils", "pencil"),
         ("cookies", "cookie"), ("books", "book"), ("shells", "shell"), ("stamps", "stamp"),
         ("beads", "bead"), ("cards", "card"), ("eggs", "egg"), ("candies", "candy"),
         ("buttons", "button"), ("crayons", "crayon"), ("oranges", "orange"), ("toy cars", "toy car")]
CONTAINERS = [("boxes", "box"), ("bags", "bag"), ("packs", "pack"), ("jars", "jar"),
              ("baskets", "basket"), ("crates", "crate")]
PLACES = ["at the park", "at school", "in the garden", "at the market", "in the attic", "at the beach",
          "under the bed", "at the library"]
MAX_VALUE = 300


@dataclass
class _Story:
    """The problem being built: one person, one kind of item, a running count ``x``."""

    rng: random.Random
    name: str
    pron: str
    items: str
    item: str
    boxes: str
    box: str
    friend: str
    x: int = 0
    ops: int = 0
    question: list[str] = field(default_factory=list)   # sentences of the question
    steps: list[str] = field(default_factory=list)      # the trace's computation sentences
    equations: list[tuple[int, str, int, int]] = field(default_factory=list)

    @property
    def Pron(self) -> str:  # noqa: N802  (sentence-initial pronoun)
        return self.pron.capitalize()

    @property
    def poss(self) -> str:
        return "his" if self.pron == "he" else "her"

    @property
    def obj(self) -> str:
        return "him" if self.pron == "he" else "her"

    def eq(self, a: int, op: str, b: int) -> tuple[int, str]:
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        if op == "/":
            assert a % b == 0
        self.equations.append((a, op, b, value))
        self.ops += 1
        return value, f"{a} {op} {b} = {value}"


# --- the opening fact (0 or 1 arithmetic step) ------------------------------------------------------

def _start_plain(s: _Story) -> None:
    s.x = s.rng.randint(6, 60)
    s.question.append(f"{s.name} has {s.x} {s.items}.")


def _start_groups(s: _Story) -> None:
    b, c = s.rng.randint(2, 6), s.rng.randint(2, 12)
    s.question.append(f"{s.name} has {b} {s.boxes} of {s.items}, and each {s.box} holds {c} {s.items}.")
    s.x, text = s.eq(b, "*", c)
    s.steps.append(f"There are {b} {s.boxes} with {c} {s.items} in each {s.box}, so {s.name} starts with "
                   f"{text} {s.items}.")


# --- middle steps ------------------------------------------------------------------------------------

def _add_find(s: _Story) -> bool:
    b = s.rng.randint(2, 40)
    if s.x + b > MAX_VALUE:
        return False
    place = s.rng.choice(PLACES)
    s.question.append(f"Then {s.pron} finds {b} more {s.items} {place}.")
    old = s.x
    s.x, text = s.eq(old, "+", b)
    s.steps.append(f"{s.name} had {old} {s.items} and found {b} more, so now {s.pron} has {text} {s.items}.")
    return True


def _add_gift(s: _Story) -> bool:
    b = s.rng.randint(2, 40)
    if s.x + b > MAX_VALUE:
        return False
    s.question.append(f"{s.friend} gives {s.obj} {b} {s.items}.")
    old = s.x
    s.x, text = s.eq(old, "+", b)
    s.steps.append(f"{s.friend} gives {s.name} {b} {s.items}, so {s.name} has {text} {s.items} now.")
    return True


def _sub_give(s: _Story) -> bool:
    if s.x < 4:
        return False
    b = s.rng.randint(1, min(40, s.x - 1))
    s.question.append(f"{s.Pron} gives {b} {s.items} to {s.friend}.")
    old = s.x
    s.x, text = s.eq(old, "-", b)
    s.steps.append(f"{s.name} gives {b} {s.items} to {s.friend}, so {s.pron} has {text} {s.items} left.")
    return True


def _sub_lose(s: _Story) -> bool:
    if s.x < 4:
        return False
    b = s.rng.randint(1, min(30, s.x - 1))
    s.question.append(f"{s.Pron} loses {b} of them on the way home.")
    old = s.x
    s.x, text = s.eq(old, "-", b)
    s.steps.append(f"{s.name} loses {b} {s.items} on the way home, which leaves {text} {s.items}.")
    return True


def _buy_groups(s: _Story) -> bool:  # two arithmetic steps
    b, c = s.rng.randint(2, 6), s.rng.randint(2, 12)
    if s.x + b * c > MAX_VALUE:
        return False
    s.question.append(f"{s.Pron} buys {b} {s.boxes} of {s.items} with {c} {s.items} in each {s.box}.")
    bc, text1 = s.eq(b, "*", c)
    old = s.x
    s.x, text2 = s.eq(old, "+", bc)
    s.steps.append(f"Each {s.box} has {c} {s.items}, so the {b} {s.boxes} hold {text1} {s.items}. "
                   f"Adding them to the {old} {s.items} {s.pron} had, {s.name} has {text2} {s.items}.")
    return True


def _give_each(s: _Story) -> bool:  # two arithmetic steps
    k = s.rng.randint(2, 5)
    if s.x < 2 * k + 1:
        return False
    b = s.rng.randint(1, min(10, (s.x - 1) // k))
    s.question.append(f"{s.Pron} gives {b} {s.items} to each of {s.poss} {k} friends.")
    kb, text1 = s.eq(k, "*", b)
    old = s.x
    s.x, text2 = s.eq(old, "-", kb)
    s.steps.append(f"{s.Pron} gives {b} {s.items} to each of {k} friends, which is {text1} {s.items} in all. "
                   f"That leaves {s.name} with {text2} {s.items}.")
    return True


def _double(s: _Story) -> bool:
    factor = s.rng.choice([2, 2, 3])
    if s.x * factor > MAX_VALUE or s.x > 60:
        return False
    word = "doubles" if factor == 2 else "triples"
    s.question.append(f"Later {s.pron} {word} the number of {s.items} {s.pron} has.")
    old = s.x
    s.x, text = s.eq(old, "*", factor)
    s.steps.append(f"{s.name} {word} {s.poss} {old} {s.items}, so {s.pron} has {text} {s.items}.")
    return True


MIDDLE_STEPS = [(_add_find, 1), (_add_gift, 1), (_sub_give, 1), (_sub_lose, 1), (_buy_groups, 2),
                (_give_each, 2), (_double, 1)]


# --- the question asked --------------------------------------------------------------------------------

def _ask_total(s: _Story) -> str:
    s.question.append(s.rng.choice([f"How many {s.items} does {s.name} have now?",
                                    f"How many {s.items} does {s.name} have in the end?"]))
    return f"We need to find how many {s.items} {s.name} has at the end."


def _ask_share(s: _Story) -> str | None:
    divisors = [k for k in range(2, 10) if s.x % k == 0 and s.x // k >= 2]
    if not divisors:
        return None
    k = s.rng.choice(divisors)
    s.question.append(f"{s.Pron} puts all of {s.poss} {s.items} into {k} {s.boxes} with the same number "
                      f"in each {s.box}.")
    s.question.append(f"How many {s.items} are in each {s.box}?")
    goal = f"We need to find how many {s.items} go in each {s.box}."
    old = s.x
    s.x, text = s.eq(old, "/", k)
    s.steps.append(f"{s.name} splits {old} {s.items} equally into {k} {s.boxes}, so each {s.box} gets "
                   f"{text} {s.items}.")
    return goal


def _singular(s: _Story, text: str) -> str:
    """``1 eggs`` -> ``1 egg`` (``11 eggs`` stays)."""
    return re.sub(rf"(?<![0-9])1 {re.escape(s.items)}\b", f"1 {s.item}", text)


def make_problem(rng: random.Random, n_steps: int | None = None) -> dict:
    """One problem with ``n_steps`` (2-4; random when None) arithmetic operations.

    Returns ``question``, ``answer`` (trace + ``"\\n#### N"``), ``terse_answer`` (the same
    solution without the restatement: the computation sentences alone), ``value`` (N),
    ``equations_answer`` (the equations alone, ``"34 - 26 = 8; 8 * 2 = 16"``), ``steps`` (the
    operations performed) and ``equations`` (``[a, op, b, result]`` each).
    """
    target = n_steps or rng.choice([2, 3, 3, 4])
    if not 2 <= target <= 4:
        raise ValueError(f"n_steps must be 2, 3 or 4, got {n_steps}")
    for _ in range(100):
        name, pron = rng.choice(NAMES)
        friend = rng.choice([n for n, _ in NAMES if n != name])
        items, item = rng.choice(ITEMS)
        boxes, box = rng.choice(CONTAINERS)
        s = _Story(rng, name, pron, items, item, boxes, box, friend)
        (_start_groups if rng.random() < 0.3 else _start_plain)(s)
        share = rng.random() < 0.3
        ok, last = True, None
        while s.ops < target - (1 if share else 0):
            room = target - (1 if share else 0) - s.ops
            choices = [f for f, cost in MIDDLE_STEPS if cost <= room and f is not last]
            for _attempt in range(10):
                step = rng.choice(choices)
                if step(s):
                    last = step
                    break
            else:
                ok = False
                break
        if not ok:
            continue
        goal = _ask_share(s) if share else _ask_total(s)
        if goal is None or s.ops != target:
            continue
        opener = rng.choice(["Let's read the problem again and see what we know.",
                             "Let's go over what the problem tells us, one fact at a time.",
                             "First, let's restate the problem to be sure of the facts."])
        # The restatement repeats the given facts as the question words them (all but the
        # final "How many ...?"): it is redundant with the prompt, and the steps can copy
        # their numbers from either.
        trace = _singular(s, " ".join([opener, *s.question[:-1], goal, *s.steps]))
        terse = _singular(s, " ".join(s.steps))
        question = _singular(s, " ".join(s.question))
        bare = "; ".join(f"{a} {op} {b} = {v}" for a, op, b, v in s.equations)
        return {"question": question, "answer": f"{trace}\n#### {s.x}", "terse_answer": f"{terse}\n#### {s.x}",
                "equations_answer": f"{bare}\n#### {s.x}", "value": s.x, "steps": target,
                "equations": [list(e) for e in s.equations]}
    raise RuntimeError("could not build a problem in 100 tries")  # pragma: no cover


def generate(n: int, seed: int = 0, exclude: set[str] | None = None) -> list[dict]:
    """``n`` problems with distinct question texts (none of them in ``exclude``), deterministic in ``seed``."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    rows: list[dict] = []
    misses = 0
    while len(rows) < n:
        row = make_problem(rng)
        if row["question"] in seen:
            misses += 1
            if misses > 10 * n + 1000:
                raise RuntimeError(f"only {len(rows)} distinct problems after {misses} repeats")
            continue
        seen.add(row["question"])
        rows.append(row)
    return rows


def split(n_train: int, n_test: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Held-out test problems first (their own seed stream), then train problems that avoid them."""
    test = generate(n_test, seed=seed * 1000 + 1)
    train = generate(n_train, seed=seed * 1000 + 2, exclude={r["question"] for r in test})
    return train, test


def gsm8k_row(row: dict) -> dict:
    return {"question": row["question"], "answer": row["answer"]}


def pretrain_rows(train: list[dict], terse_fraction: float = TERSE_FRACTION, seed: int = 0,
                  corpus: str = "mixed") -> list[dict]:
    """The base model's corpus: every training problem once, solved tersely with ``terse_fraction``.

    A real base model has read solutions that restate the problem first and solutions that go
    straight to the arithmetic; the fine-tuning set, like MetaMathQA, restates. A base that
    only ever saw restated traces cannot compute after latent tokens replaced the
    restatement (it copies the numbers from the restatement, not from the question), which
    a 3B model can; the terse half stands in for that reading.

    ``corpus="equations"`` solves every problem by its bare equations instead: a base that
    knows the problems' language (trained with the prompt loss) and their arithmetic, but has
    never seen the solution format that CoT and latent fine-tuning both teach, as Llama-3.2-3B
    had not seen MetaMathQA's.
    """
    if corpus not in BASE_CORPORA:
        raise ValueError(f"unknown base corpus {corpus!r}; choose one of {', '.join(BASE_CORPORA)}")
    if corpus == "equations":
        return [{"question": r["question"], "answer": r["equations_answer"]} for r in train]
    if not 0.0 <= terse_fraction <= 1.0:
        raise ValueError(f"terse_fraction must be in [0, 1], got {terse_fraction}")
    rng = random.Random(seed * 1000 + 3)
    return [{"question": r["question"], "answer": r["terse_answer"] if rng.random() < terse_fraction else r["answer"]}
            for r in train]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(gsm8k_row(row), ensure_ascii=False) + "\n" for row in rows))


def dataset_paths(out_dir: str | os.PathLike) -> dict[str, Path]:
    out = Path(out_dir)
    return {"train": out / TASK_DIR / "train.jsonl", "test": out / TASK_DIR / "test.jsonl",
            "pretrain": out / PRETRAIN_NAME, "meta": out / META_NAME}


def is_finished(out_dir: str | os.PathLike, n_train: int, n_test: int, seed: int,
                terse_fraction: float = TERSE_FRACTION, base_corpus: str = "mixed") -> bool:
    meta_path = dataset_paths(out_dir)["meta"]
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    keys = ("n_train", "n_test", "seed", "terse_fraction", "format_version")
    return (tuple(meta.get(k) for k in keys) == (n_train, n_test, seed, terse_fraction, FORMAT_VERSION)
            and meta.get("base_corpus", "mixed") == base_corpus)


def write_dataset(out_dir: str | os.PathLike, n_train: int = 30000, n_test: int = 500, seed: int = 0,
                  overwrite: bool = False, terse_fraction: float = TERSE_FRACTION,
                  base_corpus: str = "mixed") -> dict[str, Path]:
    """Write ``DIR/gsm8k/{train,test}.jsonl``, ``DIR/pretrain.jsonl`` and ``DIR/synthetic.json``
    (last); skip if already done."""
    paths = dataset_paths(out_dir)
    if not overwrite and is_finished(out_dir, n_train, n_test, seed, terse_fraction, base_corpus):
        return paths
    paths["train"].parent.mkdir(parents=True, exist_ok=True)
    if paths["meta"].exists():
        paths["meta"].unlink()
    train, test = split(n_train, n_test, seed)
    _write_jsonl(paths["train"], train)
    _write_jsonl(paths["test"], test)
    _write_jsonl(paths["pretrain"], pretrain_rows(train, terse_fraction, seed, base_corpus))
    steps = {k: sum(r["steps"] == k for r in train) for k in (2, 3, 4)}
    words = sum(len(r["answer"].split()) for r in train) / max(1, len(train))
    meta = {"format_version": FORMAT_VERSION, "generator": "lm_latent.demo.synthetic", "seed": seed,
            "n_train": n_train, "n_test": n_test, "terse_fraction": terse_fraction, "base_corpus": base_corpus,
            "train_steps": steps,
            "mean_trace_words": round(words, 1)}
    write_json_atomic(paths["meta"], meta)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lm_latent.demo.synthetic",
                                description="Write seeded GSM8K-like train/test problems (the demo's data).")
    p.add_argument("--out", required=True, help="folder to write (DIR/gsm8k/train.jsonl, DIR/gsm8k/test.jsonl)")
    p.add_argument("--train", type=int, default=30000, help="training problems (default 30000)")
    p.add_argument("--test", type=int, default=500, help="held-out problems (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--terse-fraction", type=float, default=TERSE_FRACTION,
                   help="share of pretrain.jsonl solved without the restatement")
    p.add_argument("--base-corpus", choices=BASE_CORPORA, default="mixed",
                   help="how pretrain.jsonl solves the problems: the solution format, or bare equations")
    p.add_argument("--overwrite", action="store_true", help="rewrite even if a finished set is there")
    p.add_argument("--show", type=int, default=0, help="print this many held-out examples")
    args = p.parse_args(argv)
    paths = write_dataset(args.out, args.train, args.test, args.seed, overwrite=args.overwrite,
                          terse_fraction=args.terse_fraction, base_corpus=args.base_corpus)
    print(f"wrote {paths['train']} ({args.train} rows), {paths['test']} ({args.test} rows) and "
          f"{paths['pretrain']}")
    for row in read_rows(paths["test"])[: args.show]:
        print(f"\nQ: {row['question']}\nA: {row['answer']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
