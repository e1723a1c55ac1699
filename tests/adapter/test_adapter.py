"""Adapter resolution and validation: clear errors, nothing half-loaded."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from lm_latent.adapter.load import (
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
    from lm_latent.adapter.init import init_adapter

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


# --- issue 11 items 8-10, issue 15 item 8: every bad adapter fails before the base loads -------------

@pytest.fixture(scope="module")
def latent_root(tmp_path_factory, tiny_base):
    from lm_latent.adapter.init import init_adapter

    root = tmp_path_factory.mktemp("latent_adapters")
    init_adapter(str(tiny_base), 4, 8, root / "rate4")
    return root


def _copy(root, tmp_path, name="rate4"):
    dst = tmp_path / "adapters" / name
    shutil.copytree(root / name, dst)
    return dst


def _prepare(path, base, **kw):
    from lm_latent.models.setup import prepare

    return prepare(str(base) if base else None, 4, adapter=str(path), **kw)


def _edit_latent_json(path, **changes):
    meta = json.loads((path / "latent.json").read_text())
    meta.update(changes)
    (path / "latent.json").write_text(json.dumps(meta))


@pytest.fixture()
def no_base_load(monkeypatch):
    """Fails the test if any model weights load: every check here must come first."""
    import transformers

    def boom(*args, **kwargs):
        raise AssertionError("a base model was loaded before the adapter was checked")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_adapter_weights_are_refused(latent_root, tmp_path, tiny_base, value, no_base_load):
    import torch
    from safetensors.torch import load_file, save_file

    path = _copy(latent_root, tmp_path)
    tensors = load_file(path / "adapter_model.safetensors")
    name = next(n for n in tensors if "lora_A" in n)
    tensors[name][0, 0] = float(value)
    save_file(tensors, path / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match=r"non-finite weights in 1 tensor.*" + re.escape(name)):
        _prepare(path, tiny_base)
    del torch


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_safetensors_is_named_before_the_base_loads(latent_root, tmp_path, tiny_base, damage, no_base_load):
    path = _copy(latent_root, tmp_path)
    file = path / "adapter_model.safetensors"
    data = file.read_bytes()
    file.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00" * 64, "empty": b""}[damage])
    with pytest.raises(AdapterError) as err:
        _prepare(path, tiny_base)
    msg = str(err.value)
    assert str(file) in msg and "looks damaged" in msg and "lm-latent train" in msg


def test_base_with_other_tie_is_refused(latent_root, tmp_path, tiny_base_untied, no_base_load):
    path = _copy(latent_root, tmp_path)
    with pytest.raises(AdapterError, match=r"tie_word_embeddings.*\(True, False\)"):
        _prepare(path, tiny_base_untied)


def test_base_with_other_vocab_size_is_refused(latent_root, tmp_path, tiny_base, no_base_load):
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    cfg = json.loads((base / "config.json").read_text())
    recorded = json.loads((latent_root / "rate4" / "latent.json").read_text())["base_vocab_size"]
    cfg["vocab_size"] = recorded + 10  # a padded embedding matrix, same tokenizer: fine
    (base / "config.json").write_text(json.dumps(cfg))
    assert _prepare(_copy(latent_root, tmp_path / "padded"), base).pretrained == str(base)
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(str(base))
    other.add_tokens([f"word{i}" for i in range(10)])  # another base: its tokenizer has 10 more tokens
    other.save_pretrained(str(base))
    for rows in (recorded - 10, recorded + 10):
        cfg["vocab_size"] = rows
        (base / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(AdapterError, match=rf"'vocab_size': \({recorded}, {rows}\)"):
            _prepare(_copy(latent_root, tmp_path / str(rows)), base)


def test_base_with_other_kv_heads_is_refused_before_it_loads(latent_root, tmp_path, tiny_base, no_base_load):
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    cfg = json.loads((base / "config.json").read_text())
    cfg["num_key_value_heads"] = 4  # the adapter was trained with 2
    (base / "config.json").write_text(json.dumps(cfg))
    path = _copy(latent_root, tmp_path)
    with pytest.raises(AdapterError, match=r"num_key_value_heads.*32 k/v rows.*4 heads = 64 rows"):
        _prepare(path, base)


def test_codebook_size_disagreeing_with_the_tokenizer_is_refused(latent_root, tmp_path, tiny_base):
    path = _copy(latent_root, tmp_path)
    _edit_latent_json(path, codebook_size=4)
    with pytest.raises(AdapterError, match=r"has 8 latent tokens but the codebook size is 4"):
        _prepare(path, tiny_base)


def test_latent_tokens_out_of_order_are_refused(latent_root, tmp_path, tiny_base):
    path = _copy(latent_root, tmp_path)
    tok = json.loads((path / "tokenizer.json").read_text())
    by_content = {t["content"]: t for t in tok["added_tokens"]}
    a, b = by_content["<latent_2>"], by_content["<latent_5>"]
    a["content"], b["content"] = "<latent_5>", "<latent_2>"
    (path / "tokenizer.json").write_text(json.dumps(tok))
    for name in ("tokenizer_config.json",):
        cfg = json.loads((path / name).read_text())
        decoder = cfg.get("added_tokens_decoder", {})
        for entry in decoder.values():
            if entry["content"] in ("<latent_2>", "<latent_5>"):
                entry["content"] = "<latent_5>" if entry["content"] == "<latent_2>" else "<latent_2>"
        (path / name).write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match=r"out of order.*<latent_2> has id \d+, expected \d+"):
        _prepare(path, tiny_base)


@pytest.mark.parametrize("content", ["null", "[]", "16", '"rate16"', '{"rate": 4}', '{"rate": "4", "chunk_len": 4}'])
def test_latent_json_of_the_wrong_shape_is_refused(latent_root, tmp_path, content):
    path = _copy(latent_root, tmp_path)
    (path / "latent.json").write_text(content)
    with pytest.raises(AdapterError, match=re.escape(str(path / "latent.json"))):
        check_adapter(path, 4)


@pytest.mark.parametrize("value", [0, -5, "many", "0"])
def test_max_gen_toks_must_be_positive(latent_root, tiny_base, value):
    with pytest.raises(AdapterError, match=r"max_gen_toks must be a positive integer"):
        _prepare(latent_root / "rate4", tiny_base, max_gen_toks=value)


def test_adapter_and_adapters_together_warn(latent_root, tiny_base, caplog):
    with caplog.at_level("WARNING"):
        setup = _prepare(latent_root / "rate4", tiny_base, adapters=str(latent_root.parent))
    assert setup.adapter_path == latent_root / "rate4"
    assert "both adapter=" in caplog.text and "adapters= is ignored" in caplog.text


def test_relative_recorded_base_resolves_against_the_adapter(latent_root, tmp_path, tiny_base, monkeypatch):
    """The demo records ``demo_out/base``: from any other folder it must still be found."""
    run = tmp_path / "run"
    shutil.copytree(tiny_base, run / "demo_out" / "base")
    path = _copy(latent_root, run / "demo_out")
    _edit_latent_json(path, base_model="demo_out/base")
    monkeypatch.chdir(tmp_path)  # not where the demo ran
    setup = _prepare(path, None)
    assert setup.pretrained == str((run / "demo_out" / "base").resolve())


def test_missing_base_says_what_was_tried(latent_root, tmp_path, monkeypatch):
    path = _copy(latent_root, tmp_path)
    _edit_latent_json(path, base_model="demo_out/base")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AdapterError) as err:
        _prepare(path, None)
    msg = str(err.value)
    assert "cannot find the base model" in msg and "'demo_out/base'" in msg
    assert str(path / "latent.json") in msg and "the hub id 'demo_out/base'" in msg and "pretrained=" in msg
    with pytest.raises(AdapterError, match=r"Tried pretrained='/no/such/base', and no hub lookup"):
        _prepare(path, "/no/such/base")


def _adapter_naming(tmp_path, cot_root, base_model: str):
    root = tmp_path / "root"
    shutil.copytree(cot_root, root)
    record = root / "rate0" / "latent.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "base_model": base_model}))
    return root


def test_hub_id_base_is_never_taken_from_a_folder_inside_or_above_the_adapter_root(tmp_path, cot_root, tiny_base,
                                                                                   monkeypatch):
    """Issue #27 (4): ``fakeorg/fakebase`` used to load a folder of that name planted beside the adapter."""
    from lm_latent.adapter.config import LatentConfig
    from lm_latent.adapter.load import resolve_base

    root = _adapter_naming(tmp_path, cot_root, "fakeorg/fakebase")
    for planted in (root / "fakeorg" / "fakebase", root / "rate0" / "fakeorg" / "fakebase",
                    tmp_path / "fakeorg" / "fakebase"):
        shutil.copytree(tiny_base, planted)
    config = LatentConfig.from_pretrained(root / "rate0")
    monkeypatch.chdir(tmp_path / "fakeorg")  # not from the current folder either when that is not the planted one
    assert resolve_base(config, root / "rate0") == "fakeorg/fakebase"
    monkeypatch.chdir(root)  # the current folder inside the adapter root
    assert resolve_base(config, root / "rate0") == "fakeorg/fakebase"


def test_relative_base_recorded_by_an_older_train_still_resolves_beside_the_root(tmp_path, cot_root, tiny_base):
    from lm_latent.adapter.config import LatentConfig
    from lm_latent.adapter.load import resolve_base

    run = tmp_path / "run"
    shutil.copytree(tiny_base, run / "demo_out" / "base")
    root = _adapter_naming(tmp_path, cot_root, "demo_out/base")
    shutil.move(str(root), str(run / "demo_out" / "adapters"))
    adapter = run / "demo_out" / "adapters" / "rate0"
    assert resolve_base(LatentConfig.from_pretrained(adapter), adapter) == str(run / "demo_out" / "base")


def test_remote_code_is_never_trusted_for_a_base_the_adapter_named(cot_root, tiny_base):
    from lm_latent.models.setup import prepare

    with pytest.raises(AdapterError, match="trust_remote_code=True would run code shipped with"):
        prepare(None, 0, adapters=str(cot_root), trust_remote_code=True)
    setup = prepare(str(tiny_base), 0, adapters=str(cot_root), trust_remote_code=True)  # named by the user: fine
    assert setup.pretrained == str(tiny_base)


def test_adapter_tokenizer_asking_to_run_code_is_refused_without_a_prompt(tmp_path, cot_root, monkeypatch):
    """An ``auto_map`` in the adapter's tokenizer config used to ask y/N (EOFError without a terminal)."""
    from lm_latent.adapter.config import LatentConfig

    root = _adapter_naming(tmp_path, cot_root, json.loads((cot_root / "rate0" / "latent.json").read_text())[
        "base_model"])
    tok_config = root / "rate0" / "tokenizer_config.json"
    data = json.loads(tok_config.read_text())
    (root / "rate0" / "evil_tokenizer.py").write_text("raise SystemExit('adapter code ran')\n")
    data["auto_map"] = {"AutoTokenizer": ["evil_tokenizer.EvilTokenizer", "evil_tokenizer.EvilTokenizer"]}
    tok_config.write_text(json.dumps(data))
    def no_prompt(*a):
        raise AssertionError("asked the user whether to run the adapter's code")

    monkeypatch.setattr("builtins.input", no_prompt)
    monkeypatch.setattr("transformers.dynamic_module_utils.input", no_prompt, raising=False)
    try:  # the standard class named in the config, or a clear refusal; never the adapter's code, never a prompt
        tokenizer = load_adapter_tokenizer(root / "rate0", LatentConfig.from_pretrained(root / "rate0"))
    except AdapterError as exc:
        assert "asks to run its own code" in str(exc)
    else:
        assert type(tokenizer).__module__.startswith("transformers.")
