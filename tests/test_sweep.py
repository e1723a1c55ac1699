"""``lm-latent sweep`` and ``lm-latent plot``: per-rate runs, failures, resume, table, chart."""

from __future__ import annotations

import csv
import json

import pytest

from test_model import write_data_dir


@pytest.fixture(scope="module")
def sweep_adapters(tmp_path_factory, tiny_base):
    from lm_latent.init_adapter import init_adapter

    root = tmp_path_factory.mktemp("sweep_adapters")
    init_adapter(str(tiny_base), 0, 0, root / "rate0")
    init_adapter(str(tiny_base), 4, 16, root / "rate4")
    return root


@pytest.mark.slow
def test_sweep_reports_a_failed_rate_continues_and_resumes(tmp_path, tiny_base, sweep_adapters, capsys):
    from lm_latent.cli import main

    data_dir = write_data_dir(tmp_path / "data")
    out = tmp_path / "results"
    argv = ["sweep", "--rates", "0,4,8", "--tasks", "gsm8k,math", "--out", str(out),
            "--model_args", f"pretrained={tiny_base},adapters={sweep_adapters},max_gen_toks=8",
            "--limit", "2", "--metadata", f"data_dir={data_dir}"]
    assert main(argv) == 1  # rate 8 has no adapter
    status = json.loads((out / "sweep_status.json").read_text())
    assert status["0"]["ok"] and status["4"]["ok"] and not status["8"]["ok"]
    assert "no adapter for rate=8" in status["8"]["error"]
    for name in ("results.md", "results.csv", "chart.png", "chart.svg"):
        assert (out / name).stat().st_size > 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["rate"] for r in rows] == ["0 (CoT)", "4"]
    assert rows[0]["tokens vs rate 0"] == "1.000" and rows[0]["time vs rate 0"] == "1.000"
    assert all(float(r["generation s"]) > 0 for r in rows)
    for r in rows:
        accs = [float(r["gsm8k acc %"]), float(r["math acc %"])]
        assert float(r["average acc %"]) == pytest.approx(sum(accs) / 2, abs=0.051)
    (out / "rate4" / "lm_eval.log").write_text("sentinel")
    capsys.readouterr()
    main(argv)  # resume: finished rates are skipped
    assert "rate 4: already done" in capsys.readouterr().err
    assert (out / "rate4" / "lm_eval.log").read_text() == "sentinel"


def test_plot_redraws_from_result_files(tmp_path):
    from lm_latent.cli import main

    for rate, acc, tokens, usage in ((0, 0.30, 600.0, 0.0), (16, 0.32, 500.0, 0.9)):
        folder = tmp_path / f"rate{rate}" / "model"
        folder.mkdir(parents=True)
        results = {t: {"acc,none": acc, "gen_tokens,none": tokens, "latent_usage,none": usage,
                       "latent_tokens,none": 3.0 * usage} for t in ("gsm8k", "math")}
        results["latent_math"] = {"acc,none": 0.99}
        (folder / "results_2026.json").write_text(json.dumps({"results": results, "groups": {"latent_math": {}}}))
    assert main(["plot", str(tmp_path)]) == 0
    md = (tmp_path / "results.md").read_text()
    assert "| 16 | 32.0 | 32.0 | 32.0 | 500.0 | 90.0 | 0.833 |" in md  # group row excluded from the average
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_results_is_a_clear_error(tmp_path, capsys):
    from lm_latent.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["plot", str(tmp_path)])
    assert exc.value.code == 2 and "run `lm-latent sweep` first" in capsys.readouterr().err
