"""Prompt and per-sample scoring shared by every lm-latent math task."""

from __future__ import annotations

import math

from lm_latent.prompts import PROMPT_TEMPLATE

GRADING_TIMEOUT_S = 5.0


def doc_to_text(doc: dict) -> str:
    return PROMPT_TEMPLATE.format(query=doc["problem"])


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """Accuracy by sympy equivalence, plus the exact token counts the ``latent`` model attached.

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
        "truncated": float(truncated),
    }
