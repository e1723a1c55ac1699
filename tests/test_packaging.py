"""One import name per module, and the same package from a built wheel and from the editable install."""

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

#: Where the package and its subpackages load from, and whether any module loaded under a second name.
PROBE = """
import json, sys
import lm_latent, lm_latent.training.data, lm_latent.tasks.scoring, lm_latent.autoload
print(json.dumps({
    "package": lm_latent.__file__,
    "task_dir": lm_latent.autoload.task_dir(),
    "outside": sorted(m for m in sys.modules if m.split(".")[0] in ("training", "tasks", "models", "adapter", "utils")),
}))
"""

#: The plugin's task YAMLs through lm-eval's TaskManager, and one task built from a local data folder.
TASKS_PROBE = """
import json, sys
import lm_latent.autoload
lm_latent.autoload.install()  # what the .pth line does
from lm_eval.tasks import TaskManager
tm = TaskManager(include_defaults=False, metadata={"data_dir": sys.argv[1]})
task = tm.load_task_or_group(["latent_math_gsm8k"])["latent_math_gsm8k"]
print(json.dumps({"tasks": sorted(tm.all_tasks), "yaml": str(tm.task_index["latent_math_gsm8k"].yaml_path),
                  "doc_to_text": task.config.doc_to_text.__module__, "docs": len(list(task.eval_docs))}))
"""

TASKS = {"latent_math_gsm8k", "latent_math_math", "latent_math_math500", "latent_math_college_math",
         "latent_math_deepmind_mathematics", "latent_math_fresh_gaokao_math_2023", "latent_math_olympiadbench_math",
         "latent_math_theoremqa", "latent_math"}


def _python(code: str, *args: str, cwd: Path, env: dict | None = None, isolated: bool = False) -> dict:
    """Run ``code`` in a fresh interpreter; ``isolated``: no site (no .pth files), only $PYTHONPATH."""
    cmd = [sys.executable, *(["-S"] if isolated else []), "-c", code, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_python_file_is_inside_the_package():
    """No top-level modules beside the package: nothing can load under a second name."""
    proc = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    outside = [f for f in proc.stdout.split() if not f.startswith(("lm_latent/", "tests/", "benchmarks/"))]
    assert outside == []
    links = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True).stdout
    assert not [line for line in links.splitlines() if line.startswith("120000 ")]  # no symlinks


def _editable_from_this_checkout() -> metadata.Distribution:
    try:
        dist = metadata.distribution("lm-latent")
    except metadata.PackageNotFoundError:
        pytest.skip("lm-latent is not installed in this environment")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if not direct.get("dir_info", {}).get("editable") or Path(direct["url"].removeprefix("file://")) != ROOT:
        pytest.skip("lm-latent is not installed editable from this checkout")
    return dist


def test_editable_install_loads_the_checkout_and_its_tasks(tmp_path):
    dist = _editable_from_this_checkout()
    result = _python(PROBE, cwd=tmp_path)
    assert result["package"] == str(ROOT / "lm_latent" / "__init__.py") and result["outside"] == []
    assert result["task_dir"] == str(ROOT / "lm_latent" / "tasks")
    tasks = _python(TASKS_PROBE, str(write_data_dir(tmp_path / "data")), cwd=tmp_path)
    assert TASKS <= set(tasks["tasks"]) and Path(tasks["yaml"]).parent == ROOT / "lm_latent" / "tasks" / "latent_math"
    assert tasks["doc_to_text"] == "lm_latent.tasks.scoring" and tasks["docs"] == 3
    installed = sorted(str(f) for f in dist.files or [] if not str(f).startswith(("lm_latent-", "..", "__pycache__")))
    assert "lm_latent_autoload.pth" in installed and not [f for f in installed if f.endswith(".py")], installed
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"lm-latent": "lm_latent.cli:main"}


@pytest.fixture(scope="module")
def wheel_target(tmp_path_factory, built_wheel) -> Path:
    names = zipfile.ZipFile(built_wheel).namelist()
    outside = [n for n in names if not n.startswith(("lm_latent/", "lm_latent-"))]
    assert sorted(outside) == ["lm_latent_autoload.pth", "lm_latent_autoload.start"]
    assert {"lm_latent/tasks/latent_math/gsm8k.yaml", "lm_latent/training/data.py", "lm_latent_autoload.pth",
            "lm_latent_autoload.start"} <= set(names)
    assert not [n for n in names if "__pycache__" in n]
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


@pytest.mark.slow
def test_wheel_loads_the_package_and_its_tasks(tmp_path, wheel_target):
    # -S: no site, so neither this checkout's editable path nor the start-up hook runs; the
    # dependencies come from this environment's site-packages as a plain path, after the wheel.
    env = {"PYTHONPATH": os.pathsep.join([str(wheel_target), sysconfig.get_paths()["purelib"]])}
    result = _python(PROBE, cwd=tmp_path, env=env, isolated=True)
    assert result["package"] == str(wheel_target / "lm_latent" / "__init__.py") and result["outside"] == []
    assert result["task_dir"] == str(wheel_target / "lm_latent" / "tasks")
    tasks = _python(TASKS_PROBE, str(write_data_dir(tmp_path / "data")), cwd=tmp_path, env=env, isolated=True)
    assert TASKS <= set(tasks["tasks"])
    assert Path(tasks["yaml"]).parent == wheel_target / "lm_latent" / "tasks" / "latent_math"
    assert tasks["doc_to_text"] == "lm_latent.tasks.scoring" and tasks["docs"] == 3
