"""Issue #27: a sweep never reports a number from a run with other settings, data, base or adapter.

lm_eval itself is replaced by a fake ``run_rate`` that writes a results file whose accuracy names
the rate and the data it read, so each test takes well under a second per sweep.
"""

from __future__ import annotations

import csv
import json
import shutil

import pytest


@pytest.fixture
def fake_lm_eval(monkeypatch, tmp_path):
    """``run_rate`` without lm_eval: accuracy 0.<rate>1, or a failure for the rates in ``fail``."""
    import lm_latent.sweep.run as run

    calls: list[int] = []
    fail: set[int] = set()
    monkeypatch.setenv("LM_LATENT_HOME", str(tmp_path / "home"))  # the base's per-file hash index

    def fake(rate, tasks, model_args, out, extra, model="latent", processes=1):
        calls.append(rate)
        out.mkdir(parents=True, exist_ok=True)
        (out / "lm_eval.log").write_text("fake\n")
        if rate in fail:
            return False, "Traceback: fake failure\n"
        folder = out / "model"
        folder.mkdir(exist_ok=True)
        results = {"latent_math_gsm8k": {"acc,none": 0.1 + rate / 100, "gen_tokens,none": 10.0 + rate,
                                         "latent_usage,none": 0.0, "latent_tokens,none": 0.0}}
        (folder / f"results_{len(calls)}.json").write_text(
            json.dumps({"results": results, "config": {"latent_generation_seconds": 1.0}}))
        return True, ""

    monkeypatch.setattr(run, "run_rate", fake)
    return calls, fail


def _argv(out, adapters, rates="0,4", *extra):
    return ["sweep", "--rates", rates, "--tasks", "latent_math_gsm8k", "--out", str(out),
            "--model_args", f"adapters={adapters},max_gen_toks=8", "--limit", "2", *extra]


def _csv_rates(out):
    return [r["rate"] for r in csv.DictReader((out / "results.csv").open())]


def test_failed_redo_leaves_no_stale_row(tmp_path, sweep_adapters, fake_lm_eval, capsys):
    from lm_latent.cli import main

    calls, fail = fake_lm_eval
    out = tmp_path / "results"
    assert main(_argv(out, sweep_adapters)) == 0
    assert _csv_rates(out) == ["0 (CoT)", "4"]
    fail.add(4)
    assert main(_argv(out, sweep_adapters, "0,4", "--redo")) == 1
    assert _csv_rates(out) == ["0 (CoT)"]  # the old rate-4 row is gone from the table ...
    md = (out / "results.md").read_text()
    assert "| 4 |" not in md and "rate 4: failed in this run" in md  # ... and named as left out
    selection = json.loads((out / "sweep_selection.json").read_text())
    assert selection["included"] == [0] and "failed in this run" in selection["excluded"]["4"]
    assert "rate 4 left out of the table and chart: failed" in capsys.readouterr().err
    # every rate failing: no table or chart survives from before
    fail.add(0)
    assert main(_argv(out, sweep_adapters, "0,4", "--redo")) == 1
    assert not any((out / name).exists() for name in ("results.md", "results.csv", "chart.png", "chart.svg"))
    # plot does not bring the stale rows back either
    with pytest.raises(SystemExit):
        main(["plot", "--out", str(out)])


def test_table_shows_only_finished_rates_of_this_run(tmp_path, sweep_adapters, fake_lm_eval):
    from lm_latent.cli import main

    out = tmp_path / "results"
    stray = out / "rate16" / "model"  # results of some other run, no DONE.json
    stray.mkdir(parents=True)
    (stray / "results_x.json").write_text(json.dumps({"results": {"latent_math_gsm8k": {"acc,none": 0.99}}}))
    assert main(_argv(out, sweep_adapters, "0")) == 0
    assert _csv_rates(out) == ["0 (CoT)"]
    selection = json.loads((out / "sweep_selection.json").read_text())
    assert selection["excluded"] == {"16": "not among this run's --rates"}
    assert main(["plot", "--out", str(out)]) == 0  # plot keeps the sweep's selection
    assert _csv_rates(out) == ["0 (CoT)"] and "rate 16: not among" in (out / "results.md").read_text()


def test_other_data_source_is_not_the_same_settings(tmp_path, sweep_adapters, fake_lm_eval, monkeypatch, capsys):
    """LM_LATENT_DATA_DIR=A for rate 0, then =B for rates 0,4: rate 0 used to count as done."""
    from builders import write_data_dir
    from lm_latent.cli import main

    calls, _ = fake_lm_eval
    a, b = write_data_dir(tmp_path / "A"), write_data_dir(tmp_path / "B")
    out = tmp_path / "results"
    monkeypatch.setenv("LM_LATENT_DATA_DIR", str(a))
    assert main(_argv(out, sweep_adapters, "0")) == 0
    monkeypatch.setenv("LM_LATENT_DATA_DIR", str(b))
    capsys.readouterr()
    assert main(_argv(out, sweep_adapters, "0,4")) == 2
    err = capsys.readouterr().err
    assert f"data: was {a.resolve()}, now {b.resolve()}" in err and "Nothing was run" in err
    assert calls == [0]
    # same folder, edited benchmark file: its hash differs
    monkeypatch.setenv("LM_LATENT_DATA_DIR", str(a))
    gsm = a / "gsm8k" / "test.jsonl"
    gsm.write_text(gsm.read_text() + gsm.read_text().splitlines()[0] + "\n")
    assert main(_argv(out, sweep_adapters, "0")) == 2
    assert f"data {a.resolve()}: its files changed" in capsys.readouterr().err
    # --metadata data_dir wins over the environment variable, as in the tasks
    assert main(_argv(out, sweep_adapters, "0", "--metadata", json.dumps({"data_dir": str(b)}))) == 2
    assert f"now {b.resolve()}" in capsys.readouterr().err


def test_changed_base_is_not_the_same_settings(tmp_path, tiny_base, sweep_adapters, fake_lm_eval, capsys):
    from lm_latent.cli import main

    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    out = tmp_path / "results"
    argv = ["sweep", "--rates", "0", "--tasks", "latent_math_gsm8k", "--out", str(out), "--model_args",
            f"pretrained={base},adapters={sweep_adapters}", "--limit", "2"]
    assert main(argv) == 0
    done = json.loads((out / "rate0" / "DONE.json").read_text())
    assert done["settings"]["base"]["path"] == str(base.resolve()) and len(done["settings"]["base"]["sha256"]) == 64
    gen = base / "generation_config.json"
    gen.write_text(gen.read_text().replace("{", '{"retrained": 1,', 1))
    capsys.readouterr()
    assert main(argv) == 2
    assert f"base {base.resolve()}: its files changed" in capsys.readouterr().err


def test_second_sweep_on_the_same_out_is_refused(tmp_path, sweep_adapters, fake_lm_eval, capsys):
    from lm_latent.cli import main
    from lm_latent.utils.fileio import exclusive_lock

    calls, _ = fake_lm_eval
    out = tmp_path / "results"
    out.mkdir()
    with exclusive_lock(out / ".sweep.lock", "sweep folder (held by the test)"):
        assert main(_argv(out, sweep_adapters, "0")) == 2
    err = capsys.readouterr().err
    assert "is in use by pid" in err and ".sweep.lock" in err
    assert calls == []
    assert main(_argv(out, sweep_adapters, "0")) == 0  # released: runs


def test_use_cache_is_refused_by_the_sweep(tmp_path, sweep_adapters, fake_lm_eval, capsys):
    from lm_latent.cli import main

    calls, _ = fake_lm_eval
    with pytest.raises(SystemExit) as exc:
        main(_argv(tmp_path / "results", sweep_adapters, "0,4", "--use_cache", str(tmp_path / "cache")))
    assert exc.value.code == 2
    assert "--use_cache is refused" in capsys.readouterr().err and calls == []
