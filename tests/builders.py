"""Builders shared by several test modules: tiny data folders, the plugin's TaskManager, CLI runs,
and the head-64 Llama with a non-trivial adapter that vLLM's CPU backend needs.

Test modules import these from here (``from builders import ...``), never from each other, so a
test module stays free to change. Fixtures built on them live in ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

#: Tiny GSM8K-like problems with their answers (``write_data_dir`` writes them for every benchmark).
PROBLEMS = [
    ("Ann has 3 apples and buys 4 more. How many apples does Ann have?", "7"),
    ("Ben had 12 coins and gave away 5. How many coins are left?", "7"),
    ("Cara reads 10 books a week. How many in 3 weeks?", "30"),
]

#: Questions for the vLLM tests (more of them: a batch that mixes latent and text answers).
VLLM_QUESTIONS = [
    "Ann has 3 apples and buys 4 more. How many apples does Ann have?",
    "Ben had 12 coins and gave away 5. How many coins are left?",
    "Cara reads 10 books a week. How many in 3 weeks?",
    "Dev has 25 marbles. He buys 17 more and gives away 9. How many marbles does Dev have now?",
    "Eli bakes 6 trays of 12 cookies each. How many cookies does Eli bake?",
    "Fay has 100 stickers and gives 4 friends 15 each. How many are left?",
]


def write_data_dir(root: Path) -> Path:
    """A data_dir laid out like shared/data, with a few tiny rows per benchmark."""
    (root / "gsm8k").mkdir(parents=True)
    (root / "math").mkdir()
    (root / "math500").mkdir()
    with open(root / "gsm8k" / "test.jsonl", "w") as f:
        for q, a in PROBLEMS:
            f.write(json.dumps({"question": q, "answer": f"Some steps.\n#### {a}"}) + "\n")
    with open(root / "math" / "test.jsonl", "w") as f:
        for q, a in PROBLEMS:
            f.write(json.dumps({"problem": q, "solution": f"So it is $\\boxed{{{a}}}$.", "level": "Level 1",
                                "type": "Algebra"}) + "\n")
    with open(root / "math500" / "test.jsonl", "w") as f:
        for i, (q, a) in enumerate(PROBLEMS):
            f.write(json.dumps({"problem": q, "solution": f"$\\boxed{{{a}}}$", "answer": a, "subject": "Algebra",
                                "level": 1, "unique_id": str(i)}) + "\n")
    return root


def plugin_task_manager(metadata: dict):
    """Only the plugin's tasks: skips indexing lm-eval's ~15k built-ins (seconds per test)."""
    from lm_eval.tasks import TaskManager

    from lm_latent.autoload import task_dir

    return TaskManager(include_path=task_dir(), include_defaults=False, metadata=metadata)


def run_cli(lm_eval: str, base, adapters, data_dir, out, tasks="latent_math_gsm8k,latent_math_math", env=None,
            rate="4", prefix=()):
    """``lm_eval --model latent`` (or ``lm-latent eval`` with ``prefix=["eval"]``) on two problems per task."""
    cmd = [lm_eval, *prefix, "--model", "latent",
           "--model_args", f"pretrained={base},rate={rate},adapters={adapters},max_gen_toks=16",
           "--tasks", tasks, "--limit", "2", "--batch_size", "2", "--metadata", f"data_dir={data_dir}",
           "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = sorted(Path(out).rglob("results_*.json"))
    assert results, f"no results JSON under {out}"
    return proc, json.loads(results[-1].read_text()), sorted(Path(out).rglob("samples_*.jsonl"))


def build_head64_llama(out, tokenizer, hidden: int = 128, layers: int = 2, seed: int = 0):
    """A tiny Llama with head_dim 64: vLLM's CPU attention rejects head_dim 16 (the repo's tiny default)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=1,
                         head_dim=64, max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


def nontrivial_adapter(base, out, rate: int = 4, codebook: int = 8, k: float = 0.08, seed: int = 1):
    """An init-adapter made non-trivial: random LoRA B (the merge moves every linear layer) and the
    row of ``<latent_3>`` aimed at the model's mean final hidden state, so greedy answers mix text
    and latent ids, in seconds and with no training (a few steps of ``lm-latent train`` on a random
    model do not reliably do that; ``tests/models/test_vllm_full.py`` trains one in the vLLM venv).
    """
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.adapter.load import attach_adapter, check_adapter
    from lm_latent.adapter.init import init_adapter
    from lm_latent.prompts import PROMPT_TEMPLATE

    init_adapter(str(base), rate, codebook, out)
    path = out / "adapter_model.safetensors"
    weights = load_file(path)
    gen = torch.Generator().manual_seed(seed)
    for name in weights:
        if "lora_B" in name:
            weights[name] = torch.randn(weights[name].shape, generator=gen) * 0.05
    save_file(weights, path, metadata={"format": "pt"})
    config = check_adapter(out)
    model = attach_adapter(AutoModelForCausalLM.from_pretrained(str(base)), out, config)
    tok = AutoTokenizer.from_pretrained(str(out))
    with torch.no_grad():
        states = [model(tok(PROMPT_TEMPLATE.format(query=q), return_tensors="pt").input_ids,
                        output_hidden_states=True).hidden_states[-1][0] for q in VLLM_QUESTIONS]
    mean = torch.cat(states).mean(0)
    delta = next(n for n in weights if "trainable_tokens_delta" in n)
    weights[delta][tok.convert_tokens_to_ids("<latent_3>") - config.base_vocab_size] = mean / mean.norm() * k
    save_file(weights, path, metadata={"format": "pt"})
    return out


def evaluate_latent(model_args: dict, data_dir, tasks=("latent_math_gsm8k", "latent_math_math"), limit=2, **kwargs):
    """``simple_evaluate`` of ``--model latent`` on :func:`write_data_dir`'s problems, samples logged."""
    from lm_eval import simple_evaluate

    return simple_evaluate(model="latent", model_args=model_args, tasks=list(tasks), limit=limit,
                           task_manager=plugin_task_manager({"data_dir": str(data_dir)}),
                           log_samples=True, **kwargs)
