"""``lm-latent sweep``: lm-eval once per compression rate, then the table and the chart.

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
import signal
import subprocess
import sys
import time
from pathlib import Path

from lm_latent.adapter.load import AdapterError, parse_rate, resolve_adapter
from lm_latent.utils.fileio import write_json_atomic
from lm_latent.sweep.report import STYLES, collect, latest_results_json, render, table_rows
from lm_latent.utils.run_record import differing_keys

DONE = "DONE.json"
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
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


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
            "lm_eval_args": list(extra), "adapter": adapter_identity(rate, args)}


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
        else:
            lines.append(f"{key}: was {old.get(key)!r}, now {new.get(key)!r}")
    return lines


def _die_with_parent(parent: int):
    """For ``Popen(preexec_fn=...)``: the child gets SIGTERM when the sweep dies, even by SIGKILL."""
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


def run_rate(rate: int, tasks: str, model_args: str, out: Path, extra: list[str],
             model: str = DEFAULT_MODEL) -> tuple[bool, str]:
    """One lm_eval run, streamed line by line to the console and to ``out/lm_eval.log``."""
    out.mkdir(parents=True, exist_ok=True)
    args = f"rate={rate}" + (f",{model_args}" if model_args else "")
    cmd = [sys.executable, "-m", "lm_latent.cli", "eval", "--model", model, "--model_args", args,
           "--tasks", tasks, "--output_path", str(out), *extra]
    if not {"--log_samples", "-s"} & set(extra):  # always: the paired comparisons (sweep.paired) read them
        cmd.append("--log_samples")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the child's lines reach the log as they are written
    with open(out / "lm_eval.log", "w", encoding="utf-8", buffering=1) as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=env, preexec_fn=_die_with_parent(os.getpid()))
        tail: list[str] = []
        try:
            for line in proc.stdout:
                sys.stderr.write(line)
                log.write(line)
                log.flush()
                tail = (tail + [line])[-30:]
            code = proc.wait()
        except BaseException:  # Ctrl-C or an error here: never leave the child running
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return code == 0, "".join(tail)


def _finished(folder: Path) -> dict | None:
    """The ``DONE.json`` of a finished rate whose results file still exists, else ``None``."""
    if not ((folder / DONE).exists() and latest_results_json(folder)):
        return None
    try:
        done = json.loads((folder / DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return done if isinstance(done, dict) else {}


def sweep(rates: list[int], tasks: str, model_args: str, out: str | Path, extra: list[str],
          redo: bool = False, model: str = DEFAULT_MODEL) -> dict:
    """Run every rate not yet finished with these exact settings; refuse other settings unless ``redo``."""
    out = Path(out)
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
        ok, tail = run_rate(rate, tasks, model_args, folder, extra, model)
        result = latest_results_json(folder) if ok else None
        entry = {"ok": bool(ok and result), "seconds": round(time.time() - start, 1)}
        if entry["ok"]:
            entry["results"] = str(result)
            write_json_atomic(folder / DONE, {**entry, "settings": settings[rate]})
        else:
            entry["error"] = tail[-3000:]
            (folder / DONE).unlink(missing_ok=True)
            print(f"[sweep] {label} FAILED (see {folder / 'lm_eval.log'}); continuing", file=sys.stderr)
        status[str(rate)] = entry
        write_json_atomic(status_path, status)
    return status


def _print_table(results_dir: Path) -> None:
    header, body = table_rows(collect(results_dir))
    print(" | ".join(header))
    for line in body:
        print(" | ".join(line))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent sweep", description=__doc__.splitlines()[0],
                                epilog="Any other flag (--limit, --batch_size, --metadata, --log_samples, ...) "
                                       "is passed to lm_eval unchanged.")
    p.add_argument("--rates", default="0,4,16,32", help="comma-separated rates; 0 (or cot) is the CoT baseline")
    p.add_argument("--tasks", default="latent_math")
    p.add_argument("--model_args", default="", help="lm_eval --model_args for every rate (without rate=)")
    p.add_argument("--out", required=True, help="results folder (rate<r>/ per rate, table and chart)")
    p.add_argument("--redo", action="store_true",
                   help="rerun rates that already finished (needed when the settings or the adapters changed)")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=("latent", "latent-vllm"),
                   help="backend: latent (HF generate) or latent-vllm")
    args, extra = p.parse_known_args(argv)
    if any(part.strip().startswith("rate=") for part in args.model_args.split(",")):
        p.error("give rates with --rates, not rate= in --model_args")
    for flag in ("--output_path", "-o", "--tasks"):
        if flag in extra:
            p.error(f"{flag} is set by the sweep itself")
    try:
        rates = _rates(args.rates)
    except ValueError as exc:
        p.error(str(exc))
    try:
        status = sweep(rates, args.tasks, args.model_args, args.out, extra, redo=args.redo, model=args.model)
    except SettingsChanged as exc:
        print(f"lm-latent sweep: error: {exc}", file=sys.stderr)
        return 2
    failed = sorted(int(r) for r, e in status.items() if not e["ok"] and int(r) in rates)
    if collect(args.out):
        paths = render(args.out)
        _print_table(Path(args.out))
        print("wrote " + ", ".join(str(p) for p in paths))
    if failed:
        print(f"failed rates: {failed} (logs in {args.out}/rate<r>/lm_eval.log)", file=sys.stderr)
    return 1 if failed else 0


def plot_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lm-latent plot", description="redraw the table and chart of a sweep")
    p.add_argument("results", help="the sweep's --out folder")
    p.add_argument("--title", default=None)
    p.add_argument("--style", choices=STYLES, default="lines",
                   help="lines (default): the paper's figure, accuracy and tokens as two line series on a linear "
                        "rate axis with CoT as a labelled reference; bars: tokens as bars over evenly spaced rates")
    args = p.parse_args(argv)
    try:
        paths = render(args.results, args.title, args.style)
    except (FileNotFoundError, ValueError) as exc:
        p.exit(2, f"lm-latent plot: error: {exc}\n")
    _print_table(Path(args.results))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
