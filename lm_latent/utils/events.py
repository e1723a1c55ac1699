"""Named points in long jobs that an observer can act on at the exact moment they are reached.

Production code only announces where it is (``reached("commit:rate4")``); it never decides
what happens there. The kill-and-resume tests register an observer (``tests/faults``) that
SIGKILLs a real ``lm-latent train`` at one point, as a power cut would. Without observers a
point costs one empty loop.

Points: ``lock:held``; ``commit:NAME`` (an atomic directory fully written, not yet renamed);
``compressor:done``; ``adapter:done``; ``STAGE:trainer`` (a Trainer is built; context
``trainer=``, for observers that need its steps or saves); ``STAGE:record:N`` (checkpoint-N
written, its settings record not yet).
"""

from __future__ import annotations

from typing import Any, Callable

Observer = Callable[[str, dict], None]
_observers: list[Observer] = []


def observe(observer: Observer) -> Observer:
    """Call ``observer(point, context)`` at every point reached from now on in this process."""
    if observer not in _observers:
        _observers.append(observer)
    return observer


def reached(point: str, **context: Any) -> None:
    """Announce ``point`` to the observers (none in production)."""
    for observer in list(_observers):
        observer(point, context)
