"""A full fine-tune (``--finetune full``) with ``decode_latents=true`` and in ``lm-latent sweep``.

Both rates are trained for real (tiny base, 8 steps). Rate 4 uses ``--strategy all`` and a high lr,
so its greedy answers are latent tokens, which the compressor then reads back into text.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from builders import evaluate_latent, write_data_dir  # noqa: E402
from train_runs import train_args, write_data  # noqa: E402

from lm_latent.training.train import main  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def full_adapters(tmp_path_factory, tiny_base) -> Path:
    """``rate0/`` and ``rate4/``, both full fine-tunes, in one root."""
    from lm_latent.adapter.load import check_adapter

    root = tmp_path_factory.mktemp("full_adapters")
    data = write_data(root / "train.jsonl", n=80)
    for rate in (0, 4):
        args = train_args(tiny_base, data, root / "adapters", "--finetune", "full", "--strategy", "all",
                          "--lr", "1e-2", rate=rate)
        assert main(args) == 0
        assert check_adapter(root / "adapters" / f"rate{rate}", rate=rate).finetune == "full"
    return root / "adapters"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_data_dir(tmp_path_factory.mktemp("data"))


def test_a_full_finetune_decodes_its_latents(full_adapters: Path, tiny_base: Path, data_dir: Path):
    pytest.importorskip("lm_latent.models.latent_hf")
    adapter = full_adapters / "rate4"
    args = {"pretrained": str(tiny_base), "rate": 4, "adapter": str(adapter), "max_gen_toks": 12, "batch_size": 3}
    out = evaluate_latent({**args, "decode_latents": "true"}, data_dir, limit=3)
    assert out["config"]["latent_decode_latents"] is True
    for task, samples in out["samples"].items():
        assert any(s["latent_tokens"] > 0 for s in samples), [s["resps"] for s in samples]
        for s in samples:
            assert isinstance(s["latent_text"], str) and bool(s["latent_text"]) == (s["latent_tokens"] > 0)
            assert "<latent_" not in s["latent_text"]
            assert s["resps"][0][0].count("<latent_") == s["latent_tokens"]
            assert s["codebook_usage"]["codebook_size"] == 16
        assert out["results"][task]["latent_text,none"] > 0
    plain = evaluate_latent(args, data_dir, limit=3)  # decoding never changes the answers
    for task, samples in plain["samples"].items():
        assert [s["resps"] for s in samples] == [s["resps"] for s in out["samples"][task]]
        assert all(s.get("latent_text") is None for s in samples)


def test_a_sweep_over_full_finetunes(full_adapters: Path, tiny_base: Path, data_dir: Path, tmp_path: Path):
    from lm_latent.sweep.run import main as sweep

    out = tmp_path / "results"
    argv = ["--rates", "0,4", "--tasks", "latent_math_gsm8k", "--out", str(out),
            "--model_args", f"pretrained={tiny_base},adapters={full_adapters},max_gen_toks=8",
            "--limit", "2", "--metadata", f"data_dir={data_dir}"]
    assert sweep(argv) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["rate"] for r in rows] == ["0 (CoT)", "4"]
    assert all(float(r["generation s"]) > 0 for r in rows)
    assert re.search(r"^\| 4 \|", (out / "results.md").read_text(), re.M)
