"""Atomic writes and run locks: a half-written file or directory never looks finished.

Files and folders written here get the permissions the user's umask gives (``mkstemp`` and
safetensors would otherwise leave ``0600`` files in an otherwise ``0644`` directory).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def apply_umask(root: str | os.PathLike) -> None:
    """Give every file under ``root`` mode ``0666 & ~umask`` and every folder ``0777 & ~umask``."""
    mask = _umask()
    root = Path(root)
    os.chmod(root, 0o777 & ~mask)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


def local_path_or_id(name: str) -> str:
    """A model that exists on disk as an absolute path (records then work from any folder); a hub id unchanged."""
    path = Path(name).expanduser()
    return os.path.abspath(path) if path.exists() else name


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    try:  # a killed process its parent has not reaped yet still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_partials(path: str | os.PathLike, all_owners: bool = False) -> list[Path]:
    """Remove the ``.NAME.*.partial`` scratch folders that killed saves of ``path`` left behind.

    Scratch folders are named after their writer (host and pid). By default only those of
    writers that are gone (same host, dead pid) and unnamed legacy ones are removed; with
    ``all_owners`` (the caller holds the lock for ``path``) every one is.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?[^/]+"
                         rf"{re.escape(PARTIAL_SUFFIX)}$")
    removed = []
    for child in path.parent.iterdir():
        m = pattern.match(child.name)
        if not m or not child.is_dir():
            continue
        if not all_owners and m.group("pid"):
            if m.group("host") != _host_tag() or _pid_alive(int(m.group("pid"))):
                continue
        logger.info("removing %s, left by a save that was killed", child)
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed


def recover_swap(path: str | os.PathLike) -> None:
    """Finish or undo a replacement a kill interrupted between its two renames (see atomic_directory)."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    if not old.exists():
        return
    if path.exists():
        logger.info("removing %s, the previous version of %s left by a killed save", old, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        logger.warning("restoring %s from %s (a save that replaced it was killed)", path, old)
        os.replace(old, path)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a scratch directory beside ``path`` that replaces ``path`` only on success.

    The scratch folder ``.NAME.HOST.PID.XXXX.partial`` names its writer, so that later runs can
    remove it if a kill left it behind (:func:`remove_partials`).
    """
    from lm_latent.utils import events

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_swap(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite to replace it)")
    remove_partials(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{_host_tag()}.{os.getpid()}.",
                                suffix=PARTIAL_SUFFIX))
    try:
        yield tmp
        apply_umask(tmp)
        events.reached(f"commit:{path.name}")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class LockedError(RuntimeError):
    """Another process holds the lock: the message names it (pid, host, start time) and the lock file."""


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536).decode("utf-8", "replace")
        holder = json.loads(data) if data.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (started {holder.get('started', '?')}"
            + (f": {holder['command']}" if holder.get("command") else "") + ")")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[dict]:
    """Hold ``path`` as an exclusive lock on ``what`` for the ``with`` block; yields the holder record.

    The lock is an ``flock`` on a file that names its holder (pid, host, start time, command), so
    the kernel releases it whenever the holder dies, even by SIGKILL. A file left by a dead
    process on this host is taken over with a log line; one naming a live process, or a process
    on another host (whose liveness cannot be checked from here), is a :class:`LockedError`.
    """
    import datetime
    import fcntl
    import sys

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
          "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500] if sys.argv else ""}
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(f"{what} is in use by {_describe(holder)}; lock file {path}. Wait for that run to "
                              f"finish or stop it; two writers would mix their checkpoints.") from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # the previous holder removed the file between our open and our flock: retry
    try:
        old = _read_holder(fd)
        if old:
            alive = old.get("host") == me["host"] and isinstance(old.get("pid"), int) and _pid_alive(old["pid"])
            if old.get("host") != me["host"] or (alive and old.get("pid") != me["pid"]):
                where = "on another host" if old.get("host") != me["host"] else "alive"
                raise LockedError(f"{what} is locked by {_describe(old)}, {where}; lock file {path}. If no such "
                                  f"run is still going, delete the lock file and rerun.")
            logger.warning("taking over the stale lock %s of %s: that process is gone", path, _describe(old))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode("utf-8"))
        os.fsync(fd)
        os.fchmod(fd, 0o666 & ~_umask())
    except BaseException:
        os.close(fd)
        raise
    try:
        yield me
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it, so nobody locks a file about to vanish
        os.close(fd)


class NoSpaceError(OSError):
    """Not enough disk for what is about to be written: the message names the folder and the size."""


def _size_text(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_free_space(where: str | os.PathLike, need: int, what: str, margin: int = 64 << 20) -> None:
    """Refuse before writing ``need`` bytes of ``what`` into ``where`` (or its nearest existing parent)."""
    folder = Path(where)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need + margin:
        raise NoSpaceError(f"not enough disk for {what}: it needs about {_size_text(need)} in {folder}, but only "
                           f"{_size_text(free)} is free there. Free some space or write to a larger disk.")


@contextlib.contextmanager
def explain_disk_full(where: str | os.PathLike, what: str, need: int | None = None) -> Iterator[None]:
    """Turn "No space left on device" (or a full quota) while writing ``what`` into a message naming
    the folder and, where known, the space needed."""
    import errno

    try:
        yield
    except NoSpaceError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        needed = f" (it needs about {_size_text(need)})" if need else ""
        raise NoSpaceError(exc.errno, f"the disk of {where} filled up while writing {what}{needed}; nothing "
                                      f"half-written was kept. Free some space or write to a larger disk.") from exc


def hash_file(path: str | os.PathLike, digest=None):
    """Stream ``path``'s bytes into ``digest`` (a new sha256 by default) and return it: large weights
    are hashed in blocks, never read whole."""
    digest = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest
