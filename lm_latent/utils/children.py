"""Child processes that never outlive their parent, their output kept in a log as it is written.

The sweep runs one ``lm_eval`` per rate and the study one ``lm-latent train`` per rate this way:
a killed parent never leaves a child racing its rerun, and a failure's last lines are at hand.
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence, TextIO

__all__ = ["die_with_parent", "run_logged"]

TAIL_CHARS = 3000


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """For ``Popen(preexec_fn=...)``: the child gets SIGTERM when ``parent`` dies, even by SIGKILL (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # loaded here, in the parent: nothing may be imported between fork and exec

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return set_signal


def run_logged(cmd: Sequence[str], log_path: str | os.PathLike, env: dict[str, str] | None = None,
               echo: TextIO | None = sys.stderr) -> tuple[int, str]:
    """Run ``cmd`` with stdout and stderr written, as they come, to ``log_path`` and to ``echo``.

    The output is passed on in raw chunks, not lines, so progress bars redraw in place on a
    terminal. Returns the exit code and the output's last characters. An exception here (Ctrl-C)
    terminates the child before it propagates.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}  # lines reach the log as they are written
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    with open(log_path, "w", encoding="utf-8", buffering=1) as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=die_with_parent(os.getpid()))
        assert proc.stdout is not None  # stdout=PIPE
        try:
            while chunk := os.read(proc.stdout.fileno(), 1 << 16):
                text = decoder.decode(chunk)
                if echo is not None:
                    echo.write(text)
                    echo.flush()
                log.write(text)
                tail = (tail + text)[-TAIL_CHARS:]
            code = proc.wait()
        except BaseException:  # Ctrl-C or an error here: never leave the child running
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            proc.stdout.close()
    return code, tail
