"""One table over several demo runs: each run a design variant, each latent rate a row against its own CoT.

``docs/demo.md``'s "A fair chance for the method" table is this module's output. Every row
compares a latent rate with the CoT adapter *of the same run* (same base, same data), as the
target asks; the decoded-text accuracy is :func:`lm_latent.demo.report.decoded_accuracy` on the
run's logged samples.

    python -m lm_latent.demo.analysis.compare "shipped base=demo_out" "equations base=eq_out"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lm_latent.demo.plan import plan_from_record
from lm_latent.demo.report import _samples, decoded_accuracy, gap_in_se, meets_target
from lm_latent.demo.stages import STATE_FILE, demo_paths

HEADER = ("| variant | rate | fine-tuning steps | acc % | vs CoT (SE) | gen tokens | tokens vs CoT | time vs CoT "
          "| latent usage % | codebook usage % | distinct spans % | decoded-text acc % | target |")


def rows_of(label: str, out: str | Path) -> list[str]:
    """Markdown rows of one demo run: its CoT row, then every latent rate."""
    from transformers import AutoTokenizer

    from lm_latent.sweep.report import _fmt, collect

    out = Path(out)
    paths = demo_paths(out)
    plan = plan_from_record(json.loads((out / STATE_FILE).read_text(encoding="utf-8"))["plan"])
    rows = {r.rate: r for r in collect(paths["results"])}
    if 0 not in rows:
        raise ValueError(f"{out} has no rate-0 (CoT) result to compare with; finish its sweep first")
    b = rows[0]
    lines = []
    for rate, r in sorted(rows.items()):
        decoded = "n/a"
        if rate:
            tokenizer = AutoTokenizer.from_pretrained(str(paths["adapters"] / f"rate{rate}"))
            acc, _ = decoded_accuracy(_samples(paths["results"], rate), tokenizer)
            decoded = _fmt(acc, pct=True)
        lines.append("| " + " | ".join([
            label, "0 (CoT)" if rate == 0 else str(rate), str(plan.steps_for(rate)),
            f"{100 * r.avg_accuracy:.1f} ± {100 * r.avg_stderr:.1f}", "" if rate == 0 else f"{gap_in_se(r, b):+.1f}",
            f"{r.avg_gen_tokens:.1f}", _fmt(r.avg_gen_tokens / b.avg_gen_tokens, ".3f"),
            _fmt(r.generation_seconds / b.generation_seconds, ".3f"),
            _fmt(r.avg_latent_usage, pct=True),
            "n/a" if rate == 0 else _fmt(r.avg_codebook_usage, pct=True),
            "n/a" if rate == 0 else _fmt(r.avg_latent_span_diversity, pct=True), decoded,
            "" if rate == 0 else ("met" if meets_target(r, b) else "not met")]) + " |")
    return lines


def table(runs: list[tuple[str, str | Path]]) -> str:
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    for label, out in runs:
        lines += rows_of(label, out)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lm_latent.demo.analysis.compare", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=DIR", help="a variant's label and its demo output folder")
    args = p.parse_args(argv)
    runs = []
    for item in args.runs:
        label, sep, out = item.rpartition("=")
        if not sep or not label:
            p.error(f"expected LABEL=DIR, got {item!r}")
        runs.append((label, out))
    try:
        print(table(runs))
    except (ValueError, FileNotFoundError) as exc:
        p.exit(1, f"compare: error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
