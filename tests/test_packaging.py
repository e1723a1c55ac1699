"""One import name per module, in a built wheel and in the editable install of this checkout.

``tasks/`` and ``training/`` are top-level folders of the repository but subpackages of
``lm_latent`` (``lm_latent.tasks``, ``lm_latent.training``): the wheel maps them in, a checkout
finds them through ``lm_latent/__init__.py``. Loading them under a second name (``training.data``
beside ``lm_latent.training.data``) would make two copies of every class.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from builders import write_data_dir

ROOT = Path(__file__).resolve().parents[1]

#: Imports both subpackages, then reports which names they loaded under and where from.
PROBE = """
import json, sys
import lm_latent, lm_latent.training.data, lm_latent.tasks.scoring, lm_latent.autoload
from lm_latent.training.data import Example
result = {
    "package": lm_latent.__file__,
    "data": lm_latent.training.data.__file__,
    "task_dir": lm_latent.autoload.task_dir(),
    "second_names": sorted(m for m in sys.modules if m.split(".")[0] in ("training", "tasks")),
    "example_module": Example.__module__,
    "checkout_finder": any(getattr(f, "_lm_latent_checkout", False) for f in sys.meta_path),
}
for name in ("training", "tasks", "training.data", "tasks.scoring"):
    try:
        __import__(name)
        result[name] = "imported"
    except ImportError as exc:
        result[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(result))
"""

#: The plugin's task YAMLs through lm-eval's TaskManager, as the start-up hook sets it up, and one
#: task built from them with data from a local folder (its !function lines import by name).
TASKS_PROBE = """
import json, sys
import lm_latent.autoload
lm_latent.autoload.install()  # what the .pth line does when lm_eval is imported
from lm_eval.tasks import TaskManager
tm = TaskManager(include_defaults=False, metadata={"data_dir": sys.argv[1]})
task = tm.load_task_or_group(["gsm8k"])["gsm8k"]
print(json.dumps({
    "tasks": sorted(tm.all_tasks),
    "gsm8k_yaml": str(tm.task_index["gsm8k"].yaml_path),
    "doc_to_text": task.config.doc_to_text.__module__,
    "docs": len(list(task.eval_docs)),
    "second_names": sorted(m for m in sys.modules if m.split(".")[0] in ("training", "tasks")
                           or m.endswith(("/scoring", "/benchmarks"))),
}))
"""

TASKS = {"gsm8k", "math", "math500", "college_math", "deepmind_mathematics", "fresh_gaokao_math_2023",
         "olympiadbench_math", "theoremqa", "latent_math"}


def _python(code: str, *args: str, cwd: Path, env: dict | None = None, isolated: bool = False) -> dict:
    """Run ``code`` in a fresh interpreter; ``isolated``: no site (no .pth files), only $PYTHONPATH."""
    cmd = [sys.executable, *(["-S"] if isolated else []), "-c", code, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_one_identity(result: dict, layout: str) -> None:
    assert result["second_names"] == [], result
    assert result["example_module"] == "lm_latent.training.data"
    for name in ("training", "tasks", "training.data", "tasks.scoring"):
        assert result[name].startswith(("ImportError", "ModuleNotFoundError")), (name, result[name])
    if layout == "checkout":  # the folder is on sys.path, so it loads far enough to refuse by name
        assert "import lm_latent.training, not 'training'" in result["training"]
        assert "import lm_latent.tasks, not 'tasks'" in result["tasks"]


# ---------------------------------------------------------------------------------------------
# The source checkout: the editable install, and the repository root on sys.path (python -m pytest)
# ---------------------------------------------------------------------------------------------


def _editable_from_this_checkout() -> metadata.Distribution:
    try:
        dist = metadata.distribution("lm-latent")
    except metadata.PackageNotFoundError:
        pytest.skip("lm-latent is not installed in this environment")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if not direct.get("dir_info", {}).get("editable") or Path(direct["url"].removeprefix("file://")) != ROOT:
        pytest.skip("lm-latent is not installed editable from this checkout")
    return dist


def test_repository_has_no_symlinks():
    """Symlinks become text files in Windows checkouts, and grep -r and mypy see their targets twice."""
    proc = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    links = [line.split("\t", 1)[1] for line in proc.stdout.splitlines() if line.startswith("120000 ")]
    assert links == []


def test_editable_install_gives_each_module_one_name(tmp_path):
    _editable_from_this_checkout()
    result = _python(PROBE, cwd=tmp_path)
    assert result["package"] == str(ROOT / "lm_latent" / "__init__.py")
    assert result["data"] == str(ROOT / "training" / "data.py")  # the checkout's file, not a copy
    assert result["task_dir"] == str(ROOT / "tasks") and result["checkout_finder"]
    _assert_one_identity(result, "checkout")


def test_repository_root_on_sys_path_refuses_the_top_level_names():
    """``python -m pytest`` (or ``python -c``) from the root puts the root first on sys.path."""
    result = _python(PROBE, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert result["data"] == str(ROOT / "training" / "data.py")
    _assert_one_identity(result, "checkout")


def test_this_test_process_loaded_no_second_names():
    import lm_latent.training.data  # noqa: F401

    assert not [m for m in sys.modules if m.split(".")[0] in ("training", "tasks")]


def test_editable_install_copies_only_the_start_up_hook():
    """Hatchling's editable build copies force-included paths; hatch_build.py keeps tasks/ and training/ out."""
    dist = _editable_from_this_checkout()
    installed = sorted(str(f) for f in dist.files or [] if not str(f).startswith(("lm_latent-", "..", "__pycache__")))
    assert installed == ["_lm_latent.pth", "lm_latent_autoload.pth", "lm_latent_autoload.start"], installed
    pth = Path(sysconfig.get_paths()["purelib"]) / "_lm_latent.pth"
    assert pth.read_text().split() == [str(ROOT)]  # a plain path line: no import hook at every start
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"lm-latent": "lm_latent.cli:main"}  # one CLI; evaluation is `lm-latent eval`


def test_editable_install_task_yamls_load_through_task_manager(tmp_path):
    _editable_from_this_checkout()
    result = _python(TASKS_PROBE, str(write_data_dir(tmp_path / "data")), cwd=tmp_path)
    assert TASKS <= set(result["tasks"])
    assert Path(result["gsm8k_yaml"]).parent == ROOT / "tasks" / "latent_math"
    assert result["doc_to_text"] == "lm_latent.tasks.scoring" and result["docs"] == 3
    assert result["second_names"] == []


# ---------------------------------------------------------------------------------------------
# The wheel, installed into a target folder and run without this environment's .pth files
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel_target(tmp_path_factory, built_wheel) -> Path:
    names = zipfile.ZipFile(built_wheel).namelist()
    assert not [n for n in names if n.startswith(("tasks/", "training/")) or "__pycache__" in n]
    assert {"lm_latent/tasks/__init__.py", "lm_latent/tasks/latent_math/gsm8k.yaml",
            "lm_latent/training/__init__.py", "lm_latent/training/data.py"} <= set(names)
    target = tmp_path_factory.mktemp("wheel_target")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                           str(target), str(built_wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def test_wheel_ships_the_demo_base_intact(built_wheel):
    """The demo's base travels in the wheel, weights included (a *.safetensors ignore rule would drop them)."""
    import hashlib

    wheel = zipfile.ZipFile(built_wheel)
    folder = "lm_latent/demo/pretrained_base/"
    shipped = {n.removeprefix(folder) for n in wheel.namelist() if n.startswith(folder)}
    assert shipped == {p.name for p in (ROOT / folder).iterdir()}
    record = json.loads(wheel.read(folder + "pretrain.json"))
    for name, digest in record["sha256"].items():
        assert hashlib.sha256(wheel.read(folder + name)).hexdigest() == digest


def _wheel_env(target: Path) -> dict:
    # -S: no site, so neither this checkout's _lm_latent.pth nor the start-up hook runs; the
    # dependencies come from this environment's site-packages as a plain path, after the wheel.
    return {"PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])}


@pytest.mark.slow
def test_wheel_gives_each_module_one_name(tmp_path, wheel_target):
    result = _python(PROBE, cwd=tmp_path, env=_wheel_env(wheel_target), isolated=True)
    assert result["package"] == str(wheel_target / "lm_latent" / "__init__.py")
    assert result["data"] == str(wheel_target / "lm_latent" / "training" / "data.py")
    assert result["task_dir"] == str(wheel_target / "lm_latent" / "tasks")
    assert not result["checkout_finder"]  # the wheel layout needs no finder
    _assert_one_identity(result, "wheel")


@pytest.mark.slow
def test_wheel_task_yamls_load_through_task_manager(tmp_path, wheel_target):
    result = _python(TASKS_PROBE, str(write_data_dir(tmp_path / "data")), cwd=tmp_path,
                     env=_wheel_env(wheel_target), isolated=True)
    assert TASKS <= set(result["tasks"])
    assert Path(result["gsm8k_yaml"]).parent == wheel_target / "lm_latent" / "tasks" / "latent_math"
    assert result["doc_to_text"] == "lm_latent.tasks.scoring" and result["docs"] == 3
    assert result["second_names"] == []
