"""The sweep's figure and tables (issue 13.1): the paper's two-series chart, SE beside every accuracy."""

from __future__ import annotations

import csv
import json
import math

import pytest

# Llama-3.2-3B's compression-rate figure (average accuracy / mean generated tokens), CoT made up.
PAPER = ((0, 0.251, 643.0), (4, 0.271, 595.0), (16, 0.281, 515.0), (32, 0.279, 480.0))


def _rows(points=PAPER, n: int = 500):
    from lm_latent.sweep.report import RateRow

    return [RateRow(rate=rate, accuracy={"gsm8k": acc, "math": acc}, gen_tokens={"gsm8k": tok, "math": tok},
                    n_samples={"gsm8k": n, "math": n}) for rate, acc, tok in points]


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_figure_is_two_line_series_on_a_linear_rate_axis_with_a_cot_reference():
    from lm_latent.sweep.report import draw_chart

    fig = draw_chart(_rows())
    try:
        assert len(fig.axes) == 2
        ax_acc, ax_tok = fig.axes
        assert ax_acc.get_shared_x_axes().joined(ax_acc, ax_tok)  # twin axes: one rate axis, two y axes
        assert ax_acc.yaxis.get_label_position() == "left" and ax_tok.yaxis.get_label_position() == "right"
        assert "accuracy" in ax_acc.get_ylabel() and "tokens" in ax_tok.get_ylabel()
        assert ax_acc.get_xscale() == "linear" and "rate" in ax_acc.get_xlabel()
        assert list(ax_acc.get_xticks()) == [4, 16, 32]
        acc_lines = [ln for ln in ax_acc.get_lines() if ln.get_linestyle() == "-"]
        tok_lines = [ln for ln in ax_tok.get_lines() if ln.get_linestyle() == "-"]
        assert len(acc_lines) == 1 and len(tok_lines) == 1  # two line series, no bars
        assert not ax_tok.patches
        assert list(acc_lines[0].get_xdata()) == [4, 16, 32]  # at the rates themselves: a linear axis
        assert list(acc_lines[0].get_ydata()) == pytest.approx([27.1, 28.1, 27.9])
        assert list(tok_lines[0].get_xdata()) == [4, 16, 32]
        assert list(tok_lines[0].get_ydata()) == pytest.approx([595.0, 515.0, 480.0])
        # CoT: a dashed horizontal reference on each axis, named in the legend with its value
        acc_ref = [ln for ln in ax_acc.get_lines() if ln.get_linestyle() == "--"]
        tok_ref = [ln for ln in ax_tok.get_lines() if ln.get_linestyle() == "--"]
        assert list(acc_ref[0].get_ydata()) == pytest.approx([25.1, 25.1])
        assert list(tok_ref[0].get_ydata()) == pytest.approx([643.0, 643.0])
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "CoT accuracy 25.1%" in legend and "CoT 643 tok" in legend
        assert any(t.startswith("average accuracy") for t in legend) and "mean generated tokens" in legend
        # every point is labelled, and the accuracy axis never shows impossible percentages
        assert sorted(t.get_text() for t in ax_acc.texts) == ["27.1", "27.9", "28.1"]
        assert sorted(t.get_text() for t in ax_tok.texts) == ["480 tok", "515 tok", "595 tok"]
        assert all(0 <= t <= 100 for t in ax_acc.get_yticks())
        # SE error bars on the accuracy points: sqrt(p(1-p)/n) per task, combined over the two tasks
        se = math.sqrt(2 * 0.271 * 0.729 / 500) / 2 * 100
        segments = [c for c in ax_acc.collections if len(c.get_segments()) == 3]
        lows_highs = sorted((s[0][1], s[1][1]) for s in segments[0].get_segments())
        assert lows_highs[0] == pytest.approx((27.1 - se, 27.1 + se))
    finally:
        _close(fig)


@pytest.mark.parametrize("points", [PAPER, ((0, 0.30, 600.0), (2, 0.31, 590.0), (4, 0.33, 560.0), (32, 0.2, 300.0)),
                                    ((0, 0.98, 120.0), (8, 1.0, 80.0)), ((0, 0.0, 200.0), (16, 0.0, 200.0))])
def test_labels_never_overlap_or_leave_the_figure(points):
    """Close rates (2 and 4), 0% and 100%, equal token counts: every label keeps its own place."""
    from lm_latent.sweep.report import draw_chart

    fig = draw_chart(_rows(points))
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax_acc, ax_tok = fig.axes
        texts = [*ax_acc.texts, *ax_tok.texts, *ax_acc.get_xticklabels(), ax_acc.xaxis.label,
                 *fig.legends[0].get_texts()]
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_text()]
        for i, (name_a, a) in enumerate(boxes):
            assert fig.bbox.contains(a.x0, a.y0) and fig.bbox.contains(a.x1, a.y1), name_a
            for name_b, b in boxes[i + 1:]:
                assert not a.overlaps(b), (name_a, name_b)
    finally:
        _close(fig)


def test_bar_style_is_still_there_and_a_bad_style_is_an_error():
    from lm_latent.sweep.report import draw_chart

    fig = draw_chart(_rows(), style="bars")
    try:
        assert len(fig.axes[1].patches) == 4  # one bar per rate, CoT included
    finally:
        _close(fig)
    with pytest.raises(ValueError, match="unknown chart style 'pie'"):
        draw_chart(_rows(), style="pie")


def _results(folder, rate, metrics: dict, n: int | None):
    folder.mkdir(parents=True)
    data = {"results": metrics, "groups": {}}
    if n is not None:
        data["n-samples"] = {t: {"original": n, "effective": n} for t in metrics}
    (folder / "results_2026.json").write_text(json.dumps(data))


def test_tables_print_a_standard_error_beside_every_accuracy(tmp_path):
    from lm_latent.cli import main

    # rate 0: lm-eval's acc_stderr is used as recorded; rate 16: no stderr, so sqrt(p(1-p)/n) from n-samples
    _results(tmp_path / "rate0" / "m", 0,
             {"gsm8k": {"acc,none": 0.5, "acc_stderr,none": 0.05, "gen_tokens,none": 600.0},
              "math": {"acc,none": 0.3, "acc_stderr,none": 0.04, "gen_tokens,none": 600.0}},
             n=None)
    _results(tmp_path / "rate16" / "m", 16,
             {t: {"acc,none": 0.36, "acc_stderr,none": "N/A", "gen_tokens,none": 500.0, "latent_usage,none": 0.75,
                  "latent_tokens,none": 3.0, "codebook_usage,none": 0.125, "latent_span_diversity,none": 0.5}
              for t in ("latent_math_gsm8k", "latent_math_math")}, n=100)
    assert main(["plot", str(tmp_path)]) == 0
    md = (tmp_path / "results.md").read_text()
    avg0 = math.sqrt(0.05 ** 2 + 0.04 ** 2) / 2 * 100  # 3.20
    se16 = math.sqrt(0.36 * 0.64 / 100) * 100  # 4.80 per task
    assert f"| 0 (CoT) | 50.0 ± 5.0 | 30.0 ± 4.0 | 40.0 ± {avg0:.1f} | 600.0 |" in md
    assert (f"| 16 | 36.0 ± {se16:.1f} | 36.0 ± {se16:.1f} | 36.0 ± {se16 / math.sqrt(2):.1f} "
            "| 500.0 | 75.0 | 3.00 | 12.5 | 50.0 |") in md
    assert "standard error" in md
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert float(rows[1]["latent_math_gsm8k acc %"]) == 36.0
    assert float(rows[1]["latent_math_gsm8k acc SE %"]) == pytest.approx(se16, abs=0.005)
    assert float(rows[0]["average acc SE %"]) == pytest.approx(avg0, abs=0.005)
    assert rows[1]["codebook usage %"] == "12.5" and rows[0]["codebook usage %"] == "n/a"
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(tmp_path), "--style", "bars"]) == 0
