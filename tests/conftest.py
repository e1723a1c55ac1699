"""Offline fixtures: a tiny BPE tokenizer and tiny random Llamas (tied and untied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _offline_hf_home(tmp_path_factory):
    os.environ.setdefault("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core box: one OpenMP thread is ~10x faster than two fighting."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from lm_latent.demo.tiny import build_tokenizer

    out = tmp_path_factory.mktemp("tiny_tokenizer")
    build_tokenizer(out)
    return out


def _base(tmp_path_factory, tokenizer_dir, tied: bool) -> Path:
    from transformers import AutoTokenizer

    from lm_latent.demo.tiny import build_llama

    out = tmp_path_factory.mktemp("tiny_llama_tied" if tied else "tiny_llama_untied")
    build_llama(out, AutoTokenizer.from_pretrained(str(tokenizer_dir)), tied=tied)
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """Directory of a tiny random Llama with tied embeddings (like Llama-3.2-1B/3B)."""
    return _base(tmp_path_factory, tiny_tokenizer_dir, tied=True)


@pytest.fixture(scope="session")
def tiny_base_untied(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return _base(tmp_path_factory, tiny_tokenizer_dir, tied=False)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_base, tiny_base_untied) -> Path:
    """Untrained adapters (``init-adapter``): ``tied/rate0``, ``tied/rate4`` and ``untied/rate4``.

    test_export.py defines its own ``adapters`` (briefly trained ones), which win there.
    """
    from lm_latent.adapter.init import init_adapter

    root = tmp_path_factory.mktemp("adapters")
    init_adapter(str(tiny_base), 0, 0, root / "tied" / "rate0")
    init_adapter(str(tiny_base), 4, 32, root / "tied" / "rate4")
    init_adapter(str(tiny_base_untied), 4, 32, root / "untied" / "rate4")
    return root


@pytest.fixture(scope="module")
def sweep_adapters(tmp_path_factory, tiny_base) -> Path:
    """Untrained ``rate0/`` and ``rate4/`` (codebook 16) in one root, for sweeps; one per test module."""
    from lm_latent.adapter.init import init_adapter

    root = tmp_path_factory.mktemp("sweep_adapters")
    init_adapter(str(tiny_base), 0, 0, root / "rate0")
    init_adapter(str(tiny_base), 4, 16, root / "rate4")
    return root


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """This checkout built as a wheel once per session (``python -m build --no-isolation``)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                           str(PROJECT_ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return next(out.glob("lm_latent-*.whl"))
