"""The stock ``lm_eval`` console script finds ``--model latent`` and the plugin's tasks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders import run_cli, write_data_dir


def _lm_eval(bin_dir: Path) -> str:
    exe = bin_dir / "lm_eval"
    assert exe.exists(), f"no lm_eval console script in {bin_dir}"
    return str(exe)


@pytest.fixture(scope="module")
def cli_adapters(tmp_path_factory, tiny_base):
    from lm_latent.adapter.init import init_adapter

    root = tmp_path_factory.mktemp("cli_adapters")
    init_adapter(str(tiny_base), 4, 32, root / "rate4")
    return root


@pytest.mark.slow
def test_stock_lm_eval_runs_latent_on_gsm8k_and_math(tmp_path, tiny_base, cli_adapters):
    data_dir = write_data_dir(tmp_path / "data")
    proc, results, samples = run_cli(_lm_eval(Path(sys.executable).parent), tiny_base, cli_adapters, data_dir,
                                     tmp_path / "out")
    for task in ("latent_math_gsm8k", "latent_math_math"):
        assert "gen_tokens,none" in results["results"][task]
        assert results["results"][task]["alias"] == task
    table = proc.stdout
    assert "gen_tokens" in table and "latent_tokens" in table and "acc" in table
    assert "overrides existing task" not in proc.stdout + proc.stderr  # no built-in task is replaced
    rows = [json.loads(line) for path in samples for line in path.read_text().splitlines()]
    assert rows and all(1 <= row["gen_tokens"] <= 16 for row in rows)


@pytest.mark.slow
def test_builtin_models_still_work_beside_the_plugin(tmp_path):
    proc = subprocess.run([_lm_eval(Path(sys.executable).parent), "--model", "dummy", "--tasks",
                           "arithmetic_1dc", "--limit", "2"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    # arithmetic needs its hub data: offline it may fail on data, but never on the model name
    assert "no model for this name found" not in proc.stderr


@pytest.mark.slow
def test_built_wheel_in_a_fresh_venv(tmp_path, tiny_base, cli_adapters, built_wheel):
    """``pip install lm-latent`` from the wheel; the stock lm_eval then finds the plugin."""
    wheel = built_wheel
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "lm_latent_autoload.pth" in names and "lm_latent_autoload.start" in names
    assert "lm_latent/tasks/latent_math/gsm8k.yaml" in names and "lm_latent/training/__init__.py" in names
    info = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert info.replace("METADATA", "licenses/LICENSE") in names  # the licence travels with the wheel
    metadata = zipfile.ZipFile(wheel).read(info).decode()
    assert "License-Expression: MIT" in metadata and "Classifier: " in metadata
    assert "Description-Content-Type: text/markdown" in metadata and "# lm-latent" in metadata
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # Dependencies come from this environment's site-packages, listed as a plain path (its .pth files,
    # including the editable install of this checkout, are not processed there); the plugin itself
    # comes only from the wheel installed into the fresh venv.
    import sysconfig

    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_parent_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    where = subprocess.run([str(py), "-c", "import lm_latent, sys; print(lm_latent.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert str(venv) in where.stdout, where.stdout + where.stderr
    lm_eval = venv / "bin" / "lm_eval"
    if not lm_eval.exists():  # the console script lives with the parent environment's lm-eval
        shutil.copy(Path(sys.executable).parent / "lm_eval", lm_eval)
        text = lm_eval.read_text().splitlines()
        lm_eval.write_text("\n".join([f"#!{py}", *text[1:]]) + "\n")
        lm_eval.chmod(0o755)
    data_dir = write_data_dir(tmp_path / "data")
    run_cli(str(lm_eval), tiny_base, cli_adapters, data_dir, tmp_path / "out")


@pytest.mark.slow
def test_lm_latent_eval_works_with_the_hook_switched_off(tmp_path, tiny_base, cli_adapters):
    data_dir = write_data_dir(tmp_path / "data")
    _, results, _ = run_cli(str(Path(sys.executable).parent / "lm-latent"), tiny_base, cli_adapters, data_dir,
                            tmp_path / "out", tasks="latent_math_math", env={"LM_LATENT_NO_AUTOLOAD": "1"},
                            prefix=["eval"])
    assert "gen_tokens,none" in results["results"]["latent_math_math"]


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_help_into_a_closed_pipe_prints_no_traceback(args, unbuffered):
    """``lm-latent --help | head``: the reader is gone before the help is written (or flushed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered  # CI and many shells set it: the error then comes from print
    proc = subprocess.Popen([sys.executable, "-m", "lm_latent.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # as `head` exits: every write to stdout now fails with EPIPE
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code in (0, 1), (code, err)  # argparse itself ignores a failed write of its help (exit 0)


def test_every_command_names_a_function_and_eval_has_one_route():
    """Each sub-command resolves to a callable; ``eval`` is this module's own function (no second copy)."""
    from lm_latent import cli

    for name in cli.COMMANDS:
        assert callable(cli.command_entry(name)), name
    assert cli.command_entry("eval") is cli.eval_main
    assert not hasattr(cli, "lm_eval_main")  # the old second route (lm-latent-eval) is gone


def test_unknown_command_lists_the_commands(capsys):
    from lm_latent.cli import COMMANDS, main

    assert main(["evaluate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'evaluate'" in err and all(name in err for name in COMMANDS)


def _parsers(name: str) -> list:
    """Every argparse parser a sub-command builds (sub-parsers included), captured at ``--help``."""
    import argparse

    from lm_latent.cli import command_entry

    seen: list = []
    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        seen.append(self)
        raise _Captured

    original_known = argparse.ArgumentParser.parse_known_args
    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    argparse.ArgumentParser.parse_known_args = capture  # type: ignore[method-assign]
    try:
        command_entry(name)(["--help"])
    except _Captured:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
        argparse.ArgumentParser.parse_known_args = original_known  # type: ignore[method-assign]
    parsers = list(seen)
    for parser in seen:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return parsers


class _Captured(Exception):
    pass


@pytest.mark.parametrize("name", ["init-adapter", "train", "export", "cache", "sweep", "plot", "demo", "study"])
def test_every_flag_has_a_help_line_and_no_markup(name, capsys):
    import argparse

    parsers = _parsers(name)
    assert parsers, name
    for parser in parsers:
        bare = [a.option_strings or a.dest for a in parser._actions
                if a.help is None and not isinstance(a, argparse._HelpAction)]
        assert bare == [], (name, bare)
        text = parser.format_help()
        assert "``" not in text and ":mod:" not in text and ":func:" not in text, (name, text)


def test_version_and_the_flag_rule_in_help(capsys):
    from lm_latent import __version__
    from lm_latent.cli import main

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"lm-latent {__version__}"
    assert main(["--help"]) == 0
    assert "kebab-case" in capsys.readouterr().out


def test_init_adapter_out_is_an_adapters_root_and_the_old_leaf_still_works(tmp_path, tiny_base, capsys):
    from lm_latent.adapter.init import main

    assert main(["--base", str(tiny_base), "--rate", "4", "--codebook-size", "8", "--out", str(tmp_path / "root")]) == 0
    assert (tmp_path / "root" / "rate4" / "latent.json").is_file()
    assert "deprecat" not in capsys.readouterr().err.lower()
    assert main(["--base", str(tiny_base), "--rate", "0", "--out", str(tmp_path / "old" / "rate0")]) == 0
    old = tmp_path / "old" / "rate0"
    assert (old / "latent.json").is_file() and not (old / "rate0").exists()
    assert f"pass --out {tmp_path / 'old'} instead" in capsys.readouterr().err


def test_plot_takes_out_and_the_positional_folder_for_one_release(tmp_path, capsys):
    from lm_latent.cli import main

    with pytest.raises(SystemExit):
        main(["plot"])  # the folder is required
    assert "--out" in capsys.readouterr().err
    missing = tmp_path / "nothing"
    for argv in (["plot", "--out", str(missing)], ["plot", str(missing)]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "lm-latent plot --out" in err  # the deprecation message of the positional spelling


README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_commands() -> list[list[str]]:
    import shlex

    lines, commands = README.read_text().splitlines(), []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("    ") and line.split()[0] in ("lm-latent", "lm_eval"):
            text = line.split("#")[0] if " # " in line or "   #" in line else line
            while text.rstrip().endswith("\\"):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i]
            commands.append(shlex.split(text.split("  #")[0].replace("&&", ";").split(";")[0]))
        i += 1
    return commands


def test_readme_commands_name_real_commands_flags_tasks_and_models():
    """Each README command: its sub-command exists, each flag is one its parser takes, each task is ours."""
    from lm_latent.cli import COMMANDS

    commands = _readme_commands()
    assert len(commands) >= 8
    ours = {"latent_math", *(f"latent_math_{n}" for n in ("gsm8k", "math", "math500", "college_math",
                                                          "deepmind_mathematics", "fresh_gaokao_math_2023",
                                                          "olympiadbench_math", "theoremqa"))}
    for argv in commands:
        if argv[0] == "lm-latent":
            name = argv[1]
            assert name in COMMANDS, argv
            flags = {o for parser in _parsers(name) for a in parser._actions for o in a.option_strings}
            given = [a.split("=")[0] for a in argv[2:] if a.startswith("--")]
            forwarded = {"--model_args", "--batch_size", "--log_samples", "--limit", "--metadata"}
            assert all(f in flags or (name == "sweep" and f in forwarded) for f in given), (argv, given)
        else:
            assert argv[argv.index("--model") + 1] in ("latent", "latent-vllm"), argv
            assert set(argv[argv.index("--tasks") + 1].split(",")) <= ours, argv
