"""Prompt and per-sample scoring shared by every lm-latent math task."""

from __future__ import annotations

import math
from typing import Sequence

from lm_latent.prompts import PROMPT_TEMPLATE

#: One answer's whole grading budget in seconds (every reading, alternative reference and
#: worker restart shares it; see docs/grading.md). A benchmark of N answers therefore spends
#: at most about N x this on grading: 12,000 answers, every one adversarial, 10 h; real
#: answers take milliseconds (the slowest real reference pairs measured take ~1-2 s).
GRADING_TIMEOUT_S = 3.0


def doc_to_text(doc: dict) -> str:
    return PROMPT_TEMPLATE.format(query=doc["problem"])


def process_results(doc: dict, results: list[str]) -> dict[str, object]:
    """Accuracy by sympy equivalence, plus the exact token counts the ``latent`` model attached.

    ``grading_timeout``/``grading_error``: the answer's grading budget ran out, or grading
    failed (logged); both count as wrong and never abort the run.

    ``gen_tokens``/``latent_tokens`` are NaN when the model did not count (e.g. ``--model hf``
    or ``--use_cache``): counting by re-tokenizing text would be wrong for latent tokens.

    ``codebook_usage``/``latent_span_diversity`` are per-answer values (the answer's codes, its
    latent spans) that corpus-level aggregations below turn into the two failure-mode statistics.
    ``latent_text`` (``decode_latents=true`` only) is the compressor's reading of the latents,
    logged beside the raw generation.
    """
    from lm_latent.grading import grade

    generation = results[0]
    result = grade(generation, doc["answer"], timeout=GRADING_TIMEOUT_S,
                   multiple=bool(doc.get("is_multiple_answer")))
    gen_tokens = getattr(generation, "gen_tokens", math.nan)
    latent_tokens = getattr(generation, "latent_tokens", math.nan)
    truncated = getattr(generation, "truncated", math.nan)  # hit max_gen_toks (no end, no stop)
    spans = getattr(generation, "latent_spans", None) or ()
    counted = hasattr(generation, "latent_spans") and generation.latent_spans is not None
    out: dict[str, object] = {
        "acc": float(result.correct),
        "gen_tokens": float(gen_tokens),
        "latent_tokens": float(latent_tokens),
        "latent_usage": float(latent_tokens > 0) if latent_tokens == latent_tokens else math.nan,
        "grading_timeout": float(result.timed_out),
        "grading_error": float(result.error),
        "truncated": float(truncated),
        "codebook_usage": ({"codes": sorted({c for span in spans for c in span}),
                            "codebook_size": int(getattr(generation, "codebook_size", 0))} if counted else None),
        "latent_span_diversity": [list(span) for span in spans] if counted else None,
    }
    latent_text = getattr(generation, "latent_text", None)
    if latent_text is not None:
        out["latent_text"] = latent_text
    return out


# -- corpus-level aggregations of the per-answer latent values (``!function`` in the task YAML) --

def codebook_usage(items: Sequence) -> float:
    """Distinct codes used over all answers / K: codebook collapse shows as a small share.

    Each item is one answer's ``{"codes": [...], "codebook_size": K}`` (``None`` when the model
    did not count, e.g. ``--model hf`` or ``--use_cache``): NaN when no answer was counted or K is 0.
    """
    counted = [i for i in items if isinstance(i, dict)]
    size = max((int(i.get("codebook_size") or 0) for i in counted), default=0)
    if not counted or size <= 0:
        return float("nan")
    used: set[int] = set()
    for item in counted:
        used.update(int(c) for c in item.get("codes") or ())
    return len(used) / size


def latent_span_diversity(items: Sequence) -> float:
    """Distinct latent contents / answers that have latents: 1 = every answer's latents differ.

    Each item is one answer's list of spans (lists of codes), ``None`` when uncounted. A low
    value with latents present means the model emits the same latents whatever the problem.
    NaN when no answer has latents (that failure, skipped latents, is ``latent_usage``).
    """
    keys = [tuple(tuple(int(c) for c in span) for span in item) for item in items
            if isinstance(item, (list, tuple)) and any(len(span) for span in item)]
    return len(set(keys)) / len(keys) if keys else float("nan")


def decoded_share(items: Sequence) -> float:
    """``latent_text``'s entry in the results: the share of answers whose latents were read back.

    lm-eval logs a per-sample value only for a declared metric; the text itself is the point
    (``samples_*.jsonl``), this number only says how many answers had latents to read.
    """
    texts = [t for t in items if isinstance(t, str)]
    return sum(1 for t in texts if t) / len(texts) if texts else float("nan")
