"""The ``latent`` model through lm-eval: loading, batching, accounting, equality with ``hf``."""

from __future__ import annotations

import json

import pytest
import torch

from builders import PROBLEMS, write_data_dir
from builders import evaluate_latent as _evaluate


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_simple_evaluate_reports_accuracy_and_exact_token_counts(kind, adapters, data_dir, tiny_base,
                                                                  tiny_base_untied):
    base = tiny_base if kind == "tied" else tiny_base_untied
    out = _evaluate({"pretrained": str(base), "rate": 4, "adapters": str(adapters / kind),
                     "max_gen_toks": 24, "batch_size": 2}, data_dir)
    for task in ("latent_math_gsm8k", "latent_math_math"):
        res = out["results"][task]
        assert {"acc,none", "gen_tokens,none", "latent_tokens,none", "latent_usage,none"} <= set(res)
        assert 1 <= res["gen_tokens,none"] <= 24
        samples = out["samples"][task]
        assert len(samples) == 2
        for sample in samples:
            assert sample["gen_tokens"] == int(sample["gen_tokens"]) and 1 <= sample["gen_tokens"] <= 24
            assert sample["acc"] in (0.0, 1.0) and sample["latent_usage"] == float(sample["latent_tokens"] > 0)
            assert isinstance(sample["resps"][0][0], str)
        assert res["gen_tokens,none"] == pytest.approx(sum(s["gen_tokens"] for s in samples) / 2)
    assert out["config"]["model_args"]["rate"] == 4
    assert out["config"]["latent_rate"] == 4
    assert out["config"]["latent_generation_seconds"] > 0  # measured, for the time-vs-tokens comparison


def test_plugin_args_do_not_leak_into_from_pretrained(adapters, tiny_base):
    from lm_latent.models.latent_hf import LatentLM

    lm = LatentLM(pretrained=str(tiny_base), rate="4", adapters=str(adapters / "tied"), max_gen_toks=8)
    for leaked in ("rate", "adapter", "adapters", "max_gen_toks"):
        assert not hasattr(lm.model.config, leaked)
    assert lm.max_gen_toks == 8 and lm.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert not any("lora" in name for name, _ in lm.model.named_modules())  # merged


def test_count_generation_counts_latents_and_stops_at_eos(adapters, tiny_base):
    from lm_latent.models.latent_hf import LatentLM
    from lm_latent.adapter.vocab import latent_token

    lm = LatentLM(pretrained=str(tiny_base), rate=4, adapters=str(adapters / "tied"))
    tok, vocab = lm.tokenizer, lm.latent_vocab
    text_ids = tok("So 3 + 4 = 7.", add_special_tokens=False).input_ids
    ids = [vocab.bo_id, vocab.code_to_id(5), vocab.code_to_id(31), vocab.eo_id, *text_ids,
           tok.eos_token_id, tok.pad_token_id, tok.pad_token_id]
    out = lm.count_generation(ids, stop=["### Instruction"])
    assert out.gen_tokens == 4 + len(text_ids) + 1
    assert out.latent_tokens == 2
    assert latent_token(5) in out and latent_token(31) in out and "<boLatent>" in out
    # a stop string ends the generation where it completes; later ids are not counted
    stop_ids = tok("### Instruction", add_special_tokens=False).input_ids
    out = lm.count_generation([*text_ids, *stop_ids, *text_ids], stop=["### Instruction"])
    assert out.gen_tokens == len(text_ids) + len(stop_ids)
    assert "Instruction" not in out


def test_outputs_equal_hf_on_merged_weights(adapters, tiny_base, tmp_path):
    """The wrapper adds nothing to generation: same ids as ``--model hf`` on the merged export."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    from lm_latent.adapter.load import attach_adapter, check_adapter, load_adapter_tokenizer
    from lm_latent.models.latent_hf import LatentLM

    path = adapters / "tied" / "rate4"
    config = check_adapter(path, 4)
    tokenizer = load_adapter_tokenizer(path, config)
    merged = attach_adapter(AutoModelForCausalLM.from_pretrained(str(tiny_base)), path, config)
    merged.save_pretrained(str(tmp_path / "merged"))
    tokenizer.save_pretrained(str(tmp_path / "merged"))

    requests = [Instance("generate_until", {}, (q, {"until": ["### Instruction"], "do_sample": False}), i)
                for i, (q, _) in enumerate(PROBLEMS)]
    latent = LatentLM(pretrained=str(tiny_base), rate=4, adapter=str(path), max_gen_toks=16, batch_size=2)
    hf = HFLM(pretrained=str(tmp_path / "merged"), device="cpu", max_length=2048, batch_size=2)
    hf_out = hf.generate_until([Instance(r.request_type, r.doc, (r.args[0], {**r.args[1], "max_gen_toks": 16}),
                                         r.idx) for r in requests])
    assert [str(s) for s in latent.generate_until(requests)] == hf_out


def test_bfloat16_generation(adapters, tiny_base):
    from lm_eval.api.instance import Instance

    from lm_latent.models.latent_hf import LatentLM

    lm = LatentLM(pretrained=str(tiny_base), rate=4, adapters=str(adapters / "tied"), dtype="bfloat16",
                  max_gen_toks=8, batch_size=3)
    assert lm.model.dtype == torch.bfloat16
    requests = [Instance("generate_until", {}, (q, {"until": ["### Instruction"], "do_sample": False}), i)
                for i, (q, _) in enumerate(PROBLEMS)]
    assert all(1 <= out.gen_tokens <= 8 for out in lm.generate_until(requests))


# --- issue 11 item 10, issue 15 items 1 and 8: arguments, clean errors, paths that travel -------------

def test_unknown_model_argument_is_named_with_the_plugin_s_own(adapters, tiny_base):
    from lm_latent.adapter.load import AdapterError
    from lm_latent.models.latent_hf import LatentLM, unknown_model_args

    with pytest.raises(AdapterError) as err:
        LatentLM(pretrained=str(tiny_base), rate=4, adapters=str(adapters / "tied"), foo="bar")
    msg = str(err.value)
    assert "unknown model argument(s) ['foo']" in msg and "pretrained, rate, adapter, adapters, max_gen_toks" in msg
    # what lm-eval's CLI and HFLM pass, transformers' own options and config overrides are not flagged
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(tiny_base))
    assert unknown_model_args({"batch_size": 2, "max_length": 64, "trust_remote_code": False,
                               "attn_implementation": "eager", "low_cpu_mem_usage": True,
                               "use_cache": True, "device_map": "cpu"}, config) == []
    lm = LatentLM(pretrained=str(tiny_base), rate=4, adapters=str(adapters / "tied"), max_gen_toks=4,
                  attn_implementation="eager")
    assert lm.model.config._attn_implementation == "eager"


def test_batch_size_in_model_args_and_on_the_command_line(adapters, data_dir, tiny_base):
    """README lists batch_size as a model argument; lm-eval also passes --batch_size (default 1)."""
    from lm_latent.models.latent_hf import LatentLM

    lm = LatentLM.create_from_arg_string(
        f"pretrained={tiny_base},rate=4,adapters={adapters / 'tied'},max_gen_toks=4,batch_size=3",
        {"batch_size": 1, "max_batch_size": None, "device": "cpu"})
    assert int(lm.batch_size) == 3
    lm = LatentLM.create_from_arg_obj({"pretrained": str(tiny_base), "rate": 4, "adapters": str(adapters / "tied"),
                                       "max_gen_toks": 4}, {"batch_size": 2, "device": "cpu"})
    assert int(lm.batch_size) == 2


def _cli(args, cwd, timeout=600):
    import os
    import subprocess

    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})


@pytest.mark.slow
def test_lm_eval_cli_prints_a_missing_adapter_without_a_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    out = _cli(["lm_eval", "--model", "latent", "--model_args", f"rate=16,adapters={tmp_path / 'empty'}",
                "--tasks", "latent_math_gsm8k", "--limit", "1"], cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "lm-latent: error: no adapter for rate=16" in out.stderr
    assert "Traceback" not in out.stderr, out.stderr[-3000:]


@pytest.mark.slow
def test_a_relative_recorded_base_works_from_another_folder(tmp_path, tiny_base, data_dir, monkeypatch):
    """The demo's adapters record ``demo_out/base``: lm_eval and export from elsewhere still find it."""
    import shutil

    from lm_latent.adapter.init import init_adapter

    run = tmp_path / "run"
    shutil.copytree(tiny_base, run / "demo_out" / "base")
    monkeypatch.chdir(run)
    init_adapter("demo_out/base", 0, 0, run / "demo_out" / "adapters" / "rate0")
    monkeypatch.undo()
    record = run / "demo_out" / "adapters" / "rate0" / "latent.json"
    # training now records an absolute base; adapters written before that hold the relative path
    record.write_text(json.dumps({**json.loads(record.read_text()), "base_model": "demo_out/base"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _cli(["lm_eval", "--model", "latent", "--model_args",
                f"rate=0,adapters={run / 'demo_out' / 'adapters'},max_gen_toks=4,batch_size=2",
                "--tasks", "latent_math_gsm8k", "--limit", "2", "--metadata", json.dumps({"data_dir": str(data_dir)})],
               cwd=elsewhere)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "gen_tokens" in out.stdout
    out = _cli(["lm-latent", "export", "--adapter", str(run / "demo_out" / "adapters" / "rate0"),
                "--out", str(elsewhere / "merged")], cwd=elsewhere)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (elsewhere / "merged" / "model.safetensors").is_file()
    shutil.rmtree(run / "demo_out" / "base")
    out = _cli(["lm-latent", "export", "--adapter", str(run / "demo_out" / "adapters" / "rate0"),
                "--out", str(elsewhere / "merged2")], cwd=elsewhere)
    assert out.returncode == 2 and "cannot find the base model" in out.stderr and "'demo_out/base'" in out.stderr


def test_progress_counts_each_row_when_it_finishes():
    """One batch of many problems used to jump 0 -> n at its end; rows now count as they finish."""
    from tqdm import tqdm

    from lm_latent.models.latent_hf import GenerationProgress

    import io

    eos, pad = 1, 9
    bar = tqdm(total=4, file=io.StringIO())
    progress = GenerationProgress(bar, 4, {eos, pad}, max_new_tokens=10)
    progress.put(torch.zeros(4, 7, dtype=torch.long))  # the prompt
    seen = []
    for step in ([5, 5, 5, 5], [eos, 5, 5, 5], [pad, 5, eos, 5], [pad, pad, pad, 5]):
        progress.put(torch.tensor(step))
        seen.append(bar.n)
    assert seen == [0, 1, 2, 3]  # row 1, stopped by a stop string, shows as pad one step later
    progress.end()  # the last row ran to the budget
    assert bar.n == 4 and progress.step == 4


def test_generate_until_drives_the_progress_bar(adapters, tiny_base, monkeypatch):
    from lm_eval.api.instance import Instance
    from tqdm import tqdm

    import lm_latent.models.latent_hf as model_module
    from lm_latent.models.latent_hf import LatentLM

    bars = []

    class RecordingBar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": False})
            self.postfixes = []
            bars.append(self)

        def set_postfix_str(self, s="", refresh=True):
            self.postfixes.append(s)
            return super().set_postfix_str(s, refresh)

    monkeypatch.setattr(model_module, "tqdm", RecordingBar)
    lm = LatentLM(pretrained=str(tiny_base), rate=4, adapters=str(adapters / "tied"), max_gen_toks=40, batch_size=3)
    requests = [Instance("generate_until", {}, (q, {"until": ["### Instruction"], "do_sample": False}), i)
                for i, (q, _) in enumerate(PROBLEMS * 2)]
    assert len(lm.generate_until(requests)) == 6
    assert bars[-1].n == 6 and "batch step 32/40" in bars[-1].postfixes  # steps shown inside each batch


@pytest.mark.parametrize("args, message", [
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"batch_size": -1}, "batch_size must be a positive integer"),
    ({"batch_size": "auto:0"}, "batch_size must be a positive integer"),
    ({"device": "cuda:7"}, "device='cuda:7'"),
    ({"device": "gpu0"}, "not a device name"),
    ({"dtype": "float8"}, "dtype='float8' is not supported"),
    ({"max_gen_toks": 1000000000}, "leaves no room for a prompt with max_gen_toks=1000000000"),
    ({"max_gen_toks": 100, "max_length": 64}, "max_length=64 leaves no room"),
])
def test_bad_run_arguments_fail_before_any_weight_loads(args, message, adapters, tiny_base, monkeypatch):
    """Issue #27 (5): each used to run silently (batch 0: one batch of everything; cuda:7: the CPU)
    or end in a traceback, max_gen_toks only after the weights loaded."""
    from lm_eval.models.huggingface import HFLM

    from lm_latent.adapter.load import AdapterError
    from lm_latent.models.latent_hf import LatentLM

    if args.get("device") == "cuda:7" and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")

    def no_weights(*a, **k):
        raise AssertionError("weights were loaded before the bad argument was refused")

    monkeypatch.setattr(HFLM, "_create_model", no_weights)
    with pytest.raises(AdapterError, match=message):
        LatentLM.create_from_arg_obj({"pretrained": str(tiny_base), "rate": 4, "adapters": str(adapters / "tied"),
                                      **args}, {"batch_size": 1, "device": None})


def test_good_run_arguments_pass_the_checks():
    from lm_latent.models.setup import check_run_args

    for batch_size in (1, "8", "auto", "auto:4", None):
        check_run_args(batch_size=batch_size, device="cpu", dtype="auto")
    for dtype in ("float32", "bfloat16", "float16", torch.float32, None):
        check_run_args(dtype=dtype)


def test_use_cache_is_refused(adapters, tiny_base, data_dir, tmp_path):
    """Issue #27 (1): lm-eval's cache keys leave out --model_args: another rate's answers came back."""
    from lm_latent.adapter.load import AdapterError

    with pytest.raises(AdapterError, match="--use_cache is refused by --model latent"):
        _evaluate({"pretrained": str(tiny_base), "rate": 4, "adapters": str(adapters / "tied"),
                   "max_gen_toks": 8}, data_dir, use_cache=str(tmp_path / "cache"))


def test_results_config_records_the_resolved_base_and_its_hash(adapters, tiny_base, monkeypatch, tmp_path):
    """Issue #27 (4): the base an adapter named is in the results config by path and content."""
    from lm_latent.models.latent_hf import LatentLM
    from lm_latent.models.merge_cache import content_hash

    monkeypatch.setenv("LM_LATENT_HOME", str(tmp_path))
    lm = LatentLM(rate=4, adapters=str(adapters / "tied"), max_gen_toks=8)  # base from latent.json
    info = lm.get_model_info()
    assert info["latent_base"] == str(tiny_base.resolve())
    assert info["latent_base_sha256"] == content_hash(tiny_base)
