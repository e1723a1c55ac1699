"""Running a study recipe: data, base, one compressor + adapter per rate, the sweep, the report.

Each stage runs the command the plan prints (``lm-latent study RECIPE --dry-run``), so what a
study does can always be redone by hand. The output folder is bound to the recipe's settings
(``study_state.json``): finished stages are skipped on a rerun, and a rerun with another recipe
or other overrides is refused with the differences before anything runs. The number of GPUs is
not a setting when the recipe gives a global batch size (the result is then the same on 1 or 8
GPUs, so a study may be resumed on another machine); with a per-device batch it is.

GPUs: each rate trains through ``accelerate launch`` on all of the node's GPUs, or, with
``gpus_per_rate``, several rates at once on disjoint sets (``CUDA_VISIBLE_DEVICES``); the sweep
uses every GPU (vLLM data parallelism, or one ``lm_eval`` process per GPU). With no GPU
everything runs in one process at a time, as the demo does. Several nodes: the commands are
run per node under SLURM (``docs/scale.md``), not by this driver.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from lm_latent.study.plan import data_file, launcher_argv, gpus_for_each_rate, sweep_argv, train_argv
from lm_latent.study.recipe import Recipe
from lm_latent.utils.children import run_logged
from lm_latent.utils.fileio import exclusive_lock, hash_file
from lm_latent.utils.run_record import StageState

__all__ = ["StudyError", "run_study", "settings_record"]

STATE = "study_state.json"
LOCK = ".study.lock"
EXIT_STOPPED = 3  # lm-latent train: stopped, checkpointed; a rerun resumes
# TrainConfig fields that say how a run goes, not what it trains
_RUN_ONLY = ("out", "progress", "restart", "overwrite", "stop_at_step", "work_dir", "keep_work")


class StudyError(RuntimeError):
    """The study cannot go on; the message says why and what to do."""


def settings_record(recipe: Recipe) -> dict:
    """What a study's numbers depend on: the recipe's name and every training and evaluation setting."""
    train = {k: v for k, v in asdict(recipe.train).items() if k not in _RUN_ONLY}
    record: dict[str, object] = {"recipe": recipe.name, "base": recipe.base, "data": recipe.data,
                                 "rates": list(recipe.rates), "train": train, "eval": asdict(recipe.eval)}
    if recipe.train.finetune.global_batch_size is None:  # a per-device batch: the process count sets the batch
        record["train_processes"] = recipe.train_world_size
    return json.loads(json.dumps(record))  # tuples as lists: equal to the record read back


def _flat(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_diff(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every setting that differs, dotted as overrides are written."""
    a, b = _flat(old), _flat(new)
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def hardware() -> dict:
    """The machine, as the report names it."""
    info: dict[str, object] = {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
                               "cpus": os.cpu_count()}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        info["memory_gib"] = round(kb / 1024 ** 2, 1)
    except (OSError, StopIteration, ValueError):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


class State(StageState):
    """``study_state.json``: the settings record, each finished stage with its wall time, and the runs."""

    def __init__(self, out: Path, record: dict) -> None:
        def refuse(old: dict) -> Exception | None:
            diff = settings_diff(old.get("settings", {}), record)
            if not diff:
                return None
            return StudyError(f"{out} holds a study made with other settings:\n  " + "\n  ".join(diff) +
                              "\nNothing was run. Use another --out, or --restart to discard that study.")

        super().__init__(out / STATE, "settings", record, refuse)
        self.data.setdefault("runs", [])


def say(text: str) -> None:
    print(f"[study] {text}", file=sys.stderr, flush=True)


def _python(argv: list[str]) -> list[str]:
    """A printed command (``lm-latent train``, ``accelerate launch``, ``lm-latent sweep``) run with this Python."""
    if argv[:2] == ["accelerate", "launch"]:
        return [sys.executable, "-m", "accelerate.commands.launch", *argv[2:]]
    return [sys.executable, "-m", "lm_latent.cli", *argv[1:]] if argv[0] == "lm-latent" else argv


def _check_hardware(recipe: Recipe) -> int:
    """GPUs this run uses (0: the CPU, one process); refuses what this machine cannot run, before anything."""
    if recipe.pending:
        raise StudyError(f"this lm-latent train has no {', '.join(recipe.pending)}: the recipe cannot run here "
                         f"(remove the train_flags entry)")
    if recipe.nodes > 1:
        raise StudyError(f"nodes={recipe.nodes}: a multi-node study runs its commands on every node under SLURM "
                         f"(docs/scale.md); `lm-latent study {recipe.source} --dry-run nodes={recipe.nodes}` "
                         f"prints them")
    found = visible_gpus()
    if found == 0:
        if recipe.gpus > 1:
            raise StudyError(f"gpus={recipe.gpus}, but this machine has no GPU visible to torch; drop the gpus "
                             f"setting to run everything on the CPU, one process at a time")
        return 0
    if recipe.gpus > found:
        raise StudyError(f"gpus={recipe.gpus}, but torch sees {found} GPU(s) here (CUDA_VISIBLE_DEVICES?)")
    return recipe.gpus


# --- stages -----------------------------------------------------------------------------------------------

def stage_data(recipe: Recipe, state: State, progress: bool) -> dict:
    """The training data as a local file (a hub dataset is written once), checked against the recorded sha256."""
    local = data_file(recipe)
    if local is None:
        path = Path(recipe.data).expanduser()
        if path.is_dir():
            raise StudyError(f"data={recipe.data} is a folder: give a .jsonl/.json file or a hub dataset id")
    else:
        path = local
        if not (state.done("data") and path.is_file()):
            say(f"data: {recipe.data} (split {recipe.train.split}) -> {path}")
            from lm_latent.study.data import download_rows

            try:
                download_rows(recipe.data, recipe.train.split, path, progress=progress)
            except Exception as exc:  # the hub, the network, a gated or missing dataset: one line, then stop
                raise StudyError(f"could not read the dataset {recipe.data} (split {recipe.train.split}): "
                                 f"{type(exc).__name__}: {exc}") from exc
    digest = hash_file(path).hexdigest()
    recorded = state.data["stages"].get("data", {}).get("sha256")
    if recorded and recorded != digest:
        raise StudyError(f"{path} changed since this study read it (sha256 {recorded[:12]}... now {digest[:12]}...); "
                         f"its adapters were trained on the old bytes. Restore the file, or --restart")
    return {"path": str(path), "sha256": digest}


def stage_base(recipe: Recipe) -> None:
    if Path(recipe.base).expanduser().exists():
        return
    say(f"base: downloading {recipe.base} (original/* excluded)")
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(recipe.base, ignore_patterns=["original/*"])
    except Exception as exc:  # gated (accept the licence, hf auth login), offline, misspelt
        raise StudyError(f"could not download the base {recipe.base}: {type(exc).__name__}: {exc}") from exc


def adapter_done(recipe: Recipe, rate: int) -> bool:
    from lm_latent.adapter.config import LATENT_CONFIG_NAME

    return (Path(recipe.out) / "adapters" / f"rate{rate}" / LATENT_CONFIG_NAME).is_file()


def train_command(recipe: Recipe, rate: int, gpus: int, slot: int, progress: bool) -> list[str]:
    processes = gpus_for_each_rate(recipe) if gpus else 1
    launch = launcher_argv(processes, port=29500 + slot if processes > 1 else None)
    argv = train_argv(recipe, rate) + ([] if progress else ["--no-progress"])
    if launch:
        return _python([*launch, "-m", "lm_latent.training.train", *argv])
    return [sys.executable, "-m", "lm_latent.training.train", *argv]


def gpu_sets(gpus: int, per_rate: int, visible: str | None = None) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` of each slot: disjoint sets of ``per_rate`` GPUs (none on a CPU machine).

    ``visible``: the user's own ``CUDA_VISIBLE_DEVICES``, whose ids the sets are drawn from.
    """
    if not gpus:
        return [""]
    ids = [i.strip() for i in visible.split(",")] if visible else [str(i) for i in range(gpus)]
    return [",".join(ids[slot * per_rate + i] for i in range(per_rate)) for slot in range(max(1, gpus // per_rate))]


def stage_adapters(recipe: Recipe, state: State, gpus: int, progress: bool) -> None:
    """Every rate not yet trained: one at a time, or several at once on disjoint GPU sets."""
    todo = [r for r in recipe.rates if not adapter_done(recipe, r)]
    for rate in recipe.rates:
        if rate not in todo:
            say(f"adapter rate {rate}: trained earlier, skipped")
    sets = gpu_sets(gpus, gpus_for_each_rate(recipe), os.environ.get("CUDA_VISIBLE_DEVICES"))
    slots = len(sets)
    logs = Path(recipe.out) / "logs"
    times: list[float] = []

    def one(rate: int, slot: int) -> tuple[int, int, str, float]:
        env = {"CUDA_VISIBLE_DEVICES": sets[slot]} if gpus else {}
        cmd = train_command(recipe, rate, gpus, slot, progress)
        say(f"adapter rate {rate}: $ {shlex.join(cmd)}" + (f"  (GPUs {env['CUDA_VISIBLE_DEVICES']})" if env else ""))
        start = time.perf_counter()
        code, tail = run_logged(cmd, logs / f"train_rate{rate}.log", env=env,
                                echo=sys.stderr if slots == 1 else None)
        return rate, code, tail, time.perf_counter() - start

    def after(rate: int, code: int, tail: str, seconds: float) -> None:
        log = logs / f"train_rate{rate}.log"
        if code == EXIT_STOPPED:
            raise StudyError(f"lm-latent train for rate {rate} stopped, checkpointed (see {log}); rerun the study "
                             f"to resume it")
        if code != 0 or not adapter_done(recipe, rate):
            raise StudyError(f"lm-latent train for rate {rate} failed with exit code {code}; its log is {log}. "
                             f"Last lines:\n{tail[-1500:]}\nRerun the study to resume")
        times.append(seconds)
        state.finish(f"adapter {rate}", seconds)
        left = len(todo) - len(times)
        eta = f"; ETA for the {left} left: ~{sum(times) / len(times) * left / slots / 60:.0f} min" if left else ""
        say(f"adapter rate {rate}: finished in {seconds / 60:.1f} min{eta}")

    if slots == 1:
        for rate in todo:
            after(*one(rate, 0))
        return
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=slots) as pool:
        free, queue = list(range(slots)), list(todo)
        running: dict = {}
        while queue or running:
            while queue and free:
                slot, rate = free.pop(0), queue.pop(0)
                running[pool.submit(one, rate, slot)] = slot
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                free.append(running.pop(future))
                after(*future.result())


def stage_sweep(recipe: Recipe, gpus: int) -> None:
    """``lm-latent sweep`` on the recipe's first ``gpus`` GPUs (its lm_eval children inherit the choice)."""
    from lm_latent.sweep.run import main as sweep_main

    argv = sweep_argv(recipe)
    say("sweep: lm-latent sweep " + shlex.join(argv))
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_sets(gpus, gpus, before)[0]
    try:
        code = sweep_main(argv)
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
    if code != 0:
        raise StudyError(f"lm-latent sweep exited with {code} (logs in {Path(recipe.out) / 'results'}/rate<r>/"
                         f"lm_eval.log); rerun the study to retry the failed rates")


def wall_estimates(recipe: Recipe) -> dict[str, float]:
    """Hours of wall time per driver stage on the recipe's GPUs, from the plan's estimates (FLOP counts, not
    measurements); empty when the base's architecture is unknown."""
    from lm_latent.study.plan import build_plan

    hours: dict[str, float] = {}
    for stage in build_plan(recipe):
        if stage.gpu_hours is None:
            return {}
        key = "adapters" if stage.trains_a_rate else stage.name
        hours[key] = hours.get(key, 0.0) + stage.wall_hours(recipe.world_size)
    return hours


def run_study(recipe: Recipe, progress: bool = True, restart: bool = False) -> Path:
    """Run every unfinished stage of ``recipe`` into ``recipe.out``; returns the report's path."""
    import shutil

    from lm_latent.study.report import write_report

    gpus = _check_hardware(recipe)
    out = Path(recipe.out)
    if restart and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out / LOCK, f"study folder {out}"):
        state = State(out, settings_record(recipe))
        run = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "hardware": hardware(), "gpus": gpus,
               "overrides": recipe.overrides, "source": recipe.source}
        state.data["runs"].append(run)
        state.save()
        total = time.perf_counter()
        runners = {"base": lambda: stage_base(recipe),
                   "adapters": lambda: stage_adapters(recipe, state, gpus, progress),
                   "sweep": lambda: stage_sweep(recipe, gpus)}
        stages = ["data", "base", "adapters", "sweep", "report"]
        estimates = wall_estimates(recipe) if gpus else {}  # the FLOP-count estimates are for GPUs
        for i, stage in enumerate(stages, 1):
            if state.done(stage) and stage not in ("data", "report"):  # data: its hash is checked every run
                say(f"stage {i}/{len(stages)} {stage}: done earlier, skipped")
                continue
            hours = estimates.get(stage)
            say(f"stage {i}/{len(stages)} {stage} ..." + (f" (estimate from FLOP counts: ~{hours:.1f} h on "
                                                           f"{recipe.gpus} GPU(s))" if hours else ""))
            start = time.perf_counter()
            run["seconds"] = round(start - total, 1)  # the report shows this run's time so far
            if stage == "data":
                first = state.data["stages"].get("data", {}).get("seconds")  # a rerun keeps the download's time
                info = stage_data(recipe, state, progress)
                state.finish("data", time.perf_counter() - start if first is None else first, **info)
            elif stage == "report":
                report = write_report(recipe, state.data)
                state.finish("report", time.perf_counter() - start)
            else:
                runners[stage]()
                state.finish(stage, time.perf_counter() - start)
            say(f"stage {i}/{len(stages)} {stage}: finished in {time.perf_counter() - start:.0f} s")
        run["seconds"] = round(time.perf_counter() - total, 1)
        state.save()
    say(f"done in {time.perf_counter() - total:.0f} s this run; report: {report}")
    return report
