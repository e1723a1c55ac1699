"""The worker's parent side: one persistent spawned process that runs the sympy work.

Everything here runs in the grading process and imports only the standard library; the
spawned process enters at :func:`_child_process`, the only place that imports
``worker_child`` (math_verify, sympy). Time limits are enforced from here: a job that
overruns its budget gets its process killed, and a warm spare takes over.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import threading
import time
from typing import Any, NamedTuple

from .text import _short

logger = logging.getLogger(__name__)

#: Seconds allowed for a fresh worker to import sympy/math_verify (not part of `timeout`).
WORKER_START_TIMEOUT = 120.0
#: Address-space cap for the worker, so a ``10^{10^{10}}`` cannot take the machine down.
WORKER_MEMORY_BYTES = 4 * 1024**3


def _child_process(conn, jobs_module: str | None) -> None:
    """Entry of the spawned worker: limits first, then the sympy side is imported and serves.

    Ctrl-C is the parent's business, and the address-space cap is set before sympy loads.
    """
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = WORKER_MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(WORKER_MEMORY_BYTES, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except Exception:  # noqa: BLE001 - not on every platform; the parent's timeout still holds
        pass
    # The one import of the sympy side, in the worker process only.
    from . import worker_child

    worker_child.serve(conn, jobs_module)


def _start_without_main(proc) -> None:
    """``proc.start()`` without making the child re-run the caller's ``__main__``.

    Spawn normally re-imports the parent's main script in the child; the worker needs
    nothing from it, and an unguarded script (no ``if __name__ == "__main__"``) would
    otherwise fail or re-run itself. Hiding ``__file__``/``__spec__`` for the instant
    of ``start()`` makes spawn skip that step.
    """
    import sys

    main = sys.modules.get("__main__")
    if main is None:
        proc.start()
        return
    missing = object()
    saved_file = main.__dict__.get("__file__", missing)
    saved_spec = main.__dict__.get("__spec__", missing)
    try:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
        proc.start()
    finally:
        if saved_file is not missing:
            main.__dict__["__file__"] = saved_file
        if saved_spec is missing:
            main.__dict__.pop("__spec__", None)
        else:
            main.__dict__["__spec__"] = saved_spec


class _Budget:
    """One answer's wall-clock allowance, shared by every reading, alternative and restart."""

    __slots__ = ("deadline", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = max(float(seconds), 0.0)
        self.deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def extend(self, seconds: float) -> None:
        self.deadline += seconds


def _as_budget(budget: _Budget | float) -> _Budget:
    return budget if isinstance(budget, _Budget) else _Budget(budget)


class _Reply(NamedTuple):
    equal: bool
    timed_out: bool
    error: bool = False


class _SympyWorker:
    """One persistent spawned process; calls are serialised by a lock (thread-safe).

    After a time-out the worker is killed and replaced by a spare that has already
    imported sympy; a new spare starts in the background (from the first time-out on,
    one extra process is kept). So a restart costs the next answer nothing unless two
    time-outs come within the ~1 s a start takes; then whoever needs the worker waits for
    it within their own budget. Only the first start in a process is not charged to a
    budget (it is bounded by ``WORKER_START_TIMEOUT``).

    ``jobs_module`` is the extension point for tests: the name of a module, importable
    in the worker, whose ``JOBS`` mapping (kind -> function of the payload) adds job
    kinds to ``"single"``/``"multi"``, e.g. a job that sleeps or exits, to exercise
    time-outs and crashes in a real worker process. The module-wide worker has none.
    """

    def __init__(self, jobs_module: str | None = None) -> None:
        self._jobs_module = jobs_module
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._owner_pid: int | None = None
        # (proc, conn, spawned_at, owner_pid) of the next worker, maybe still starting
        self._pending: tuple[Any, Any, float, int] | None = None
        self._spare: tuple[Any, Any, float, int] | None = None  # same, kept warm once a time-out has happened
        self._ever_ready_pid: int | None = None
        self._seq = 0
        self.starts = 0
        self.timeouts = 0
        self.crashes = 0

    def _alive(self) -> bool:
        return self._proc is not None and self._owner_pid == os.getpid() and self._proc.is_alive()

    def _spawn(self) -> tuple:
        """Start a worker process without waiting for it (it says "ready" when it is)."""
        ctx = mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=_child_process,
            args=(child_conn, self._jobs_module),
            name="lm-latent-grading-worker",
            daemon=True,  # never outlives the parent
        )
        try:
            _start_without_main(proc)
        except Exception as exc:  # e.g. "daemonic processes are not allowed to have children"
            parent_conn.close()
            child_conn.close()
            raise RuntimeError(f"cannot start the grading worker process: {exc}") from exc
        child_conn.close()
        self.starts += 1
        return (proc, parent_conn, time.monotonic(), os.getpid())

    @staticmethod
    def _kill_started(started) -> None:
        if started is not None and started[3] == os.getpid():
            try:
                started[0].kill()
                started[0].join(5)
                started[1].close()
            except Exception:  # noqa: BLE001
                pass

    def _drop_pending(self) -> None:
        pending, self._pending = self._pending, None
        self._kill_started(pending)

    def _ready(self, budget: _Budget | None) -> bool:
        """Make a worker available; False when ``budget`` ran out first (it keeps starting)."""
        if self._alive():
            return True
        self._discard()
        if self._pending is not None and self._pending[3] != os.getpid():
            self._pending = None  # inherited through fork: not ours
        if self._spare is not None and self._spare[3] != os.getpid():
            self._spare = None
        if self._pending is None:
            self._pending = self._spawn()
        proc, conn, spawned, _ = self._pending
        first = self._ever_ready_pid != os.getpid()
        t0 = time.monotonic()
        left_to_start = WORKER_START_TIMEOUT - (t0 - spawned)
        wait = left_to_start if (first or budget is None) else min(left_to_start, max(budget.remaining(), 0.0))
        got = conn.poll(max(wait, 0.0))
        if first and budget is not None:
            budget.extend(time.monotonic() - t0)  # the one-time start is not the answer's fault
        if not got:
            if time.monotonic() - spawned >= WORKER_START_TIMEOUT:
                self._drop_pending()
                raise RuntimeError(f"grading worker did not start within {WORKER_START_TIMEOUT:.0f}s")
            return False
        self._pending = None
        try:
            msg = conn.recv()
        except EOFError as exc:
            proc.join(5)
            raise RuntimeError(f"grading worker died while starting (exit code {proc.exitcode})") from exc
        if not (isinstance(msg, tuple) and msg and msg[0] == "ready"):
            proc.kill()
            raise RuntimeError(f"grading worker sent {msg!r} instead of 'ready'")
        self._proc, self._conn, self._owner_pid = proc, conn, os.getpid()
        self._ever_ready_pid = os.getpid()
        return True

    def _discard(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None and self._owner_pid == os.getpid():
            try:
                proc.kill()
                proc.join(5)
            except Exception:  # noqa: BLE001
                pass
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _replace(self) -> None:
        """Kill the current worker; the warm spare takes over and a new spare starts."""
        self._discard()
        try:
            if self._pending is None:
                spare = self._spare if self._spare is not None and self._spare[3] == os.getpid() else None
                self._spare = None
                self._pending = spare if spare is not None else self._spawn()
            if self._spare is None:
                self._spare = self._spawn()
        except Exception as exc:  # noqa: BLE001 - the next call retries and reports
            logger.warning("could not respawn the grading worker: %s", exc)

    def ensure_started(self) -> None:
        with self._lock:
            self._ready(None)

    def call(self, kind: str, payload, budget: _Budget | float, what: tuple) -> _Reply:
        """Run one job within ``budget``; time-outs, crashes and errors count as unequal."""
        budget = _as_budget(budget)
        with self._lock:
            if budget.remaining() <= 0:
                return _Reply(False, True)
            if not self._ready(budget):
                self.timeouts += 1
                logger.warning(
                    "grading budget of %.1fs ran out while the worker restarted (counted as not equal): "
                    "prediction=%s reference=%s", budget.seconds, _short(what[0]), _short(what[1]),
                )
                return _Reply(False, True)
            self._seq += 1
            seq = self._seq
            wait = max(budget.remaining(), 0.0)
            try:
                self._conn.send((seq, kind, payload))
                ready = self._conn.poll(wait)
            except (OSError, ValueError, BrokenPipeError):
                ready = None
            if ready is False:
                self.timeouts += 1
                logger.warning(
                    "grading comparison timed out (budget %.1fs for the answer; worker killed; counted as not "
                    "equal): prediction=%s reference=%s", budget.seconds, _short(what[0]), _short(what[1]),
                )
                self._replace()
                return _Reply(False, True)
            try:
                if ready is None:
                    raise EOFError
                got_seq, ok, result = self._conn.recv()
            except (EOFError, OSError, ValueError):
                self.crashes += 1
                code = self._proc.exitcode if self._proc is not None else None
                logger.warning(
                    "grading worker crashed (exit code %s; counted as not equal): prediction=%s reference=%s",
                    code, _short(what[0]), _short(what[1]),
                )
                self._replace()
                return _Reply(False, False, True)
            if got_seq != seq:  # cannot happen with one caller at a time; be safe
                self._replace()
                return _Reply(False, False, True)
            if not ok:
                logger.warning("grading worker raised %s (counted as not equal): prediction=%s reference=%s",
                               result, _short(what[0]), _short(what[1]))
                return _Reply(False, False, True)
            return _Reply(bool(result), False)

    def shutdown(self) -> None:
        with self._lock:
            if self._conn is not None and self._alive():
                try:
                    self._conn.send(None)
                    self._proc.join(2)
                except Exception:  # noqa: BLE001
                    pass
            self._discard()
            self._drop_pending()
            spare, self._spare = self._spare, None
            self._kill_started(spare)


_WORKER = _SympyWorker()
atexit.register(_WORKER.shutdown)


def shutdown_worker() -> None:
    """Stop the sympy worker now (a later comparison starts a fresh one)."""
    _WORKER.shutdown()


def _worker_stats() -> dict:
    return {"starts": _WORKER.starts, "timeouts": _WORKER.timeouts, "crashes": _WORKER.crashes}

