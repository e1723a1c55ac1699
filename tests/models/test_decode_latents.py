"""``decode_latents=true`` and the eval-time latent statistics (issue 13.2).

A real tiny Llama with an init-adapter whose ``<latent_3>`` row is aimed at the model's hidden
states (so greedy answers really emit latent tokens), its real (random) compressor, and lm-eval.
"""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from builders import PROBLEMS, write_data_dir
from builders import evaluate_latent as _evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def latent_emitting_adapter(base, out, rate: int = 4, codebook: int = 8, k: float = 10.0):
    """An init-adapter whose rows for ``<latent_3>`` and ``<latent_5>`` point along what sets the first
    and second problem's last prompt state apart from the others: greedy answers then mix latent
    and text tokens, and differ between problems (as a trained adapter's would)."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.adapter.load import attach_adapter, check_adapter
    from lm_latent.adapter.init import init_adapter
    from lm_latent.prompts import PROMPT_TEMPLATE

    init_adapter(str(base), rate, codebook, out)
    config = check_adapter(out)
    model = attach_adapter(AutoModelForCausalLM.from_pretrained(str(base)), out, config)
    tok = AutoTokenizer.from_pretrained(str(out))
    with torch.no_grad():
        last = torch.stack([model(tok(PROMPT_TEMPLATE.format(query=q), return_tensors="pt").input_ids,
                                  output_hidden_states=True).hidden_states[-1][0, -1] for q, _ in PROBLEMS])
    path = out / "adapter_model.safetensors"
    weights = load_file(path)
    delta = next(n for n in weights if "trainable_tokens_delta" in n)
    for problem, name in ((0, "<latent_3>"), (1, "<latent_5>")):
        direction = last[problem] - last.mean(0)
        weights[delta][tok.convert_tokens_to_ids(name) - config.base_vocab_size] = direction / direction.norm() * k
    save_file(weights, path, metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def latent_adapter(tmp_path_factory, tiny_base):
    return latent_emitting_adapter(tiny_base, tmp_path_factory.mktemp("latent_adapter") / "rate4")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(tmp_path_factory.mktemp("data"))


def _requests(max_gen_toks: int):
    from lm_eval.api.instance import Instance

    from lm_latent.prompts import PROMPT_TEMPLATE

    return [Instance("generate_until", {}, (PROMPT_TEMPLATE.format(query=q),
                                            {"until": ["### Instruction"], "do_sample": False,
                                             "max_gen_toks": max_gen_toks}), i)
            for i, (q, _) in enumerate(PROBLEMS)]


def _expected_text(compressor, tokenizer, context: str, spans) -> str:
    """The compressor's own reading, chunk by chunk, written out independently of LatentDecoder."""
    per = compressor.config.latents_per_chunk
    prompt = torch.tensor([tokenizer(context)["input_ids"][-compressor.config.max_prompt_len:]])
    parts = []
    for span in spans:
        ids = []
        for start in range(0, len(span) - per + 1, per):
            ids += compressor.decode(torch.tensor([span[start:start + per]]), prompt)[0].tolist()
        parts.append(tokenizer.decode(ids, skip_special_tokens=True))
    return "\n".join(parts)


def test_generation_carries_its_latent_spans_and_the_compressor_reads_them(latent_adapter, tiny_base, monkeypatch):
    from lm_latent.models import decode
    from lm_latent.adapter.compressor import LatentCompressor
    from lm_latent.models.latent_hf import LatentLM

    lm = LatentLM(pretrained=str(tiny_base), rate=4, adapter=str(latent_adapter), max_gen_toks=12,
                  batch_size=2, decode_latents=True)
    real = decode.LatentDecoder.decode_many

    def slow_decode(self, contexts, spans):  # the real decoder, 1.5 s slower: must not count as generation
        time.sleep(1.5)
        return real(self, contexts, spans)

    monkeypatch.setattr(decode.LatentDecoder, "decode_many", slow_decode)
    requests = _requests(12)
    start = time.perf_counter()
    outs = lm.generate_until(requests)
    wall = time.perf_counter() - start
    assert lm._decode_seconds >= 1.5 and lm._generation_seconds <= wall - 1.5 + 0.05
    info = lm.get_model_info()
    assert info["latent_decode_seconds"] >= 1.5 and info["latent_generation_seconds"] < wall - 1.4

    assert [sorted({c for span in o.latent_spans for c in span}) for o in outs] == [[3], [5], []], outs
    compressor = LatentCompressor.from_pretrained(str(latent_adapter / "compressor")).eval()
    for out, req in zip(outs, requests):
        codes = [int(c) for c in __import__("re").findall(r"<latent_(\d+)>", str(out))]
        assert [c for span in out.latent_spans for c in span] == codes and out.codebook_size == 8
        assert out.latent_text == _expected_text(compressor, lm.tokenizer, req.args[0], out.latent_spans)
        assert bool(out.latent_text) == bool(out.latent_tokens)  # rate 4 = 1 latent per chunk: all decodable

    plain = LatentLM(pretrained=str(tiny_base), rate=4, adapter=str(latent_adapter), max_gen_toks=12, batch_size=2)
    assert plain._latent_decoder is None
    again = plain.generate_until(_requests(12))
    assert [str(o) for o in again] == [str(o) for o in outs]  # decoding never changes the answer
    assert all(o.latent_text is None for o in again) and "latent_decode_seconds" not in plain.get_model_info()


def test_simple_evaluate_logs_latent_text_and_the_statistics(latent_adapter, tiny_base, data_dir):
    out = _evaluate({"pretrained": str(tiny_base), "rate": 4, "adapter": str(latent_adapter),
                     "max_gen_toks": 12, "batch_size": 3, "decode_latents": "true"}, data_dir, limit=3)
    for task in ("latent_math_gsm8k", "latent_math_math"):
        samples, res = out["samples"][task], out["results"][task]
        with_latents = [s for s in samples if s["latent_tokens"] > 0]
        assert 0 < len(with_latents) < len(samples), [s["resps"] for s in samples]  # both kinds of answer
        for s in samples:
            assert isinstance(s["latent_text"], str) and bool(s["latent_text"]) == (s["latent_tokens"] > 0)
            assert "<latent_" not in s["latent_text"] and s["resps"][0][0].count("<latent_") == s["latent_tokens"]
            assert s["codebook_usage"]["codebook_size"] == 8
        # the corpus-level statistics, recomputed from the logged generations themselves
        import re

        codes = [[int(c) for c in re.findall(r"<latent_(\d+)>", s["resps"][0][0])] for s in samples]
        assert res["codebook_usage,none"] == pytest.approx(len({c for cs in codes for c in cs}) / 8)
        contents = [tuple(cs) for cs in codes if cs]
        assert res["latent_span_diversity,none"] == pytest.approx(len(set(contents)) / len(contents))
        assert res["latent_tokens,none"] == pytest.approx(sum(map(len, codes)) / len(samples))
        assert res["latent_text,none"] == pytest.approx(len(with_latents) / len(samples))
    assert out["config"]["latent_decode_latents"] is True and out["config"]["latent_decode_seconds"] >= 0


def test_statistics_on_a_hand_made_example():
    from lm_latent.models.accounting import CountedText
    from lm_latent.tasks.scoring import codebook_usage, decoded_share, latent_span_diversity, process_results

    doc = {"answer": "7"}
    answers = [
        CountedText("<boLatent><latent_1><latent_2><eoLatent> so 7", 6, 2, latent_spans=[[1, 2]], codebook_size=8,
                    latent_text="Ann has 3"),
        CountedText("<boLatent><latent_1><latent_2><eoLatent> so 8", 6, 2, latent_spans=[[1, 2]], codebook_size=8,
                    latent_text="Ann has 3"),
        CountedText("<latent_5> x <latent_1><latent_1>", 5, 3, latent_spans=[[5], [1, 1]], codebook_size=8,
                    latent_text="a\nb"),
        CountedText("no latents, 7", 4, 0, latent_spans=[], codebook_size=8, latent_text=""),
    ]
    per_doc = [process_results(doc, [a]) for a in answers]
    assert per_doc[2]["codebook_usage"] == {"codes": [1, 5], "codebook_size": 8}
    assert per_doc[2]["latent_span_diversity"] == [[5], [1, 1]] and per_doc[3]["latent_span_diversity"] == []
    assert codebook_usage([d["codebook_usage"] for d in per_doc]) == 3 / 8  # codes 1, 2, 5 of K = 8
    assert latent_span_diversity([d["latent_span_diversity"] for d in per_doc]) == 2 / 3  # 3 answers, 2 contents
    assert sum(d["latent_tokens"] for d in per_doc) / 4 == 7 / 4  # mean latents per answer
    assert decoded_share([d["latent_text"] for d in per_doc]) == 3 / 4
    # an uncounted generation (--model hf, --use_cache) is NaN, never 0
    plain = process_results(doc, ["so 7"])
    assert plain["codebook_usage"] is None and "latent_text" not in plain
    assert math.isnan(codebook_usage([plain["codebook_usage"]]))
    assert math.isnan(latent_span_diversity([plain["latent_span_diversity"], []]))  # no answer with latents
    assert math.isnan(codebook_usage([{"codes": [], "codebook_size": 0}]))  # CoT: K = 0


def test_text_only_suppresses_the_latent_path_and_nothing_else(latent_adapter, tiny_base, data_dir):
    """``text_only=true``: the same weights, latent tokens and delimiters never generated; an answer
    that wrote none is unchanged (greedy, nothing else suppressed)."""
    from lm_latent.models.latent_hf import LatentLM

    args = dict(pretrained=str(tiny_base), rate=4, adapter=str(latent_adapter), max_gen_toks=12, batch_size=3)
    free = LatentLM(**args).generate_until(_requests(12))
    lm = LatentLM(**args, text_only="true")
    text = lm.generate_until(_requests(12))
    assert [o.latent_tokens > 0 for o in free] == [True, True, False], free  # the fixture's latent answers
    assert all(o.latent_tokens == 0 and "Latent>" not in str(o) for o in text), text
    assert str(text[2]) == str(free[2]) and str(text[0]) != str(free[0])
    assert lm.get_model_info()["latent_text_only"] is True
    assert "latent_text_only" not in LatentLM(**args).get_model_info()

    out = _evaluate({**args, "text_only": "true"}, data_dir, limit=3)  # through simple_evaluate as well
    tasks = ("latent_math_gsm8k", "latent_math_math")
    assert all(s["latent_tokens"] == 0 for task in tasks for s in out["samples"][task])
    assert out["config"]["latent_text_only"] is True


def test_text_only_must_be_a_flag(latent_adapter, tiny_base):
    from lm_latent.adapter.load import AdapterError
    from lm_latent.models.latent_hf import LatentLM

    with pytest.raises(AdapterError, match="text_only must be true or false"):
        LatentLM(pretrained=str(tiny_base), rate=4, adapter=str(latent_adapter), text_only="sometimes")


def test_rate_zero_accepts_decode_latents_and_reads_nothing(tmp_path, tiny_base):
    from lm_latent.adapter.init import init_adapter
    from lm_latent.models.latent_hf import LatentLM

    init_adapter(str(tiny_base), 0, 0, tmp_path / "rate0")
    lm = LatentLM(pretrained=str(tiny_base), rate=0, adapter=str(tmp_path / "rate0"), max_gen_toks=4,
                  decode_latents=True)
    outs = lm.generate_until(_requests(4)[:1])
    assert outs[0].latent_text == "" and outs[0].latent_spans == ()


def test_missing_compressor_and_bad_flag_are_clear_errors(latent_adapter, tiny_base, tmp_path):
    import shutil

    from lm_latent.adapter.load import AdapterError
    from lm_latent.models.latent_hf import LatentLM

    bare = tmp_path / "rate4"
    shutil.copytree(latent_adapter, bare)
    shutil.rmtree(bare / "compressor")
    with pytest.raises(AdapterError, match="decode_latents=true needs the compressor"):
        LatentLM(pretrained=str(tiny_base), rate=4, adapter=str(bare), decode_latents=True)
    with pytest.raises(AdapterError, match="decode_latents must be true or false"):
        LatentLM(pretrained=str(tiny_base), rate=4, adapter=str(latent_adapter), decode_latents="maybe")


def test_compressor_weights_as_a_pickle_are_refused_without_advising_unsafe_loading(latent_adapter, tmp_path):
    """A ``pytorch_model.bin`` is never unpickled, and the message never suggests weights_only=False."""
    import shutil

    from safetensors.torch import load_file

    from lm_latent.adapter.load import AdapterError
    from lm_latent.models.decode import load_compressor

    bare = tmp_path / "rate4"
    shutil.copytree(latent_adapter, bare)
    weights = bare / "compressor" / "model.safetensors"
    torch.save(load_file(str(weights)), bare / "compressor" / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(AdapterError, match="safetensors only") as err:
        load_compressor(bare)
    assert "weights_only" not in str(err.value) and "pytorch_model.bin" in str(err.value)
    assert load_compressor(latent_adapter).config.rate == 4  # the safetensors one still loads


def test_incomplete_chunk_is_marked_not_guessed(tmp_path, tiny_base):
    """chunk_len 8 at rate 4: two codes per chunk; a span of three decodes one chunk and names the rest."""
    from transformers import AutoTokenizer

    from lm_latent.models.decode import INCOMPLETE, LatentDecoder, load_compressor
    from lm_latent.adapter.init import init_adapter

    path = init_adapter(str(tiny_base), 4, 8, tmp_path / "rate4", chunk_len=8)
    decoder = LatentDecoder(load_compressor(path), AutoTokenizer.from_pretrained(str(path)))
    texts = decoder.decode_many(["Q: 1+1?", "Q: 2+2?"], [[[1, 2, 3]], []])
    assert texts[1] == "" and texts[0].endswith(INCOMPLETE.format(n=1))
    one = decoder.decode_many(["Q: 1+1?"], [[[1, 2]]])[0]
    assert texts[0] == one + " " + INCOMPLETE.format(n=1)


@pytest.mark.slow
def test_lm_eval_cli_writes_latent_text_into_the_samples_file(latent_adapter, tiny_base, data_dir, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "latent", "--model_args",
         f"pretrained={tiny_base},rate=4,adapter={latent_adapter},max_gen_toks=12,decode_latents=true",
         "--tasks", "latent_math_gsm8k", "--limit", "3", "--batch_size", "3", "--log_samples",
         "--output_path", str(out),
         "--metadata", json.dumps({"data_dir": str(data_dir)})],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = [json.loads(line) for path in out.rglob("samples_latent_math_gsm8k_*.jsonl")
               for line in path.read_text().splitlines()]
    assert len(samples) == 3 and all("latent_text" in s for s in samples)
    assert any(s["latent_text"] and s["latent_tokens"] > 0 for s in samples)
    assert "codebook_usage" in proc.stdout and "latent_span_diversity" in proc.stdout
