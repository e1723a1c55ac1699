"""The study's ``report.md`` and chart: the sweep's table, beside the seed figure when the recipe is the paper's.

The seed figure (Token Assorted, Su et al. 2025, the compression-rate sweep on Llama-3.2-3B
fine-tuned on MetaMathQA): average accuracy over the seven benchmarks and mean generated tokens
at rate ~4, 16 and 32, and the CoT baseline's tokens (``shared/notes/METHOD.md``). The report says
which recipe, overrides, hardware and wall time produced the numbers, and whether they can be
compared with the paper's at all (the paper's base and data, every document, all seven tasks).
"""

from __future__ import annotations

import json
from pathlib import Path

from lm_latent.study.recipe import Recipe
from lm_latent.sweep.report import Reference, collect, plot_chart, table_rows
from lm_latent.utils.fileio import write_text_atomic

__all__ = ["SEED_FIGURE", "comparable_with_paper", "write_report"]

SEED_FIGURE = Reference(label="paper: Llama-3.2-3B", points=[(4, 27.1, 595.0), (16, 28.1, 515.0), (32, 27.9, 480.0)],
                        cot_tokens=642.9)
PAPER_RECIPE = "token-assorted-llama3.2-3b"
PAPER_BASE, PAPER_DATA = "meta-llama/Llama-3.2-3B", "meta-math/MetaMathQA"


def comparable_with_paper(recipe: Recipe) -> list[str]:
    """Why this run's numbers are not the paper's setting (empty: they are)."""
    why = []
    if recipe.base != PAPER_BASE:
        why.append(f"base {recipe.base} (the paper's: {PAPER_BASE})")
    if recipe.data != PAPER_DATA:
        why.append(f"data {recipe.data} (the paper's: {PAPER_DATA})")
    if recipe.eval.limit is not None:
        why.append(f"--limit {recipe.eval.limit} documents per task")
    if recipe.eval.tasks != "latent_math":
        why.append(f"tasks {recipe.eval.tasks} (the paper's: the seven of latent_math)")
    if recipe.eval.max_gen_toks != 2048:
        why.append(f"max_gen_toks {recipe.eval.max_gen_toks} (the paper's: 2048)")
    return why


def _included(results: Path) -> list[int] | None:
    try:
        return json.loads((results / "sweep_selection.json").read_text(encoding="utf-8"))["included"]
    except (OSError, ValueError, KeyError):
        return None


def _hardware_line(run: dict) -> str:
    hw = run.get("hardware", {})
    gpus = hw.get("gpus") or []
    gpu_text = f"{len(gpus)} x {gpus[0]} ({run.get('gpus')} used)" if gpus else "no GPU (CPU, one process at a time)"
    return (f"{hw.get('host', '?')}: {hw.get('cpus', '?')} CPUs ({hw.get('cpu', '?')}), "
            f"{hw.get('memory_gib', '?')} GiB memory, {gpu_text}")


def write_report(recipe: Recipe, state: dict) -> Path:
    """``OUT/report.md`` and ``OUT/chart.png``/``.svg`` from the sweep's results; returns the report's path."""
    out = Path(recipe.out)
    results = out / "results"
    rows = collect(results, _included(results))
    paper = recipe.name.startswith(PAPER_RECIPE)
    lines = [f"# Study {recipe.name}", "", f"Recipe: `{recipe.source}`"
             + (f", overrides: `{' '.join(recipe.overrides)}`" if recipe.overrides else ", no overrides") + ".",
             f"Base `{recipe.base}`, data `{recipe.data}`, rates {', '.join(map(str, recipe.rates))}, "
             f"fine-tuning {recipe.train.finetune.mode}, evaluation `{recipe.eval.model}` on `{recipe.eval.tasks}`"
             + (f" (--limit {recipe.eval.limit})" if recipe.eval.limit is not None else "") + ".", ""]
    lines.append("## Runs")
    lines.append("")
    lines.append("| started | hardware | wall time |")
    lines.append("|---|---|---|")
    for run in state.get("runs", []):
        lines.append(f"| {run.get('started', '?')} | {_hardware_line(run)} | {run.get('seconds', 0) / 60:.1f} min |")
    stage_times = ", ".join(f"{name} {info.get('seconds', 0) / 60:.1f} min" for name, info in state["stages"].items()
                            if name != "report")
    lines += ["", f"Stage wall times: {stage_times}.", "", "## Result", ""]
    if rows:
        header, body = table_rows(rows)
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
    else:
        lines.append("No rate finished with this study's settings (see results/sweep_selection.json).")
    if paper:
        lines += ["", "## Beside the seed figure", ""]
        why = comparable_with_paper(recipe)
        if why:
            lines.append("**Not comparable with the paper**: this run used " + "; ".join(why)
                         + ". The paper's values are shown for orientation only.")
        else:
            lines.append("The paper's setting (base, data, all seven benchmarks, every document, 2,048 new tokens).")
        lines += ["", "| rate | this study: accuracy | this study: tokens | paper: accuracy | paper: tokens |",
                  "|---|---|---|---|---|"]
        ours = {r.rate: r for r in rows}
        theirs = {rate: (acc, tok) for rate, acc, tok in SEED_FIGURE.points}
        for rate in sorted(set(ours) | set(theirs) | {0}):
            row = ours.get(rate)
            acc = f"{100 * row.avg_accuracy:.1f}%" if row else "-"
            tok = f"{row.avg_gen_tokens:.0f}" if row else "-"
            p_acc, p_tok = theirs.get(rate, (None, None))
            if rate == 0:
                p_cells = f"- | {SEED_FIGURE.cot_tokens}"
            else:
                p_cells = f"{p_acc}% | ~{p_tok:.0f}" if p_acc is not None else "- | -"
            lines.append(f"| {'0 (CoT)' if rate == 0 else rate} | {acc} | {tok} | {p_cells} |")
        lines += ["", "Paper values: Su et al., *Token Assorted* (2025), the compression-rate figure for Llama-3.2-3B "
                  "(rate ~4 read as 4); its CoT accuracy on this average is not published."]
    if rows:
        plot_chart(rows, out, title=f"{recipe.name}: accuracy and generated tokens vs rate",
                   reference=SEED_FIGURE if paper else None)
        lines += ["", "![accuracy and tokens against the rate](chart.png)"]
    lines += ["", f"Per-rate results, samples and the paired comparisons with CoT: `{results}/`."]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
