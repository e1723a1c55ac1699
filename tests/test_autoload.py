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


def test_hook_is_installed_and_imports_nothing_heavy_at_start():
    """The .pth line imports the stdlib-only hook module and nothing else of ours or of the ML stack."""
    out = _run("import sys; print(any(getattr(f, '_lm_latent', False) for f in sys.meta_path)); "
               "print(sorted(m for m in sys.modules if m.split('.')[0] in "
               "('torch', 'lm_eval', 'transformers', 'numpy', 'lm_latent')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["True", "['lm_latent', 'lm_latent.autoload']"], out.stdout


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
    probe = "import sys; print(sum(getattr(f, '_lm_latent', False) for f in sys.meta_path), 'lm_latent' in sys.modules)"
    out = _run_pth(probe)
    assert out.stdout.split() == ["1", "True"], out.stderr
    code = ("import os, sys; os.environ['LM_LATENT_NO_AUTOLOAD'] = 'yes'; exec(open(%r).read()); " % str(PTH)) + probe
    out = _run(code, **{DISABLE: "1"})
    assert out.stdout.split() == ["0", "False"], out.stderr


def test_the_real_start_up_survives_a_broken_package(tmp_path):
    """Through site itself: a half-installed package never stops Python, and the switch silences it."""
    (tmp_path / "lm_latent").mkdir()
    (tmp_path / "lm_latent" / "__init__.py").write_text("raise RuntimeError('half-installed')\n")
    out = _run("import lm_eval; print('ok')", cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert "half-installed" in out.stderr  # site names the cause
    out = _run("import lm_eval; print('ok')", cwd=tmp_path, PYTHONPATH=str(tmp_path), **{DISABLE: "1"})
    assert out.returncode == 0 and out.stdout.strip() == "ok" and out.stderr == "", out.stderr


def test_a_failing_hook_prints_one_line_only_when_lm_eval_loads(tmp_path):
    """A hook that fails inside lm_eval's import warns once and never breaks lm_eval."""
    code = ("import lm_latent.autoload as a; a._HOOKS['lm_eval.api.registry'] = lambda m: 1 / 0; "
            "print('ran'); import lm_eval.api.registry; print('ran')")
    out = _run_pth(code)
    assert out.returncode == 0 and out.stdout.split() == ["ran", "ran"], out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lm-latent: start-up hook failed"), out.stderr
    assert "LM_LATENT_NO_AUTOLOAD=1" in lines[0]


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


PLUGIN_NAMES = """
import json, pathlib, re, lm_latent.autoload as a
names = set()
for f in pathlib.Path(a.task_dir()).rglob("*"):
    if f.is_file() and (f.suffix == ".yaml" or f.name.endswith("_yaml")):
        text = f.read_text()
        names |= set(re.findall(r"^(?:task|group): (\\w+)$", text, re.M))
        names |= set(re.findall(r"^tag:\\n  - (\\w+)$", text, re.M))  # each task YAML has one tag
print(json.dumps(sorted(names)))
"""

INDEX = """
import json
from lm_eval.tasks import TaskManager
tm = TaskManager()
print(json.dumps({name: str(getattr(entry, "yaml_path", "") or "") for name, entry in tm.task_index.items()}))
"""


@pytest.mark.slow
def test_no_plugin_name_collides_with_lm_eval_s_own_index():
    """lm-eval's index built with the hook off; every plugin task, group and tag is new and shares one prefix."""
    import json

    ours = json.loads(_run(PLUGIN_NAMES).stdout)
    assert len(ours) >= 10 and all(n.startswith("latent_math") for n in ours), ours
    out = _run(INDEX, **{DISABLE: "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    builtin = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(builtin) > 1000 and "gsm8k" in builtin and "minerva_math" in builtin
    assert not [n for n in builtin if n.startswith("latent_math")]
    out = _run(INDEX)  # the hook on: the plugin adds its names and replaces none
    with_plugin = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(with_plugin) == set(builtin) | set(ours)
    assert all(with_plugin[n] == builtin[n] for n in builtin)  # gsm8k still lm-eval's own YAML
    assert "lm_eval/tasks/gsm8k" in with_plugin["gsm8k"] and "latent_math" in with_plugin["latent_math_gsm8k"]
