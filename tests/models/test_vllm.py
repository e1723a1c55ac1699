"""``--model latent-vllm`` on a real vLLM engine (vllm-cpu in CI): same answers and counts as ``latent``.

Runs only where vLLM is installed (CI builds a second venv with vllm-cpu for it); one engine
per module, since starting one takes about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os

import pytest

from builders import VLLM_QUESTIONS, build_head64_llama, nontrivial_adapter

pytest.importorskip("vllm")

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("one_torch_thread")]

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of RAM for the KV cache on the CPU backend
ENGINE_ARGS = {"enforce_eager": True, "max_model_len": 1024, "seed": 0}  # eager: starts ~2x faster on CPU


@pytest.fixture(scope="module")
def vllm_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("lm_latent_home")
    old = os.environ.get("LM_LATENT_HOME")
    os.environ["LM_LATENT_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("LM_LATENT_HOME", None)
    else:
        os.environ["LM_LATENT_HOME"] = old


@pytest.fixture(scope="module")
def head64_base(tmp_path_factory, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("head64_base")
    return build_head64_llama(out, AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir)))


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory, head64_base):
    return nontrivial_adapter(head64_base, tmp_path_factory.mktemp("head64_adapter") / "rate4")


def _requests(max_gen_toks: int):
    from lm_eval.api.instance import Instance

    from lm_latent.prompts import PROMPT_TEMPLATE

    return [Instance("generate_until", {}, (PROMPT_TEMPLATE.format(query=q),
                                            {"until": ["### Instruction"], "do_sample": False,
                                             "max_gen_toks": max_gen_toks}), i)
            for i, q in enumerate(VLLM_QUESTIONS)]


@pytest.fixture(scope="module")
def engine(vllm_home, trained_adapter):
    from lm_latent.models.latent_vllm import LatentVLLM

    lm = LatentVLLM(adapter=str(trained_adapter), rate=4, dtype="float32", max_gen_toks=48, **ENGINE_ARGS)
    yield lm
    lm.model.llm_engine.engine_core.shutdown()  # free its RAM before the next module's engine starts


def _fields(outs):
    return [(str(o), o.gen_tokens, o.latent_tokens, o.truncated) for o in outs]


def test_same_greedy_answers_and_counts_as_latent(engine, trained_adapter):
    from lm_latent.models.latent_hf import LatentLM

    hf = LatentLM(adapter=str(trained_adapter), rate=4, dtype="float32", max_gen_toks=48, batch_size=1,
                  device="cpu")
    want = _fields(hf.generate_until(_requests(48)))
    got = _fields(engine.generate_until(_requests(48)))
    assert got == want
    assert all(1 <= n <= 48 for _, n, _, _ in got)
    assert any(lat for _, _, lat, _ in got) and any(text.startswith(".") for text, _, _, _ in got)


def test_latent_spans_visible_and_counted(engine):
    outs = engine.generate_until(_requests(16))
    assert any(o.latent_tokens > 0 for o in outs), [str(o) for o in outs]
    for o in outs:
        assert o.count("<latent_") == o.latent_tokens  # every counted latent is visible in the text


def test_generation_config_is_read_once_not_per_answer(engine, monkeypatch):
    """Counting an answer needs the EOS ids; vLLM's try_get_generation_config re-reads the file on
    every call, so they are read once per model (benchmarks/bench_vllm_wrapper.py)."""
    config = engine.model.llm_engine.model_config
    reads = []
    original = type(config).try_get_generation_config
    monkeypatch.setattr(type(config), "try_get_generation_config", lambda self: reads.append(1) or original(self))
    eos = (original(config) or {}).get("eos_token_id")
    expected = ({engine.latent_tokenizer.eos_token_id} | set(eos if isinstance(eos, (list, tuple)) else [eos])) - {None}
    engine.__dict__.pop("_eos_id_cache", None)
    outs = engine.generate_until(_requests(8))
    assert len(outs) == len(VLLM_QUESTIONS) and len(reads) == 1
    assert engine._eos_ids() == expected and len(reads) == 1


def test_stop_string_on_the_last_id_costs_no_search(engine, monkeypatch):
    """vLLM ends a row on the id that completes a stop string: counting it takes three decodes
    (whole, all but the last id, the answer), not a binary search over prefixes."""
    tok = engine.latent_tokenizer
    answer = tok.encode("She has 12 eggs.\n\n", add_special_tokens=False)
    stop = tok.encode("### Instruction", add_special_tokens=False)
    decodes = []
    original = engine._decode_ids
    monkeypatch.setattr(engine, "_decode_ids", lambda ids: decodes.append(len(ids)) or original(ids))
    text = engine.count_generation(answer + stop, ["### Instruction"])
    assert len(decodes) == 3 and text.gen_tokens == len(answer + stop) and not text.truncated
    assert "### Instruction" not in text and "12 eggs" in text
    ran_on = engine.count_generation(answer + stop + answer, ["### Instruction"])  # an HF row past its stop
    assert (str(ran_on), ran_on.gen_tokens, ran_on.truncated) == (str(text), text.gen_tokens, False)


def test_truncated_when_the_budget_runs_out(engine):
    outs = engine.generate_until(_requests(3))
    for o in outs:
        assert o.gen_tokens <= 3 and o.truncated == (o.gen_tokens == 3 and not o.endswith("</s>"))
    assert any(o.truncated for o in outs)


def test_prompt_plus_budget_beyond_max_model_len_is_an_error(engine):
    reqs = _requests(1000)  # prompt (~40 tokens) + 1000 > max_model_len 1024
    with pytest.raises(ValueError, match="max_model_len=1024"):
        engine.generate_until(reqs)


def test_plugin_args_never_reach_vllm(engine, vllm_home):
    args = engine.model_args
    for leaked in ("rate", "adapter", "adapters"):
        assert leaked not in args
    assert args["model"] == str(engine.merged_path) and str(engine.merged_path).startswith(str(vllm_home))
    assert engine.max_gen_toks == 48 and args["enforce_eager"] is True and args["seed"] == 0
    info = engine.get_model_info()
    assert info["latent_rate"] == 4 and info["latent_backend"] == "vllm"


def test_unsupported_architecture_is_refused_before_merging(tmp_path, head64_base, trained_adapter, vllm_home):
    import shutil

    from lm_latent.adapter.load import AdapterError
    from lm_latent.models.latent_vllm import LatentVLLM

    base = tmp_path / "odd_base"
    shutil.copytree(head64_base, base)
    cfg = json.loads((base / "config.json").read_text())
    cfg["architectures"] = ["NoSuchModelForCausalLM"]
    (base / "config.json").write_text(json.dumps(cfg))
    before = sorted(p.name for p in (vllm_home / "merged").iterdir())
    with pytest.raises(AdapterError, match="NoSuchModelForCausalLM.*does not support"):
        LatentVLLM(pretrained=str(base), adapter=str(trained_adapter), rate=4, max_gen_toks=48, **ENGINE_ARGS)
    assert sorted(p.name for p in (vllm_home / "merged").iterdir()) == before


def test_max_model_len_below_max_gen_toks_is_an_error(trained_adapter, vllm_home):
    from lm_latent.models.latent_vllm import LatentVLLM

    with pytest.raises(ValueError, match="max_model_len=256 leaves no room"):
        LatentVLLM(adapter=str(trained_adapter), rate=4, max_gen_toks=2048, max_model_len=256)


def test_hf_only_arguments_are_refused_clearly():
    """``decode_latents`` and ``text_only`` need HF generate: refused by name, before anything loads."""
    from lm_latent.adapter.load import AdapterError
    from lm_latent.models.latent_vllm import LatentVLLM

    with pytest.raises(AdapterError, match="decode_latents=true works with --model latent only"):
        LatentVLLM(rate=4, decode_latents="true")
    with pytest.raises(AdapterError, match="text_only=true works with --model latent only"):
        LatentVLLM(rate=4, text_only="true")
