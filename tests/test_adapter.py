"""Adapter resolution and validation: clear errors, nothing half-loaded."""

from __future__ import annotations

import json
import shutil

import pytest

from lm_latent.adapter import (
    ADAPTERS_ENV,
    HOME_ENV,
    AdapterError,
    check_adapter,
    load_adapter_tokenizer,
    parse_rate,
    resolve_adapter,
)


@pytest.fixture(scope="module")
def cot_root(tmp_path_factory, tiny_base):
    from lm_latent.init_adapter import init_adapter

    root = tmp_path_factory.mktemp("adapters")
    init_adapter(str(tiny_base), 0, 0, root / "rate0")
    return root


@pytest.mark.parametrize("value,expected", [(16, 16), ("16", 16), ("rate32", 32), ("cot", 0), (0, 0), ("COT", 0)])
def test_parse_rate(value, expected):
    assert parse_rate(value) == expected


@pytest.mark.parametrize("value", ["-1", "sixteen", True, "1.5"])
def test_parse_rate_rejects(value):
    with pytest.raises(AdapterError):
        parse_rate(value)


def test_resolution_order(cot_root, tmp_path, monkeypatch):
    other = tmp_path / "other"
    shutil.copytree(cot_root / "rate0", other / "rate0")
    monkeypatch.setenv(ADAPTERS_ENV, str(other))
    assert resolve_adapter("cot", adapter=str(cot_root / "rate0")) == cot_root / "rate0"
    assert resolve_adapter(0, adapters=str(cot_root)) == cot_root / "rate0"
    assert resolve_adapter(0) == other / "rate0"
    monkeypatch.delenv(ADAPTERS_ENV)
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    shutil.copytree(cot_root / "rate0", tmp_path / "home" / "adapters" / "rate0")
    assert resolve_adapter(0) == tmp_path / "home" / "adapters" / "rate0"


def test_missing_adapter_names_places_rates_and_command(cot_root, monkeypatch, tmp_path):
    monkeypatch.delenv(ADAPTERS_ENV, raising=False)
    with pytest.raises(AdapterError) as err:
        resolve_adapter(16, adapters=str(cot_root))
    msg = str(err.value)
    assert str(cot_root / "rate16") in msg and "rates found there: [0]" in msg
    assert "lm-latent train --rate 16" in msg and "init-adapter" in msg


def test_wrong_rate_is_refused(cot_root, tmp_path):
    bad = tmp_path / "rate16"
    shutil.copytree(cot_root / "rate0", bad)
    with pytest.raises(AdapterError, match="trained for rate=0.*rate=16"):
        check_adapter(bad, 16)


def test_half_written_adapter_is_refused(cot_root, tmp_path):
    partial = tmp_path / "rate0"
    shutil.copytree(cot_root / "rate0", partial)
    (partial / "latent.json").unlink()
    with pytest.raises(AdapterError, match="half-written"):
        check_adapter(partial, 0)


def test_corrupt_latent_json_is_refused(cot_root, tmp_path):
    broken = tmp_path / "rate0"
    shutil.copytree(cot_root / "rate0", broken)
    (broken / "latent.json").write_text("{not json")
    with pytest.raises(AdapterError, match="not valid JSON"):
        check_adapter(broken, 0)


def test_tokenizer_size_mismatch_is_refused(cot_root, tmp_path, tiny_tokenizer_dir):
    swapped = tmp_path / "rate0"
    shutil.copytree(cot_root / "rate0", swapped)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_tokenizer_dir / name, swapped / name)
    config = check_adapter(swapped, 0)
    with pytest.raises(AdapterError, match="does not belong to this adapter"):
        load_adapter_tokenizer(swapped, config)


def test_adapter_files_are_world_readable(cot_root):
    mode = (cot_root / "rate0" / "latent.json").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044
    meta = json.loads((cot_root / "rate0" / "latent.json").read_text())
    assert meta["rate"] == 0 and meta["vocab_size"] == meta["base_vocab_size"] + 1  # + pad token
