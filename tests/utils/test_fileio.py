"""Atomic folders, scratch-folder clean-up and the run lock (no models needed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from lm_latent.utils.fileio import (
    LockedError,
    atomic_directory,
    exclusive_lock,
    recover_swap,
    remove_partials,
    write_text_atomic,
)


def _mask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_atomic_directory_gives_files_the_umask_mode(tmp_path):
    target = tmp_path / "adapter"
    with atomic_directory(target) as tmp:
        fd = os.open(tmp / "w.safetensors", os.O_WRONLY | os.O_CREAT, 0o600)  # as safetensors writes
        os.close(fd)
        (tmp / "sub").mkdir(mode=0o700)
        write_text_atomic(tmp / "sub" / "x.json", "{}")
    assert (target / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~_mask()
    assert (target / "sub").stat().st_mode & 0o777 == 0o777 & ~_mask()
    assert not [p for p in tmp_path.iterdir() if p.name != "adapter"]


def test_scratch_folders_name_their_writer_and_dead_ones_are_removed(tmp_path):
    target = tmp_path / "rate4"
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())[:40]
    dead = tmp_path / f".rate4.{host}.{_dead_pid()}.abc.partial"
    alive = tmp_path / f".rate4.{host}.{os.getpid()}.def.partial"
    elsewhere = tmp_path / ".rate4.otherhost.1.ghi.partial"
    legacy = tmp_path / ".rate4.k3jd8x.partial"
    unrelated = tmp_path / ".rate40.k3jd8x.partial"
    for d in (dead, alive, elsewhere, legacy, unrelated):
        d.mkdir()
    assert sorted(remove_partials(target)) == sorted([dead, legacy])
    assert alive.is_dir() and elsewhere.is_dir() and unrelated.is_dir()
    assert sorted(remove_partials(target, all_owners=True)) == sorted([alive, elsewhere])
    assert unrelated.is_dir()

    seen = []
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            seen.append(tmp.name)
            raise RuntimeError("killed")
    assert seen[0].startswith(f".rate4.{host}.{os.getpid()}.") and seen[0].endswith(".partial")
    assert not target.exists() and not (tmp_path / seen[0]).exists()


def test_an_interrupted_replacement_is_undone(tmp_path):
    target, old = tmp_path / "rate4", tmp_path / ".rate4.old"
    old.mkdir()
    (old / "latent.json").write_text("{}")
    recover_swap(target)  # killed between "rate4 -> .rate4.old" and ".partial -> rate4"
    assert (target / "latent.json").is_file() and not old.exists()
    old.mkdir()
    recover_swap(target)  # killed after both renames, before removing .old
    assert target.is_dir() and not old.exists()


def test_lock_excludes_a_second_holder_and_is_released(tmp_path):
    lock = tmp_path / "w.lock"
    with exclusive_lock(lock, "the work directory") as me:
        assert json.loads(lock.read_text())["pid"] == os.getpid() == me["pid"]
        with pytest.raises(LockedError, match=rf"in use by pid {os.getpid()} on {socket.gethostname()}"):
            with exclusive_lock(lock, "the work directory"):
                pass
    assert not lock.exists()
    with pytest.raises(KeyError):  # released on an exception too
        with exclusive_lock(lock, "x"):
            raise KeyError("crash")
    assert not lock.exists()


def test_lock_takes_over_a_dead_holder_but_not_a_live_or_remote_one(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="lm_latent")
    lock = tmp_path / "w.lock"
    pid = _dead_pid()
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "t0"}))
    with exclusive_lock(lock, "w"):
        pass
    assert f"stale lock {lock} of pid {pid}" in caplog.text
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live process named in a file nobody flocks (another tool, or a copied folder): not guessed at
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": "t0"}))
        with pytest.raises(LockedError, match="delete the lock file"):
            with exclusive_lock(lock, "w"):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "t0"}))
    with pytest.raises(LockedError, match="another host"):
        with exclusive_lock(lock, "w"):
            pass
    assert lock.exists()


def test_check_free_space_names_the_folder_and_the_size(tmp_path, monkeypatch):
    from collections import namedtuple

    from lm_latent.utils import fileio

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage(1 << 40, 1 << 40, 100 << 20))
    with pytest.raises(fileio.NoSpaceError, match=r"needs about 2\.00 GiB in .*not_yet.*100\.0 MiB is free"):
        fileio.check_free_space(tmp_path / "not_yet" / "made", 2 << 30, "the thing")
    fileio.check_free_space(tmp_path, 1 << 20, "the thing")  # fits
