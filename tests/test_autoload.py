"""The start-up hook: stdlib-only, lazy, switchable, and it keeps lm-eval's built-ins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_hook_is_installed_and_imports_nothing_heavy():
    out = _run("import sys; print(any(getattr(f, '_lm_latent', False) for f in sys.meta_path)); "
               "print(sorted(m for m in ('torch', 'lm_eval', 'transformers', 'numpy') if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["True", "[]"]


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
