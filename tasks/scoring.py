"""Prompt and per-sample scoring shared by every lm-latent math task."""

from __future__ import annotations

import math

from lm_latent.prompts import PROMPT_TEMPLATE

#: One answer's whole grading budget in seconds (every reading, alternative reference and
#: worker restart shares it; see docs/grading.md). A benchmark of N answers therefore spends
#: at most about N x this on grading: 12,000 answers, every one adversarial, 10 h; real
#: answers take milliseconds (the slowest real reference pairs measured take ~1-2 s).
GRADING_TIMEOUT_S = 3.0


def doc_to_text(doc: dict) -> str:
    return PROMPT_TEMPLATE.format(query=doc["problem"])


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """Accuracy by sympy equivalence, plus the exact token counts the ``latent`` model attached.

    ``grading_timeout``/``grading_error``: the answer's grading budget ran out, or grading
    failed (logged); both count as wrong and never abort the run.

    ``gen_tokens``/``latent_tokens`` are NaN when the model did not count (e.g. ``--model hf``
    or ``--use_cache``): counting by re-tokenizing text would be wrong for latent tokens.
    """
    from lm_latent.grading import grade

    generation = results[0]
    result = grade(generation, doc["answer"], timeout=GRADING_TIMEOUT_S,
                   multiple=bool(doc.get("is_multiple_answer")))
    gen_tokens = getattr(generation, "gen_tokens", math.nan)
    latent_tokens = getattr(generation, "latent_tokens", math.nan)
    truncated = getattr(generation, "truncated", math.nan)  # hit max_gen_toks (no end, no stop)
    return {
        "acc": float(result.correct),
        "gen_tokens": float(gen_tokens),
        "latent_tokens": float(latent_tokens),
        "latent_usage": float(latent_tokens > 0) if latent_tokens == latent_tokens else math.nan,
        "grading_timeout": float(result.timed_out),
        "grading_error": float(result.error),
        "truncated": float(truncated),
    }
