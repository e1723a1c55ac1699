"""``lm-latent export``: a merged plain HF checkpoint that computes what base + adapter computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_base, tiny_base_untied) -> Path:
    """Briefly *trained* adapters (non-zero LoRA B, moved new-token rows), tied rate 4 and untied rate 0."""
    from lm_latent.training.data import synthetic_gsm8k
    from lm_latent.training.train import main

    root = tmp_path_factory.mktemp("export")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_gsm8k(40, seed=3)), encoding="utf-8")
    common = ["--data", str(data), "--max-steps", "4", "--codebook-size", "8", "--batch-size", "4",
              "--grad-accum", "1", "--lr", "1e-2", "--compressor-hidden", "32", "--compressor-layers", "1",
              "--compressor-codebook-dim", "16", "--compressor-batch-size", "16", "--schedule", "8,16",
              "--no-progress"]
    assert main(["--rate", "4", "--base", str(tiny_base), "--out", str(root / "tied"), *common]) == 0
    assert main(["--rate", "0", "--base", str(tiny_base_untied), "--out", str(root / "untied"), *common]) == 0
    return root


@pytest.mark.parametrize("kind,rate", [("tied", 4), ("untied", 0)])
def test_export_matches_base_plus_adapter(adapters: Path, tmp_path: Path, kind: str, rate: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.adapter.load import attach_adapter, check_adapter
    from lm_latent.adapter.export import EXPORTED_CONFIG_NAME, main

    adapter = adapters / kind / f"rate{rate}"
    out = tmp_path / "merged"
    assert main(["--adapter", str(adapter), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", EXPORTED_CONFIG_NAME} <= names
    assert "adapter_config.json" not in names and "latent.json" not in names  # not mistaken for an adapter
    cfg = check_adapter(adapter)
    assert json.loads((out / EXPORTED_CONFIG_NAME).read_text())["rate"] == rate

    merged = AutoModelForCausalLM.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == cfg.vocab_size == merged.config.vocab_size
    assert merged.get_input_embeddings().weight.shape[0] == cfg.vocab_size
    tied = merged.get_output_embeddings().weight is merged.get_input_embeddings().weight
    assert tied == cfg.tied_embeddings == (kind == "tied")
    assert not any("lora" in n for n, _ in merged.named_modules())

    reference = attach_adapter(AutoModelForCausalLM.from_pretrained(cfg.base_model), adapter, cfg, merge=False)
    new_ids = list(range(cfg.base_vocab_size, cfg.vocab_size))
    ids = torch.tensor([[tok.bos_token_id, 5, 17, *new_ids[:6], 40, new_ids[-1]]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, reference(ids).logits, rtol=1e-4, atol=1e-5)
        base = AutoModelForCausalLM.from_pretrained(cfg.base_model)
        plain = torch.tensor([[tok.bos_token_id, 5, 17, 40]])
        assert not torch.allclose(merged(plain).logits[..., :cfg.base_vocab_size], base(plain).logits, atol=1e-4)


def test_export_refuses_to_overwrite_and_bad_adapters(adapters: Path, tmp_path: Path, capsys):
    from lm_latent.adapter.export import main

    out = tmp_path / "merged"
    out.mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["--adapter", str(adapters / "tied" / "rate4"), "--out", str(out)])
    assert exc.value.code == 2 and "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--adapter", str(tmp_path / "nothing"), "--out", str(tmp_path / "m2")])
    assert "latent.json" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()


def test_export_with_compressor(adapters: Path, tmp_path: Path):
    from lm_latent.adapter.compressor import LatentCompressor
    from lm_latent.adapter.export import main

    out = tmp_path / "merged"
    assert main(["--adapter", str(adapters / "tied" / "rate4"), "--out", str(out), "--with-compressor",
                 "--dtype", "bfloat16"]) == 0
    assert LatentCompressor.from_pretrained(str(out / "compressor")).config.codebook_size == 8
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_export_never_replaces_adapters(adapters: Path, tmp_path: Path, capsys):
    """Issue 11.5: ``export --adapter root/rate16 --out root --overwrite`` replaced the whole adapter root.

    An --out that is, contains or sits inside an adapter or an adapter root is refused before anything
    is deleted, and so is any existing folder that is not an earlier export.
    """
    import shutil

    from lm_latent.adapter.export import main

    root = tmp_path / "root"
    shutil.copytree(adapters / "tied", root)
    adapter = root / "rate4"
    (root / "rate16").mkdir()  # an unfinished adapter folder beside it
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    cases = {
        root: "adapter root",  # the adapter's parent
        adapter: "is the adapter",  # the adapter itself
        adapter / "compressor": "inside the adapter",
        tmp_path: "contains the adapter",  # an ancestor of the adapter
    }
    other = tmp_path / "other"
    shutil.copytree(adapters / "untied", other)
    cases[other / "rate0"] = "is an adapter"  # another adapter
    cases[other] = "adapter root"  # another adapter root
    nested = tmp_path / "nested"
    shutil.copytree(adapters / "untied", nested / "deep" / "x")
    cases[nested] = "contains an adapter"
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.txt").write_text("keep me")
    cases[notes] = "not an earlier export"
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for out, why in cases.items():
        with pytest.raises(SystemExit) as exc:
            main(["--adapter", str(adapter), "--out", str(out), "--overwrite"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and why in err and str(out) in err, (out, err)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before  # nothing deleted
    assert (notes / "plan.txt").read_text() == "keep me"


def test_export_overwrites_an_earlier_export_and_keeps_the_umask(adapters: Path, tmp_path: Path):
    """Issue 15: the exported ``model.safetensors`` had mode 0600 while the other files were 0644."""
    import os

    from lm_latent.adapter.export import main

    adapter, out = adapters / "untied" / "rate0", tmp_path / "merged"
    assert main(["--adapter", str(adapter), "--out", str(out)]) == 0
    first = (out / "model.safetensors").stat().st_mtime_ns
    assert main(["--adapter", str(adapter), "--out", str(out), "--overwrite"]) == 0
    assert (out / "model.safetensors").stat().st_mtime_ns != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no .partial or .old left
    mask = os.umask(0)
    os.umask(mask)
    for p in out.rglob("*"):
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert p.stat().st_mode & 0o777 == want, p


def test_export_checks_the_disk_before_writing(adapters: Path, tmp_path: Path, monkeypatch, capsys):
    """Issue #27 (6): a full disk used to surface as a raw error half-way through the save."""
    from collections import namedtuple

    from transformers import AutoModelForCausalLM

    from lm_latent.adapter.export import main
    from lm_latent.utils import fileio

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 1 << 20))

    def no_load(*a, **k):
        raise AssertionError("the base was loaded although the disk is too small")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_load)
    out = tmp_path / "merged"
    with pytest.raises(SystemExit) as exc:
        main(["--adapter", str(adapters / "tied" / "rate4"), "--out", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "not enough disk for the merged checkpoint" in err and str(tmp_path) in err
    assert "MiB" in err and not out.exists()


def test_disk_filling_up_during_export_names_the_folder(adapters: Path, tmp_path: Path, monkeypatch, capsys):
    import errno

    from transformers import PreTrainedModel

    from lm_latent.adapter.export import main

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    out = tmp_path / "merged"
    with pytest.raises(SystemExit) as exc:
        main(["--adapter", str(adapters / "tied" / "rate4"), "--out", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "filled up while writing the merged checkpoint" in err
    assert str(tmp_path) in err and "it needs about" in err and not out.exists()
