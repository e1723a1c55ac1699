"""End to end on vLLM: the stock ``lm_eval`` CLI, a sweep, and a real pretrained model (SmolLM2-135M)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from builders import VLLM_QUESTIONS, build_head64_llama, nontrivial_adapter  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

VLLM_ARGS = "dtype=float32,enforce_eager=True,max_model_len=1024,seed=0"
GSM8K = [(q, str(i)) for i, q in enumerate(VLLM_QUESTIONS)] + [
    ("Gus has 4 boxes of 9 eggs. How many eggs?", "36"), ("Hana walks 3 km a day for 7 days. How far?", "21")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("vllm_e2e")
    base = build_head64_llama(root / "base", AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir)))
    nontrivial_adapter(base, root / "adapters" / "rate4")
    data = root / "data" / "gsm8k"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text("".join(json.dumps({"question": q, "answer": f"Steps.\n#### {a}"}) + "\n"
                                             for q, a in GSM8K), encoding="utf-8")
    return root


def _env(home: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LM_LATENT_HOME": str(home),
            "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"}


def _lm_eval(setup: Path, model: str, model_args: str, out: Path, batch: str):
    cmd = [str(Path(sys.executable).parent / "lm_eval"), "--model", model, "--model_args",
           f"pretrained={setup / 'base'},rate=4,adapters={setup / 'adapters'},max_gen_toks=40,{model_args}",
           "--tasks", "latent_math_gsm8k", "--limit", "8", "--batch_size", batch, "--metadata",
           f"data_dir={setup / 'data'}", "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=_env(setup / "home"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = json.loads(sorted(out.rglob("results_*.json"))[-1].read_text())
    rows = [json.loads(line) for line in sorted(out.rglob("samples_*.jsonl"))[-1].read_text().splitlines()]
    return proc, results, sorted(rows, key=lambda r: r["doc_id"])


def test_stock_lm_eval_latent_vllm_equals_latent_on_gsm8k(setup, tmp_path):
    _, hf, hf_rows = _lm_eval(setup, "latent", "dtype=float32", tmp_path / "hf", "1")
    proc, vl, vl_rows = _lm_eval(setup, "latent-vllm", VLLM_ARGS, tmp_path / "vllm", "auto")
    keys = ("resps", "gen_tokens", "latent_tokens", "latent_usage", "truncated", "acc")
    assert len(vl_rows) == 8
    assert [{k: r[k] for k in keys} for r in vl_rows] == [{k: r[k] for k in keys} for r in hf_rows]
    assert any("<latent_" in r["resps"][0][0] for r in vl_rows)  # latent spans visible in --log_samples
    for metric in ("acc,none", "gen_tokens,none", "latent_tokens,none", "latent_usage,none", "truncated,none"):
        assert vl["results"]["latent_math_gsm8k"][metric] == hf["results"]["latent_math_gsm8k"][metric]
    assert vl["config"]["latent_backend"] == "vllm" and vl["config"]["latent_rate"] == 4
    assert "merging adapter" in proc.stdout + proc.stderr


def test_sweep_with_latent_vllm_reuses_the_merge(setup, tmp_path):
    """Runs after the CLI test in the same LM_LATENT_HOME: the merged copy is reused, not rebuilt."""
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "lm_latent.cli", "sweep", "--model", "latent-vllm", "--rates", "4",
           "--tasks", "latent_math_gsm8k", "--out", str(out), "--model_args",
           f"pretrained={setup / 'base'},adapters={setup / 'adapters'},max_gen_toks=40,{VLLM_ARGS}",
           "--limit", "4", "--metadata", f"data_dir={setup / 'data'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=_env(setup / "home"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    log = (out / "rate4" / "lm_eval.log").read_text()
    assert "--model latent-vllm" in log and "merged checkpoint" in log and "merging adapter" not in log
    assert (out / "results.md").is_file() and json.loads((out / "sweep_status.json").read_text())["4"]["ok"]


def test_smollm2_init_adapter_same_answers_on_both_backends(tmp_path_factory, monkeypatch):
    pytest.importorskip("gguf")
    try:
        from lm_latent.demo.tiny import export_smollm2

        base = export_smollm2(tmp_path_factory.mktemp("smollm2_vllm"))
    except ModuleNotFoundError as exc:
        pytest.skip(str(exc))
    from lm_eval.api.instance import Instance

    from lm_latent.adapter.init import init_adapter
    from lm_latent.models.latent_hf import LatentLM
    from lm_latent.prompts import PROMPT_TEMPLATE
    from lm_latent.models.latent_vllm import LatentVLLM

    adapter = init_adapter(str(base), 16, 1024, tmp_path_factory.mktemp("smol_adapter") / "rate16")
    requests = [Instance("generate_until", {}, (PROMPT_TEMPLATE.format(query=q),
                                                {"until": ["### Instruction"], "do_sample": False}), i)
                for i, (q, _) in enumerate(GSM8K)]
    hf = LatentLM(adapter=str(adapter), rate=16, dtype="float32", max_gen_toks=64, batch_size=1, device="cpu")
    want = [(str(o), o.gen_tokens, o.latent_tokens, o.truncated) for o in hf.generate_until(requests)]
    del hf
    monkeypatch.setenv("LM_LATENT_HOME", str(tmp_path_factory.mktemp("smol_home")))
    vl = LatentVLLM(adapter=str(adapter), rate=16, dtype="float32", max_gen_toks=64, enforce_eager=True,
                    max_model_len=1024, seed=0)
    got = [(str(o), o.gen_tokens, o.latent_tokens, o.truncated) for o in vl.generate_until(requests)]
    vl.model.llm_engine.engine_core.shutdown()
    assert got == want
    assert any(text.strip() for text, *_ in got)
