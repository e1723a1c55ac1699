"""``lm-latent sweep``: lm-eval once per compression rate, then the table and the chart.

    lm-latent sweep --rates 0,4,16,32 --tasks gsm8k,math --model_args pretrained=... --out results/ [lm_eval flags]

Each rate runs in its own ``lm_eval`` process (``results/rate<r>/``, with its log); a rate that
fails is reported and the others go on; rerunning continues where an interrupted sweep stopped
(finished rates are skipped unless ``--redo``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from .adapter import parse_rate
from .fileio import write_json_atomic
from .report import collect, latest_results_json, render, table_rows

DONE = "DONE.json"


def _rates(text: str) -> list[int]:
    return [parse_rate(part) for part in text.split(",") if part.strip()]


def run_rate(rate: int, tasks: str, model_args: str, out: Path, extra: list[str],
             model: str = "latent") -> tuple[bool, str]:
    """One lm_eval run, streamed to the console and to ``out/lm_eval.log``."""
    out.mkdir(parents=True, exist_ok=True)
    args = f"rate={rate}" + (f",{model_args}" if model_args else "")
    cmd = [sys.executable, "-m", "lm_latent.cli", "eval", "--model", model, "--model_args", args,
           "--tasks", tasks, "--output_path", str(out), *extra]
    with open(out / "lm_eval.log", "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        tail: list[str] = []
        for line in proc.stdout:
            sys.stderr.write(line)
            log.write(line)
            tail = (tail + [line])[-30:]
        code = proc.wait()
    return code == 0, "".join(tail)


def sweep(rates: list[int], tasks: str, model_args: str, out: str | Path, extra: list[str],
          redo: bool = False, model: str = "latent") -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    status_path = out / "sweep_status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    for i, rate in enumerate(rates, 1):
        folder = out / f"rate{rate}"
        label = "CoT baseline" if rate == 0 else f"rate {rate}"
        if not redo and (folder / DONE).exists() and latest_results_json(folder):
            print(f"[sweep {i}/{len(rates)}] {label}: already done, skipped ({folder})", file=sys.stderr)
            continue
        print(f"[sweep {i}/{len(rates)}] {label}: running lm_eval ...", file=sys.stderr)
        start = time.time()
        ok, tail = run_rate(rate, tasks, model_args, folder, extra, model=model)
        result = latest_results_json(folder) if ok else None
        entry = {"ok": bool(ok and result), "seconds": round(time.time() - start, 1)}
        if entry["ok"]:
            entry["results"] = str(result)
            write_json_atomic(folder / DONE, entry)
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
    p.add_argument("--tasks", default="gsm8k,math")
    p.add_argument("--model_args", default="", help="lm_eval --model_args for every rate (without rate=)")
    p.add_argument("--out", required=True, help="results folder (rate<r>/ per rate, table and chart)")
    p.add_argument("--redo", action="store_true", help="rerun rates that already finished")
    p.add_argument("--model", default="latent", choices=("latent", "latent-vllm"),
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
    status = sweep(rates, args.tasks, args.model_args, args.out, extra, redo=args.redo, model=args.model)
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
    args = p.parse_args(argv)
    try:
        paths = render(args.results, args.title)
    except (FileNotFoundError, ValueError) as exc:
        p.exit(2, f"lm-latent plot: error: {exc}\n")
    _print_table(Path(args.results))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
