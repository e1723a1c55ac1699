"""The demo's pieces: the synthetic problem generator, the tiny base pretraining, the demo driver."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from lm_latent.demo import synthetic
from lm_latent.training.data import read_rows

_EQ = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def _apply(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]


# --- generator ------------------------------------------------------------------------------------------

def test_generator_is_seeded_and_deterministic():
    assert synthetic.generate(40, seed=3) == synthetic.generate(40, seed=3)
    assert synthetic.generate(40, seed=3) != synthetic.generate(40, seed=4)
    a_train, a_test = synthetic.split(200, 30, seed=1)
    b_train, b_test = synthetic.split(200, 30, seed=1)
    assert (a_train, a_test) == (b_train, b_test)


def test_train_and_test_share_no_problem():
    train, test = synthetic.split(3000, 300, seed=0)
    train_q = {r["question"] for r in train}
    test_q = {r["question"] for r in test}
    assert len(train_q) == 3000 and len(test_q) == 300  # distinct within each split
    assert not train_q & test_q


def test_answers_are_the_arithmetic():
    for row in synthetic.generate(500, seed=7):
        trace, final = row["answer"].rsplit("\n#### ", 1)
        assert int(final) == row["value"] >= 0
        eqs = [tuple(map(lambda t: int(t) if t.isdigit() else t, m)) for m in _EQ.findall(trace)]
        assert len(eqs) == row["steps"] and 2 <= row["steps"] <= 4
        for a, op, b, c in eqs:
            assert _apply(a, op, b) == c, (a, op, b, c)
            if op == "/":
                assert a % b == 0
            assert c >= 0
        assert eqs[-1][3] == row["value"]
        # each step combines given numbers or results of earlier steps: the chain is grounded
        known = {int(n) for n in re.findall(r"\d+", row["question"])}
        known |= {2} if "doubles" in row["question"] else set()
        known |= {3} if "triples" in row["question"] else set()
        for a, _, b, c in eqs:
            assert a in known and b in known, (row["question"], trace)
            known.add(c)
        assert [list(e) for e in eqs] == row["equations"]


def test_steps_cover_two_to_four_and_all_step_kinds():
    rows = synthetic.generate(600, seed=2)
    assert {r["steps"] for r in rows} == {2, 3, 4}
    ops = {op for r in rows for _, op, _, _ in r["equations"]}
    assert ops == {"+", "-", "*", "/"}


def test_traces_read_like_chain_of_thought():
    """The trace restates every given number before it computes anything (what latents compress)."""
    for row in synthetic.generate(200, seed=5):
        trace = row["answer"].rsplit("\n####", 1)[0]
        head, _, rest = trace.partition("We need to find")
        assert rest, trace
        for number in re.findall(r"\d+", row["question"]):
            assert re.search(rf"(?<!\d){number}(?!\d)", head), (number, row["question"], head)
        assert "=" not in head  # no arithmetic in the restatement
        assert len(trace.split()) > 3 * len(_EQ.findall(trace)) * 3  # words around the numbers
        facts = row["question"][: row["question"].rindex("How many")].strip()
        assert facts in head  # the facts as the question words them: nothing the prompt lacks


def test_terse_answer_is_the_same_solution_without_the_restatement():
    for row in synthetic.generate(200, seed=6):
        trace, final = row["answer"].rsplit("\n#### ", 1)
        terse, terse_final = row["terse_answer"].rsplit("\n#### ", 1)
        assert terse_final == final == str(row["value"])
        steps = trace.partition("We need to find")[2]
        assert steps.endswith(terse) and trace.endswith(terse)  # the steps, word for word
        assert "We need to find" not in terse and len(terse) < 0.75 * len(trace)
        assert [list(map(lambda t: int(t) if t.isdigit() else t, m)) for m in _EQ.findall(terse)] == row["equations"]


def test_pretrain_corpus_mixes_verbose_and_terse_solutions_of_the_training_problems(tmp_path):
    paths = synthetic.write_dataset(tmp_path, n_train=400, n_test=10, seed=0)
    train, corpus = read_rows(paths["train"]), read_rows(paths["pretrain"])
    assert [r["question"] for r in corpus] == [r["question"] for r in train]  # never a held-out problem
    verbose = sum(c["answer"] == t["answer"] for c, t in zip(corpus, train))
    terse = sum("We need to find" not in c["answer"] for c in corpus)
    assert verbose + terse == 400 and 120 < terse < 280  # about half, seeded
    assert json.loads(paths["meta"].read_text())["terse_fraction"] == synthetic.TERSE_FRACTION
    assert not synthetic.is_finished(tmp_path, 400, 10, 0, terse_fraction=0.0)  # another corpus: rewrite
    rows = synthetic.generate(50, seed=1)
    assert [r["answer"] for r in synthetic.pretrain_rows(rows, 0.0)] == [r["answer"] for r in rows]
    assert [r["answer"] for r in synthetic.pretrain_rows(rows, 1.0)] == [r["terse_answer"] for r in rows]
    with pytest.raises(ValueError, match="terse_fraction"):
        synthetic.pretrain_rows(rows, 1.5)


def test_equations_corpus_is_the_bare_arithmetic_of_the_training_problems(tmp_path):
    """``base_corpus="equations"``: the base never reads the solution format, only its arithmetic."""
    mixed = synthetic.write_dataset(tmp_path / "m", n_train=200, n_test=10, seed=0)
    paths = synthetic.write_dataset(tmp_path / "e", n_train=200, n_test=10, seed=0, base_corpus="equations")
    for split in ("train", "test"):  # the problems and their traces are the same: only the base corpus differs
        assert paths[split].read_text() == mixed[split].read_text()
    train, _ = synthetic.split(200, 10, seed=0)
    corpus = read_rows(paths["pretrain"])
    assert [c["question"] for c in corpus] == [r["question"] for r in train]
    for c, r in zip(corpus, train):
        bare, final = c["answer"].split("\n#### ")
        assert re.fullmatch(r"[0-9 +*/=;-]+", bare) and final == str(r["value"])
        assert [[int(a), op, int(b), int(v)] for a, op, b, v in _EQ.findall(bare)] == r["equations"]
    assert json.loads(paths["meta"].read_text())["base_corpus"] == "equations"
    assert synthetic.is_finished(tmp_path / "e", 200, 10, 0, base_corpus="equations")
    assert not synthetic.is_finished(tmp_path / "e", 200, 10, 0)  # the mixed corpus is another dataset
    with pytest.raises(ValueError, match="unknown base corpus"):
        synthetic.pretrain_rows(train, corpus="prose")


def test_write_dataset_layout_skip_and_real_task_loader(tmp_path):
    from lm_latent.tasks.benchmarks import load_docs

    paths = synthetic.write_dataset(tmp_path, n_train=50, n_test=10, seed=0)
    assert paths["train"] == tmp_path / "gsm8k" / "train.jsonl"
    assert paths["test"] == tmp_path / "gsm8k" / "test.jsonl"
    meta = json.loads(paths["meta"].read_text())
    assert meta["n_train"] == 50 and meta["n_test"] == 10
    mtime = paths["train"].stat().st_mtime_ns
    synthetic.write_dataset(tmp_path, n_train=50, n_test=10, seed=0)
    assert paths["train"].stat().st_mtime_ns == mtime  # finished: not rewritten
    rows = read_rows(paths["test"])
    assert set(rows[0]) == {"question", "answer"}
    docs = load_docs("gsm8k", tmp_path)  # the plugin's gsm8k task reads it like shared/data
    assert [d["answer"] for d in docs] == [r["answer"].rsplit("#### ", 1)[1] for r in rows]
    assert synthetic.main(["--out", str(tmp_path / "cli"), "--train", "20", "--test", "5"]) == 0
    assert len(read_rows(tmp_path / "cli" / "gsm8k" / "test.jsonl")) == 5


def test_traces_parse_through_training_data():
    from lm_latent.training.data import examples_from_rows

    rows = [synthetic.gsm8k_row(r) for r in synthetic.generate(50, seed=9)]
    examples = examples_from_rows(rows, "synthetic")
    assert len(examples) == 50
    for ex, row in zip(examples, synthetic.generate(50, seed=9)):
        assert ex.solution == f"The answer is: {row['value']}"
        assert "####" not in ex.trace and ex.trace.startswith(("Let's", "First"))
        assert ex.query == row["question"]


# --- tokenizer and base pretraining ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo_data")
    synthetic.write_dataset(out, n_train=96, n_test=6, seed=0)
    return out


def test_tokenizer_splits_digits_and_roundtrips(tmp_path):
    from transformers import AutoTokenizer

    from lm_latent.training.data import examples_from_rows
    from lm_latent.demo.base import BOS, EOS, train_tokenizer

    rows = [synthetic.gsm8k_row(r) for r in synthetic.generate(200, seed=1)]
    texts = [ex.text for ex in examples_from_rows(rows)]
    train_tokenizer(texts, tmp_path, vocab_size=512)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tok.bos_token == BOS and tok.eos_token == EOS and tok.pad_token is None
    ids = tok(texts[0])["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == texts[0]
    pieces = tok.convert_ids_to_tokens(tok("Sam has 347 beads.", add_special_tokens=False)["input_ids"])
    digits = [p for p in pieces if any(ch.isdigit() for ch in p)]
    assert digits == ["Ġ3", "4", "7"]
    assert "Ġhas" in pieces and "Ġbeads" in pieces  # words are whole tokens, not bytes


def _tiny_cfg(**kw):
    from lm_latent.demo.base import PretrainConfig

    base = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64,
                vocab_size=400, max_steps=4, batch_size=8, save_steps=2, logging_steps=1, threads=1)
    base.update(kw)
    return PretrainConfig(**base)


def test_pretrain_base_tiny_saves_a_plain_checkpoint_and_resumes(demo_data, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.demo.base import DONE_NAME, is_finished, pretrain
    from lm_latent.prompts import format_prompt
    from lm_latent.training.checkpoints import TrainingInterrupted

    train = demo_data / "gsm8k" / "train.jsonl"
    out = tmp_path / "base"
    with pytest.raises(TrainingInterrupted):
        pretrain(train, out, _tiny_cfg(), progress=False, stop_at_step=2)
    assert not is_finished(out) and list((out / ".work" / "checkpoints").glob("checkpoint-2"))
    record = pretrain(train, out, _tiny_cfg(), progress=False)
    assert record["resumed_from"].endswith("checkpoint-2") and record["steps"] == 4
    assert math.isfinite(record["final_loss"]) and record["seconds_per_step"] > 0
    assert is_finished(out) and (out / DONE_NAME).is_file() and (out / "model.safetensors").is_file()
    assert not (out / ".work").exists() and not list(out.glob("*.bin"))
    assert pretrain(train, out, _tiny_cfg(), progress=False) == record  # finished: skipped

    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.model_type == "llama" and model.config.tie_word_embeddings
    assert model.config.max_position_embeddings >= 4096
    assert model.generation_config.eos_token_id == tok.eos_token_id
    ids = tok(format_prompt("Ann has 3 apples."), return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)
    assert gen.shape[1] <= ids["input_ids"].shape[1] + 5


def test_pretrain_base_never_resumes_a_checkpoint_of_other_settings(demo_data, tmp_path):
    from lm_latent.demo.base import pretrain
    from lm_latent.training.checkpoints import TrainingInterrupted

    train = demo_data / "gsm8k" / "train.jsonl"
    out = tmp_path / "base"
    with pytest.raises(TrainingInterrupted):
        pretrain(train, out, _tiny_cfg(), progress=False, stop_at_step=2)
    with pytest.raises(TrainingInterrupted):  # other settings: the old checkpoint is set aside, a fresh run starts
        pretrain(train, out, _tiny_cfg(max_steps=5), progress=False, stop_at_step=1)
    work = out / ".work"
    assert [p.name.split(".")[0] for p in (work / "set_aside").iterdir()] == ["checkpoint-2"]
    assert [p.name for p in (work / "checkpoints").iterdir()] == ["checkpoint-1"]
    record = pretrain(train, out, _tiny_cfg(max_steps=5), progress=False)
    assert record["resumed_from"].endswith("checkpoint-1") and record["steps"] == 5


def test_pretrained_base_goes_through_init_adapter_and_greedy_eval(demo_data, tmp_path):
    from lm_latent.adapter.init import init_adapter
    from lm_latent.adapter.config import LatentConfig
    from lm_latent.demo.base import pretrain
    from lm_latent.demo.tiny import greedy_eval

    out = tmp_path / "base"
    pretrain(demo_data / "gsm8k" / "train.jsonl", out, _tiny_cfg(max_steps=2), progress=False)
    init_adapter(str(out), 0, 0, tmp_path / "adapters" / "rate0")
    cfg = LatentConfig.from_pretrained(tmp_path / "adapters" / "rate0")
    assert cfg.rate == 0 and cfg.base_fingerprint["model_type"] == "llama"
    rows = read_rows(demo_data / "gsm8k" / "test.jsonl")[:3]
    res = greedy_eval(out, rows, batch_size=2, max_new_tokens=6, progress=False)
    assert res["n"] == 3 and 0.0 <= res["accuracy"] <= 1.0 and 1 <= res["gen_tokens"] <= 6
    assert len(res["generations"]) == 3


# --- demo driver ----------------------------------------------------------------------------------------

def test_demo_plans_reach_train_and_the_sweep(tmp_path):
    from lm_latent.demo import FULL, QUICK, stages
    from lm_latent.training.mixed_traces import parse_schedule
    from lm_latent.training.train import TrainConfig

    assert QUICK.rates[0] == 0 and FULL.rates[0] == 0 and len(FULL.rates) >= 3
    paths = stages.demo_paths(tmp_path)
    defaults = TrainConfig(rate=0)
    for plan in (QUICK, FULL):
        for rate in plan.rates:
            cfg = stages.train_config(plan, paths, rate)  # the same recipe for every rate
            assert (cfg.rate, cfg.base, cfg.data, cfg.out) == (rate, str(paths["base"]), str(paths["train"]),
                                                                str(paths["adapters"]))
            assert cfg.max_steps == plan.finetune_steps and cfg.target == paths["adapters"] / f"rate{rate}"
            assert (cfg.finetune.learning_rate, cfg.finetune.batch_size, cfg.finetune.lora_r) == (
                plan.finetune_lr, plan.finetune_batch, plan.lora_r)
            assert cfg.finetune.group_by_length == plan.group_by_length  # every rate, baseline included
            assert cfg.finetune.seed == cfg.compressor.seed == plan.seed
            if rate:  # the plan's compressor recipe reaches train (its steps are capped by max_steps)
                assert (cfg.compressor.max_steps, cfg.compressor.batch_size, cfg.compressor.learning_rate) == (
                    plan.compressor_steps, plan.compressor_batch, plan.compressor_lr)
                assert cfg.codebook_size == plan.codebook_size
                assert cfg.finetune.schedule == parse_schedule(plan.schedule)
                assert plan.compressor_steps <= plan.finetune_steps
            else:  # rate 0 has no latents: train's defaults, as `lm-latent train --rate 0` records them
                assert cfg.codebook_size == defaults.codebook_size
                assert cfg.finetune.schedule == defaults.finetune.schedule
        argv = stages.sweep_argv(plan, paths)
        assert argv[argv.index("--rates") + 1] == ",".join(map(str, plan.rates))
        assert f"data_dir={paths['data']}" in argv
        # by hand = what the sweep hands lm_eval for one rate (same budget, batch size, data)
        hand = stages.by_hand_argv(plan, paths, 16, tmp_path / "by_hand")
        sweep_args = argv[argv.index("--model_args") + 1]
        assert hand[hand.index("--model_args") + 1] == f"rate=16,{sweep_args}"
        assert f"max_gen_toks={plan.max_gen_toks}" in sweep_args
        for flag in ("--batch_size", "--metadata"):
            assert hand[hand.index(flag) + 1] == argv[argv.index(flag) + 1]


def test_demo_cli_overrides_reach_the_recorded_plan(tmp_path, capsys):
    from lm_latent import demo

    out = tmp_path / "d"
    assert demo.main(["--quick", "--out", str(out), "--stop-after", "data", "--rates", "8",
                      "--finetune-steps", "7", "--no-progress"]) == 0
    plan = json.loads((out / demo.STATE_FILE).read_text())["plan"]
    assert plan["rates"] == [0, 8] and plan["finetune_steps"] == 7
    assert plan["compressor_steps"] == 7  # train would cap it at --max-steps anyway
    assert plan["train_base"] is False  # the shipped base, unless --train-base
    assert demo.main(["--quick", "--out", str(tmp_path / "t"), "--stop-after", "data", "--train-base",
                      "--no-progress"]) == 0
    assert json.loads((tmp_path / "t" / demo.STATE_FILE).read_text())["plan"]["train_base"] is True
    with pytest.raises(SystemExit):  # another plan in the same folder is refused, nothing deleted
        demo.main(["--quick", "--out", str(out), "--stop-after", "data", "--no-progress"])
    assert "another plan" in capsys.readouterr().err and (out / "data" / "gsm8k" / "train.jsonl").is_file()
    with pytest.raises(SystemExit):
        demo.main(["--quick", "--out", str(tmp_path / "e"), "--finetune-steps", "0"])
    assert "--finetune-steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(["--quick", "--out", str(tmp_path / "g"), "--group-by-length", "-1"])
    assert "--group-by-length must be >= 0" in capsys.readouterr().err and not (tmp_path / "g").exists()
    # the fair-chance variants: a base that never saw the solution format, latent steps, schedule
    assert demo.main(["--quick", "--out", str(tmp_path / "v"), "--stop-after", "data", "--base-corpus", "equations",
                      "--latent-finetune-steps", "9", "--schedule", "0, 16", "--group-by-length", "64",
                      "--no-progress"]) == 0
    plan = json.loads((tmp_path / "v" / demo.STATE_FILE).read_text())["plan"]
    assert (plan["base_corpus"], plan["base_prompt_loss"], plan["train_base"]) == ("equations", True, True)
    assert (plan["latent_finetune_steps"], plan["schedule"], plan["finetune_steps"]) == (9, "0,16", 80)
    assert plan["group_by_length"] == 64
    assert "We need to find" not in (tmp_path / "v" / "data" / "pretrain.jsonl").read_text()
    from lm_latent.demo.stages import base_config, demo_paths, train_config

    from lm_latent.demo.plan import plan_from_record

    recorded = plan_from_record(plan)
    paths = demo_paths(tmp_path / "v")
    assert train_config(recorded, paths, 16).max_steps == 9 and train_config(recorded, paths, 0).max_steps == 80
    assert train_config(recorded, paths, 16).finetune.schedule == (0, 16) and base_config(recorded).prompt_loss
    assert train_config(recorded, paths, 16).finetune.group_by_length == 64
    with pytest.raises(SystemExit):
        demo.main(["--quick", "--out", str(tmp_path / "s"), "--schedule", "0,x"])
    assert "--schedule" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_demo_first_stages_and_resume(tmp_path, capsys):
    from dataclasses import replace

    from lm_latent import demo

    plan = replace(demo.QUICK, n_train=64, n_test=4, base_steps=2, base_batch=8)
    tiny = _tiny_cfg(max_steps=plan.base_steps, batch_size=plan.base_batch)
    demo.run_demo(tmp_path, plan, progress=False, stop_after="base", base_config=tiny)
    assert re.search(r"stage 2/5 base \.\.\. \(about \d+ (s|min) left \(ETA \d\d:\d\d", capsys.readouterr().err)
    state = json.loads((tmp_path / demo.STATE_FILE).read_text())
    assert set(state["stages"]) == {"data", "base"}
    assert (tmp_path / "base" / "pretrain.json").is_file() and (tmp_path / "data" / "gsm8k" / "test.jsonl").is_file()
    recorded = json.loads((tmp_path / "base" / "pretrain.json").read_text())["data"]
    assert recorded == str(tmp_path / "data" / "pretrain.jsonl")
    demo.run_demo(tmp_path, plan, progress=False, stop_after="base", base_config=tiny)  # rerun: both skipped
    assert json.loads((tmp_path / demo.STATE_FILE).read_text())["stages"] == state["stages"]
    with pytest.raises(ValueError, match="another plan"):
        demo.run_demo(tmp_path, replace(plan, n_test=5), progress=False, stop_after="base", base_config=tiny)


def test_shipped_base_is_copied_checked_and_refused_where_it_does_not_fit(tmp_path, capsys, monkeypatch):
    """The default base: the shipped one, copied (files 0644) and loadable; damaged or unfit, a clear error."""
    import shutil
    from dataclasses import replace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent import demo
    from lm_latent.demo import pretrained

    plan = replace(demo.QUICK, n_train=64, n_test=4)
    demo.run_demo(tmp_path / "d", plan, progress=False, stop_after="base")
    base = tmp_path / "d" / "base"
    assert "the one shipped with lm-latent" in capsys.readouterr().err
    assert {p.name for p in base.iterdir()} == {p.name for p in pretrained.PRETRAINED_DIR.iterdir()}
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in base.iterdir())
    record = json.loads((base / "pretrain.json").read_text())
    assert record["steps"] == demo.FULL.base_steps and record["recipe"]["n_test_excluded"] >= demo.FULL.n_test
    tok = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    assert sum(p.numel() for p in model.parameters()) == record["parameters"] and len(tok) == record["vocab_size"]
    for bad, match in ((replace(plan, n_test=1001), "n_test 1001"), (replace(plan, seed=1), "seed 1"),
                       (replace(plan, terse_fraction=0.3), "terse_fraction"),
                       (replace(plan, base_corpus="equations"), "base corpus"),
                       (replace(plan, base_prompt_loss=True), "prompt loss")):
        with pytest.raises(ValueError, match=match):
            demo.run_demo(tmp_path / "refused", bad, progress=False, stop_after="base")
        assert not (tmp_path / "refused").exists()  # refused before anything is written
    broken = tmp_path / "broken"
    shutil.copytree(pretrained.PRETRAINED_DIR, broken)
    (broken / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", broken)
    with pytest.raises(RuntimeError, match="damaged"):
        pretrained.copy_pretrained(tmp_path / "copy")
    assert not (tmp_path / "copy" / "pretrain.json").exists()


def test_eta_rescales_the_rest_by_the_pace_of_what_finished():
    from dataclasses import replace

    from lm_latent.demo import FULL, QUICK
    from lm_latent.demo.eta import Eta, estimates

    assert estimates(FULL)["base"] < 5  # the shipped base is copied
    est = estimates(replace(FULL, train_base=True))
    assert set(est) == {"base", "sweep", *(f"adapter {r}" for r in FULL.rates)}
    assert 700 < est["base"] < 830  # the full run's base took 764.5 s (docs/demo.md)
    assert est["adapter 16"] > est["adapter 0"] > 0  # a latent rate also trains its compressor
    assert sum(estimates(QUICK).values()) < sum(est.values()) / 4
    eta = Eta(replace(FULL, train_base=True))
    assert eta.remaining() == pytest.approx(sum(est.values())) and "2 idle cores" in eta.line()
    eta.done("base", 2 * est["base"])  # this machine runs at half the pace
    assert eta.remaining() == pytest.approx(2 * (sum(est.values()) - est["base"]))
    assert "x2.00" in eta.line()
    eta.skip("adapter 0")  # already trained: neither counted nor waited for
    assert eta.remaining() == pytest.approx(2 * (sum(est.values()) - est["base"] - est["adapter 0"]))
    resumed = Eta(replace(FULL, train_base=True), skipped={"base"})
    assert resumed.remaining() == pytest.approx(sum(est.values()) - est["base"])


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    """``demo --quick`` exercises the method's path: latents generated, counted, logged, graded without them."""
    import subprocess

    from lm_latent import demo
    from lm_latent.sweep.report import collect

    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "lm_latent.cli", "demo", "--quick", "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "ETA" in proc.stderr  # the run says when it will finish
    report = (out / "report.md").read_text()
    assert "Results" in report and "rate" in report
    assert report.count("generation s") == 1  # one table per fact: the two tables do not repeat each other
    assert (out / "results" / "chart.png").is_file() and (out / "results" / "results.csv").is_file()
    for rate in demo.QUICK.rates:
        assert (out / "adapters" / f"rate{rate}" / "latent.json").is_file()
    rows = {r.rate: r for r in collect(out / "results")}
    assert sorted(rows) == sorted(demo.QUICK.rates)
    assert rows[0].avg_latent_usage == 0.0
    assert rows[0].avg_gen_tokens < demo.QUICK.max_gen_toks, report  # CoT answers end, not run to the budget
    for rate in (r for r in demo.QUICK.rates if r):
        assert rows[rate].avg_latent_usage > 0, (rate, report)  # answers go through latents
        found = (out / "results" / f"rate{rate}").rglob("samples_latent_math_gsm8k_*.jsonl")
        samples = [json.loads(line) for path in found
                   for line in path.read_text().splitlines()]
        assert len(samples) == demo.QUICK.n_test
        with_latents = [s for s in samples if s["latent_tokens"] > 0]
        assert with_latents and all("<latent_" in s["resps"][0][0] for s in with_latents)  # visible in the log
        # decode_latents=true: every answer with latents carries the compressor's reading of them
        assert all(isinstance(s["latent_text"], str) for s in samples)
        assert all(s["latent_text"] and "<latent_" not in s["latent_text"] for s in with_latents)
        assert "## Latents, read back" in report and repr(with_latents[0]["latent_text"]) in report
        # graded on the text with the latent spans removed: the logged acc is that of the stripped text
        from lm_latent.grading import grade, strip_latent

        for s in with_latents[:10]:
            text = s["resps"][0][0]
            assert "<latent_" not in strip_latent(text)
            assert s["acc"] == float(grade(strip_latent(text), s["target"]).correct), s
    # rerun: every stage is skipped
    proc = subprocess.run([sys.executable, "-m", "lm_latent.cli", "demo", "--quick", "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "skipped" in proc.stderr
    assert rows[0].avg_accuracy >= 0.2, report  # on the shipped base, the CoT baseline solves problems
    for rate in (r for r in demo.QUICK.rates if r):
        assert rows[rate].avg_latent_usage > 0.5, (rate, report)  # latents in most answers
    # what the codes tell, scored on the real compressor's codes of the held-out traces
    codes = report.split("## What the codes identify", 1)[1]
    assert re.search(r"\| 16 \| opener \| \d+ \| 3 \| \d+\.\d \| \d+\.\d \|", codes), codes
    # the variants table over runs: one row per rate against the run's own CoT
    from lm_latent.demo.analysis import compare

    table = compare.table([("quick", out)])
    assert table.count("\n| quick |") == len(demo.QUICK.rates), table
    assert f"| quick | 0 (CoT) | {demo.QUICK.finetune_steps} | {100 * rows[0].avg_accuracy:.1f} ± " in table


@pytest.mark.parametrize("acc,tokens", [((0.017, 0.0), (200.0, 200.0)),  # the old quick run: 0% at rate 16
                                        ((0.867, 0.803, 0.803), (130.7, 90.8, 88.1)),
                                        ((0.98, 0.99, 1.0), (120.0, 80.0, 60.0))])  # 100% at the last rate
def test_chart_labels_never_overlap(acc, tokens):
    """Accuracy labels, token labels, tick labels and the legend each have their own place."""
    from lm_latent.sweep.report import RateRow, draw_chart

    rows = [RateRow(rate=rate, accuracy={"gsm8k": a}, gen_tokens={"gsm8k": t})
            for rate, a, t in zip((0, 8, 16), acc, tokens)]
    fig = draw_chart(rows)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax_acc = fig.axes[0]
    texts = [*ax_acc.texts, *fig.axes[1].texts, *ax_acc.get_xticklabels(), ax_acc.xaxis.label,
             *fig.legends[0].get_texts()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_text()]
    assert sum(name.endswith(" tok") for name, _ in boxes) == len(rows)  # every token count is shown
    for i, (name_a, a) in enumerate(boxes):
        assert fig.bbox.contains(a.x0, a.y0) and fig.bbox.contains(a.x1, a.y1), name_a  # nothing cut off
        for name_b, b in boxes[i + 1:]:
            assert not a.overlaps(b), (name_a, name_b)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_decoded_accuracy_counts_answers_that_open_with_latents(tmp_path):
    """The report's decoded-text accuracy: position by position against the reference trace's opening."""
    from transformers import AutoTokenizer

    from lm_latent.demo.base import train_tokenizer
    from lm_latent.demo.report import decoded_accuracy
    from lm_latent.training.data import examples_from_rows

    rows = [synthetic.gsm8k_row(r) for r in synthetic.generate(200, seed=1)]
    train_tokenizer([ex.text for ex in examples_from_rows(rows)], tmp_path, vocab_size=512)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    doc = {"question": "Sam has 34 beads.", "answer": "Sam has 34 beads. He loses 26 of them.\n#### 8"}

    def sample(resp: str, latent_text: str) -> dict:
        return {"doc": doc, "resps": [[resp]], "latent_text": latent_text, "latent_tokens": resp.count("<latent_")}

    span = "<boLatent><latent_3><latent_9><eoLatent>"
    exact = sample(span + " so 8", "Sam has 34 beads.")  # the trace's opening, token for token
    n_exact = len(tok(" Sam has 34 beads.", add_special_tokens=False)["input_ids"])
    half = sample(span + " so 8", "Sam has 12 beads.")  # the digits wrong, the words right
    half_ids = tok(" Sam has 12 beads.", add_special_tokens=False)["input_ids"]
    ref_ids = tok(" " + doc["answer"].split("####")[0].strip(), add_special_tokens=False)["input_ids"]
    half_hits = sum(a == b for a, b in zip(half_ids, ref_ids))
    assert 0 < half_hits < len(half_ids)
    ignored = [sample("no latents here, 8", ""), sample("Sam has " + span + " 8", "Ann has 12 beads.")]
    acc, answers = decoded_accuracy([exact, half, *ignored], tok)
    assert answers == 2
    assert acc == pytest.approx((n_exact + half_hits) / (n_exact + len(half_ids)))
    assert math.isnan(decoded_accuracy(ignored, tok)[0])


def test_target_is_one_se_below_cot_with_fewer_tokens_and_less_time():
    """The report's rule: accuracy >= CoT's minus its SE, tokens <= 83% and generation time <= 85% of CoT's."""
    from lm_latent.demo.report import meets_target
    from lm_latent.sweep.report import RateRow

    def row(acc: float, tokens: float, seconds: float) -> RateRow:
        return RateRow(rate=16, accuracy={"gsm8k": acc}, gen_tokens={"gsm8k": tokens}, n_samples={"gsm8k": 1000},
                       generation_seconds=seconds)

    cot = row(0.80, 100.0, 40.0)
    se = math.sqrt(0.8 * 0.2 / 1000)
    assert cot.avg_stderr == pytest.approx(se)
    assert meets_target(row(0.80 - 0.9 * se, 83.0, 34.0), cot)
    assert not meets_target(row(0.80 - 1.1 * se, 83.0, 34.0), cot)  # more than one SE below
    assert not meets_target(row(0.85, 84.0, 30.0), cot)  # too few tokens saved
    assert not meets_target(row(0.85, 70.0, 35.0), cot)  # too little time saved
    assert not meets_target(row(0.85, 70.0, math.nan), cot)  # no time measured: not met
    from lm_latent.demo.report import gap_in_se

    assert gap_in_se(row(0.80 - 2 * se, 83.0, 34.0), cot) == pytest.approx(-2.0)
    assert math.isnan(gap_in_se(row(0.1, 83.0, 34.0), row(0.0, 100.0, 40.0)))  # CoT at 0%: SE 0, no crash


def test_code_content_scores_what_a_code_tells_against_the_position_alone():
    """A code that names the chunk's person tells it on unseen problems; a collapsed code tells nothing more
    than the chunk position."""
    from lm_latent.demo.analysis.code_content import FEATURES, replaced_positions, score

    problems = synthetic.generate(1000, seed=3)
    chunks = [(i, p["answer"].split(".")[0], sentence) for i, p in enumerate(problems)
              for sentence in p["question"].split(". ")[:2]]
    names = [n for n, _ in synthetic.NAMES]
    person = FEATURES["person"]
    telling = [(i, (names.index(person(text)) if person(text) else 99,), text, opener) for i, opener, text in chunks]
    collapsed = [(i, (7,), text, opener) for i, opener, text in chunks]
    told = {s.feature: s for s in score(telling)}
    blind = {s.feature: s for s in score(collapsed)}
    assert set(told) == {"opener", "person", "item", "number"}
    assert told["person"].by_code == 1.0 and told["person"].values > 10
    assert told["person"].by_position < 0.2 and told["person"].chunks > 100
    assert all(blind[f].by_code == blind[f].by_position for f in blind)
    assert replaced_positions("0,48", 16) == 3 and replaced_positions("0,48", 32) == 1
    assert replaced_positions("8", 16) == 1


@pytest.mark.usefixtures("one_torch_thread")
def test_loss_parts_split_the_whole_loss_by_what_each_token_is(tmp_path, tiny_base):
    """The parts add up to the adapter's own teacher-forced loss (HF's, computed here on the plain
    traces), the restatement ends at the goal sentence, and a latent span's codes are counted as codes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.adapter.load import attach_adapter, check_adapter
    from lm_latent.demo.analysis.loss_parts import PARTS, split_points, loss_parts
    from lm_latent.adapter.init import init_adapter
    from lm_latent.training.data import load_examples, tokenize_examples

    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps(p) + "\n" for p in synthetic.generate(6, seed=5)))
    for rate in (0, 4):
        init_adapter(str(tiny_base), rate, 0 if rate == 0 else 16, tmp_path / f"rate{rate}")
    plain = loss_parts(tmp_path / "rate4", test_file, schedule=0)

    config = check_adapter(tmp_path / "rate4")
    model = attach_adapter(AutoModelForCausalLM.from_pretrained(str(tiny_base)), tmp_path / "rate4", config)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base))
    examples = load_examples(str(test_file))
    total, targets = 0.0, 0
    with torch.no_grad():
        for s in tokenize_examples(examples, tokenizer, progress=False):
            labels = [-100] * len(s.prompt_ids) + s.trace_ids + s.solution_ids
            n = sum(1 for t in labels[1:] if t >= 0)
            total += float(model(torch.tensor([s.input_ids]), labels=torch.tensor([labels])).loss) * n
            targets += n
    assert sum(plain.loss.values()) == pytest.approx(total, rel=1e-4)
    assert sum(plain.tokens.values()) == targets and plain.tokens["codes"] == plain.tokens["delimiters"] == 0
    restated = sum(split_points(e.trace, tokenizer)[0] for e in examples)
    assert plain.tokens["restatement"] == restated > 0 and plain.tokens["goal"] > 0
    assert plain.tokens["arithmetic"] > plain.tokens["goal"]

    latent = loss_parts(tmp_path / "rate4", test_file, schedule=8)  # 8 tokens: 2 chunks of 4, 1 latent each
    assert latent.tokens["codes"] == 2 * 6 and latent.tokens["delimiters"] == 2 * 6
    assert latent.tokens["restatement"] == plain.tokens["restatement"] - 8 * 6
    assert latent.tokens["arithmetic"] == plain.tokens["arithmetic"]
    assert loss_parts(tmp_path / "rate0", test_file, schedule=8).tokens == plain.tokens  # CoT: plain traces
    assert set(plain.loss) == set(PARTS)
