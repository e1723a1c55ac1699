"""The VQ-VAE compressor: shapes, config checks, save/load, and that it really learns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from lm_latent.adapter.compressor import (  # noqa: E402
    CompressorArchitecture,
    LatentCompressor,
    LatentCompressorConfig,
    code_stats,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(rate: int = 4, chunk_len: int | None = None, codebook_size: int = 32, **kw) -> LatentCompressor:
    torch.manual_seed(0)
    cfg = LatentCompressorConfig(vocab_size=600, rate=rate, chunk_len=chunk_len, codebook_size=codebook_size,
                                 hidden_size=64, num_layers=1, num_heads=4, codebook_dim=16, max_prompt_len=16, **kw)
    return LatentCompressor(cfg)


def test_config_defaults_and_checks():
    cfg = LatentCompressorConfig(vocab_size=100, rate=16, codebook_size=1024)
    assert cfg.chunk_len == 16 and cfg.latents_per_chunk == 1
    assert cfg.hidden_size == 256 and cfg.num_layers == 2 and cfg.num_heads == 4
    assert cfg.pad_token_id is None and cfg.max_prompt_len == 256
    assert LatentCompressorConfig(vocab_size=100, rate=4, chunk_len=16, codebook_size=8).latents_per_chunk == 4
    with pytest.raises(ValueError, match="multiple"):
        LatentCompressorConfig(vocab_size=100, rate=4, chunk_len=6, codebook_size=8)
    with pytest.raises(ValueError, match="pad_token_id"):
        LatentCompressorConfig(vocab_size=100, rate=4, codebook_size=8, pad_token_id=100)


@pytest.mark.parametrize("rate,chunk_len", [(4, None), (4, 8), (2, 8)])
def test_shapes(rate, chunk_len):
    model = _tiny(rate, chunk_len)
    L = chunk_len or rate
    chunks = torch.randint(0, 600, (5, L))
    prompt = torch.randint(0, 600, (5, 20))  # longer than max_prompt_len: the end is kept
    mask = torch.ones_like(prompt, dtype=torch.bool)
    mask[0, :10] = False
    out = model(chunks, prompt, mask)
    assert out.logits.shape == (5, L, 600)
    assert out.codes.shape == (5, L // rate)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert 0 < float(out.usage) <= 1 and 1 <= float(out.perplexity) <= 32
    out.loss.backward()
    codes = model.encode(chunks)
    assert codes.shape == (5, L // rate) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 32
    rec = model.decode(codes, prompt, mask)
    assert rec.shape == (5, L) and rec.dtype == torch.long
    assert model.decode(codes).shape == (5, L)  # no prompt at all
    assert model.training  # encode/decode restore the mode


def test_encode_never_updates_the_codebook():
    model = _tiny()
    model(torch.randint(0, 600, (64, 4)), None)  # k-means init on the first training batch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode(torch.randint(0, 600, (64, 4)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_inputs():
    model = _tiny()
    with pytest.raises(ValueError, match=r"\[batch, 4\]"):
        model.encode(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="codes must lie"):
        model.decode(torch.tensor([[32]]))


def test_save_load_roundtrip(tmp_path: Path):
    model = _tiny(rate=4, chunk_len=8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):  # non-trivial EMA codebook and weights
        out = model(torch.randint(0, 600, (32, 8)), torch.randint(0, 600, (32, 6)))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = LatentCompressor.from_pretrained(str(tmp_path))
    assert isinstance(loaded.config, LatentCompressorConfig)
    assert (loaded.config.rate, loaded.config.chunk_len, loaded.config.codebook_size) == (4, 8, 32)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert float(loaded.quantizer.zero) == 0.0  # non-persistent buffer is initialised, not garbage
    chunks, prompt = torch.randint(0, 600, (8, 8)), torch.randint(0, 600, (8, 6))
    model.eval()
    assert torch.equal(model.encode(chunks), loaded.encode(chunks))
    assert torch.equal(model.decode(model.encode(chunks), prompt), loaded.decode(loaded.encode(chunks), prompt))
    assert torch.allclose(model(chunks, prompt).loss, loaded.eval()(chunks, prompt).loss)
    half = LatentCompressor.from_pretrained(str(tmp_path), dtype=torch.bfloat16)
    assert half.embed.weight.dtype == torch.bfloat16
    assert half.quantizer.codebook.dtype == torch.float32  # EMA codebook stays fp32
    assert half.encode(chunks).shape == (8, 2)


def test_code_stats():
    usage, ppl = code_stats(torch.tensor([0, 0, 1, 1]), 4)
    assert usage == 0.5 and ppl == pytest.approx(2.0)


def test_compressor_really_learns(tiny_tokenizer_dir: Path, tmp_path: Path):
    """Short CPU run on a small learnable corpus: held-out reconstruction far above chance."""
    from transformers import AutoTokenizer

    from lm_latent.training.data import examples_from_rows, synthetic_gsm8k, tokenize_examples
    from lm_latent.training.train_compressor import (
        ChunkDataset,
        CompressorTrainConfig,
        evaluate_compressor,
        split_train_eval,
        train_compressor,
    )

    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    samples = tokenize_examples(examples_from_rows(synthetic_gsm8k(300, seed=0)), tok, progress=False)
    arch = CompressorArchitecture(hidden_size=64, num_layers=2, num_heads=4, codebook_dim=32, max_prompt_len=32)
    cfg = CompressorTrainConfig(model=arch, learning_rate=2e-3, batch_size=32, eval_fraction=0.1, warmup=0.05,
                                logging_steps=100, save_steps=10_000, seed=0)
    model, metrics = train_compressor(samples, vocab_size=len(tok), rate=4, chunk_len=4, codebook_size=64,
                                      config=cfg, work_dir=tmp_path, max_steps=600, progress=False)
    train, held = split_train_eval(samples, cfg.eval_fraction, cfg.max_eval_samples, cfg.seed)
    # A strong code-free baseline: the most frequent token at each chunk position.
    counts = [Counter() for _ in range(4)]
    for item in ChunkDataset(train, 4, 32, shuffle=False):
        for i, t in enumerate(item["chunks"]):
            counts[i][t] += 1
    best = [c.most_common(1)[0][0] for c in counts]
    held_chunks = [item["chunks"] for item in ChunkDataset(held, 4, 32, shuffle=False, trace_only=True)]
    baseline = sum(c[i] == best[i] for c in held_chunks for i in range(4)) / (4 * len(held_chunks))
    print(f"\nheld-out reconstruction: all chunks {metrics['recon_accuracy']:.3f}, trace chunks "
          f"{metrics['trace_recon_accuracy']:.3f}, exact chunks {metrics['recon_exact_chunks']:.3f}; "
          f"codebook usage {metrics['codebook_usage']:.3f}, perplexity {metrics['codebook_perplexity']:.1f}/64; "
          f"chance {1 / len(tok):.4f}, per-position majority baseline {baseline:.3f}")
    assert metrics["heldout_samples"] == 30 and metrics["steps"] == 600
    assert metrics["recon_accuracy"] > 0.3
    assert metrics["trace_recon_accuracy"] > max(0.2, 3 * baseline)
    assert metrics["recon_accuracy"] > 100 / len(tok)
    assert 0.25 < metrics["codebook_usage"] <= 1.0 and metrics["codebook_perplexity"] > 8
    # The metrics come from the inference path and can be recomputed from the saved model.
    again = evaluate_compressor(LatentCompressor.from_pretrained(str(tmp_path / "final")), held, trace_only=True)
    assert again["recon_accuracy"] == pytest.approx(metrics["trace_recon_accuracy"])
    # A rerun reuses the finished compressor instead of training again.
    _, metrics2 = train_compressor(samples, vocab_size=len(tok), rate=4, chunk_len=4, codebook_size=64,
                                   config=cfg, work_dir=tmp_path, max_steps=600, progress=False)
    assert metrics2["recon_accuracy"] == metrics["recon_accuracy"]


def test_outputs_live_on_the_input_device_and_nothing_is_made_on_a_fixed_device():
    """Every output tensor is on the input's device, and the compressor's own code creates no tensor
    without ``device=`` (a CPU-only machine cannot move the model to CUDA, so the second half is what
    catches a ``torch.tensor(x)`` that would land on the CPU beside a GPU model)."""
    import traceback

    from torch.overrides import TorchFunctionMode

    import lm_latent.adapter.compressor as compressor_module

    factories = {torch.tensor, torch.zeros, torch.ones, torch.arange, torch.empty, torch.full, torch.randn,
                 torch.rand, torch.randint, torch.as_tensor, torch.linspace, torch.eye, torch.zeros_like}
    ours = compressor_module.__file__

    class Factories(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.undeviced: list[str] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in factories and func is not torch.zeros_like and kwargs.get("device") is None:
                caller = traceback.extract_stack()[-2]
                if caller.filename == ours:
                    self.undeviced.append(f"{func.__name__} at line {caller.lineno}")
            return func(*args, **kwargs)

    model = _tiny()
    chunks = torch.randint(0, 600, (6, 4))
    prompt = torch.randint(0, 600, (6, 5))
    with Factories() as mode:
        out = model(chunks, prompt, torch.ones_like(prompt, dtype=torch.bool))
        codes = model.encode(chunks)
        rec = model.decode(codes, prompt)
    assert mode.undeviced == []
    for key, value in out.items():
        assert torch.is_tensor(value), key
        assert value.device == chunks.device, (key, value.device)
    for key in ("usage", "perplexity", "accuracy", "recon_loss", "commit_loss"):
        assert out[key].dim() == 0 and out[key].dtype == torch.float32, key
    assert codes.device == chunks.device and rec.device == chunks.device
    usage, ppl = code_stats(out.codes, 32)
    assert float(out.usage) == pytest.approx(usage) and float(out.perplexity) == pytest.approx(ppl)
