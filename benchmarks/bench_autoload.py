"""Start-up cost of the lm-latent hook: median wall time of many ``python -c pass`` runs.

    python benchmarks/bench_autoload.py [--runs 60]

Three settings run interleaved in one process, so a busy machine slows them alike:
``hook on`` (default), ``hook off`` (``LM_LATENT_NO_AUTOLOAD=1``: the ``.pth`` line tests
the variable before importing anything) and ``-S`` (no ``site`` at all: the floor).
Also prints what ``-X importtime`` attributes to ``lm_latent`` modules at start-up (the
``.pth`` line imports ``lm_latent`` and ``lm_latent.autoload``, both stdlib-only; nothing of
lm_eval or torch until lm_eval is imported).
Run it on a quiet machine for headline numbers; on a shared one quote the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "hook on": ([], {}),
    "hook off (LM_LATENT_NO_AUTOLOAD=1)": ([], {"LM_LATENT_NO_AUTOLOAD": "1"}),
    "no site (-S)": (["-S"], {}),
}


def _time_once(flags: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *flags, "-c", "pass"], check=True, env=env)
    return time.perf_counter() - start


def _importtime(code: str, env: dict, column: int = 1) -> dict[str, int]:
    """Microseconds per lm_latent module from ``-X importtime`` (column 0: self, 1: cumulative)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, check=True,
                         capture_output=True, text=True).stderr
    found = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2].startswith("lm_latent") and parts[column].isdigit():
            found[parts[2]] = int(parts[column])
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=60, help="runs per setting (default 60)")
    args = p.parse_args(argv)
    # PYTHONDONTWRITEBYTECODE would recompile the hook's source at every start: users get cached .pyc files
    base_env = {k: v for k, v in os.environ.items() if k not in ("LM_LATENT_NO_AUTOLOAD", "PYTHONDONTWRITEBYTECODE")}
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for flags, extra in SETTINGS.values():  # warm the page cache and .pyc files
        _time_once(flags, {**base_env, **extra})
    for _ in range(args.runs):
        for name, (flags, extra) in SETTINGS.items():
            times[name].append(_time_once(flags, {**base_env, **extra}))
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    off = medians["hook off (LM_LATENT_NO_AUTOLOAD=1)"]
    print(f"python {sys.version.split()[0]}, {args.runs} runs per setting, medians of `python -c pass`:")
    for name, ms in medians.items():
        print(f"  {name:<36} {ms:7.2f} ms   ({ms / off:.3f} x hook off)")
    print(f"  hook on - hook off: {medians['hook on'] - off:+.2f} ms")
    at_start = _importtime("pass", base_env)
    print(f"  -X importtime at start-up, lm_latent modules: {at_start or 'none imported'}")
    off_env = {**base_env, "LM_LATENT_NO_AUTOLOAD": "1"}
    runs = [(_importtime("import lm_latent.autoload", off_env, 0), _importtime("import lm_latent.autoload", off_env))
            for _ in range(15)]
    own = statistics.median(r[0].get("lm_latent.autoload", 0) for r in runs) / 1000
    total = statistics.median(r[1].get("lm_latent.autoload", 0) for r in runs) / 1000
    print(f"  import lm_latent.autoload (what the .pth line, and the .start file on Python >= 3.15, cost): its own "
          f"code {own:.2f} ms, {total:.2f} ms with the lm_latent package and the first sys.path scan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
