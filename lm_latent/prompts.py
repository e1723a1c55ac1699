"""The prompt used for training and evaluation (MetaMathQA / DART-Math's Alpaca format)."""

PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{query}\n\n### Response: Let's think step by step."
)
