"""One writer per rate work directory: a second ``lm-latent train`` is refused, a dead one's lock taken over.

Issue 11.2: two runs on the same ``--out`` trained side by side; the second "resumed" the first's
work directory and left a checkpoint without its settings record.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from train_runs import assert_same_adapter, run_train, train_args, write_data  # noqa: E402

from lm_latent.training.train import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("lock_data") / "train.jsonl")


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, tiny_base, data, capsys):
    from lm_latent.utils.fileio import exclusive_lock

    out = tmp_path / "out"
    lock = out / ".work" / "rate4.lock"
    with exclusive_lock(lock, "the work directory"):
        holder = json.loads(lock.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["started"]
        with pytest.raises(SystemExit) as exc:
            main(train_args(tiny_base, data, out))
        err = capsys.readouterr().err
    assert exc.value.code == 2
    assert f"pid {os.getpid()}" in err and socket.gethostname() in err and holder["started"] in err
    assert str(lock) in err
    assert not (out / ".work" / "rate4").exists()  # the refused run touched nothing
    assert not lock.exists()  # released on exit


def test_a_dead_runs_lock_is_taken_over(tmp_path, tiny_base, data, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="lm_latent")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    lock = out / ".work" / "rate4.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z"}))
    assert main(train_args(tiny_base, data, out, "--max-steps", "2")) == 0
    assert "stale lock" in caplog.text and f"pid {dead.pid}" in caplog.text
    assert not lock.exists() and not (out / ".work").exists()


def test_a_lock_held_on_another_host_is_not_guessed_at(tmp_path, tiny_base, data, capsys):
    out = tmp_path / "out"
    lock = out / ".work" / "rate4.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": 1234, "host": "elsewhere.example", "started": "2026-01-01T00:00:00Z"}))
    with pytest.raises(SystemExit):
        main(train_args(tiny_base, data, out))
    err = capsys.readouterr().err
    assert "elsewhere.example" in err and "pid 1234" in err and "delete" in err and str(lock) in err
    assert lock.exists()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see a stopped process")
def test_two_concurrent_trainings(tmp_path, tiny_base, data):
    """A real run frozen while it holds its lock; a second run on the same --out is refused; the first
    then finishes with the adapter an undisturbed run writes."""
    ref = tmp_path / "ref"
    proc = run_train(train_args(tiny_base, data, ref))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    first = run_train(train_args(tiny_base, data, out), kill_at="lock:held=stop", popen=True)
    try:
        deadline = time.monotonic() + 300
        while _state(first.pid) != "T":
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        second = run_train(train_args(tiny_base, data, out))
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"pid {first.pid}" in second.stderr and socket.gethostname() in second.stderr
        assert "in use" in second.stderr
        os.kill(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr[-3000:]
    assert_same_adapter(ref / "rate4", out / "rate4")
    assert {p.name for p in out.iterdir()} == {"rate4"}
