"""``lm-latent study``: recipes as package data, validated against lm-latent train's dataclasses, and their plans."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lm_latent.study import main
from lm_latent.study.plan import KNOWN_ARCHS, GPUS, build_plan, stage_commands
from lm_latent.study.recipe import RecipeError, load_recipe, shipped_recipes

PAPER = "token-assorted-llama3.2-3b"
SHIPPED = {PAPER, f"{PAPER}-lora", "demo-quick", "demo"}


def _train_commands(recipe) -> list[list[str]]:
    return [shlex.split(cmd) for _, cmds in stage_commands(recipe) for cmd in cmds if cmd.startswith("lm-latent train")]


def test_list_shows_the_shipped_recipes(capsys):
    assert set(shipped_recipes()) == SHIPPED
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SHIPPED)


def test_paper_recipe_dry_run_offline_in_seconds(tmp_path):
    """The CLI, offline: every stage, its exact commands and estimates, within seconds."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "lm-latent"), "study", PAPER, "--dry-run"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert seconds < 60, f"dry run took {seconds:.0f} s"
    for stage in ("data", "base", "adapter rate 0", "compressor + adapter rate 4", "compressor + adapter rate 16",
                  "compressor + adapter rate 32", "sweep", "report"):
        assert f" {stage}" in out, stage
    assert ("$ python -m lm_latent.study.data meta-math/MetaMathQA --split train --out study_out/data/train.jsonl"
            in out)
    assert "lm-latent train --rate 16 " in out and "--finetune full" in out and "--codebook-size 1024" in out
    assert "--schedule 0,72,128,160,192,224,256" in out and "--epochs 1" in out
    assert "lm-latent sweep --rates 0,4,16,32 --tasks latent_math --model latent-vllm" in out
    assert "max_gen_toks=2048" in out
    assert out.count("estimate:") >= 8 and "GPU-hours" in out and "GB per GPU" in out
    assert "none was measured on a GPU" in out
    assert not list(tmp_path.glob("study_out*")), "a dry run writes nothing"


def test_train_commands_are_lm_latent_train_configs():
    """Each printed train command parses, with lm-latent train's own parser, back into the recipe's config."""
    from lm_latent.training.finetune import check_finetune_flags
    from lm_latent.training.train import build_parser, config_from_args

    for name in (PAPER, f"{PAPER}-lora"):
        recipe = load_recipe(name)
        commands = _train_commands(recipe)
        assert len(commands) == len(recipe.rates) == 4
        for argv, rate in zip(commands, recipe.rates):
            assert argv[:2] == ["lm-latent", "train"]
            cfg = config_from_args(build_parser().parse_args(argv[2:]))
            check_finetune_flags(cfg.finetune, argv[2:])
            assert cfg == replace(recipe.train, rate=rate, out="study_out/adapters", data="study_out/data/train.jsonl")
    paper = load_recipe(PAPER).train
    assert (paper.codebook_size, paper.chunk_len, paper.finetune.mode, paper.finetune.epochs) == (1024, None, "full", 1)
    assert paper.finetune.schedule == (0, 72, 128, 160, 192, 224, 256)
    assert paper.compressor.max_steps == 100_000
    assert load_recipe(f"{PAPER}-lora").train.finetune.mode == "lora"


def test_gpus_override_gives_accelerate_and_vllm_data_parallel():
    recipe = load_recipe(PAPER, ["gpus=8"])
    stages = dict(stage_commands(recipe))
    train = stages["compressor + adapter rate 16"][0]
    assert train.startswith("accelerate launch --multi_gpu --num_processes 8 -m lm_latent.training.train --rate 16")
    assert "data_parallel_size=8" in stages["sweep"][0]
    multi = dict(stage_commands(load_recipe(PAPER, ["gpus=8", "nodes=2"])))
    assert ("--num_processes 16 --num_machines 2 --machine_rank $MACHINE_RANK"
            in multi["adapter rate 0 (CoT baseline)"][0])
    hf = dict(stage_commands(load_recipe(PAPER, ["gpus=2", "eval.model=latent"])))
    assert hf["sweep"][0].startswith("lm-latent sweep --rates 0,4,16,32 --tasks latent_math --model latent "
                                     "--num-processes 2 ")
    split = dict(stage_commands(load_recipe(PAPER, ["gpus=8", "gpus_per_rate=2"])))
    assert split["compressor + adapter rate 4"][0].startswith("accelerate launch --multi_gpu --num_processes 2 -m")
    assert "data_parallel_size=8" in split["sweep"][0]
    tp = dict(stage_commands(load_recipe(PAPER, ["gpus=8", "eval.tensor_parallel_size=2"])))
    assert "tensor_parallel_size=2,data_parallel_size=4" in tp["sweep"][0]


@pytest.mark.parametrize("override, message", [
    ("train.finetune.lerning_rate=1e-5", "train.finetune.lerning_rate: unknown setting"),
    ("train.finetune.learning_rate=fast", "train.finetune.learning_rate: expected a number"),
    ("train.finetune.warmup=0.1", "train.finetune.warmup: lm-latent train has no flag"),
    ("train.finetune.strategy=random", "train.finetune.strategy: 'random' is not one of"),
    ("train.finetune.schedule=0,-5", "train, for rate 4: schedule must be a non-empty list of m >= 0"),
    ("train.chunk_len=6", "train, for rate 4: chunk_len (6) must be a multiple of rate (4)"),
    ("train.codebook_size=0", "codebook_size > 0"),
    ("train.rate=4", "train.rate: set by the study"),
    ("rates=0,abc", "rates: rate must be"),
    ("gpus=0", "gpus: must be >= 1"),
    ("gpus=3", "--global-batch-size 64 must be a positive multiple"),
    ("gpus=8 gpus_per_rate=3", "gpus_per_rate: 3 does not divide gpus (8)"),
    ("gpus=2 eval.tensor_parallel_size=4", "eval.tensor_parallel_size: must be >= 1 and divide gpus (2)"),
    ("train.finetune.lora_r=64", "only apply to --finetune lora"),
    ("bogus=1", "unknown key(s) bogus"),
    ("eval.max_gen_toks=many", "eval.max_gen_toks: expected an integer"),
    ("estimates.gpu=tpu", "estimates.gpu: one of"),
    ("train_flags.--no-such-flag=1", None),  # kept as pending, not an error
])
def test_bad_settings_are_refused_by_name(override, message):
    if message is None:
        recipe = load_recipe(PAPER, [override])
        assert recipe.pending == {"--no-such-flag": "1"}
        return
    with pytest.raises(RecipeError) as info:
        load_recipe(PAPER, override.split())
    assert message in str(info.value)


def test_unknown_recipe_names_the_shipped_ones():
    with pytest.raises(RecipeError, match="unknown recipe 'nope'.*token-assorted-llama3.2-3b"):
        load_recipe("nope")


def test_recipe_from_a_path_reads_a_local_base(tmp_path, tiny_base):
    path = tmp_path / "mine.yaml"
    path.write_text(f"kind: study\nbase: {tiny_base}\ndata: {tmp_path}\nrates: [0, 4]\n"
                    "train: {codebook_size: 32, finetune: {learning_rate: 3.0e-4}}\n"
                    "train_flags: {--lora-r: 8}\n", encoding="utf-8")
    recipe = load_recipe(str(path), ["out=elsewhere"])
    assert recipe.name == "mine" and recipe.train.finetune.lora_r == 8 and recipe.out == "elsewhere"
    stages = build_plan(recipe)
    assert [s.commands for s in stages[:2]] == [[], []]  # local data and base: nothing to download
    assert all(s.gpu_hours is not None for s in stages)  # the architecture came from config.json
    assert "--lora-r 8" in stages[3].commands[0] and "--codebook-size 32" in stages[3].commands[0]


def test_estimates_follow_the_formulas():
    arch = KNOWN_ARCHS["meta-llama/Llama-3.2-3B"]
    assert abs(arch.params - 3.21e9) < 0.01e9  # the published 3.21B
    recipe = load_recipe(PAPER)
    stage = {s.name: s for s in build_plan(recipe)}["adapter rate 0 (CoT baseline)"]
    est = recipe.estimates
    tokens = est.train_samples * est.tokens_per_sample
    # full fine-tuning 6·N·tokens + 2·N·tokens recomputed under gradient checkpointing
    expected = 8 * arch.params * tokens / (GPUS[est.gpu][0] * est.train_mfu) / 3600
    assert stage.gpu_hours == pytest.approx(expected)
    lora = {s.name: s for s in build_plan(load_recipe(f"{PAPER}-lora"))}["adapter rate 0 (CoT baseline)"]
    assert lora.gpu_hours == pytest.approx(expected * 6 / 8)
    assert lora.mem_gb < stage.mem_gb and lora.disk_gb < stage.disk_gb


def test_demo_recipes_are_the_demo_plans(tmp_path, monkeypatch, capsys):
    from lm_latent.demo import run as demo_run
    from lm_latent.demo.plan import FULL, QUICK

    assert load_recipe("demo-quick").demo_plan == QUICK
    assert load_recipe("demo").demo_plan == FULL
    assert load_recipe("demo", ["demo_plan.n_test=30"]).demo_plan == replace(FULL, n_test=30)
    with pytest.raises(RecipeError, match="demo_plan.n_tests: unknown setting"):
        load_recipe("demo", ["demo_plan.n_tests=30"])
    calls = []
    monkeypatch.setattr(demo_run, "run_demo",
                        lambda out, plan, progress=True, restart=False: calls.append((out, plan)) or "r.md")
    assert main(["demo-quick", "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    assert calls == [(str(tmp_path / "d"), QUICK)]
    out = capsys.readouterr().out
    assert "the same run as `lm-latent demo --quick" in out and "lm-latent train --rate 16 " in out
    assert main(["demo", "--dry-run"]) == 0 and len(calls) == 1


@pytest.mark.parametrize("args, message", [
    (["--gpus", "2"], "gpus=2, but this machine has no GPU visible to torch"),
    (["nodes=2"], "a multi-node study runs its commands on every node under SLURM"),
    (["train_flags.--no-such-flag=1"], "this lm-latent train has no --no-such-flag"),
])
def test_what_this_machine_cannot_run_is_refused_before_anything(args, message, capsys, tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a machine with GPUs runs gpus=2")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([PAPER, *args])
    assert info.value.code == 1
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing is written"


@pytest.mark.slow
def test_recipes_ship_in_the_wheel(built_wheel):
    import zipfile

    names = set(zipfile.ZipFile(built_wheel).namelist())
    assert {f"lm_latent/study/recipes/{n}.yaml" for n in SHIPPED} <= names
