"""LoRA Trainer checkpoints hold what trains (LoRA, new-token deltas, Adam), not the resized embedding.

Before, PEFT's ``save_embedding_layers="auto"`` put the whole resized input and output embedding
matrices into every ``checkpoint-N`` (1.8 GiB at Llama-3.2-3B size, for a 121 MiB adapter).
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from train_runs import assert_same_adapter, train_args, write_data  # noqa: E402

from lm_latent.training.train import EXIT_INTERRUPTED, main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WEIGHTS = "adapter_model.safetensors"


def _shapes(file: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        return {k: f.get_slice(k).get_shape() for k in f.keys()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("ckpt_data") / "train.jsonl")


@pytest.mark.parametrize("tied", [True, False])
def test_a_lora_checkpoint_leaves_out_the_embedding_and_resumes_to_the_same_adapter(
        tied, tmp_path, tiny_base, tiny_base_untied, data):
    """Fails on the old Trainer: its checkpoint-4 held ``*.token_adapter.base_layer.weight`` (vocab x hidden)
    for ``embed_tokens`` and ``lm_head``, 3.3x the adapter's bytes here. Resuming from the slim checkpoint
    rebuilds the embedding from the base and ends bit for bit where one uninterrupted run ends."""
    base = tiny_base if tied else tiny_base_untied
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(train_args(base, data, ref)) == 0
    for _ in ("compressor", "finetune"):  # each run stops its stage at step 4
        assert main(train_args(base, data, run, "--stop-at-step", "4")) == EXIT_INTERRUPTED
    ckpt = run / ".work" / "rate4" / "finetune" / "checkpoints" / "checkpoint-4"
    saved, final = _shapes(ckpt / WEIGHTS), _shapes(ref / "rate4" / WEIGHTS)
    assert not [k for k in saved if "base_layer" in k or k.endswith("embed_tokens.weight")]
    assert saved == final  # the same tensors as the finished adapter: LoRA and the new-token deltas
    assert any(k.endswith("embed_tokens.token_adapter.trainable_tokens_delta") for k in saved)
    assert any("lm_head" in k for k in saved) != tied  # an untied head keeps its own delta
    size = (ckpt / WEIGHTS).stat().st_size
    assert size <= 1.01 * (ref / "rate4" / WEIGHTS).stat().st_size
    assert (ckpt / "optimizer.pt").stat().st_size < 2.5 * size  # Adam's two moments of the same tensors

    assert main(train_args(base, data, run)) == 0
    assert_same_adapter(ref / "rate4", run / "rate4")
