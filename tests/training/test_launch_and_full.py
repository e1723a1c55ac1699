"""Issue 28: one process per GPU (never DataParallel), global batch semantics, ``--finetune full``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from lm_latent.training.launch import batch_plan, launch_refusal  # noqa: E402
from lm_latent.training.train import main  # noqa: E402
from train_runs import evaluate_two_problems, train_args, write_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARGV = ["--rate", "16", "--out", "adapters dir"]


# -- item 1: the launch decision (a pure function of device count and environment) --------------------------

@pytest.mark.parametrize("count", [0, 1])
def test_one_or_no_gpu_trains_in_this_process(count):
    assert launch_refusal(count, {}, ARGV) is None


@pytest.mark.parametrize("env", [{"LOCAL_RANK": "0", "WORLD_SIZE": "4"}, {"WORLD_SIZE": "1"}, {"LOCAL_RANK": "1"}])
def test_a_distributed_launcher_is_trusted(env):
    assert launch_refusal(8, env, ARGV) is None


@pytest.mark.parametrize("env", [{}, {"LOCAL_RANK": ""}, {"RANK": "0"}, {"ACCELERATE_MIXED_PRECISION": "bf16"}])
def test_several_gpus_in_one_process_are_refused_with_the_command(env):
    msg = launch_refusal(4, env, ARGV)
    assert msg is not None and "DataParallel" in msg and "CUDA_VISIBLE_DEVICES=0" in msg
    assert ("accelerate launch --num_processes 4 -m lm_latent.training.train --rate 16 --out 'adapters dir'"
            in msg)


def test_train_refuses_several_gpus_before_loading_anything(tmp_path: Path, monkeypatch, capsys):
    """``main`` with 2 (pretended) GPUs stops at once: the base and the data do not even exist."""
    for name in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    argv = ["--rate", "4", "--base", str(tmp_path / "no-base"), "--data", str(tmp_path / "no.jsonl"),
            "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "accelerate launch --num_processes 2 -m lm_latent.training.train --rate 4 --base" in err
    assert not (tmp_path / "out").exists()


def test_python_dash_m_entry_point_runs():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "lm_latent.training.train", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--global-batch-size" in proc.stdout and "--finetune" in proc.stdout


# -- item 3: global batch -------------------------------------------------------------------------------------

def test_batch_plan():
    assert batch_plan(1, 8, 8) == batch_plan(1, 8, 8, None)
    assert batch_plan(2, 8, 8).global_batch == 128  # without a global batch: the old per-device semantics
    for world in (1, 2, 4, 8):
        plan = batch_plan(world, 8, 3, 64)
        assert plan.per_device * plan.grad_accum * world == 64 and plan.per_device <= 8
    assert (batch_plan(1, 8, 1, 64).per_device, batch_plan(1, 8, 1, 64).grad_accum) == (8, 8)
    assert (batch_plan(4, 8, 1, 64).per_device, batch_plan(4, 8, 1, 64).grad_accum) == (8, 2)
    assert (batch_plan(3, 4, 1, 18).per_device, batch_plan(3, 4, 1, 18).grad_accum) == (3, 2)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        batch_plan(3, 8, 1, 64)
    assert "global batch 64 = 8 per device x 2 accumulation x 4" in batch_plan(4, 8, 1, 64).describe()


def test_training_arguments_follow_the_world_size(monkeypatch, tmp_path: Path):
    from lm_latent.training.finetune import FinetuneConfig, training_arguments

    cfg = FinetuneConfig(batch_size=4, grad_accum=5, global_batch_size=16)
    monkeypatch.setenv("WORLD_SIZE", "1")
    a = training_arguments(cfg, tmp_path)
    assert (a.per_device_train_batch_size, a.gradient_accumulation_steps) == (4, 4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    plan_2 = __import__("lm_latent.training.finetune", fromlist=["x"]).batch_plan_for(cfg)
    assert (plan_2.per_device, plan_2.grad_accum) == (4, 2)
    monkeypatch.delenv("WORLD_SIZE")
    b = training_arguments(FinetuneConfig(batch_size=4, grad_accum=5), tmp_path)
    assert (b.per_device_train_batch_size, b.gradient_accumulation_steps) == (4, 5)


def test_old_runs_keep_their_settings_record():
    """New settings at their defaults leave the run record as it was (old work directories resume)."""
    from lm_latent.training.train import TrainConfig, _record

    rec = _record(TrainConfig(rate=4))
    assert "mode" not in rec["finetune"] and "global_batch_size" not in rec["finetune"]
    full = _record(TrainConfig(rate=4, finetune=__import__("lm_latent.training.finetune", fromlist=["x"])
                               .FinetuneConfig(mode="full", global_batch_size=8)))
    assert full["finetune"]["mode"] == "full" and full["finetune"]["global_batch_size"] == 8


# -- item 2: --finetune full ----------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, word", [(("--lora-r", "16"), "--lora-r"), (("--lora-alpha=8",), "--lora-alpha")])
def test_full_with_lora_flags_is_refused_before_loading(tmp_path: Path, extra, word, capsys):
    argv = ["--rate", "4", "--base", str(tmp_path / "no-base"), "--data", str(tmp_path / "no.jsonl"),
            "--out", str(tmp_path / "out"), "--finetune", "full", *extra]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--finetune full" in err and word in err and "does not exist" not in err


@pytest.fixture(scope="module")
def full_adapter(tmp_path_factory, tiny_base) -> Path:
    root = tmp_path_factory.mktemp("full")
    data = write_data(root / "train.jsonl", n=80)
    assert main(train_args(tiny_base, data, root / "adapters", "--finetune", "full", steps=4)) == 0
    return root / "adapters" / "rate4"


def test_full_finetune_writes_a_whole_checkpoint(full_adapter: Path, tiny_base: Path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from lm_latent.adapter.load import attach_adapter, check_adapter, check_adapter_weights

    cfg = check_adapter(full_adapter, rate=4)
    raw = json.loads((full_adapter / "latent.json").read_text())
    assert raw["finetune"] == "full" and raw["format_version"] == 2 and cfg.finetune == "full"
    names = {p.name for p in full_adapter.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "latent.json", "compressor"} <= names
    assert "adapter_config.json" not in names and "adapter_model.safetensors" not in names
    assert cfg.metrics["finetune_steps"] == 4 and cfg.training["finetune"]["mode"] == "full"
    saved = load_file(str(full_adapter / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in saved.values())  # fp32 on CPU
    assert "model.embed_tokens.weight" in saved and saved["model.embed_tokens.weight"].shape[0] == cfg.vocab_size
    assert check_adapter_weights(full_adapter)["model.embed_tokens.weight"][0] == cfg.vocab_size
    # Every weight moved (not only new rows): a full fine-tune, and it reloads exactly onto the base.
    base = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = attach_adapter(base, full_adapter, cfg)
    moved = [k for k, v in model.state_dict().items() if k in before and v.shape == before[k].shape
             and not torch.equal(v, before[k])]
    assert len(moved) >= len([k for k in before if k.endswith("proj.weight")])
    for k, v in saved.items():
        assert torch.equal(model.state_dict()[k], v), k


def test_full_finetune_refuses_a_truncated_checkpoint(full_adapter: Path, tmp_path: Path, tiny_base: Path):
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from lm_latent.adapter.load import AdapterError, attach_adapter, check_adapter

    copy = tmp_path / "rate4"
    shutil.copytree(full_adapter, copy)
    state = load_file(str(copy / "model.safetensors"))
    state.pop("model.norm.weight")
    save_file(state, str(copy / "model.safetensors"), metadata={"format": "pt"})
    base = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32)
    with pytest.raises(AdapterError, match="lacks 1 weight"):
        attach_adapter(base, copy, check_adapter(copy))
    (copy / "model.safetensors").unlink()
    with pytest.raises(AdapterError, match="model.safetensors"):
        check_adapter(copy)


@pytest.mark.slow
def test_full_finetune_evaluates_and_exports(full_adapter: Path, tiny_base: Path, tmp_path: Path):
    """``--model latent`` and ``lm-latent export`` take the full fine-tune unchanged, with the same greedy output."""
    pytest.importorskip("lm_latent.models.latent_hf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.adapter.export import export
    from lm_latent.models.latent_hf import LatentLM

    evaluate_two_problems(full_adapter, tiny_base, tmp_path)

    merged = export(full_adapter, tmp_path / "merged")
    lm = LatentLM(pretrained=str(tiny_base), rate=4, adapter=str(full_adapter), device="cpu", max_gen_toks=8)
    tok = AutoTokenizer.from_pretrained(str(merged))
    plain = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    ids = tok("Ann has 3 apples", return_tensors="pt").input_ids
    with torch.no_grad():
        a = plain.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        b = lm.model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(a, b)


# -- item 3: one process and two processes, same global batch -----------------------------------------------

def _launch(tmp_path: Path, base: Path, data: Path, out: Path, rate: int, processes: int) -> dict:
    import os
    import shutil
    import subprocess
    import sys

    args = train_args(base, data, out, "--batch-size", "4", "--global-batch-size", "8", rate=rate, steps=6)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    for name in ("LOCAL_RANK", "WORLD_SIZE", "RANK"):
        env.pop(name, None)
    if processes == 1:
        cmd = [sys.executable, "-m", "lm_latent.training.train", *args]
    else:
        accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
        if accelerate is None:
            pytest.skip("accelerate's console script is not installed")
        # --multi_gpu on a machine without GPUs: torchrun workers that join a gloo group (see test_train.py).
        cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
               "-m", "lm_latent.training.train", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    log = proc.stderr
    accum = 2 if processes == 1 else 1
    assert f"global batch 8 = 4 per device x {accum} accumulation x {processes} process(es)" in log
    return json.loads((out / f"rate{rate}" / "latent.json").read_text())


@pytest.mark.slow
def test_two_processes_take_the_same_steps_and_end_with_the_same_adapter(tmp_path: Path, tiny_base: Path):
    """Global batch 8: one process (4 x 2 accumulation) and two gloo processes (4 x 1 each) take the same
    optimizer steps on the same samples. At rate 0 the LoRA adapters agree to 1e-6 (they came out bit for
    bit equal here: DDP averages the same per-token gradient sum; only the summation order may differ).
    At rate 4 too: k-means init and dead-code replacement draw from the gathered global batch on every
    rank (lm_latent.adapter.compressor), as one process draws. The codebook then agrees to ~1e-7 and the
    other compressor weights to ~5e-5 (Adam scales the float-order differences of the all-reduced sums);
    the codes agree, so the LoRA adapters came out bit for bit equal. Before, vector-quantize-pytorch
    sampled per rank: codebooks 0.38 apart, adapters 0.03.
    """
    from safetensors.torch import load_file

    data = write_data(tmp_path / "train.jsonl", n=120)
    one = _launch(tmp_path, tiny_base, data, tmp_path / "one", 0, 1)
    two = _launch(tmp_path, tiny_base, data, tmp_path / "two", 0, 2)
    assert one["metrics"]["finetune_steps"] == two["metrics"]["finetune_steps"] == 6
    assert (one["training"]["num_processes"], two["training"]["num_processes"]) == (1, 2)
    assert one["training"]["global_batch"] == two["training"]["global_batch"] == 8
    a = load_file(str(tmp_path / "one" / "rate0" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "rate0" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert any(v.abs().max() > 0 for k, v in a.items() if "lora_B" in k)
    assert abs(one["metrics"]["final_loss"] - two["metrics"]["final_loss"]) < 1e-4

    one4 = _launch(tmp_path, tiny_base, data, tmp_path / "one", 4, 1)
    two4 = _launch(tmp_path, tiny_base, data, tmp_path / "two", 4, 2)
    for m in (one4["metrics"], two4["metrics"]):
        assert (m["compressor_steps"], m["finetune_steps"]) == (6, 6)
    a = load_file(str(tmp_path / "one" / "rate4" / "compressor" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "rate4" / "compressor" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        atol = 1e-5 if k.startswith("quantizer.") else 1e-4
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)
    a = load_file(str(tmp_path / "one" / "rate4" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "rate4" / "adapter_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    for key in ("recon_accuracy", "codebook_usage", "codebook_perplexity"):
        assert one4["metrics"][key] == two4["metrics"][key], key


# -- item 4: trace codes encoded once, on the training device, cached with the settings record --------------

def test_resume_past_the_compressor_reads_the_cached_codes(tmp_path: Path, tiny_base: Path, monkeypatch):
    import lm_latent.training.train_compressor as tc
    from accelerate import PartialState

    from lm_latent.training.train import EXIT_INTERRUPTED

    data = write_data(tmp_path / "train.jsonl", n=80)
    args = train_args(tiny_base, data, tmp_path / "out", rate=4, steps=4)
    encode = tc.encode_traces
    devices = []

    def spy(model, samples, **kw):
        devices.append(model.device)
        return encode(model, samples, **kw)

    monkeypatch.setattr(tc, "encode_traces", spy)
    # Stops in the compressor at step 2, then (rerun) finishes it, encodes, and stops fine-tuning at step 2.
    assert main([*args, "--stop-at-step", "2"]) == EXIT_INTERRUPTED
    assert devices == []
    assert main([*args, "--stop-at-step", "2"]) == EXIT_INTERRUPTED
    assert devices == [PartialState().device]  # once, on the training device (the CPU here)
    cache = tmp_path / "out" / ".work" / "rate4" / "compressor" / tc.CODES_DIR
    from lm_latent.training.checkpoints import RECORD_NAME

    assert {p.name for p in cache.iterdir()} == {tc.CODES_FILE, RECORD_NAME}

    def refuse(*a, **kw):
        raise AssertionError("a resumed run past the compressor must not encode the traces again")

    monkeypatch.setattr(tc, "encode_traces", refuse)
    assert main(args) == 0
    assert (tmp_path / "out" / "rate4" / "latent.json").is_file()


def test_cached_codes_of_other_samples_are_not_used(tmp_path: Path):
    import numpy as np

    import lm_latent.training.train_compressor as tc

    np.savez(tmp_path / tc.CODES_FILE, codes=np.zeros((3, 2), np.int32), counts=np.asarray([1, 2]))
    assert [c.shape for c in tc._read_codes(tmp_path, [1, 2], 2)] == [(1, 2), (2, 2)]
    assert tc._read_codes(tmp_path, [2, 1, 0], 2) is None
    assert tc._read_codes(tmp_path, [1, 2], 4) is None
    assert tc._read_codes(tmp_path / "nope", [1, 2], 2) is None


def test_check_launch_for_a_config_built_in_python():
    from lm_latent.training.finetune import FinetuneConfig
    from lm_latent.training.train import TrainConfig, check_launch

    cfg = TrainConfig(rate=4, finetune=FinetuneConfig(max_steps=3))  # max_steps has no flag
    check_launch(cfg, device_count=1, env={})
    check_launch(cfg, device_count=8, env={"WORLD_SIZE": "8", "LOCAL_RANK": "3"})
    with pytest.raises(ValueError, match="--num_processes 8 .* '<your lm-latent train flags>'"):
        check_launch(cfg, device_count=8, env={})
    with pytest.raises(ValueError, match="--num_processes 2 -m lm_latent.training.train --rate 4\\n"):
        check_launch(TrainConfig(rate=4), device_count=2, env={})


@pytest.mark.parametrize("name, what", [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")])
def test_fsdp_and_deepspeed_launches_are_refused(name, what):
    from lm_latent.training.launch import sharding_refusal
    from lm_latent.training.train import TrainConfig, check_launch

    assert sharding_refusal({}) is None and sharding_refusal({name: "false"}) is None
    with pytest.raises(ValueError, match=f"{what} is not supported .* accelerate launch --multi_gpu"):
        check_launch(TrainConfig(rate=4), device_count=0, env={name: "true", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
