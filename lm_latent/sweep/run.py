"""lm-latent sweep: lm-eval once per compression rate, then the table and the chart.

    lm-latent sweep --rates 0,4,16,32 --tasks latent_math --model_args pretrained=... --out results/ [lm_eval flags]

Each rate runs in its own ``lm_eval`` process (``results/rate<r>/``, with its log streamed as it
goes); a rate that fails is reported and the others go on. The child dies with the sweep (a
parent-death signal on Linux), so a killed sweep never leaves an ``lm_eval`` racing its rerun.

Rerunning continues where an interrupted sweep stopped. Each finished rate records the settings
that produced it (tasks, model, ``--model_args``, the other lm_eval flags, and the adapter's path
and content hash); it is skipped only when they match exactly. Every rate logs its samples
(``--log_samples``, added where not given: it changes no result, so it is not part of the
settings): the table compares each rate with rate 0 on the same documents (``sweep.paired``).
A rerun with other settings is refused with the differences, before anything runs; ``--redo``
runs every rate again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from lm_latent.adapter.load import AdapterError, parse_rate, resolve_adapter
from lm_latent.utils.fileio import LockedError, exclusive_lock, hash_file, write_json_atomic, write_text_atomic
from lm_latent.sweep.report import STYLES, collect, latest_results_json, render, table_rows
from lm_latent.utils.children import run_logged
from lm_latent.utils.run_record import differing_keys

DONE = "DONE.json"
SELECTION = "sweep_selection.json"  # which rates the table and chart show, and why the others are left out
LOCK = ".sweep.lock"
OUTPUTS = ("results.md", "results.csv", "chart.png", "chart.svg")
DEFAULT_MODEL = "latent"


class SettingsChanged(RuntimeError):
    """Finished rates in ``--out`` came from other settings; the message lists what differs."""


def _rates(text: str) -> list[int]:
    return [parse_rate(part) for part in text.split(",") if part.strip()]


def parse_model_args(text: str) -> dict[str, str]:
    """``a=1,b=x`` -> ``{"a": "1", "b": "x"}`` (as lm-eval splits ``--model_args``)."""
    out = {}
    for part in text.split(","):
        if part.strip():
            key, _, value = part.partition("=")
            out[key.strip()] = value.strip()
    return out


def hash_directory(path: str | os.PathLike) -> str:
    """sha256 over every file's relative path and bytes: the adapter's identity, not its name."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        hash_file(file, digest)
        digest.update(b"\0")
    return digest.hexdigest()


_HASHES: dict[tuple, str] = {}


def _hash_folder_once(path: Path) -> str:
    """The base's content hash: the files a model load reads, each hashed once per size and mtime (the
    merge cache's index, shared with ``--model latent``'s results config), so a 6 GiB base is read in
    full once, not at every sweep."""
    from lm_latent.models.setup import base_identity as recorded_base

    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file())
    key = (str(path), stamp)
    if key not in _HASHES:
        _HASHES[key] = recorded_base(str(path))["latent_base_sha256"]
    return _HASHES[key]


def _metadata_data_dir(extra: list[str]) -> str | None:
    """``data_dir`` from the ``--metadata`` passed to lm_eval (JSON or ``k=v,...``), if any."""
    for i, arg in enumerate(extra):
        if arg == "--metadata" and i + 1 < len(extra):
            text = extra[i + 1]
        elif arg.startswith("--metadata="):
            text = arg.split("=", 1)[1]
        else:
            continue
        try:
            meta = json.loads(text)
        except ValueError:
            meta = parse_model_args(text)
        if isinstance(meta, dict) and meta.get("data_dir") is not None:
            return str(meta["data_dir"])
    return None


def data_identity(tasks: str, model_args: dict[str, str], extra: list[str]) -> dict:
    """Where the benchmark rows come from and a sha256 of the files read (as the tasks resolve it:
    ``--metadata data_dir``, a ``data_dir`` model argument, then ``$LM_LATENT_DATA_DIR``)."""
    from lm_latent.tasks.benchmarks import BENCHMARKS, DATA_DIR_ENV

    value = _metadata_data_dir(extra)
    if value is None:
        value = model_args.get("data_dir") or os.environ.get(DATA_DIR_ENV, "").strip() or None
    if not value:
        return {"source": "public"}  # the pinned public sources; nothing local to hash
    root = Path(value).expanduser().resolve()
    names = [t.strip().removeprefix("latent_math_") for t in tasks.split(",") if t.strip()]
    benches = [BENCHMARKS[n] for n in names if n in BENCHMARKS]
    if len(benches) != len(names):  # the group (latent_math) or other names: every benchmark file
        benches = list(BENCHMARKS.values())
    digest = hashlib.sha256()
    files = []
    for bench in sorted(benches, key=lambda b: b.local_file):
        path = root / bench.local_file
        if not path.is_file():
            continue
        files.append(bench.local_file)
        digest.update(bench.local_file.encode() + b"\0")
        hash_file(path, digest)
        digest.update(b"\0")
    return {"source": str(root), "files": files, "sha256": digest.hexdigest()}


def base_identity(rate: int, model_args: dict[str, str]) -> dict:
    """The base the child will load for ``rate`` (``pretrained=`` or the adapter's ``latent.json``):
    a local folder with its content hash, or a hub id with the revision asked for."""
    from lm_latent.adapter.config import LatentConfig
    from lm_latent.adapter.load import resolve_base

    try:
        adapter = resolve_adapter(rate, model_args.get("adapter") or None, model_args.get("adapters") or None)
        base = resolve_base(LatentConfig.from_pretrained(adapter), adapter, model_args.get("pretrained") or None)
    except (AdapterError, OSError, ValueError) as exc:
        return {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    path = Path(base).expanduser()
    if path.is_dir():
        return {"path": str(path.resolve()), "sha256": _hash_folder_once(path.resolve())}
    return {"id": base, "revision": model_args.get("revision") or None}


def adapter_identity(rate: int, model_args: dict[str, str]) -> dict:
    """Path and content hash of the adapter the child will load for ``rate`` (or why there is none)."""
    try:
        path = resolve_adapter(rate, model_args.get("adapter") or None, model_args.get("adapters") or None)
    except AdapterError as exc:
        return {"error": str(exc).splitlines()[0]}
    return {"path": str(Path(path).resolve()), "sha256": hash_directory(path)}


def rate_settings(rate: int, tasks: str, model_args: str, extra: list[str], model: str = DEFAULT_MODEL) -> dict:
    """Everything that decides one rate's result; recorded in ``rate<r>/DONE.json``."""
    args = parse_model_args(model_args)
    return {"rate": rate, "model": model, "tasks": tasks, "model_args": dict(sorted(args.items())),
            "lm_eval_args": list(extra), "adapter": adapter_identity(rate, args),
            "base": base_identity(rate, args), "data": data_identity(tasks, args, extra)}


def settings_diff(old: dict | None, new: dict) -> list[str]:
    """Human-readable differences between recorded and current settings (empty: an exact match)."""
    if not old:
        return ["no settings recorded (finished by an older lm-latent)"]
    lines = []
    for key in differing_keys(old, new):
        if key == "adapter":
            was, now = old.get(key) or {}, new.get(key) or {}
            if was.get("path") != now.get("path"):
                lines.append(f"adapter: was {was.get('path') or was.get('error')}, "
                             f"now {now.get('path') or now.get('error')}")
            else:
                lines.append(f"adapter {now.get('path')}: its files changed (sha256 {str(was.get('sha256'))[:12]} "
                             f"-> {str(now.get('sha256'))[:12]})")
        elif key in ("base", "data") and isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            was, now = old[key], new[key]
            where_was = was.get("path") or was.get("id") or was.get("source") or was.get("error")
            where_now = now.get("path") or now.get("id") or now.get("source") or now.get("error")
            if where_was != where_now:
                lines.append(f"{key}: was {where_was}, now {where_now}")
            else:
                lines.append(f"{key} {where_now}: its files changed (sha256 {str(was.get('sha256'))[:12]} -> "
                             f"{str(now.get('sha256'))[:12]})")
        else:
            lines.append(f"{key}: was {old.get(key)!r}, now {new.get(key)!r}")
    return lines


def run_rate(rate: int, tasks: str, model_args: str, out: Path, extra: list[str],
             model: str = DEFAULT_MODEL, processes: int = 1) -> tuple[bool, str]:
    """One lm_eval run, its output streamed as it comes to the console and to ``out/lm_eval.log``.

    ``processes`` > 1: lm-eval's data parallelism, one process per GPU through ``accelerate launch``
    (``--model latent`` uses the launcher's ranks; the results equal one process's).
    """
    out.mkdir(parents=True, exist_ok=True)
    args = f"rate={rate}" + (f",{model_args}" if model_args else "")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
              "-m"] if processes > 1 else [sys.executable, "-m"]
    cmd = [*launch, "lm_latent.cli", "eval", "--model", model, "--model_args", args,
           "--tasks", tasks, "--output_path", str(out), *extra]
    if not {"--log_samples", "-s"} & set(extra):  # always: the paired comparisons (sweep.paired) read them
        cmd.append("--log_samples")
    code, tail = run_logged(cmd, out / "lm_eval.log")
    return code == 0, tail


def _finished(folder: Path) -> dict | None:
    """The ``DONE.json`` of a finished rate whose results file still exists, else ``None``."""
    if not ((folder / DONE).exists() and latest_results_json(folder)):
        return None
    try:
        done = json.loads((folder / DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return done if isinstance(done, dict) else {}


def select_rates(out: Path, rates: list[int], settings: dict[int, dict], status: dict) -> tuple[list[int], dict]:
    """The rates the table and chart may show: asked for in this run, finished, and recorded with exactly
    this run's settings (model arguments, lm_eval flags, adapter, base and data, by content). Every other
    ``rate<r>/`` folder is left out with the reason."""
    found = {int(f.name[4:]) for f in out.glob("rate*") if f.is_dir() and f.name[4:].isdigit()}
    included, excluded = [], {}
    for rate in sorted(found | set(rates)):
        folder = out / f"rate{rate}"
        if rate not in rates:
            if latest_results_json(folder):
                excluded[rate] = "not among this run's --rates"
            continue
        done = _finished(folder)
        if done is None:
            entry = status.get(str(rate)) or {}
            excluded[rate] = ("failed in this run (see " + str(folder / "lm_eval.log") + ")"
                              if entry and not entry.get("ok") else "not finished (no DONE.json)")
            continue
        diff = settings_diff(done.get("settings"), settings[rate])
        if diff:
            excluded[rate] = "made with other settings: " + "; ".join(diff)
        else:
            included.append(rate)
    return included, excluded


def _write_selection(out: Path, included: list[int], excluded: dict) -> None:
    write_json_atomic(out / SELECTION, {"included": included,
                                        "excluded": {str(r): why for r, why in excluded.items()}})


def _note_excluded(out: Path, excluded: dict) -> None:
    """Name the left-out rates under the table, so nobody reads results.md as the whole folder."""
    path = out / "results.md"
    if excluded and path.exists():
        lines = [f"- rate {r}: {why}" for r, why in sorted(excluded.items())]
        write_text_atomic(path, path.read_text(encoding="utf-8") + "\nLeft out of this table and the chart:\n"
                          + "\n".join(lines) + "\n")


def publish(out: Path, included: list[int], excluded: dict, title: str | None = None,
            style: str = "lines") -> list[Path]:
    """Table and chart of ``included`` only; with none, the old table and chart are removed (never stale)."""
    _write_selection(out, included, excluded)
    if not included:
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
        return []
    paths = render(out, title, style, rates=included)
    _note_excluded(out, excluded)
    return paths


def sweep(rates: list[int], tasks: str, model_args: str, out: str | Path, extra: list[str],
          redo: bool = False, model: str = DEFAULT_MODEL, processes: int = 1) -> dict:
    """Run every rate not yet finished with these exact settings; refuse other settings unless ``redo``.

    ``out`` is locked for the whole sweep (a second sweep on it is refused, naming this one). The
    table and chart are rebuilt from the rates whose records match this run (``sweep_selection.json``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out / LOCK, f"sweep folder {out}"):
        return _sweep_locked(rates, tasks, model_args, out, extra, redo, model, processes)


def _sweep_locked(rates: list[int], tasks: str, model_args: str, out: Path, extra: list[str],
                  redo: bool, model: str, processes: int = 1) -> dict:
    settings = {rate: rate_settings(rate, tasks, model_args, extra, model) for rate in rates}
    skip, changed = set(), []
    for rate in rates:
        done = None if redo else _finished(out / f"rate{rate}")
        if done is None:
            continue
        diff = settings_diff(done.get("settings"), settings[rate])
        if diff:
            changed.append(f"  rate {rate} ({out / f'rate{rate}'}):\n" + "\n".join(f"    {d}" for d in diff))
        else:
            skip.add(rate)
    if changed:
        raise SettingsChanged(f"{out} holds results made with other settings:\n" + "\n".join(changed) + "\n"
                              "Nothing was run. Pass --redo to run these rates again with the new settings "
                              "(replacing the old results), or choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    status_path = out / "sweep_status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    for i, rate in enumerate(rates, 1):
        folder = out / f"rate{rate}"
        label = "CoT baseline" if rate == 0 else f"rate {rate}"
        if rate in skip:
            print(f"[sweep {i}/{len(rates)}] {label}: already done with the same settings, skipped ({folder})",
                  file=sys.stderr)
            continue
        (folder / DONE).unlink(missing_ok=True)  # a kill from here on leaves the rate unfinished
        print(f"[sweep {i}/{len(rates)}] {label}: running lm_eval ...", file=sys.stderr)
        start = time.time()
        ok, tail = run_rate(rate, tasks, model_args, folder, extra, model, processes)
        result = latest_results_json(folder) if ok else None
        entry: dict[str, object] = {"ok": bool(ok and result), "seconds": round(time.time() - start, 1)}
        if entry["ok"]:
            entry["results"] = str(result)
            write_json_atomic(folder / DONE, {**entry, "settings": settings[rate]})
        else:
            entry["error"] = tail[-3000:]
            (folder / DONE).unlink(missing_ok=True)
            print(f"[sweep] {label} FAILED (see {folder / 'lm_eval.log'}); continuing", file=sys.stderr)
        status[str(rate)] = entry
        write_json_atomic(status_path, status)
    included, excluded = select_rates(out, rates, settings, status)
    publish(out, included, excluded)
    for rate, why in sorted(excluded.items()):
        print(f"[sweep] rate {rate} left out of the table and chart: {why}", file=sys.stderr)
    return status


def _print_table(results_dir: Path, rates=None) -> None:
    header, body = table_rows(collect(results_dir, rates))
    print(" | ".join(header))
    for line in body:
        print(" | ".join(line))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent sweep", description=__doc__.splitlines()[0],
                                epilog="Any other flag (--limit, --batch_size, --metadata, --log_samples, ...) "
                                       "is passed to lm_eval unchanged. The rule: the plugin's own flags are "
                                       "kebab-case; flags that lm_eval receives keep lm-eval's spelling "
                                       "(--model_args, --batch_size).")
    p.add_argument("--rates", default="0,4,16,32", help="comma-separated rates; 0 (or cot) is the CoT baseline")
    p.add_argument("--tasks", default="latent_math",
                   help="lm_eval --tasks for every rate (default: latent_math, the seven-benchmark group)")
    p.add_argument("--model_args", default="", help="lm_eval --model_args for every rate (without rate=)")
    p.add_argument("--out", required=True, help="results folder (rate<r>/ per rate, table and chart)")
    p.add_argument("--redo", action="store_true",
                   help="rerun rates that already finished (needed when the settings or the adapters changed)")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=("latent", "latent-vllm"),
                   help="backend: latent (HF generate) or latent-vllm")
    p.add_argument("--num-processes", type=int, default=1, metavar="N",
                   help="--model latent: N data-parallel lm_eval processes per rate (accelerate launch, one per "
                        "GPU); the results equal one process's, so this is not part of the recorded settings")
    args, extra = p.parse_known_args(argv)
    if args.num_processes < 1:
        p.error(f"--num-processes must be >= 1, got {args.num_processes}")
    if args.num_processes > 1 and args.model != "latent":
        p.error("--num-processes is for --model latent; latent-vllm spreads over GPUs with "
                "--model_args data_parallel_size=N")
    if any(part.strip().startswith("rate=") for part in args.model_args.split(",")):
        p.error("give rates with --rates, not rate= in --model_args")
    for flag in ("--output_path", "-o", "--tasks"):
        if flag in extra:
            p.error(f"{flag} is set by the sweep itself")
    try:
        rates = _rates(args.rates)
    except ValueError as exc:
        p.error(str(exc))
    if "--use_cache" in extra or any(a.startswith("--use_cache=") for a in extra):
        p.error("--use_cache is refused: lm-eval's response cache keys on the prompt, not on --model_args, so "
                "every rate after the first would report the first rate's answers. Finished rates are already "
                "skipped on a rerun (same settings); drop --use_cache")
    try:
        status = sweep(rates, args.tasks, args.model_args, args.out, extra, redo=args.redo, model=args.model,
                       processes=args.num_processes)
    except (SettingsChanged, LockedError) as exc:
        print(f"lm-latent sweep: error: {exc}", file=sys.stderr)
        return 2
    failed = sorted(int(r) for r, e in status.items() if not e["ok"] and int(r) in rates)
    included = (_read_selection(Path(args.out)) or {}).get("included")
    if included:
        _print_table(Path(args.out), included)
        print("wrote " + ", ".join(str(Path(args.out) / name) for name in OUTPUTS))
    if failed:
        print(f"failed rates: {failed} (logs in {args.out}/rate<r>/lm_eval.log)", file=sys.stderr)
    return 1 if failed else 0


def _read_selection(out: Path) -> dict | None:
    """What the last sweep into ``out`` allowed into its table (None: no sweep recorded one)."""
    try:
        data = json.loads((out / SELECTION).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plot_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent plot", description="redraw the table and chart of a sweep")
    p.add_argument("--out", dest="out", default=None, help="the sweep's --out folder (results.md, chart.png)")
    p.add_argument("results", nargs="?", default=None, help=argparse.SUPPRESS)  # 0.1.0 spelling: a positional
    p.add_argument("--title", default=None, help="chart title (default: the tasks' names)")
    p.add_argument("--style", choices=STYLES, default="lines",
                   help="lines (default): the paper's figure, accuracy and tokens as two line series on a linear "
                        "rate axis with CoT as a labelled reference; bars: tokens as bars over evenly spaced rates")
    args = p.parse_args(argv)
    if args.results is not None:
        if args.out is not None:
            p.error("give the folder once, as --out")
        print(f"lm-latent plot: the folder is now --out (lm-latent plot --out {args.results}); "
              "the positional spelling goes in the next release", file=sys.stderr)
        args.out = args.results
    if args.out is None:
        p.error("the following arguments are required: --out")
    args.results = args.out
    selection = _read_selection(Path(args.results))
    rates = selection.get("included") if selection else None
    try:
        if selection is not None:
            if not rates:
                raise FileNotFoundError(f"the last sweep into {args.results} left every rate out "
                                        f"({SELECTION}): {selection.get('excluded')}")
            paths = publish(Path(args.results), rates, {int(k): v for k, v in selection.get("excluded", {}).items()},
                            args.title, args.style)
        else:
            paths = render(args.results, args.title, args.style)
    except (FileNotFoundError, ValueError) as exc:
        p.exit(2, f"lm-latent plot: error: {exc}\n")
    _print_table(Path(args.results), rates)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
