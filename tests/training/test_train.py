"""``lm-latent train`` end to end on the tiny base: adapter layout, rate 0, kill/resume, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from lm_latent.training.train import EXIT_INTERRUPTED, main  # noqa: E402
from train_runs import evaluate_two_problems, train_args  # noqa: E402

N_SAMPLES = 200
GROUPED = ("--group-by-length", "3")  # windows of 3 batches sorted by length


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gsm_jsonl(tmp_path_factory) -> Path:
    from lm_latent.training.data import synthetic_gsm8k

    path = tmp_path_factory.mktemp("train_data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in synthetic_gsm8k(N_SAMPLES, seed=0)), encoding="utf-8")
    return path


def _args(base: Path, data: Path, out: Path, rate: int = 4, steps: int = 16, *extra: str) -> list[str]:
    return train_args(base, data, out, *extra, rate=rate, steps=steps)


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base, gsm_jsonl) -> Path:
    out = tmp_path_factory.mktemp("adapters")
    assert main(_args(tiny_base, gsm_jsonl, out, 4, 16)) == 0
    return out / "rate4"


def test_train_writes_a_complete_adapter(trained: Path, tiny_base: Path):
    from lm_latent.adapter.load import check_adapter, load_adapter_tokenizer
    from lm_latent.adapter.compressor import LatentCompressor
    from lm_latent.adapter.config import base_fingerprint
    from lm_latent.adapter.vocab import LatentVocab
    from transformers import AutoConfig

    names = {p.name for p in trained.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "latent.json",
            "compressor"} <= names
    assert {p.name for p in (trained / "compressor").iterdir()} == {"config.json", "model.safetensors"}
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    assert not (trained.parent / ".work").exists()  # checkpoints removed after success
    cfg = check_adapter(trained, rate=4)
    assert (cfg.rate, cfg.chunk_len, cfg.codebook_size) == (4, 4, 16)
    assert cfg.trained and cfg.base_model == str(tiny_base) and cfg.tied_embeddings
    assert cfg.base_vocab_size == 600 and cfg.vocab_size == 600 + 2 + 16 + 1  # delimiters, latents, pad
    assert cfg.base_fingerprint == base_fingerprint(AutoConfig.from_pretrained(str(tiny_base)))
    assert cfg.training["data"].endswith("train.jsonl") and cfg.training["samples"] == N_SAMPLES
    assert cfg.training["strategy"] == "left_to_right" and cfg.training["schedule"] == [0, 8, 16, 32]
    m = cfg.metrics
    for key in ("recon_accuracy", "trace_recon_accuracy", "codebook_usage", "codebook_perplexity", "final_loss",
                "compressor_final_loss", "samples_with_latents", "latent_tokens_per_sample"):
        assert isinstance(m[key], float), key
    assert m["finetune_steps"] == 16 and m["compressor_steps"] == 16
    assert 0 < m["codebook_usage"] <= 1 and 0 < m["samples_with_latents"] < 1
    tok = load_adapter_tokenizer(trained, cfg)
    assert LatentVocab.from_tokenizer(tok, 16).first_latent_id == 602
    comp = LatentCompressor.from_pretrained(str(trained / "compressor"))
    assert comp.config.vocab_size == 600 and comp.config.codebook_size == 16
    # The adapter holds LoRA + the new rows only, not the whole embedding matrix.
    keys = _tensors(trained / "adapter_model.safetensors").keys()
    assert any("lora_A" in k for k in keys) and any("trainable_tokens" in k for k in keys)
    assert not any(k.endswith("embed_tokens.weight") for k in keys)


def test_adapter_files_keep_the_umask(trained: Path):
    """Issue 11 (minor): the .safetensors files were 0600 while everything else was 0644."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    files = [p for p in trained.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask, p
    for p in [trained, *[d for d in trained.rglob("*") if d.is_dir()]]:
        assert p.stat().st_mode & 0o777 == 0o777 & ~mask, p


def test_help_shows_each_default_once():
    """Issue 15: ``--help`` printed ``(default: rate) (default: None)`` and a default for the required --rate."""
    import re

    from lm_latent.training.train import build_parser

    text = " ".join(build_parser().format_help().split())
    assert not re.search(r"\(default: [^)]*\) \(default:", text)
    rate_help = re.search(r"--rate RATE (.*?) --base", text).group(1)
    assert "default" not in rate_help and "required" in rate_help
    assert "(default: None)" not in text
    assert "(default: 1024)" in text  # real defaults still shown


def test_init_adapter_records_an_absolute_local_base(tmp_path: Path, tiny_base: Path, monkeypatch):
    from lm_latent.adapter.load import check_adapter
    from lm_latent.adapter.init import init_adapter

    monkeypatch.chdir(tiny_base.parent)
    out = init_adapter(tiny_base.name, 0, 0, tmp_path / "rate0")
    assert check_adapter(out).base_model == str(tiny_base)


def test_existing_adapter_is_not_overwritten(trained: Path, tiny_base: Path, gsm_jsonl: Path):
    before = (trained / "latent.json").read_text()
    with pytest.raises(SystemExit) as exc:
        main(_args(tiny_base, gsm_jsonl, trained.parent, 4, 16))
    assert exc.value.code == 2
    assert (trained / "latent.json").read_text() == before


def test_rate0_trains_the_plain_cot_adapter(tmp_path: Path, tiny_base_untied: Path, gsm_jsonl: Path, capsys,
                                           monkeypatch):
    from lm_latent.adapter.load import check_adapter

    monkeypatch.chdir(tiny_base_untied.parent)  # --base given relative to the current folder
    assert main(_args(Path(tiny_base_untied.name), gsm_jsonl, tmp_path, 0, 6)) == 0
    out = tmp_path / "rate0"
    # Issue 15: the Trainer's loss dicts went to stdout; stdout carries the result only.
    assert capsys.readouterr().out == f"wrote {out}\n"
    cfg = check_adapter(out, rate=0)
    # Issue 15: a local base is recorded as an absolute path, so the adapter works from any folder.
    assert cfg.base_model == str(tiny_base_untied)
    assert (cfg.rate, cfg.codebook_size, cfg.chunk_len) == (0, 0, 0)
    assert not (out / "compressor").exists() and not cfg.tied_embeddings
    assert cfg.vocab_size == 601 and cfg.metrics["samples_with_latents"] == 0.0
    assert cfg.training["strategy"] is None and cfg.training["compressor"] is None


def test_bad_arguments_fail_clearly(tmp_path: Path, tiny_base: Path, gsm_jsonl: Path, capsys):
    with pytest.raises(SystemExit):
        main(_args(tiny_base, gsm_jsonl, tmp_path, 4, 4, "--chunk-len", "6"))
    assert "multiple" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_args(tiny_base, tmp_path / "nope.jsonl", tmp_path, 4, 4))
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused before any data is read or any stage runs
        main(_args(tiny_base, gsm_jsonl, tmp_path / "g", 4, 4, "--group-by-length", "-1"))
    assert "--group-by-length must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "g" / ".work" / "rate4").exists() and not (tmp_path / "g" / "rate4").exists()


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_adapter(tmp_path: Path, tiny_base: Path, gsm_jsonl: Path, caplog):
    """Stopped mid-compressor, then mid-fine-tuning, then resumed: same result as one run.

    With --group-by-length: the length-sorted order resumes as the plain one does.
    """
    import logging

    caplog.set_level(logging.INFO, logger="lm_latent")
    ref_root, run_root = tmp_path / "ref", tmp_path / "run"
    assert main(_args(tiny_base, gsm_jsonl, ref_root, 4, 12, *GROUPED)) == 0
    assert main(_args(tiny_base, gsm_jsonl, run_root, 4, 12, *GROUPED, "--stop-at-step", "6")) == EXIT_INTERRUPTED
    work = run_root / ".work" / "rate4"
    assert (work / "compressor" / "checkpoints" / "checkpoint-6").is_dir()
    assert not (work / "compressor" / "final").exists() and not (run_root / "rate4").exists()
    # A rerun with other settings must not silently mix two runs.
    with pytest.raises(SystemExit):
        main(_args(tiny_base, gsm_jsonl, run_root, 4, 12, *GROUPED, "--lr", "1e-3"))
    # Same flag again: the compressor resumes past step 6 and finishes; fine-tuning stops at 6.
    assert main(_args(tiny_base, gsm_jsonl, run_root, 4, 12, *GROUPED, "--stop-at-step", "6")) == EXIT_INTERRUPTED
    assert "compressor: resuming from" in caplog.text and "checkpoint-6" in caplog.text
    assert (work / "compressor" / "final" / "metrics.json").is_file()
    assert (work / "finetune" / "checkpoints" / "checkpoint-6").is_dir()
    assert not (run_root / "rate4").exists()
    caplog.clear()
    assert main(_args(tiny_base, gsm_jsonl, run_root, 4, 12, *GROUPED)) == 0
    assert "compressor already trained" in caplog.text
    assert "fine-tuning: resuming from" in caplog.text and "checkpoint-6" in caplog.text

    ref, run = ref_root / "rate4", run_root / "rate4"
    for rel in ("adapter_model.safetensors", "compressor/model.safetensors"):
        a, b = _tensors(ref / rel), _tensors(run / rel)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{rel}: {k}"  # bit for bit
    lora_b = [v for k, v in _tensors(ref / "adapter_model.safetensors").items() if "lora_B" in k]
    assert lora_b and all(v.abs().max() > 0 for v in lora_b)  # training moved the weights
    assert json.loads((ref / "latent.json").read_text())["training"]["finetune"]["group_by_length"] == 3
    ma = json.loads((ref / "latent.json").read_text())["metrics"]
    mb = json.loads((run / "latent.json").read_text())["metrics"]
    assert ma["final_loss"] == mb["final_loss"] and ma["recon_accuracy"] == mb["recon_accuracy"]
    assert (ma["compressor_steps"], ma["finetune_steps"]) == (mb["compressor_steps"], mb["finetune_steps"]) == (12, 12)


@pytest.mark.slow
def test_trained_adapter_runs_in_lm_eval(trained: Path, tiny_base: Path, tmp_path: Path):
    """The ``latent`` lm-eval model loads the trained adapter and generates (tiny model, tiny limit)."""
    pytest.importorskip("lm_latent.models.latent_hf")
    out = evaluate_two_problems(trained, tiny_base, tmp_path)
    assert out["config"]["latent_rate"] == 4


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(tmp_path: Path, tiny_base: Path, gsm_jsonl: Path):
    """``accelerate launch`` with 2 gloo processes on CPU trains one adapter, written once, that loads.

    ``--cpu`` makes accelerate start a single process (or use mpirun); on a machine without GPUs,
    ``--multi_gpu`` is the launcher that starts torchrun workers, which then join a gloo group.
    """
    import os
    import shutil
    import subprocess
    import sys

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate's console script is not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "lm_latent.training.train", *_args(tiny_base, gsm_jsonl, tmp_path, 4, 8)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count("wrote ") == 1  # the main process alone writes and reports

    from lm_latent.adapter.load import check_adapter
    from lm_latent.models.latent_hf import LatentLM

    out = tmp_path / "rate4"
    cfg = check_adapter(out, rate=4)
    assert cfg.training["num_processes"] == 2 and cfg.metrics["finetune_steps"] == 8
    assert not (tmp_path / ".work").exists()
    lm = LatentLM(pretrained=str(tiny_base), rate=4, adapter=str(out), device="cpu", max_gen_toks=4)
    assert lm.model.get_input_embeddings().weight.shape[0] == cfg.vocab_size
