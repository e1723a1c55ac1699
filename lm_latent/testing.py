"""Tiny, offline stand-ins for a base model: a trained BPE tokenizer and random Llamas.

Used by the tests, the benchmarks and smoke runs; nothing here touches the network.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

_NAMES = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana"]
_THINGS = ["apples", "pencils", "marbles", "cookies", "stickers", "books", "coins", "eggs"]


def math_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """GSM8K-like sentences with LaTeX answers, enough to train a small BPE."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        who, what = rng.choice(_NAMES), rng.choice(_THINGS)
        lines.append(f"{who} has {a} {what} and buys {b} more. How many {what} does {who} have now?")
        lines.append(f"{who} had {a} {what}. {a} + {b} = {a + b}. The answer is: {a + b}")
        lines.append(f"So the total is $\\frac{{{a}}}{{{b}}}$ and \\boxed{{{a * b}}}. #### {a - b}")
    lines.append("Below is an instruction that describes a task. Write a response that appropriately "
                 "completes the request.\n\n### Instruction:\n\n### Response: Let's think step by step.")
    return lines


def build_tokenizer(out: str | os.PathLike, vocab_size: int = 600):
    """A byte-level BPE with Llama-3-like specials (BOS/EOS, no pad), saved to ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(math_corpus(), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(str(out))
    return fast


def build_llama(out: str | os.PathLike, tokenizer, tied: bool = True, hidden: int = 64,
                layers: int = 2, seed: int = 0, max_positions: int = 2048):
    """A random tiny ``LlamaForCausalLM`` saved (safetensors) with its tokenizer in ``out``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=max_positions, tie_word_embeddings=tied,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id)
    Path(out).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return model
