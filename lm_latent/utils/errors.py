"""Errors that are the user's input, not a bug: under the ``lm_eval`` command they print as one message.

A missing adapter or a bad data row raised while lm-eval builds the model or the tasks would
otherwise end in a long traceback through lm-eval's internals. :func:`report_cleanly` installs
an ``excepthook`` (only when the stock ``lm_eval`` CLI, ``python -m lm_eval`` or
``lm-latent eval`` is running) that prints ``lm-latent: error: <message>`` for these errors
and leaves every other exception to the previous hook. Library callers still get the exception.
"""

from __future__ import annotations

import sys


class UserError(ValueError):
    """Bad input (an adapter, an argument, a data file); the message says what was found where."""


def under_lm_eval_cli() -> bool:
    """True inside the ``lm_eval`` console script, ``python -m lm_eval`` or ``lm-latent eval``."""
    if "lm_eval.__main__" in sys.modules:
        return True
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "lm_eval.__main__"


def report_cleanly() -> None:
    """Print uncaught :class:`UserError`\\ s as one message (exit status 1) under the lm_eval CLI."""
    previous = sys.excepthook
    if getattr(previous, "_lm_latent", False) or not under_lm_eval_cli():
        return

    def excepthook(kind, value, traceback):
        if isinstance(value, UserError):
            print(f"lm-latent: error: {value}", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    excepthook._lm_latent = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
