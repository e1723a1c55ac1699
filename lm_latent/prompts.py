"""The prompt format shared by training and evaluation (MetaMathQA's, with its CoT trigger).

Training data and the evaluation tasks must build prompts identically: a model fine-tuned
on one wording and asked in another loses accuracy for reasons unrelated to latents.
"""

from __future__ import annotations

PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{query}\n\n### Response: Let's think step by step."
)


def format_prompt(query: str) -> str:
    """The full prompt for one question; the model's response continues right after it."""
    return PROMPT_TEMPLATE.format(query=query)
