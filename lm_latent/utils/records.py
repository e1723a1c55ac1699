"""The one reader of local ``.jsonl`` / ``.json`` data files (benchmark and training data).

Every problem is one :class:`DataFileError` naming the file, the line (or list item) and
the field: broken JSON, a row that is not an object, a missing field, an empty file,
bytes that are not UTF-8. A UTF-8 byte-order mark is accepted (editors on Windows add one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lm_latent.utils.errors import UserError


class DataFileError(UserError):
    """A local data file cannot be used; the message says where and why."""


class Rows(list):
    """Rows of one file, each with its location (``file:line`` or ``file, item i``) for messages."""

    def __init__(self, rows: list[dict], locations: list[str], path: Path):
        super().__init__(rows)
        self.locations = locations
        self.path = path

    def where(self, index: int) -> str:
        return self.locations[index]


_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
         b"\xfe\xff": "UTF-16"}


def _decode(path: Path, data: bytes) -> str:
    for bom, name in _BOMS.items():
        if data.startswith(bom):
            raise DataFileError(f"{path}: the file is {name}-encoded (byte-order mark found); "
                                f"save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataFileError(f"{path}:{line}: byte {data[exc.start:exc.start + 1]!r} at column {column} "
                            f"is not UTF-8; save the file as UTF-8") from None


def read_records(path: str | os.PathLike) -> Rows:
    """Objects of a ``.jsonl`` file (one per line, blank lines skipped) or a ``.json`` list."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DataFileError(f"{path} is a folder, not a .jsonl/.json file") from None
    text = _decode(path, data)
    if not text.strip():
        raise DataFileError(f"{path}: the file is empty (expected one JSON object per line"
                            f"{'' if path.suffix == '.jsonl' else ', or a JSON list of objects'})")
    if path.suffix == ".json" or (path.suffix != ".jsonl" and text.lstrip().startswith("[")):
        return _read_json_list(path, text)
    rows, locations = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno}): "
                                f"{_clip(line)}") from None
        if not isinstance(row, dict):
            raise DataFileError(f"{path}:{n}: expected a JSON object ({{...}}), found {type(row).__name__}: "
                                f"{_clip(line)}")
        rows.append(row)
        locations.append(f"{path}:{n}")
    return Rows(rows, locations, path)


def _read_json_list(path: Path, text: str) -> Rows:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(rows, list):
        raise DataFileError(f"{path}: expected a JSON list of objects, found {type(rows).__name__}")
    if not rows:
        raise DataFileError(f"{path}: the JSON list is empty")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataFileError(f"{path}, item {i}: expected a JSON object, found {type(row).__name__}")
    return Rows(rows, [f"{path}, item {i}" for i in range(len(rows))], path)


def _clip(text: str, width: int = 80) -> str:
    text = text.strip()
    return text if len(text) <= width else text[:width] + "..."


def row_error(where: str, row: dict, exc: Exception, what: str = "row") -> DataFileError:
    """A clear error for a row that a converter could not use (missing field, wrong type)."""
    if isinstance(exc, KeyError):
        field = exc.args[0] if exc.args else "?"
        return DataFileError(f"{where}: {what} has no field {field!r} (fields found: {sorted(row)})")
    return DataFileError(f"{where}: cannot use this {what} ({type(exc).__name__}: {exc}); "
                         f"fields found: {sorted(row)}")
