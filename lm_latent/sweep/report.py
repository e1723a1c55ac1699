"""Results of a rate sweep: one row per rate, a Markdown/CSV table and the dual-axis chart.

The chart is the one this project exists for (the paper's compression-rate figure): average
accuracy (left axis) and mean generated tokens (right axis) as two line series against the
compression rate on a linear axis, with plain CoT (rate 0) as a labelled reference line on
each axis. The older bar chart stays available (``style="bars"``).

Every accuracy is printed with its standard error: lm-eval's ``acc_stderr`` where the results
have it, else sqrt(p(1-p)/n); the average's SE is sqrt(sum SE_t^2) / T (independent tasks).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from lm_latent.utils.fileio import write_text_atomic

GROUPS = ("latent_math",)
#: Task names before the shared ``latent_math_`` prefix (0.1.0 result folders): read as today's names.
OLD_TASK_NAMES = {name: f"latent_math_{name}" for name in (
    "gsm8k", "math", "math500", "college_math", "deepmind_mathematics", "fresh_gaokao_math_2023",
    "olympiadbench_math", "theoremqa")}


@dataclass
class RateRow:
    rate: int
    accuracy: dict[str, float] = field(default_factory=dict)
    gen_tokens: dict[str, float] = field(default_factory=dict)
    latent_usage: dict[str, float] = field(default_factory=dict)
    latent_tokens: dict[str, float] = field(default_factory=dict)
    acc_stderr: dict[str, float] = field(default_factory=dict)
    n_samples: dict[str, int] = field(default_factory=dict)
    codebook_usage: dict[str, float] = field(default_factory=dict)
    latent_span_diversity: dict[str, float] = field(default_factory=dict)
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

    @property
    def avg_latent_tokens(self) -> float:
        return self._mean(self.latent_tokens)

    @property
    def avg_codebook_usage(self) -> float:
        return self._mean(self.codebook_usage)

    @property
    def avg_latent_span_diversity(self) -> float:
        return self._mean(self.latent_span_diversity)

    def stderr(self, task: str) -> float:
        """SE of one task's accuracy: lm-eval's ``acc_stderr`` if recorded, else sqrt(p(1-p)/n)."""
        se = self.acc_stderr.get(task, math.nan)
        if se == se:
            return se
        p, n = self.accuracy.get(task, math.nan), self.n_samples.get(task, 0)
        return math.sqrt(p * (1 - p) / n) if n and p == p else math.nan

    @property
    def avg_stderr(self) -> float:
        """SE of the unweighted mean of T independent task accuracies: sqrt(sum SE^2) / T."""
        tasks = [t for t in self.tasks if self.accuracy[t] == self.accuracy[t]]
        errors = [self.stderr(t) for t in tasks]
        if not tasks or any(e != e for e in errors):
            return math.nan
        return math.sqrt(sum(e * e for e in errors)) / len(tasks)


def latest_results_json(folder: str | Path) -> Path | None:
    found = sorted(Path(folder).rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _number(value) -> float:
    """A metric from a results JSON: lm-eval writes ``"N/A"`` (or nothing) where it has none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def row_from_results(rate: int, path: str | Path) -> RateRow:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    n_samples = data.get("n-samples", {})
    groups = set(data.get("groups", {})) | set(GROUPS)
    seconds = data.get("config", {}).get("latent_generation_seconds")
    row = RateRow(rate=rate, source=str(path), generation_seconds=math.nan if seconds is None else float(seconds))
    for recorded, metrics in data["results"].items():
        if recorded in groups or "acc,none" not in metrics:
            continue
        task = OLD_TASK_NAMES.get(recorded, recorded)
        row.accuracy[task] = float(metrics["acc,none"])
        for attr in ("gen_tokens", "latent_usage", "latent_tokens", "acc_stderr", "codebook_usage",
                     "latent_span_diversity"):
            getattr(row, attr)[task] = _number(metrics.get(f"{attr},none"))
        n = (n_samples.get(recorded) or {}).get("effective")
        if isinstance(n, int) and n > 0:
            row.n_samples[task] = n
    return row


def collect(results_dir: str | Path, rates=None) -> list[RateRow]:
    """Every ``rate<r>/`` folder under ``results_dir`` that holds an lm-eval results JSON.

    ``rates``: only these (the sweep passes the rates whose recorded settings match its own run).
    """
    rows = []
    for folder in Path(results_dir).glob("rate*"):
        m = re.fullmatch(r"rate(\d+)", folder.name)
        if m and rates is not None and int(m.group(1)) not in set(rates):
            continue
        if m is None or not folder.is_dir():
            continue
        path = latest_results_json(folder)
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


def _acc_cell(value: float, se: float) -> str:
    """``32.0 ± 2.1`` (percent); the SE is left out where it is unknown."""
    cell = _fmt(value, pct=True)
    return cell if cell == "n/a" or se != se else f"{cell} ± {_fmt(se, pct=True)}"


def table_rows(rows: list[RateRow], inline_se: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and cells. ``inline_se``: accuracy cells read ``32.0 ± 2.1`` (Markdown, console);
    otherwise each accuracy column is followed by its own ``SE`` column (CSV: numbers only)."""
    tasks = sorted({t for r in rows for t in r.tasks})
    base = next((r for r in rows if r.rate == 0), None)
    acc_names = [*[f"{t} acc %" for t in tasks], "average acc %"]
    acc_header = [h for name in acc_names for h in ([name] if inline_se else [name, f"{name.removesuffix(' %')} SE %"])]
    header = ["rate", *acc_header, "mean gen tokens", "latent usage %", "latents / answer", "codebook usage %",
              "distinct latent spans / answers with latents %", "tokens vs rate 0", "generation s", "time vs rate 0"]
    body = []
    for r in rows:
        ratio = _ratio(r.avg_gen_tokens, base.avg_gen_tokens if base else math.nan)
        time_ratio = _ratio(r.generation_seconds, base.generation_seconds if base else math.nan)
        pairs = [(r.accuracy.get(t, math.nan), r.stderr(t)) for t in tasks] + [(r.avg_accuracy, r.avg_stderr)]
        if inline_se:
            acc_cells = [_acc_cell(v, se) for v, se in pairs]
        else:
            acc_cells = [cell for v, se in pairs for cell in (_fmt(v, pct=True), _fmt(se, ".2f", pct=True))]
        body.append(["0 (CoT)" if r.rate == 0 else str(r.rate), *acc_cells, _fmt(r.avg_gen_tokens),
                     _fmt(r.avg_latent_usage, pct=True), _fmt(r.avg_latent_tokens, ".2f"),
                     _fmt(r.avg_codebook_usage, pct=True), _fmt(r.avg_latent_span_diversity, pct=True),
                     _fmt(ratio, ".3f"), _fmt(r.generation_seconds, ".3g"), _fmt(time_ratio, ".3f")])
    return header, body


TABLE_NOTE = ("Accuracy cells: percent ± standard error (lm-eval's acc_stderr, else sqrt(p(1-p)/n); the "
              "average's SE is sqrt(sum SE^2)/T). Latent statistics are means over tasks: latent usage = "
              "answers with latent tokens; codebook usage = distinct codes used / K (low: collapse); distinct "
              "latent spans = distinct latent contents / answers with latents (low: the same latents for "
              "every problem).")


def write_tables(rows: list[RateRow], out: str | Path) -> tuple[Path, Path]:
    from lm_latent.sweep import paired  # each rate against rate 0 on the same documents (logged samples)

    comparisons = paired.compare(rows)
    tasks = sorted({t for r in rows for t in r.tasks})
    header, body = table_rows(rows)
    header = [*header, *paired.MD_COLUMNS]
    body = [[*line, *paired.md_cells(comparisons.get(r.rate))] for r, line in zip(rows, body)]
    out = Path(out)
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(line) + " |" for line in body]
    section = paired.md_section(tasks, comparisons)
    write_text_atomic(out / "results.md",
                      "\n".join(md) + "\n\n" + TABLE_NOTE + "\n" + (f"\n{section}" if section else ""))
    header, body = table_rows(rows, inline_se=False)
    header = [*header, *paired.csv_header(tasks)]
    body = [[*line, *paired.csv_cells(tasks, comparisons.get(r.rate))] for r, line in zip(rows, body)]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(body)
    write_text_atomic(out / "results.csv", buf.getvalue())
    return out / "results.md", out / "results.csv"


STYLES = ("lines", "bars")
ACC_COLOR, TOK_COLOR = "#c0392b", "#2c5d8f"


@dataclass
class Reference:
    """Published values drawn beside a result (hollow markers): ``points`` are (rate, accuracy %, tokens)."""

    label: str
    points: list[tuple[int, float, float]]
    cot_tokens: float | None = None


def draw_chart(rows: list[RateRow], title: str | None = None, style: str = "lines",
               reference: Reference | None = None):
    """The chart as a matplotlib figure (``plot_chart`` saves and closes it).

    ``lines`` (default): the paper's figure, a linear rate axis with accuracy (left) and tokens
    (right) as two line series and CoT as labelled dashed references; ``reference`` adds published
    values beside them (lines style only). ``bars``: the older chart.
    """
    import matplotlib

    matplotlib.use("Agg")
    if style not in STYLES:
        raise ValueError(f"unknown chart style {style!r}: use one of {', '.join(STYLES)}")
    rows = [r for r in rows if r.avg_accuracy == r.avg_accuracy]
    if not rows:
        raise ValueError("no results with accuracy to plot")
    return _draw_lines(rows, title, reference) if style == "lines" else _draw_bars(rows, title)


def _band_limits(values: list[float], low: float, high: float, floor: float | None = None,
                 ceiling: float | None = None) -> tuple[float, float]:
    """Axis limits that put ``values`` between the fractions ``low`` and ``high`` of the axis height.

    The two series get separate bands (accuracy above, tokens below), so their labels never
    meet, whatever the numbers.
    """
    lo, hi = min(values), max(values)
    span = max(hi - lo, abs(hi) * 0.05, 1e-6)
    if floor is not None and ceiling is not None:
        span = max(span, (ceiling - floor) * 0.02)
    unit = span / (high - low)
    return lo - low * unit, hi + (1 - high) * unit


def _visible_ticks(axis, lo: float, hi: float, floor: float | None = None, ceiling: float | None = None) -> None:
    """Only the ticks around the series' band (a band-shifted axis would otherwise show -40%)."""
    import matplotlib.ticker as mticker

    floor = lo if floor is None else max(lo, floor)
    ceiling = hi if ceiling is None else min(hi, ceiling)
    ticks = mticker.MaxNLocator(nbins=4).tick_values(floor, ceiling)
    axis.set_major_locator(mticker.FixedLocator([t for t in ticks if floor - 1e-9 <= t <= ceiling + 1e-9]))


def _draw_lines(rows: list[RateRow], title: str | None = None, reference: Reference | None = None):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    cot = next((r for r in rows if r.rate == 0), None)
    latent = sorted((r for r in rows if r.rate > 0), key=lambda r: r.rate)
    fig, ax_acc = plt.subplots(figsize=(6.4, 4.3), dpi=150)
    ax_acc.set_xscale("linear")  # the paper's axis; before the ticks (setting a scale resets them)
    ax_tok = ax_acc.twinx()
    rates = [r.rate for r in latent]
    acc = [100 * r.avg_accuracy for r in latent]
    se = [100 * r.avg_stderr for r in latent]
    tokens = [r.avg_gen_tokens for r in latent]
    cot_acc = 100 * cot.avg_accuracy if cot else math.nan
    cot_tok = cot.avg_gen_tokens if cot else math.nan
    acc_values = [a for a in acc if a == a] + [v for v in (cot_acc,) if v == v]
    acc_values += [a + e for a, e in zip(acc, se) if a == a and e == e] + [a - e for a, e in zip(acc, se)
                                                                           if a == a and e == e]
    tok_values = [t for t in tokens if t == t] + [v for v in (cot_tok,) if v == v]
    if reference is not None:
        acc_values += [a for _, a, _ in reference.points]
        tok_values += [t for _, _, t in reference.points] + ([reference.cot_tokens] if reference.cot_tokens else [])
    acc_lo, acc_hi = _band_limits(acc_values, 0.52, 0.86)
    ax_acc.set_ylim(acc_lo, acc_hi)
    _visible_ticks(ax_acc.yaxis, acc_lo, acc_hi, 0.0, 100.0)
    if tok_values:
        tok_lo, tok_hi = _band_limits(tok_values, 0.10, 0.40)
        ax_tok.set_ylim(tok_lo, tok_hi)
        _visible_ticks(ax_tok.yaxis, tok_lo, tok_hi, 0.0)
    handles = []
    if latent:
        has_se = any(e == e for e in se)
        line = ax_acc.errorbar(rates, acc, yerr=[e if e == e else 0.0 for e in se] if has_se else None, fmt="o-",
                               color=ACC_COLOR, linewidth=2, capsize=3, label="average accuracy (± SE)"
                               if has_se else "average accuracy", zorder=3)
        handles.append(line)  # the errorbar container: its legend entry shows the bars too
        (tok_line,) = ax_tok.plot(rates, tokens, "s-", color=TOK_COLOR, linewidth=2, label="mean generated tokens",
                                  zorder=2)
        handles.append(tok_line)
        span = max(rates[-1], 1)
        flip = False  # neighbours closer than a label's width alternate sides
        for k, (x, a, e, t) in enumerate(zip(rates, acc, se, tokens)):
            flip = (not flip) if k and (x - rates[k - 1]) / span < 0.12 else False
            bar_pts = _points(ax_acc, e) if e == e else 0.0
            if a == a:
                ax_acc.annotate(f"{a:.1f}", (x, a), textcoords="offset points", xytext=(0, -(bar_pts + 11) if flip
                                else bar_pts + 4), ha="center", fontsize=8, color=ACC_COLOR)
            if t == t:
                ax_tok.annotate(f"{t:.0f} tok", (x, t), textcoords="offset points",
                                xytext=(0, 6 if flip else -12), ha="center", fontsize=8, color=TOK_COLOR)
        ax_acc.set_xlim(0, span * 1.08)
        ax_acc.set_xticks(rates, [str(r) for r in rates])
    else:
        ax_acc.set_xlim(0, 1)
        ax_acc.set_xticks([])
    if reference is not None:
        _draw_reference(ax_acc, ax_tok, reference, handles)
        span = max([r for r, _, _ in reference.points] + rates + [1])
        ax_acc.set_xlim(0, span * 1.08)
        ax_acc.set_xticks(sorted({*rates, *(r for r, _, _ in reference.points)}))
    if cot is not None:
        ax_acc.axhline(cot_acc, color=ACC_COLOR, linestyle="--", linewidth=1.2, alpha=0.8, zorder=1)
        handles.append(Line2D([], [], color=ACC_COLOR, linestyle="--", label=f"CoT accuracy {cot_acc:.1f}%"))
        if cot_tok == cot_tok:
            ax_tok.axhline(cot_tok, color=TOK_COLOR, linestyle="--", linewidth=1.2, alpha=0.8, zorder=1)
            handles.append(Line2D([], [], color=TOK_COLOR, linestyle="--", label=f"CoT {cot_tok:.0f} tok"))
    ax_acc.set_zorder(ax_tok.get_zorder() + 1)
    ax_acc.patch.set_visible(False)
    ax_acc.set_xlabel("compression rate (text tokens per latent token)")
    ax_acc.set_ylabel("average accuracy (%)", color=ACC_COLOR)
    ax_tok.set_ylabel("mean generated tokens", color=TOK_COLOR)
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=2, fontsize=8, frameon=False)
    tasks = sorted({t for r in rows for t in r.tasks})
    ax_acc.set_title(title or f"Accuracy and generated tokens vs rate ({', '.join(tasks)})", fontsize=9)
    fig.tight_layout(rect=(0, 0.06 * max(1, math.ceil(len(handles) / 2)), 1, 1))  # the bottom strip: legend
    return fig


def _draw_reference(ax_acc, ax_tok, reference: Reference, handles: list) -> None:
    from matplotlib.lines import Line2D

    xs = [r for r, _, _ in reference.points]
    ax_acc.plot(xs, [a for _, a, _ in reference.points], "o:", color=ACC_COLOR, markerfacecolor="white",
                linewidth=1, zorder=2)
    ax_tok.plot(xs, [t for _, _, t in reference.points], "s:", color=TOK_COLOR, markerfacecolor="white",
                linewidth=1, zorder=2)
    handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle=":",
                          label=reference.label))
    if reference.cot_tokens:
        ax_tok.axhline(reference.cot_tokens, color=TOK_COLOR, linestyle=":", linewidth=1, alpha=0.7, zorder=1)
        handles.append(Line2D([], [], color=TOK_COLOR, linestyle=":",
                              label=f"{reference.label}: CoT {reference.cot_tokens:.0f} tok"))


def _points(ax, data_height: float) -> float:
    """A height in the axes' data units as typographic points (error bars push labels out)."""
    lo, hi = ax.get_ylim()
    height_in = ax.get_position().height * ax.figure.get_figheight()
    return abs(data_height) / (hi - lo) * height_in * 72 if hi > lo else 0.0


def _draw_bars(rows: list[RateRow], title: str | None = None):
    """The older chart: tokens as bars, accuracy as a line over evenly spaced rates.

    Every label has its own place, whatever the numbers: accuracy values above their points,
    token counts in the x tick labels under the bars, the legend below the axes.
    """
    import matplotlib.pyplot as plt

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


def plot_chart(rows: list[RateRow], out: str | Path, title: str | None = None, style: str = "lines",
               reference: Reference | None = None) -> list[Path]:
    """Accuracy (left axis) and mean generated tokens (right axis) per rate, as PNG and SVG."""
    import matplotlib.pyplot as plt

    fig = draw_chart(rows, title, style, reference)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "chart.png", out / "chart.svg"]
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp)
        tmp.replace(path)
    plt.close(fig)
    return paths


def render(results_dir: str | Path, title: str | None = None, style: str = "lines", rates=None) -> list[Path]:
    rows = collect(results_dir, rates)
    if not rows:
        raise FileNotFoundError(f"no rate<r>/results_*.json under {results_dir}: run `lm-latent sweep` first")
    return [*write_tables(rows, results_dir), *plot_chart(rows, results_dir, title, style)]
