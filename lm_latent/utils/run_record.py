"""Continue earlier work only under the same settings: the one check behind every "rerun resumes".

Work that outlives a process (a training work directory, each Trainer checkpoint, a finished
compressor, a finished adapter, a finished sweep rate, a half-trained demo base model) carries
the settings its result depends on, as a JSON object (the *record*). A rerun reuses that work
only when its own record is identical; otherwise the caller refuses with the differing keys,
or sets the work aside. Stdlib only: the sweep imports it without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Mapping

from lm_latent.utils.fileio import write_json_atomic

__all__ = ["SettingsMismatch", "StageState", "check_settings", "differing_keys", "read_settings", "same_settings",
           "settings_digest"]


class SettingsMismatch(ValueError):
    """Recorded work was made with other settings; the message names the keys that differ."""


def read_settings(path: str | os.PathLike) -> dict | None:
    """The record at ``path``; None when it is missing, not JSON, or not an object."""
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def differing_keys(old: Mapping, new: Mapping) -> list[str]:
    """Top-level keys whose values differ (a key missing on one side differs); empty: the same."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def same_settings(path: str | os.PathLike, record: Mapping) -> bool:
    """Whether ``path`` holds exactly ``record``."""
    return read_settings(path) == record


def settings_digest(record: Mapping) -> str:
    """A stable hash of a record (key order does not matter), for metadata that names its settings."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()


def check_settings(path: str | os.PathLike, record: Mapping, *, what: str, remedy: str, write: bool = True) -> bool:
    """Record ``record`` at ``path`` on first use; afterwards demand the same record.

    Returns True when ``path`` already holds ``record`` (resume), False when there was no
    record (it is written atomically when ``write``). Raises :class:`SettingsMismatch` --
    "``what`` with different settings (differs in [...]). ``remedy``" -- when it holds another
    one, or a file that cannot be read as a record.
    """
    path = Path(path)
    if not path.is_file():
        if write:
            write_json_atomic(path, dict(record))
        return False
    old = read_settings(path)
    if old is None:
        raise SettingsMismatch(f"{what} whose settings record {path} cannot be read. {remedy}")
    if old != record:
        raise SettingsMismatch(f"{what} with different settings (differs in {differing_keys(old, record)}). "
                               f"{remedy}")
    return True


class StageState:
    """A multi-stage job's progress file (the demo's, a study's): its settings, each finished stage's wall time.

    ``refuse(old)`` looks at a progress file already there and returns the error to raise when it
    belongs to other settings (None: resume it).
    """

    def __init__(self, path: str | os.PathLike, key: str, record: Mapping,
                 refuse: Callable[[dict], Exception | None]) -> None:
        self.path = Path(path)
        self.data: dict = {key: dict(record), "stages": {}}
        if self.path.is_file():
            old = json.loads(self.path.read_text(encoding="utf-8"))
            error = refuse(old)
            if error is not None:
                raise error
            self.data = old

    def done(self, stage: str) -> bool:
        return stage in self.data["stages"]

    def finish(self, stage: str, seconds: float, **info) -> None:
        self.data["stages"][stage] = {"seconds": round(seconds, 1), **info}
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.data)
