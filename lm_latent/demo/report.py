"""The demo's ``report.md``: what was run, the sweep's table and chart, per-rate latent and
compressor statistics, whether a rate met the target, and how to rerun one rate by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lm_latent.demo import stages
from lm_latent.demo.plan import DemoPlan
from lm_latent.demo.stages import State


def _eval_seconds(results_dir: Path, rate: int) -> float:
    from lm_latent.sweep.report import latest_results_json

    path = latest_results_json(results_dir / f"rate{rate}")
    if path is None:
        return math.nan
    try:
        return float(json.loads(path.read_text(encoding="utf-8")).get("total_evaluation_time_seconds", math.nan))
    except (ValueError, TypeError):
        return math.nan


def _samples(results_dir: Path, rate: int) -> list[dict]:
    return [json.loads(line) for path in sorted((results_dir / f"rate{rate}").rglob("samples_*gsm8k_*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _reference_trace(doc: dict) -> str:
    """The held-out problem's own trace (the task's ``solution``; ``answer`` in GSM8K rows) without ``#### N``."""
    return str(doc.get("solution", doc.get("answer", ""))).rsplit("####", 1)[0].strip()


def decoded_accuracy(samples: list[dict], tokenizer) -> tuple[float, int]:
    """Token accuracy of the decoded latent text against the reference trace's opening tokens.

    Only answers that open with their latent span count (there the span stands for the
    trace's first tokens, which is what CoT would have written); returns (accuracy, answers).
    """
    from lm_latent.adapter.vocab import BO_LATENT

    hits = total = answers = 0
    for s in samples:
        text, decoded = s["resps"][0][0], s.get("latent_text") or ""
        if not decoded or not text.lstrip().startswith(BO_LATENT):
            continue
        got = tokenizer(" " + decoded.strip(), add_special_tokens=False)["input_ids"]
        want = tokenizer(" " + _reference_trace(s["doc"]), add_special_tokens=False)["input_ids"][:len(got)]
        hits += sum(a == b for a, b in zip(got, want))
        total += len(got)
        answers += 1
    return (hits / total if total else math.nan), answers


def latent_examples(plan: DemoPlan, paths: dict, n: int = 3) -> list[str]:
    """Report lines: a few answers of the top rate with their latents read back by the compressor."""
    from transformers import AutoTokenizer

    from lm_latent.grading import strip_latent
    from lm_latent.sweep.report import _fmt
    from lm_latent.adapter.vocab import EO_LATENT

    rate = max(plan.rates)
    samples = _samples(paths["results"], rate) if rate else []
    if not samples or "latent_text" not in samples[0]:
        return []
    lines = ["## Latents, read back", "",
             f"Rate {rate}, decoded by the adapter's compressor (`decode_latents=true`) given the prompt. "
             "The reference is the held-out problem's own trace, what the CoT adapter is trained to write there."]
    tokenizer = AutoTokenizer.from_pretrained(str(paths["adapters"] / f"rate{rate}"))
    acc, counted = decoded_accuracy(samples, tokenizer)
    lines += ["", f"Decoded-text token accuracy against the reference trace (%): {_fmt(acc, pct=True)}, "
              f"over the {counted} answers that open with latents ({sum(s['latent_tokens'] > 0 for s in samples)} of "
              f"{len(samples)} answers hold latents).", ""]
    shown = [s for s in samples if s.get("latent_text")][:n]
    for i, s in enumerate(shown, 1):
        text = s["resps"][0][0]
        span = text[:text.rfind(EO_LATENT) + len(EO_LATENT)] if EO_LATENT in text else text
        lines += [f"**Example {i}** ({'correct' if s['acc'] else 'wrong'})", "",
                  f"- problem: {s['doc'].get('problem', s['doc'].get('question'))}",
                  f"- latent span: `{span.strip()}`",
                  f"- decoded: {s['latent_text']!r}",
                  f"- reference: {_reference_trace(s['doc'])[:len(s['latent_text']) + 40]!r}",
                  f"- the rest of the answer: {strip_latent(text[len(span):]).strip()!r}", ""]
    return lines


TARGET = ("accuracy at least CoT's minus one standard error, with >= 17% fewer generated tokens and >= 15% "
          "less generation time")


def meets_target(row, base) -> bool:
    """The published claim in miniature: one latent rate against the CoT row of its own run (NaN time: not met)."""
    return (row.avg_accuracy >= base.avg_accuracy - base.avg_stderr
            and row.avg_gen_tokens <= 0.83 * base.avg_gen_tokens
            and row.generation_seconds <= 0.85 * base.generation_seconds)


def gap_in_se(row, base) -> float:
    """Accuracy difference from CoT in CoT standard errors (NaN where CoT's SE is 0: 0% or 100%)."""
    return (row.avg_accuracy - base.avg_accuracy) / base.avg_stderr if base.avg_stderr > 0 else math.nan


def _acc(row) -> str:
    return f"{100 * row.avg_accuracy:.1f} ± {100 * row.avg_stderr:.1f}%"


def _steps_line(plan: DemoPlan) -> str:
    if plan.steps_for(max(plan.rates)) == plan.finetune_steps:
        return f"every rate fine-tuned {plan.finetune_steps} steps"
    return (f"rate 0 fine-tuned {plan.finetune_steps} steps, the latent rates {plan.latent_finetune_steps} "
            "(--latent-finetune-steps)")


def codes_section(plan: DemoPlan, paths: dict) -> list[str]:
    """Report lines: what one latent code tells of the chunk it replaced (``demo.analysis.code_content``)."""
    from lm_latent.demo.analysis.code_content import code_rows, markdown, score

    rates = [r for r in plan.rates if r and (paths["adapters"] / f"rate{r}").is_dir()]
    if not rates:
        return []
    by_rate = {r: score(code_rows(paths["adapters"] / f"rate{r}", paths["base"], paths["test"], plan.schedule))
               for r in rates}
    return ["## What the codes identify", "",
            "For the trace chunks the schedule replaces, how often the value a chunk holds (its opener for the "
            "first chunk; the first person, item and number in it) is told by the chunk's code: the most frequent "
            "value per (position, code), fitted on the first half of the held-out problems and scored on the "
            "second, against the most frequent value per position alone (a code that tells nothing).", "",
            markdown(by_rate), ""]


def build_report(plan: DemoPlan, paths: dict, state: State) -> str:
    """``OUT/report.md``: what was run, the sweep's table and chart, the latent statistics, the target."""
    from lm_latent.sweep.report import _fmt, collect

    rows = {r.rate: r for r in collect(paths["results"])}
    stage_times = state.data["stages"]
    base = json.loads((paths["base"] / "pretrain.json").read_text(encoding="utf-8"))
    results_md = paths["results"] / "results.md"
    table = results_md.read_text(encoding="utf-8") if results_md.is_file() else ""
    lines = [f"# lm-latent demo ({plan.name})", "",
             "A miniature of the Token Assorted rate sweep, run offline on CPU by `lm-latent demo"
             + (" --quick" if plan.name == "quick" else "") + "`.", ""]
    if plan.name == "quick":
        lines += ["**Quick mode: the numbers only prove that the pipeline runs end to end.**", ""]
    lines += ["## What was run", "",
              f"- data: {plan.n_train} synthetic GSM8K-like training problems (2-4 steps), {plan.n_test} held-out "
              f"(`{paths['data']}`)",
              f"- base model: tiny Llama, {base['parameters'] / 1e6:.2f}M parameters, own BPE tokenizer "
              f"({base['vocab_size']} ids), {base['steps']} steps at batch {base['config']['batch_size']}"
              f"{', the one shipped with lm-latent' if 'trained_by' in base else ''} "
              f"({_fmt(base.get('seconds_per_step'), '.2f')} s/step, final loss {_fmt(base.get('final_loss'), '.3f')})"
              + ("; its corpus: the questions (with the prompt loss) and bare equations, never the solution format"
                 if plan.base_corpus == "equations" else ""),
              f"- adapters: rates {', '.join(map(str, plan.rates))}; " + _steps_line(plan) + " "
              f"(LoRA r={plan.lora_r}, lr {plan.finetune_lr}, batch {plan.finetune_batch}); compressors "
              f"{plan.compressor_steps} steps, codebook {plan.codebook_size}; schedule m in {{{plan.schedule}}}",
              f"- evaluation: `lm_eval --model latent --tasks latent_math_gsm8k --metadata data_dir=...` "
              f"on the held-out set, "
              f"greedy, max_gen_toks={plan.max_gen_toks}", "",
              "## Results", "", table, "![accuracy and generated tokens vs rate](results/chart.png)", "",
              # the sweep's table above has accuracy, tokens, usage and times: only what it lacks here
              "Latents and adapters per rate (latent tokens per answer; compressor reconstruction "
              "accuracy on held-out chunks; share of fine-tuning samples that carried latents):", "",
              "| rate | latent tokens | lm-eval s | codebook usage | recon acc % (all / trace) | "
              "mixed samples with latents % |",
              "|---|---|---|---|---|---|"]
    adapters = stage_times.get("adapters", {}).get("info", {})
    for rate in plan.rates:
        r = rows.get(rate)
        m = adapters.get(str(rate), {}).get("metrics", {})
        lat_tok = r._mean(r.latent_tokens) if r else math.nan
        lines.append("| " + " | ".join([
            "0 (CoT)" if rate == 0 else str(rate), _fmt(lat_tok, ".2f"),
            _fmt(_eval_seconds(paths["results"], rate), ".0f"),
            _fmt(m.get("codebook_usage"), ".2f"),
            f"{_fmt(m.get('recon_accuracy'), pct=True)} / {_fmt(m.get('trace_recon_accuracy'), pct=True)}",
            _fmt(m.get("samples_with_latents"), pct=True)]) + " |")
    lines += ["", "## The target", ""]
    b = rows.get(0)
    if b is None:
        lines.append("No rate-0 result: no comparison possible.")
    else:
        hits = [r for rate, r in sorted(rows.items()) if rate and meets_target(r, b)]
        if hits:
            best = min(hits, key=lambda r: r.avg_gen_tokens)
            lines.append(f"Met at rate {best.rate} ({TARGET}): accuracy {_acc(best)} vs {_acc(b)} (CoT), "
                         f"{100 * (1 - best.avg_gen_tokens / b.avg_gen_tokens):.1f}% fewer generated tokens, "
                         f"{100 * (1 - best.generation_seconds / b.generation_seconds):.1f}% less generation time.")
        else:
            lines.append(f"Not met ({TARGET}; CoT: {_acc(b)}, {b.avg_gen_tokens:.1f} tokens). Trade-offs per rate:")
        from lm_latent.sweep.paired import AVERAGE, compare, reading

        comparisons = compare(list(rows.values()))  # the same documents at every rate: paired (sweep.paired)
        for rate, r in sorted(rows.items()):
            if rate:
                time = (f", {100 * (r.generation_seconds / b.generation_seconds - 1):+.1f}% generation time"
                        if b.generation_seconds > 0 else "")
                lines.append(f"- rate {rate}: {100 * (r.avg_accuracy - b.avg_accuracy):+.1f} points "
                             f"({gap_in_se(r, b):+.1f} CoT SE), "
                             f"{100 * (r.avg_gen_tokens / b.avg_gen_tokens - 1):+.1f}% tokens{time}; paired "
                             f"against CoT: {reading(rate, comparisons[rate][AVERAGE]).split(': ', 1)[1]}")
    lines += ["", *latent_examples(plan, paths), *codes_section(plan, paths)]
    top = max(plan.rates)
    lines += ["", "## By hand", "",
              "One rate as the sweep ran it (the demo's generation budget and batch size; without "
              "`max_gen_toks` a model that never stops runs to lm-eval's default of 2048 tokens per problem):", "",
              "    lm_eval " + " ".join(stages.by_hand_argv(plan, paths, top, paths["report"].parent / "by_hand"))]
    lines += ["", "## Stage times", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {info['seconds']} |" for name, info in stage_times.items()]
    quick = " --quick" if plan.name == "quick" else ""
    lines += ["", f"Rerun `lm-latent demo{quick} --out {paths['report'].parent}` "
              "to continue an interrupted run; finished stages are skipped.", ""]
    return "\n".join(lines)
