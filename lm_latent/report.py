"""Results of a rate sweep: one row per rate, a Markdown/CSV table and the dual-axis chart.

The chart is the one this project exists for: average accuracy (left axis) and mean
generated tokens (right axis) against the compression rate, rate 0 being plain CoT.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .fileio import write_text_atomic

GROUPS = ("latent_math",)


@dataclass
class RateRow:
    rate: int
    accuracy: dict[str, float] = field(default_factory=dict)
    gen_tokens: dict[str, float] = field(default_factory=dict)
    latent_usage: dict[str, float] = field(default_factory=dict)
    latent_tokens: dict[str, float] = field(default_factory=dict)
    generation_seconds: float = math.nan  # wall time of generation, all tasks (latent model only)
    source: str = ""

    @property
    def tasks(self) -> list[str]:
        return sorted(self.accuracy)

    @staticmethod
    def _mean(values: dict[str, float]) -> float:
        vals = [v for v in values.values() if v == v]
        return sum(vals) / len(vals) if vals else math.nan

    @property
    def avg_accuracy(self) -> float:
        """Unweighted mean over tasks: the paper's "Average"."""
        return self._mean(self.accuracy)

    @property
    def avg_gen_tokens(self) -> float:
        return self._mean(self.gen_tokens)

    @property
    def avg_latent_usage(self) -> float:
        return self._mean(self.latent_usage)


def latest_results_json(folder: str | Path) -> Path | None:
    found = sorted(Path(folder).rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def row_from_results(rate: int, path: str | Path) -> RateRow:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    groups = set(data.get("groups", {})) | set(GROUPS)
    seconds = data.get("config", {}).get("latent_generation_seconds")
    row = RateRow(rate=rate, source=str(path), generation_seconds=math.nan if seconds is None else float(seconds))
    for task, metrics in data["results"].items():
        if task in groups or "acc,none" not in metrics:
            continue
        row.accuracy[task] = float(metrics["acc,none"])
        for attr, key in (("gen_tokens", "gen_tokens,none"), ("latent_usage", "latent_usage,none"),
                          ("latent_tokens", "latent_tokens,none")):
            value = metrics.get(key)
            getattr(row, attr)[task] = math.nan if value in (None, "N/A") else float(value)
    return row


def collect(results_dir: str | Path) -> list[RateRow]:
    """Every ``rate<r>/`` folder under ``results_dir`` that holds an lm-eval results JSON."""
    rows = []
    for folder in Path(results_dir).glob("rate*"):
        m = re.fullmatch(r"rate(\d+)", folder.name)
        path = latest_results_json(folder) if m and folder.is_dir() else None
        if path is not None:
            rows.append(row_from_results(int(m.group(1)), path))
    return sorted(rows, key=lambda r: r.rate)


def _fmt(value: float | None, spec: str = ".1f", pct: bool = False) -> str:
    """A table cell: ``n/a`` for a missing or NaN value, else ``value`` (x100 with ``pct``) in ``spec``."""
    if value is None or value != value:
        return "n/a"
    return format(100 * value if pct else value, spec)


def _ratio(value: float, base: float) -> float:
    return value / base if base and base == base else math.nan


def table_rows(rows: list[RateRow]) -> tuple[list[str], list[list[str]]]:
    tasks = sorted({t for r in rows for t in r.tasks})
    base = next((r for r in rows if r.rate == 0), None)
    header = ["rate", *[f"{t} acc %" for t in tasks], "average acc %", "mean gen tokens",
              "latent usage %", "tokens vs rate 0", "generation s", "time vs rate 0"]
    body = []
    for r in rows:
        ratio = _ratio(r.avg_gen_tokens, base.avg_gen_tokens if base else math.nan)
        time_ratio = _ratio(r.generation_seconds, base.generation_seconds if base else math.nan)
        body.append(["0 (CoT)" if r.rate == 0 else str(r.rate),
                     *[_fmt(r.accuracy.get(t, math.nan), pct=True) for t in tasks],
                     _fmt(r.avg_accuracy, pct=True), _fmt(r.avg_gen_tokens), _fmt(r.avg_latent_usage, pct=True),
                     _fmt(ratio, ".3f"), _fmt(r.generation_seconds, ".3g"), _fmt(time_ratio, ".3f")])
    return header, body


def write_tables(rows: list[RateRow], out: str | Path) -> tuple[Path, Path]:
    header, body = table_rows(rows)
    out = Path(out)
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(line) + " |" for line in body]
    write_text_atomic(out / "results.md", "\n".join(md) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(body)
    write_text_atomic(out / "results.csv", buf.getvalue())
    return out / "results.md", out / "results.csv"


def draw_chart(rows: list[RateRow], title: str | None = None):
    """The chart as a matplotlib figure (``plot_chart`` saves and closes it).

    Every label has its own place, whatever the numbers: accuracy values above their points,
    token counts in the x tick labels under the bars, the legend below the axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.avg_accuracy == r.avg_accuracy]
    if not rows:
        raise ValueError("no results with accuracy to plot")
    tokens = [r.avg_gen_tokens for r in rows]
    labels = [("CoT" if r.rate == 0 else str(r.rate)) + (f"\n{t:.0f} tok" if t == t else "")
              for r, t in zip(rows, tokens)]
    x = list(range(len(rows)))
    fig, ax_acc = plt.subplots(figsize=(6.4, 4.3), dpi=150)
    ax_tok = ax_acc.twinx()
    ax_tok.bar(x, tokens, width=0.5, color="#c7d7ea", label="mean generated tokens", zorder=1)
    ax_acc.set_zorder(ax_tok.get_zorder() + 1)
    ax_acc.patch.set_visible(False)
    acc = [100 * r.avg_accuracy for r in rows]
    ax_acc.plot(x, acc, "o-", color="#c0392b", linewidth=2, label="average accuracy", zorder=3)
    for xi, a in zip(x, acc):
        ax_acc.annotate(f"{a:.1f}", (xi, a), textcoords="offset points", xytext=(0, 7), ha="center",
                        fontsize=8, color="#c0392b")
    ax_acc.set_xticks(x, labels)
    ax_acc.set_xlabel("compression rate (text tokens per latent token)")
    ax_acc.set_ylabel("average accuracy (%)", color="#c0392b")
    ax_tok.set_ylabel("mean generated tokens", color="#2c5d8f")
    lo, hi = min(acc), max(acc)
    pad = max(2.0, (hi - lo) * 0.6)
    bottom, top = max(0.0, lo - pad), min(100.0, hi + pad)
    ax_acc.set_ylim(bottom, max(top, hi + 0.1 * (top - bottom)))  # room for the top label, even at 100%
    ax_tok.set_ylim(0, max(t for t in tokens if t == t) * 1.25 if any(t == t for t in tokens) else 1)
    handles = ax_acc.get_legend_handles_labels()[0] + ax_tok.get_legend_handles_labels()[0]
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=2, fontsize=8, frameon=False)
    tasks = sorted({t for r in rows for t in r.tasks})
    ax_acc.set_title(title or f"Accuracy and generated tokens vs rate ({', '.join(tasks)})", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # the bottom strip holds the legend
    return fig


def plot_chart(rows: list[RateRow], out: str | Path, title: str | None = None) -> list[Path]:
    """Accuracy (left axis) and mean generated tokens (right axis) per rate, as PNG and SVG."""
    import matplotlib.pyplot as plt

    fig = draw_chart(rows, title)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "chart.png", out / "chart.svg"]
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp)
        tmp.replace(path)
    plt.close(fig)
    return paths


def render(results_dir: str | Path, title: str | None = None) -> list[Path]:
    rows = collect(results_dir)
    if not rows:
        raise FileNotFoundError(f"no rate<r>/results_*.json under {results_dir}: run `lm-latent sweep` first")
    return [*write_tables(rows, results_dir), *plot_chart(rows, results_dir, title)]
