"""The start-up hook: stdlib-only, lazy, switchable, and it keeps lm-eval's built-ins."""

from __future__ import annotations

import os
import subprocess
import sys

from pathlib import Path

import pytest

PTH = Path(__file__).resolve().parents[1] / "lm_latent_autoload.pth"
START = PTH.with_suffix(".start")
DISABLE = "LM_LATENT_NO_AUTOLOAD"


def _run(code: str, cwd=None, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, cwd=cwd)


def test_hook_is_installed_and_imports_nothing_at_start():
    """The .pth line leaves only a trigger; not even lm_latent is imported until lm_eval is."""
    out = _run("import sys; print(any(getattr(f, '_lm_latent_trigger', False) for f in sys.meta_path)); "
               "print(sorted(m for m in sys.modules if m.split('.')[0] in "
               "('torch', 'lm_eval', 'transformers', 'numpy', 'lm_latent', 'importlib')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["True", "[]"], out.stdout


def test_installed_pth_is_this_checkout_s():
    """An editable install copies the .pth: a stale copy would test an old hook."""
    import sysconfig

    installed = Path(sysconfig.get_paths()["purelib"]) / PTH.name
    if not installed.exists():
        pytest.skip("lm-latent is not installed in this environment")
    assert installed.read_text() == PTH.read_text(), "reinstall: pip install -e ."
    code = [ln for ln in PTH.read_text().splitlines() if not ln.startswith("#")]
    assert len(code) == 1 and code[0].startswith("import ")  # site runs only lines that start with "import"


def _run_pth(code: str, cwd=None, **env) -> subprocess.CompletedProcess:
    """Run this checkout's .pth line by hand (the installed one is switched off), then ``code``."""
    prelude = (f"import os; os.environ.pop({DISABLE!r}, None); "
               f"exec(open({str(PTH)!r}).read()); ")
    return _run(prelude + code, cwd=cwd, **{DISABLE: "1", **env})


def test_pth_line_checks_the_variable_before_importing_anything():
    out = _run_pth("import sys; print(sum(getattr(f, '_lm_latent_trigger', False) for f in sys.meta_path))")
    assert out.stdout.strip() == "1", out.stderr
    code = ("import os, sys; os.environ['LM_LATENT_NO_AUTOLOAD'] = 'yes'; exec(open(%r).read()); "
            "print(any(getattr(f, '_lm_latent_trigger', False) for f in sys.meta_path))" % str(PTH))
    out = _run(code, **{DISABLE: "1"})
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("breakage", ["syntax", "missing_autoload"])
def test_a_broken_package_never_breaks_python_and_prints_one_line_only_for_lm_eval(tmp_path, breakage):
    broken = tmp_path / "lm_latent"
    broken.mkdir()
    if breakage == "syntax":
        (broken / "__init__.py").write_text("def oops(:\n")
    else:
        (broken / "__init__.py").write_text("")
    env = {"PYTHONPATH": str(tmp_path)}
    quiet = _run_pth("print('ran')", cwd=tmp_path, **env)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "ran" and quiet.stderr == ""
    loud = _run_pth("import lm_eval, lm_eval.api.registry; print('ran')", cwd=tmp_path, **env)
    assert loud.returncode == 0 and loud.stdout.strip() == "ran", loud.stderr
    lines = loud.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lm-latent: plugin not loaded"), loud.stderr
    assert "LM_LATENT_NO_AUTOLOAD=1" in lines[0]


def test_the_real_start_up_survives_a_broken_package(tmp_path):
    """Through site itself (the installed .pth), not only by exec: no 'Error processing line'."""
    (tmp_path / "lm_latent").mkdir()
    (tmp_path / "lm_latent" / "__init__.py").write_text("raise RuntimeError('half-installed')\n")
    out = _run("print('ok')", cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert out.returncode == 0 and out.stdout.strip() == "ok" and out.stderr == "", out.stderr
    out = _run("import lm_eval; print('ok')", cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert out.stdout.strip() == "ok" and "Error processing" not in out.stderr
    assert out.stderr.count("\n") <= 1 and "half-installed" in out.stderr


def test_start_file_names_a_callable_that_never_raises():
    lines = [ln for ln in START.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == ["lm_latent.autoload:install"]
    out = _run("import lm_latent.autoload as a, sys; sys.meta_path = None; a.install(); print('survived')")
    assert out.stdout.strip() == "survived" and out.stderr.count("\n") == 1


def test_importing_the_hook_module_alone_stays_stdlib():
    out = _run("import sys, lm_latent.autoload; lm_latent.autoload.install(); "
               "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','lm_eval','transformers')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_registry_has_latent_and_keeps_builtins():
    out = _run("from lm_eval.api.registry import get_model; "
               "print(get_model('latent').__name__, get_model('hf').__name__, get_model('dummy').__name__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["LatentLM", "HFLM", "DummyLM"]


def test_environment_variable_switches_the_hook_off():
    out = _run("import sys; from lm_eval.api.registry import model_registry; import lm_eval.models; "
               "print(any(getattr(f, '_lm_latent', False) for f in sys.meta_path), 'latent' in model_registry)",
               LM_LATENT_NO_AUTOLOAD="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_install_is_idempotent():
    out = _run("import sys, lm_latent.autoload as a; a.install(); a.install(); "
               "print(sum(getattr(f, '_lm_latent', False) for f in sys.meta_path))")
    assert out.stdout.strip() == "1"


def test_plugin_tasks_come_first_so_user_include_path_wins(tmp_path):
    from lm_latent.autoload import _with_plugin_tasks, task_dir

    assert _with_plugin_tasks(None) == [task_dir()]
    assert _with_plugin_tasks(str(tmp_path)) == [task_dir(), str(tmp_path)]
    assert _with_plugin_tasks([task_dir()]) == [task_dir()]


@pytest.mark.slow
def test_task_manager_finds_plugin_tasks_and_gsm8k_replaces_builtin():
    out = _run("from lm_eval.tasks import TaskManager; tm = TaskManager(); "
               "print(all(t in tm.all_tasks for t in ('gsm8k', 'math', 'math500', 'latent_math'))); "
               "print(tm.task_index['gsm8k'].yaml_path)")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "True"
    assert "latent_math" in lines[1] and "lm_eval/tasks" not in lines[1]
