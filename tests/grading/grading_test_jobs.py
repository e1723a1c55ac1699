"""Worker jobs for tests/grading/test_worker.py: a comparison that hangs, one that kills the worker.

Loaded only inside a test's own grading worker, through ``_SympyWorker(jobs_module=...)``
(the worker imports this module by name; pytest puts ``tests/`` on ``sys.path`` and the
spawned worker inherits it). Production workers know only ``"single"`` and ``"multi"``.
"""

from __future__ import annotations

import os
import time


def sleep(seconds) -> bool:
    """A comparison that does not finish within any test's budget."""
    time.sleep(float(seconds))
    return True


def crash(_payload) -> bool:
    """The worker process dies mid-comparison, as a segfault or the OOM killer would end it."""
    os._exit(70)


JOBS = {"sleep": sleep, "crash": crash}
