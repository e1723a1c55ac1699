"""Merged checkpoints for ``--model latent-vllm``, cached under ``$LM_LATENT_HOME/merged/<key>``.

vLLM cannot load a LoRA adapter that adds tokens, so the adapter is merged into a plain
checkpoint first (the same :func:`lm_latent.adapter.export.write_merged` as ``lm-latent export``).
The key hashes the *content* of the adapter and of the base (sha256 of their files, kept in
a small index by path, size and mtime so a 6 GB base is hashed once), plus the dtype. An
entry is written atomically (scratch directory renamed on success, ``merge.json`` inside it
last) and used only when ``merge.json`` lists every file with its sha256 (hashed once, at write)
and every file still has its recorded size and stamp (mtime, inode): a stat per file on each
use. A file whose stamp changed is hashed again, and a mismatch makes the entry unusable (it is
rebuilt). ``lm-latent cache verify`` re-hashes every file (a 6 GiB entry: one read of 6 GiB,
seconds to a minute). One process merges while the others wait on a file lock (``fcntl.flock``);
a process using an entry holds a shared lock on it, and ``cache clear`` skips such entries.

    lm-latent cache list              # entries, sizes, what they were merged from
    lm-latent cache verify [KEY ...]  # re-hash every file of every (or the given) entry
    lm-latent cache clear [KEY ...]   # remove all entries (or the given ones), except those in use
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import struct
import sys
import time
from pathlib import Path
from typing import Iterator

from lm_latent.adapter.load import COMPRESSOR_DIR, HOME_ENV
from lm_latent.utils.fileio import atomic_directory, explain_disk_full, hash_file, write_json_atomic

logger = logging.getLogger(__name__)

MERGE_FORMAT = 1  # bump when write_merged's output changes: old entries then miss
ENTRY_RECORD = "merge.json"
HASH_INDEX = ".hash_index.json"
_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_TARGET_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# what a merge reads, including every weight format from_pretrained may fall back to (a .bin base's
# weights are part of the key, so replacing them never reuses a stale merge)
_WEIGHT_FILES = (".safetensors", ".json", ".model", ".txt", ".jinja", ".bin", ".pt", ".pth", ".ckpt", ".h5",
                 ".msgpack", ".gguf")


class MergeCacheError(RuntimeError):
    """The merged copy cannot be made (e.g. not enough disk): the message says what to do."""


def cache_root() -> Path:
    home = os.environ.get(HOME_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "lm_latent")
    return Path(home) / "merged"


def _content_files(folder: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or (rel.parts and rel.parts[0] in skip):
            continue
        if path.is_file() and path.name.endswith(_WEIGHT_FILES):
            files.append(path)
    return files


def _file_sha256(path: Path, index: dict) -> str:
    real = os.path.realpath(path)
    st = os.stat(real)
    stamp = [st.st_size, st.st_mtime_ns]
    cached = index.get(real)
    if cached and cached[:2] == stamp:
        return cached[2]
    index[real] = [*stamp, hash_file(real).hexdigest()]
    return index[real][2]


def content_hash(folder: str | os.PathLike, skip: tuple[str, ...] = (), index: dict | None = None) -> str:
    """sha256 over (relative name, sha256 of content) of the files a merge reads in ``folder``."""
    folder = Path(folder)
    index = {} if index is None else index
    digest = hashlib.sha256()
    files = _content_files(folder, skip)
    if not files:
        raise MergeCacheError(f"{folder} holds no model files (safetensors/json) to merge from")
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + _file_sha256(path, index).encode() + b"\n")
    return digest.hexdigest()


def local_base(base: str) -> Path:
    """A local directory for ``base`` (hub ids are fetched into, or found in, the HF cache)."""
    path = Path(base).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(base, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt",
                                                            "*.jinja"]))
    except Exception as exc:
        raise MergeCacheError(f"base model {base!r}: not a local directory and not fetchable from the "
                              f"Hugging Face hub ({exc})") from exc


def estimate_merged_bytes(base_dir: Path, dtype: str, extra_rows: int = 0) -> int:
    """Bytes the merged safetensors will take: every base tensor at the target dtype, plus new rows."""
    total, hidden, tied = 0, 0, True
    config = base_dir / "config.json"
    if config.is_file():
        cfg = json.loads(config.read_text(encoding="utf-8"))
        hidden, tied = int(cfg.get("hidden_size") or 0), bool(cfg.get("tie_word_embeddings", True))
    width = 4
    for path in base_dir.glob("*.safetensors"):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for d in info["shape"]:
                count *= d
            stored = _DTYPE_BYTES.get(info["dtype"], 4)
            width = _TARGET_BYTES.get(dtype, stored)
            total += count * width
    return total + extra_rows * hidden * width * (1 if tied else 2)


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_disk(where: Path, need: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    margin = 64 << 20
    if free < need + margin:
        raise MergeCacheError(
            f"not enough disk for the merged checkpoint: it needs about {_size(need)} in {where}, "
            f"but only {_size(free)} is free. Free some space (`lm-latent cache clear` removes old "
            f"merged copies), or set {HOME_ENV} to a directory on a larger disk.")


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def entry_problem(entry: Path, full: bool = False) -> str | None:
    """Why ``entry`` may not be used (None: it may). ``merge.json`` must list every file with its
    sha256; a file whose size, mtime or inode differs from the record is re-hashed (``full``: every file)."""
    try:
        record = json.loads((entry / ENTRY_RECORD).read_text(encoding="utf-8"))
        files, hashes, stamps = record["files"], record["sha256"], record.get("stamps") or {}
    except (OSError, ValueError, KeyError, TypeError):
        return f"no complete {ENTRY_RECORD} (half-written, or made by an older lm-latent)"
    if not files or not isinstance(hashes, dict) or set(files) != set(hashes):
        return f"{ENTRY_RECORD} lists no sha256 for some files"
    present = {str(p.relative_to(entry)) for p in entry.rglob("*") if p.is_file()} - {ENTRY_RECORD}
    if present != set(files):
        return f"files differ from the record: {sorted(present ^ set(files))[:5]}"
    for name, size in files.items():
        path = entry / name
        try:
            stamp = _stamp(path)
        except OSError:
            return f"{name} is missing"
        if stamp[0] != size:
            return f"{name} has {stamp[0]} bytes, recorded {size}"
        if (full or stamps.get(name) != stamp) and hash_file(path).hexdigest() != hashes[name]:
            return f"{name} does not match its recorded sha256 (damaged or changed after the merge)"
    return None


def entry_is_complete(entry: Path, full: bool = False) -> bool:
    """Only an entry whose files match their recorded sha256 (see :func:`entry_problem`) is used."""
    return entry_problem(entry, full) is None


_IN_USE: dict[str, int] = {}  # entry path -> fd holding a shared flock for this process's lifetime


def _use_lock(root: Path, key: str) -> Path:
    return root / f".{key}.inuse"


def hold(entry: Path) -> None:
    """Mark ``entry`` as in use by this process (a shared lock, released when the process ends or by
    :func:`release`); ``cache clear`` then skips it."""
    if str(entry) in _IN_USE:
        return
    fd = os.open(_use_lock(entry.parent, entry.name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _IN_USE[str(entry)] = fd


def release(entry: Path) -> None:
    fd = _IN_USE.pop(str(entry), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def _locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_key(adapter: Path, base_dir: Path, dtype: str, root: Path) -> tuple[str, dict]:
    index_path = root / HASH_INDEX
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    before = dict(index)
    adapter_hash = content_hash(adapter, skip=(COMPRESSOR_DIR,), index=index)
    base_hash = content_hash(base_dir, index=index)
    if index != before:
        write_json_atomic(index_path, index)
    parts = {"format": MERGE_FORMAT, "adapter_sha256": adapter_hash, "base_sha256": base_hash, "dtype": dtype}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
    return key, parts


def merged_checkpoint(adapter: str | os.PathLike, base: str, dtype: str = "auto", extra_rows: int = 0,
                      root: str | os.PathLike | None = None, in_use: bool = False) -> Path:
    """The cached merged checkpoint of ``adapter`` on ``base`` (built once, under a lock).

    ``in_use``: keep a shared lock on the entry for this process's lifetime (``--model latent-vllm``),
    so ``lm-latent cache clear`` never removes it under a running engine.
    """
    from lm_latent.adapter.export import write_merged

    adapter = Path(adapter)
    root = Path(root) if root is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    base_dir = local_base(base)
    key, parts = merge_key(adapter, base_dir, dtype, root)
    entry = root / key
    if in_use:
        hold(entry)  # before the check: a clear running now finishes first, and we then rebuild
    problem = entry_problem(entry)
    if problem and entry.exists():
        logger.warning("lm-latent: merged checkpoint %s is not usable (%s); merging again", entry, problem)
    if problem:
        lock = root / f".{key}.lock"
        start = time.perf_counter()
        with _locked(lock, blocking=False) as got:
            waited = not got
        if waited:
            logger.info("lm-latent: another process is merging into %s; waiting for it", entry)
        with _locked(lock):
            if not entry_is_complete(entry):  # the other process may have finished it meanwhile
                need = estimate_merged_bytes(base_dir, dtype, extra_rows)
                check_disk(root, need)
                logger.info("lm-latent: merging adapter %s into base %s (dtype %s, about %s) -> %s",
                            adapter, base, dtype, _size(need), entry)
                with explain_disk_full(root, "the merged checkpoint", need), \
                        atomic_directory(entry, overwrite=True) as tmp:
                    write_merged(adapter, tmp, base=str(base), dtype=dtype)
                    written = sorted(p for p in tmp.rglob("*") if p.is_file())
                    files = {str(p.relative_to(tmp)): p.stat().st_size for p in written}
                    hashes = {str(p.relative_to(tmp)): hash_file(p).hexdigest() for p in written}  # once, at write
                    stamps = {str(p.relative_to(tmp)): _stamp(p) for p in written}  # kept by the rename
                    write_json_atomic(tmp / ENTRY_RECORD, {
                        **parts, "key": key, "adapter": str(adapter.resolve()), "base": str(base),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "merge_seconds": round(time.perf_counter() - start, 1), "files": files,
                        "sha256": hashes, "stamps": stamps})
    logger.info("lm-latent: merged checkpoint %s (%.1f MiB on disk; `lm-latent cache list|clear`)",
                entry, dir_bytes(entry) / 2**20)
    return entry


def list_entries(root: Path | None = None) -> list[dict]:
    root = root or cache_root()
    rows: list[dict] = []
    if not root.is_dir():
        return rows
    for entry in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            record = json.loads((entry / ENTRY_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        rows.append({"key": entry.name, "path": str(entry), "bytes": dir_bytes(entry),
                     "complete": entry_is_complete(entry), "adapter": record.get("adapter", "?"),
                     "base": record.get("base", "?"), "dtype": record.get("dtype", "?"),
                     "created": record.get("created", "?")})
    return rows


def clear(keys: list[str] | None = None, root: Path | None = None) -> tuple[list[str], list[str]]:
    """Remove entries (all, or ``keys``) and leftover scratch dirs; skip ones being written now."""
    root = root or cache_root()
    removed: list[str] = []
    busy: list[str] = []
    if not root.is_dir():
        return removed, busy
    for entry in sorted(p for p in root.iterdir() if p.is_dir()):
        key = entry.name.lstrip(".").split(".")[0]
        if keys and key not in keys:
            continue
        with _locked(root / f".{key}.lock", blocking=False) as got, \
                _locked(_use_lock(root, key), blocking=False) as unused:
            if not (got and unused):
                busy.append(key)
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    if not keys:
        (root / HASH_INDEX).unlink(missing_ok=True)
    return removed, busy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent cache", description="the merged checkpoints of --model latent-vllm")
    sub = p.add_subparsers(dest="action", required=True, help="what to do with the cache")
    sub.add_parser("list", help="entries, sizes and what each was merged from")
    v = sub.add_parser("verify", help="re-hash every file of every entry (or the given keys) against its record")
    v.add_argument("keys", nargs="*", help="entries to check (default: all)")
    c = sub.add_parser("clear", help="remove all entries, or the given keys")
    c.add_argument("keys", nargs="*", help="entries to remove (default: all; see lm-latent cache list)")
    args = p.parse_args(argv)
    root = cache_root()
    if args.action == "list":
        rows = list_entries(root)
        if not rows:
            print(f"no merged checkpoints in {root}")
            return 0
        for r in rows:
            state = "" if r["complete"] else "  NOT USABLE (incomplete or damaged; never used, rebuilt on next use)"
            print(f"{r['key']}  {r['bytes'] / 2**20:9.1f} MiB  {r['dtype']:<8} {r['created']}  "
                  f"adapter={r['adapter']}  base={r['base']}{state}")
        print(f"total {sum(r['bytes'] for r in rows) / 2**20:.1f} MiB in {root}")
        return 0
    if args.action == "verify":
        bad = 0
        for r in list_entries(root):
            if args.keys and r["key"] not in args.keys:
                continue
            problem = entry_problem(Path(r["path"]), full=True)
            bad += problem is not None
            print(f"{r['key']}  {'ok' if problem is None else 'BAD: ' + problem}")
        return 1 if bad else 0
    removed, busy = clear(args.keys or None, root)
    print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} from {root}")
    if busy:
        print(f"skipped (in use or being written by another process): {', '.join(busy)}", file=sys.stderr)
    missing = [k for k in args.keys if k not in {r.lstrip('.').split('.')[0] for r in removed} and k not in busy]
    if missing:
        print(f"no such entries: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def generation_eos(checkpoint) -> int | list[int] | None:
    """The EOS id(s) a checkpoint's ``generation_config.json`` names, which vLLM also stops on."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(str(checkpoint)).eos_token_id
    except OSError:  # no generation_config.json: vLLM then stops on the tokenizer's EOS only
        return None
