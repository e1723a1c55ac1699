"""The worker: time-outs, crashes, restarts, the warm spare, and sympy kept out of the parent.

The module's own jobs (``grading_test_jobs.py`` beside this file: a job that sleeps, one
that kills the process) run in a worker of its own, so time-outs and crashes are real.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from grading_helpers import LIMIT, _check_normal_comparison_still_works

from lm_latent.grading import is_equiv
from lm_latent.grading.worker import _WORKER, _Budget, _SympyWorker

PATHOLOGICAL = [
    ("10^{10^{10}}", "1"),
    ("\\frac{1}{" * 50 + "2" + "}" * 50, "1"),
    ("1000000!", "1"),
    ("2^{2^{2^{2^{2^{2}}}}}", "3"),
    ("(" * 500 + "1" + ")" * 500, "1"),
]

@pytest.mark.parametrize("prediction,reference", PATHOLOGICAL, ids=[p[:30] for p, _ in PATHOLOGICAL])
def test_pathological_input_returns_within_limit(prediction, reference, caplog):
    _WORKER.ensure_started()
    t0 = time.perf_counter()
    res = is_equiv(prediction, reference, timeout=LIMIT)
    elapsed = time.perf_counter() - t0
    assert res is False
    assert elapsed < LIMIT + 3, elapsed
    _check_normal_comparison_still_works()

@pytest.fixture(scope="module")
def hooked():
    """A real worker of its own that also runs the jobs of grading_test_jobs.py beside this file
    ("sleep" never finishes in time, "crash" kills the process mid-comparison)."""
    worker = _SympyWorker(jobs_module="grading_test_jobs")
    yield worker
    worker.shutdown()


def _check_worker_still_works(worker: _SympyWorker) -> None:
    """The worker (or its replacement) still compares with sympy."""
    t0 = time.perf_counter()
    assert worker.call("single", ("x^2-1", "(x-1)(x+1)", False, False), 30.0, ("c", "d")) == (True, False, False)
    assert worker.call("single", ("x^2-1", "(x-1)(x+2)", False, False), 30.0, ("c", "d")) == (False, False, False)
    assert time.perf_counter() - t0 < 30


def test_timeout_kills_worker_and_restarts(hooked, caplog):
    hooked.ensure_started()
    old_pid = hooked._proc.pid
    t0 = time.perf_counter()
    with caplog.at_level("WARNING", logger="lm_latent.grading"):
        reply = hooked.call("sleep", 60, 1.0, ("sleepy-pred", "sleepy-ref"))
    assert reply == (False, True, False)
    assert time.perf_counter() - t0 < 1.0 + 3
    assert any("sleepy-pred" in r.getMessage() for r in caplog.records)
    assert hooked._proc is None  # killed; its replacement is already starting
    assert hooked._pending is not None
    _check_worker_still_works(hooked)
    assert hooked._proc.pid != old_pid


def test_worker_crash_counts_as_unequal(hooked, caplog):
    with caplog.at_level("WARNING", logger="lm_latent.grading"):
        reply = hooked.call("crash", None, 10.0, ("crash-pred", "crash-ref"))
    assert reply == (False, False, True)  # a crash is an error, not a time-out
    assert any("crashed" in r.getMessage() for r in caplog.records)
    _check_worker_still_works(hooked)


def test_unknown_job_is_an_error_and_the_test_jobs_stay_in_tests(hooked):
    """A kind the worker does not know is reported as an error (the worker lives on); the
    module-wide worker knows only "single" and "multi", so the test jobs do not exist there."""
    assert hooked.call("no-such-job", None, 10.0, ("a", "b")) == (False, False, True)
    _check_worker_still_works(hooked)
    pid = _WORKER._proc.pid if _WORKER._alive() else None
    assert _WORKER.call("sleep", 60, 10.0, ("a", "b")) == (False, False, True)
    assert _WORKER._proc is not None and (pid is None or _WORKER._proc.pid == pid)  # answered, not killed


def test_worker_killed_between_calls_is_replaced():
    _WORKER.ensure_started()
    os.kill(_WORKER._proc.pid, 9)
    _WORKER._proc.join(5)
    _check_normal_comparison_still_works()


def test_thread_safety():
    pairs = [("x^2-1", "(x-1)(x+1)", True), ("2x+1", "1+2x", True), ("x^2", "x^3", False), ("(1,2)", "(2,1)", False)]
    results: list[tuple[bool, bool]] = []
    lock = threading.Lock()

    def work():
        for p, r, expected in pairs * 3:
            got = is_equiv(p, r, timeout=30.0)
            with lock:
                results.append((got, expected))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 4 * len(pairs) * 3
    assert all(got == expected for got, expected in results)


def test_warm_calls_are_fast():
    _WORKER.ensure_started()
    is_equiv("x^2+3", "3+x^2", timeout=30.0)
    t0 = time.perf_counter()
    for i in range(20):
        assert is_equiv(f"x^2+{i}", f"{i}+x^2", timeout=30.0)
    assert (time.perf_counter() - t0) / 20 < 0.5


def test_no_heavy_imports_in_parent():
    """Grading that needs sympy (so the worker starts and answers) leaves the parent without it."""
    code = (
        "import sys, lm_latent.grading as g; "
        "g.extract_answer('\\\\boxed{1}'); assert g.is_equiv('1,000', '1000'); "
        "assert g.grade('so \\\\boxed{x^2-1}', '(x-1)(x+1)', timeout=60).correct; "
        "assert g.is_equiv_multi('x+1, 3', ['3', '1+x'], timeout=60); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'sympy', 'math_verify', 'mpmath')"
        " or m == 'lm_latent.grading.worker_child']; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr

_PACKAGE = Path(__file__).resolve().parents[2] / "lm_latent" / "grading"
_SYMPY_SIDE = ("sympy", "math_verify", "mpmath", "latex2sympy2_extended")


def _imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """(module imported, node) for every import in ``tree``; relative ones as ``.name``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            out += [(base if node.module else base + a.name, node) for a in node.names]
    return out


def test_only_the_worker_side_imports_sympy():
    """By structure: sympy/math_verify are imported only by worker_child.py, and worker_child
    only inside worker._child_process (which runs in the spawned process)."""
    modules = sorted(_PACKAGE.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "api.py", "worker.py", "worker_child.py"}
    child_imports = []
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        entry = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_child_process"]
        allowed = {id(n) for f in entry for n in ast.walk(f)}
        for name, node in _imports(tree):
            if path.name != "worker_child.py":
                assert name.split(".")[0] not in _SYMPY_SIDE, f"{path.name} imports {name}"
            if name.endswith("worker_child"):
                child_imports.append(path.name)
                assert path.name == "worker.py" and id(node) in allowed, f"{path.name} imports worker_child"
    assert child_imports == ["worker.py"]
    child = ast.parse((_PACKAGE / "worker_child.py").read_text(encoding="utf-8"))
    top = {a.name.split(".")[0] for n in child.body if isinstance(n, ast.Import) for a in n.names}
    assert {"sympy", "math_verify"} <= top  # at the top of the worker side, not hidden in functions


def test_unguarded_main_script_can_grade(tmp_path):
    """Spawn must not re-run the caller's script (no ``if __name__ == '__main__'`` here)."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from lm_latent.grading import is_equiv\n"
        "print('RESULT', is_equiv('x^2-1', '(x-1)(x+1)'))\n"
    )
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("RESULT") == 1 and "RESULT True" in proc.stdout

def test_budget_is_shared_across_worker_calls(hooked):
    hooked.ensure_started()
    budget = _Budget(1.0)
    t0 = time.perf_counter()
    first = hooked.call("sleep", 60, budget, ("a", "b"))
    second = hooked.call("sleep", 60, budget, ("a", "b"))
    assert first.timed_out and second.timed_out
    assert time.perf_counter() - t0 < 1.0 + 1.5
    _check_worker_still_works(hooked)


def test_restart_after_time_out_is_charged_to_the_budget(hooked):
    """Two time-outs in a row: the spare is used up, and an answer that needs the worker
    while its replacement is still starting waits at most its own budget."""
    hooked.ensure_started()
    # short time-outs, so the replacements cannot finish starting in between (on a quiet machine a
    # worker starts within 0.5 s, which let the third 0.5 s time-out wait one out)
    assert hooked.call("sleep", 60, 0.05, ("a", "b")).timed_out
    assert hooked.call("sleep", 60, 0.05, ("a", "b")).timed_out
    assert hooked.call("sleep", 60, 0.05, ("a", "b")).timed_out
    t0 = time.perf_counter()
    reply = hooked.call("single", ("x^2-1", "(x-1)(x+1)", False, False), 0.01, ("c", "d"))
    assert time.perf_counter() - t0 < 0.01 + 1.0
    assert reply.timed_out  # no worker imports sympy in 10 ms: the restart was charged, not waited out
    assert hooked._pending is not None  # ... and it goes on starting for the next answer
    _check_worker_still_works(hooked)


def test_spare_worker_makes_a_restart_free(hooked):
    """After a time-out a warm spare takes over: the next answer does not pay for sympy's import."""
    hooked.ensure_started()
    assert hooked.call("sleep", 60, 0.5, ("a", "b")).timed_out
    _check_worker_still_works(hooked)  # waits for the replacement
    deadline = time.monotonic() + 60
    while hooked._spare is not None and not hooked._spare[1].poll(0) and time.monotonic() < deadline:
        time.sleep(0.1)  # the new spare finishes importing sympy
    assert hooked.call("sleep", 60, 0.5, ("a", "b")).timed_out
    t0 = time.perf_counter()
    reply = hooked.call("single", ("x^2-1", "(x-1)(x+1)", False, False), 5.0, ("c", "d"))
    assert reply == (True, False, False)
    assert time.perf_counter() - t0 < 1.5  # no sympy import on the way (that takes seconds)
