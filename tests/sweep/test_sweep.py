"""``lm-latent sweep`` and ``lm-latent plot``: per-rate runs, failures, resume, table, chart."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from builders import write_data_dir


@pytest.mark.slow
def test_sweep_reports_a_failed_rate_continues_and_resumes(tmp_path, tiny_base, sweep_adapters, capsys):
    from lm_latent.cli import main

    data_dir = write_data_dir(tmp_path / "data")
    out = tmp_path / "results"
    argv = ["sweep", "--rates", "0,4,8", "--tasks", "latent_math_gsm8k,latent_math_math", "--out", str(out),
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
        accs = [float(r["latent_math_gsm8k acc %"]), float(r["latent_math_math acc %"])]
        assert float(r["average acc %"]) == pytest.approx(sum(accs) / 2, abs=0.051)
    (out / "rate4" / "lm_eval.log").write_text("sentinel")
    capsys.readouterr()
    main(argv)  # resume: finished rates are skipped
    assert "rate 4: already done with the same settings" in capsys.readouterr().err
    assert (out / "rate4" / "lm_eval.log").read_text() == "sentinel"
    # issue 11.6: other adapters, max_gen_toks and --limit into the same --out are refused, not skipped
    other = tmp_path / "other_adapters"
    shutil.copytree(sweep_adapters, other)
    changed = ["sweep", "--rates", "0,4", "--tasks", "latent_math_gsm8k,latent_math_math", "--out", str(out),
               "--model_args", f"pretrained={tiny_base},adapters={other},max_gen_toks=512",
               "--limit", "3", "--metadata", f"data_dir={data_dir}"]
    table = (out / "results.md").read_text()
    capsys.readouterr()
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "holds results made with other settings" in err and "--redo" in err and "Nothing was run" in err
    assert "max_gen_toks" in err and "'--limit', '3'" in err and f"now {other / 'rate4'}" in err
    assert (out / "rate4" / "lm_eval.log").read_text() == "sentinel" and (out / "results.md").read_text() == table


def test_plot_redraws_from_result_files(tmp_path):
    from lm_latent.cli import main

    for rate, acc, tokens, usage in ((0, 0.30, 600.0, 0.0), (16, 0.32, 500.0, 0.9)):
        folder = tmp_path / f"rate{rate}" / "model"
        folder.mkdir(parents=True)
        results = {t: {"acc,none": acc, "gen_tokens,none": tokens, "latent_usage,none": usage,
                       "latent_tokens,none": 3.0 * usage} for t in ("latent_math_gsm8k", "latent_math_math")}
        results["latent_math"] = {"acc,none": 0.99}
        (folder / "results_2026.json").write_text(json.dumps({"results": results, "groups": {"latent_math": {}}}))
    assert main(["plot", str(tmp_path)]) == 0
    md = (tmp_path / "results.md").read_text()
    assert "| 16 | 32.0 | 32.0 | 32.0 | 500.0 | 90.0 | 2.70 | n/a | n/a | 0.833 |" in md  # group row excluded
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_results_is_a_clear_error(tmp_path, capsys):
    from lm_latent.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["plot", str(tmp_path)])
    assert exc.value.code == 2 and "run `lm-latent sweep` first" in capsys.readouterr().err


def _finished_rate(out, rate, settings):
    """A finished rate folder as a sweep leaves it: a results file and DONE.json with its settings."""
    folder = out / f"rate{rate}" / "model"
    folder.mkdir(parents=True)
    results = {"gsm8k": {"acc,none": 0.5, "gen_tokens,none": 10.0, "latent_usage,none": 0.0,
                         "latent_tokens,none": 0.0}}
    path = folder / "results_2026.json"
    path.write_text(json.dumps({"results": results, "config": {"latent_generation_seconds": 1.0}}))
    done = {"ok": True, "seconds": 1.0, "results": str(path)}
    if settings is not None:
        done["settings"] = settings
    (out / f"rate{rate}" / "DONE.json").write_text(json.dumps(done))


def test_rerun_skips_only_an_exact_match_of_settings_and_adapter_content(tmp_path, sweep_adapters, capsys):
    from lm_latent.cli import main
    from lm_latent.sweep.run import rate_settings

    adapters = tmp_path / "adapters"
    shutil.copytree(sweep_adapters, adapters)
    out = tmp_path / "results"
    model_args = f"adapters={adapters},max_gen_toks=8"
    _finished_rate(out, 0, rate_settings(0, "latent_math_gsm8k", model_args, ["--limit", "2"]))
    argv = ["sweep", "--rates", "0", "--tasks", "latent_math_gsm8k", "--out", str(out), "--model_args", model_args]
    assert main(argv + ["--limit", "2"]) == 0  # exact match: skipped, the table is drawn
    assert "already done with the same settings" in capsys.readouterr().err
    for changed, expected in [
        (argv + ["--limit", "3"], "lm_eval_args: was ['--limit', '2'], now ['--limit', '3']"),
        (["sweep", "--rates", "0", "--tasks", "latent_math_gsm8k,latent_math_math", "--out", str(out),
          "--model_args", model_args,
          "--limit", "2"], "tasks: was 'latent_math_gsm8k', now 'latent_math_gsm8k,latent_math_math'"),
        (["sweep", "--rates", "0", "--tasks", "latent_math_gsm8k", "--out", str(out), "--model_args",
          f"adapters={adapters},max_gen_toks=512", "--limit", "2"], "max_gen_toks"),
    ]:
        assert main(changed) == 2
        err = capsys.readouterr().err
        assert expected in err and "Pass --redo" in err, err
        assert not (out / "rate0" / "lm_eval.log").exists()  # nothing ran
    # same path, other content (a retrained adapter): refused too
    meta = json.loads((adapters / "rate0" / "latent.json").read_text())
    meta["metrics"] = {"retrained": True}
    (adapters / "rate0" / "latent.json").write_text(json.dumps(meta))
    assert main(argv + ["--limit", "2"]) == 2
    assert "its files changed (sha256" in capsys.readouterr().err
    # a result from an older lm-latent, without a settings record, is not trusted either
    shutil.rmtree(out)
    _finished_rate(out, 0, None)
    assert main(argv + ["--limit", "2"]) == 2
    assert "no settings recorded" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_killing_the_sweep_kills_its_lm_eval_and_keeps_the_streamed_log(tmp_path, tiny_base, sweep_adapters):
    data_dir = write_data_dir(tmp_path / "data")
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "lm_latent.cli", "sweep", "--rates", "0", "--tasks", "latent_math_gsm8k",
           "--out", str(out),
           "--model_args", f"pretrained={tiny_base},adapters={sweep_adapters},max_gen_toks=2000",
           "--limit", "3", "--metadata", f"data_dir={data_dir}"]
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    log = out / "rate0" / "lm_eval.log"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait until the child has written a few lines
            if log.exists() and len(log.read_text().splitlines()) >= 3:
                break
            assert parent.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        children = _children(parent.pid)
        assert children, "no lm_eval child found"
        lines_before = len(log.read_text().splitlines())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(c) for c in children):
            time.sleep(0.2)
        assert not any(_alive(c) for c in children), "lm_eval outlived the killed sweep"
    finally:
        for c in _children(parent.pid) if parent.poll() is None else []:
            os.kill(c, signal.SIGKILL)
        parent.kill()
    assert lines_before >= 3 and len(log.read_text().splitlines()) >= lines_before
    assert not (out / "rate0" / "DONE.json").exists()
