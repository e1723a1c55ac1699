"""The whole recipe at the real size on this machine: Llama-3.2-3B's architecture with random weights.

No hub access is needed: the base is a random-weight ``LlamaForCausalLM`` with the Llama-3.2-3B
config (28 layers, hidden 3072, intermediate 8192, 24 heads, 8 k/v heads, vocab 128,256, tied
embeddings, rope theta 500,000 with llama3 scaling), saved in bf16 as the hub's checkpoint is;
the tokenizer is the real Llama-3 one (``lm_latent.demo.tiny.build_llama3_tokenizer``, from the
``llama-models`` package); the data are MetaMathQA-format rows (``query``, ``response`` ending
"The answer is: X") made from GSM8K train (``../shared/data/gsm8k/train.jsonl``; synthetic rows
where that folder is absent). Stages, each with wall time, peak RSS, bytes written and (CUDA)
peak GPU memory:

    build base -> data + tokenize -> compressor (a few steps) -> encode traces -> load base + LoRA
    -> LoRA step 1 + checkpoint, then a simulated kill -> resume -> LoRA step 2 -> save adapter
    -> export (merged checkpoint) -> generate 16 tokens on 4 prompts with ``--model latent``

then the sizes of the adapter, the compressor and the merged checkpoint.

    python benchmarks/full_size.py --out /tmp/full_size             # ~13+ GiB RAM, minutes to tens of them
    python benchmarks/full_size.py --tiny --out /tmp/full_size_tiny  # the same path in seconds (a test runs it)

``benchmarks/gpu_smoke.py`` runs the same pipeline on a GPU (bf16, gradient checkpointing, LoRA
and full fine-tuning, identical greedy outputs across backends).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# The Llama-3.2-3B architecture (its config.json on the hub, less the ids that the tokenizer sets).
LLAMA_32_3B = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                   num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=True,
                   max_position_embeddings=131072, rms_norm_eps=1e-5, hidden_act="silu",
                   rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                      "high_freq_factor": 4.0,
                                                      "original_max_position_embeddings": 8192})
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, tie_word_embeddings=True, max_position_embeddings=2048, rms_norm_eps=1e-5,
            hidden_act="silu", rope_theta=500000.0)
TINY_COMPRESSOR = dict(hidden_size=64, num_layers=1, num_heads=4, codebook_dim=32, max_prompt_len=32)
GSM8K_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "train.jsonl"
GIB = 1024 ** 3


# -- measuring --------------------------------------------------------------------------------------------------

def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _written() -> int | None:
    """Bytes this process passed to write() so far (``/proc/self/io`` wchar), or None where unreadable."""
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))
    except (OSError, StopIteration, ValueError):
        return None


@dataclass
class Stage:
    name: str
    wall_s: float = 0.0
    peak_rss: int = 0
    written: int | None = None
    gpu_peak: int | None = None
    tokens: int | None = None  # tokens processed (training) or generated, for tokens/s
    note: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.wall_s if self.tokens and self.wall_s > 0 else None


@dataclass
class Meter:
    """Times consecutive stages; a thread samples RSS every 50 ms for each stage's peak."""

    stages: list[Stage] = field(default_factory=list)
    _current: Stage | None = None
    _t0: float = 0.0
    _w0: int | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            cur = self._current
            if cur is not None:
                cur.peak_rss = max(cur.peak_rss, _rss())

    def start(self, name: str) -> Stage:
        self.stop()
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._current = Stage(name, peak_rss=_rss())
        self._t0, self._w0 = time.perf_counter(), _written()
        return self._current

    def stop(self) -> None:
        cur = self._current
        if cur is None:
            return
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            cur.gpu_peak = torch.cuda.max_memory_allocated()
        cur.wall_s = time.perf_counter() - self._t0
        cur.peak_rss = max(cur.peak_rss, _rss())
        w1 = _written()
        cur.written = None if w1 is None or self._w0 is None else w1 - self._w0
        self.stages.append(cur)
        self._current = None
        print(f"  done: {format_row(cur)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.stop()
        self._stop.set()


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def format_row(s: Stage) -> str:
    gpu = f" gpu_peak={s.gpu_peak / GIB:.2f}GiB" if s.gpu_peak is not None else ""
    tps = f" {_rate(s.tokens_per_s)} tok/s" if s.tokens_per_s else ""
    written = f"{s.written / GIB:.2f}GiB" if s.written is not None else "n/a"
    return f"{s.name}: {s.wall_s:.1f}s rss_peak={s.peak_rss / GIB:.2f}GiB written={written}{gpu}{tps} {s.note}"


def table(stages: list[Stage]) -> str:
    cuda = any(s.gpu_peak is not None for s in stages)
    head = ("| stage | wall s | peak RSS GiB | written GiB |" + (" peak GPU GiB |" if cuda else "")
            + " tokens/s | note |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in stages:
        written = f"{s.written / GIB:.2f}" if s.written is not None else "n/a"
        gpu = (f" {s.gpu_peak / GIB:.2f} |" if s.gpu_peak is not None else " |") if cuda else ""
        tps = _rate(s.tokens_per_s) if s.tokens_per_s else ""
        rows.append(f"| {s.name} | {s.wall_s:.1f} | {s.peak_rss / GIB:.2f} | {written} |{gpu} {tps} | {s.note} |")
    return "\n".join(rows)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# -- inputs -----------------------------------------------------------------------------------------------------

def metamath_rows(n: int, source: Path | None = GSM8K_TRAIN) -> tuple[list[dict], str]:
    """``n`` MetaMathQA-format rows from GSM8K train (calculator annotations dropped), else synthetic ones."""
    from lm_latent.training.data import GSM8K_MARK, remove_calculator_annotations, synthetic_gsm8k

    if source is not None and Path(source).is_file():
        raw, where = [], str(source)
        with open(source, encoding="utf-8") as f:
            for line in f:
                raw.append(json.loads(line))
                if len(raw) >= n:
                    break
    else:
        raw, where = synthetic_gsm8k(n, seed=0), "synthetic GSM8K-style rows (no ../shared/data)"
    rows = []
    for r in raw:
        trace, _, answer = r["answer"].rpartition(GSM8K_MARK)
        answer = answer.strip().replace(",", "")
        rows.append({"query": r["question"],
                     "response": f"{remove_calculator_annotations(trace).strip()}\nThe answer is: {answer}"})
    return rows, where


def build_base(out: Path, tokenizer, arch: dict, dtype: str = "bfloat16", seed: int = 0) -> Path:
    """A random-weight Llama of ``arch`` for ``tokenizer``, saved (safetensors) with the tokenizer."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    arch = {**arch, "vocab_size": max(arch.get("vocab_size", 0), len(tokenizer))}
    config = LlamaConfig(**arch, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    torch_dtype = getattr(torch, dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)  # built directly in the saved dtype: no fp32 copy of 3B weights
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    del model
    gc.collect()
    return out


# -- the pipeline -----------------------------------------------------------------------------------------------

class _Kill(Exception):
    """Raised right after fine-tuning's first checkpoint (and its settings record) is written: a kill."""


@dataclass
class Options:
    out: Path
    arch: dict
    tokenizer: str = "llama3"  # "llama3" (the real one) or "tiny"
    rows: int = 300
    rate: int = 16
    codebook_size: int = 1024
    compressor_steps: int = 4
    compressor_batch: int = 32
    lora_steps: int = 2
    full_steps: int = 0  # > 0: also a full fine-tune (gpu_smoke)
    lora: bool = True  # False: the full fine-tune only (full_steps > 0)
    batch_size: int = 1
    global_batch: int = 2
    max_seq_len: int = 128
    prompts: int = 4
    new_tokens: int = 16
    resume: bool = True
    bf16: bool = False
    gradient_checkpointing: bool = False
    base_dtype: str = "bfloat16"
    gen_dtype: str = "auto"
    compare_backends: bool = False  # gpu_smoke: merged checkpoint and vLLM give the same greedy tokens
    compressor_arch: dict = field(default_factory=dict)  # CompressorArchitecture fields (default: the recipe's)
    reuse_base: bool = False  # a base already built in OUT/base (a rerun with --keep)


def _train_config(opts: Options, base: Path, data: Path, mode: str, root: Path):
    from lm_latent.training.finetune import FinetuneConfig
    from lm_latent.training.train import TrainConfig
    from lm_latent.adapter.compressor import CompressorArchitecture
    from lm_latent.training.train_compressor import CompressorTrainConfig

    ft = FinetuneConfig(mode=mode, batch_size=opts.batch_size, global_batch_size=opts.global_batch,
                        max_steps=opts.lora_steps if mode == "lora" else opts.full_steps,
                        learning_rate=1e-4 if mode == "lora" else 1e-5, max_seq_len=opts.max_seq_len,
                        save_steps=1, logging_steps=1, bf16=opts.bf16,
                        gradient_checkpointing=opts.gradient_checkpointing)
    comp = CompressorTrainConfig(model=CompressorArchitecture(**opts.compressor_arch),
                                 batch_size=opts.compressor_batch, max_steps=opts.compressor_steps,
                                 save_steps=max(1, opts.compressor_steps), logging_steps=1, bf16=opts.bf16,
                                 encode_batch_size=64)  # 64 x L x 128k-vocab logits in the held-out check
    return TrainConfig(rate=opts.rate, base=str(base), data=str(data), out=str(root),
                       codebook_size=opts.codebook_size, progress=False, compressor=comp, finetune=ft)


def _train(opts: Options, meter: Meter, base: Path, data: Path, mode: str) -> Path:
    """``lm-latent train`` in this process, with the stages timed at its named points."""
    from lm_latent.training.train import run
    from lm_latent.utils import events

    root = opts.out / f"adapters_{mode}"
    cfg = _train_config(opts, base, data, mode, root)
    killed = {"done": False}

    def mean_tokens(trainer) -> float:
        ds = trainer.train_dataset
        n = min(len(ds), 64)
        return sum(len(ds[i]["input_ids"]) for i in range(n)) / max(n, 1)

    class KillAfterFirstSave:
        def __init__(self) -> None:
            from transformers import TrainerCallback

            class Cb(TrainerCallback):
                def on_save(self, args, state, control, **kwargs):  # after RecordCallback (added earlier)
                    if state.global_step == 1 and state.max_steps > 1 and not killed["done"]:
                        killed["done"] = True
                        raise _Kill()
                    return control

            self.cb = Cb()

    def observer(point: str, ctx: dict) -> None:
        if point == "compressor:trainer":
            meter.start(f"[{mode}] compressor ({opts.compressor_steps} steps, {opts.compressor_batch} chunks each)")
        elif point == "compressor:done":
            meter.start(f"[{mode}] encode traces + load base + {'LoRA' if mode == 'lora' else 'full'} setup")
        elif point == "finetune:trainer":
            trainer = ctx["trainer"]
            steps = trainer.args.max_steps
            resumed = killed["done"]
            if not opts.resume or steps < 2:
                label, todo = f"{steps} steps", steps
            elif not resumed:
                label, todo = "step 1 + checkpoint, then a simulated kill", 1
            else:
                label, todo = (f"steps 2-{steps}" if steps > 2 else "step 2"), steps - 1
            stage = meter.start(f"[{mode}] {'LoRA' if mode == 'lora' else 'full fine-tuning'} {label}")
            stage.tokens = int(todo * opts.global_batch * mean_tokens(trainer))
            stage.note = "tokens/s estimated: steps x global batch x mean sample length"
            if opts.resume and not resumed:
                trainer.add_callback(KillAfterFirstSave().cb)
        elif point == f"commit:rate{opts.rate}":
            meter.start(f"[{mode}] save adapter (rename)")

    events.observe(observer)
    try:
        meter.start(f"[{mode}] data + tokenize")
        try:
            out: Path | None = run(cfg)
        except _Kill:
            out = None  # resumed below, outside this block: its traceback would keep the first model alive
        if out is None:
            gc.collect()
            meter.start(f"[{mode}] resume: reload data, compressor, cached codes, base, checkpoint 1")
            out = run(cfg)
        meter.stop()
    finally:
        events._observers.remove(observer)
    return out


def _prompts(rows: list[dict], n: int) -> list[str]:
    from lm_latent.prompts import format_prompt

    return [format_prompt(r["query"]) for r in rows[-n:]]


def _generate_latent(opts: Options, meter: Meter, base: Path, adapter: Path, prompts: list[str], mode: str):
    from lm_eval.api.instance import Instance

    from lm_latent.models.latent_hf import LatentLM

    stage = meter.start(f"[{mode}] --model latent: load + merge + generate {opts.new_tokens} tokens x "
                        f"{len(prompts)} prompts")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = LatentLM(pretrained=str(base), rate=opts.rate, adapter=str(adapter), device=device,
                  max_gen_toks=opts.new_tokens, batch_size=len(prompts), dtype=opts.gen_dtype)
    requests = [Instance("generate_until", {}, (p, {"until": [], "do_sample": False,
                                                    "max_gen_toks": opts.new_tokens}), i)
                for i, p in enumerate(prompts)]
    outs = lm.generate_until(requests, disable_tqdm=True)
    stage.tokens = sum(getattr(o, "gen_tokens", 0) for o in outs)
    del lm
    gc.collect()
    return list(outs)


def _export(meter: Meter, adapter: Path, out: Path, mode: str, dtype: str = "auto") -> Path:
    """``lm-latent export``; ``dtype``: the generation dtype, so that the merged checkpoint is compared with
    ``--model latent`` at the same precision (the default, the base's bf16, rounds an fp32 full fine-tune)."""
    from lm_latent.adapter.export import export

    meter.start(f"[{mode}] export (merged checkpoint) as {dtype}")
    if out.exists():
        shutil.rmtree(out)
    path = export(adapter, out, dtype=dtype)
    gc.collect()
    return Path(path)


def _generate_merged(merged: Path, prompts: list[str], new_tokens: int, dtype: str) -> list[str]:
    """Plain HF greedy generation on the exported checkpoint (the reference the backends must match)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(merged))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    model.to(device).eval()
    outs = []
    with torch.no_grad():
        for p in prompts:  # one at a time: no padding, the plainest reference
            ids = tok(p, return_tensors="pt").input_ids.to(device)
            gen = model.generate(ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            outs.append(tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=False))
    del model
    gc.collect()
    return outs


def _generate_vllm(merged: Path, prompts: list[str], new_tokens: int, dtype: str = "auto") -> list[str] | None:
    """vLLM's greedy outputs in ``dtype``: its "auto" downcasts an fp32 checkpoint to bf16 (it logs "Downcasting")."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        return None
    # max_model_len: the config's 131,072 positions would need a 3 GiB KV cache for one request (refused on a
    # CPU with VLLM_CPU_KVCACHE_SPACE=1); these prompts are a few hundred tokens
    llm = LLM(model=str(merged), dtype=dtype, enforce_eager=True, gpu_memory_utilization=0.5, max_model_len=2048)
    res = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=new_tokens, skip_special_tokens=False))
    return [r.outputs[0].text for r in res]


def run_pipeline(opts: Options) -> dict:
    """Every stage; returns ``{"stages": [...], "sizes": {...}, "generations": {...}}`` and prints the table."""
    from transformers import AutoTokenizer

    opts.out.mkdir(parents=True, exist_ok=True)
    meter = Meter()
    result: dict = {"generations": {}, "sizes": {}, "checks": {}}
    try:
        reuse = opts.reuse_base and (opts.out / "base" / "model.safetensors").is_file()
        meter.start("build tokenizer + " + ("reuse the random base in --out" if reuse
                                            else f"random base (saved as {opts.base_dtype})"))
        tok_dir = opts.out / "tokenizer"
        if opts.tokenizer == "llama3":
            from lm_latent.demo.tiny import build_llama3_tokenizer

            build_llama3_tokenizer(tok_dir)
        else:
            from lm_latent.demo.tiny import build_tokenizer

            build_tokenizer(tok_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        base = opts.out / "base" if reuse else build_base(opts.out / "base", tokenizer, opts.arch,
                                                          dtype=opts.base_dtype)
        rows, source = metamath_rows(opts.rows)
        data = opts.out / "metamath_rows.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        result["data"] = {"rows": len(rows), "source": source}
        result["sizes"]["base"] = dir_size(base)
        prompts = _prompts(rows, opts.prompts)
        modes = (["lora"] if opts.lora else []) + (["full"] if opts.full_steps > 0 else [])
        for mode in modes:
            adapter = _train(opts, meter, base, data, mode)
            result["sizes"][f"adapter_{mode}"] = dir_size(adapter) - dir_size(adapter / "compressor")
            result["sizes"]["compressor"] = dir_size(adapter / "compressor")
            latent_outs = _generate_latent(opts, meter, base, adapter, prompts, mode)
            result["generations"][f"latent_{mode}"] = latent_outs
            merged = _export(meter, adapter, opts.out / f"merged_{mode}", mode, opts.gen_dtype)
            result["sizes"][f"merged_{mode}"] = dir_size(merged)
            if opts.compare_backends:
                meter.start(f"[{mode}] merged checkpoint: plain HF greedy generate")
                ref = _generate_merged(merged, prompts, opts.new_tokens, opts.gen_dtype)
                result["generations"][f"merged_{mode}"] = ref
                result["checks"][f"latent == merged ({mode})"] = [str(a) for a in latent_outs] == ref
                meter.start(f"[{mode}] vLLM greedy generate (if installed)")
                vl = _generate_vllm(merged, prompts, opts.new_tokens, opts.gen_dtype)
                if vl is not None:
                    result["generations"][f"vllm_{mode}"] = vl
                    result["checks"][f"vllm == merged ({mode})"] = vl == ref
                else:
                    result["checks"][f"vllm ({mode})"] = "not installed"
            meter.stop()
    finally:
        meter.close()
    result["stages"] = meter.stages
    print(table(meter.stages))
    print()
    for name, size in result["sizes"].items():
        print(f"size {name}: {size / 1024 ** 2:,.1f} MiB")
    for name, ok in result["checks"].items():
        print(f"check {name}: {ok}")
    gens = result["generations"]
    for key in sorted(gens):  # where outputs differ, how far they agree (random weights have near-tied logits)
        ref = gens.get(f"merged_{key.rsplit('_', 1)[-1]}")
        if ref is None or key.startswith("merged_") or [str(g) for g in gens[key]] == ref:
            continue
        for i, (a, b) in enumerate(zip([str(g) for g in gens[key]], ref)):
            same = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            print(f"  {key} vs merged, prompt {i}: first {same} characters equal: {a[:60]!r} | {b[:60]!r}")
    print(f"data: {result['data']['rows']} rows from {result['data']['source']}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="working folder (base, adapters, merged checkpoints)")
    p.add_argument("--tiny", action="store_true", help="a tiny Llama and tokenizer: the same path in seconds")
    p.add_argument("--rows", type=int, default=300)
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--keep", action="store_true", help="keep --out afterwards (default: removed, it is GiBs)")
    p.add_argument("--reuse-base", action="store_true", help="use the random base a --keep run left in --out")
    p.add_argument("--finetune", choices=("lora", "full", "both"), default="lora",
                   help="full: every weight, fp32 AdamW (16 bytes per parameter: the 3B architecture needs ~52 GB; "
                        "use --layers to cut it to what fits)")
    p.add_argument("--layers", type=int, default=None,
                   help="keep only this many of the architecture's decoder layers (width and vocabulary unchanged)")
    p.add_argument("--compare-backends", action="store_true",
                   help="also greedy-generate with plain HF on the exported checkpoint (and vLLM if installed) and "
                        "check the outputs equal --model latent's")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: the base trains and generates in bf16 (half the RAM: ~7 GiB instead of ~15 GiB "
                        "for the 3B base; needs a CPU with fast bf16, e.g. avx512_bf16)")
    args = p.parse_args(argv)
    import logging

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.tiny:
        try:
            import llama_models  # noqa: F401
        except ImportError:
            print("skipped: the real Llama-3 tokenizer needs the llama-models package "
                  "(pip install --no-deps llama-models tiktoken)")
            return 0
    out = Path(args.out)
    arch = dict(TINY if args.tiny else LLAMA_32_3B)
    if args.layers is not None:
        if not 1 <= args.layers <= arch["num_hidden_layers"]:
            p.error(f"--layers must be between 1 and {arch['num_hidden_layers']}")
        arch["num_hidden_layers"] = args.layers
    opts = Options(out=out, arch=arch, tokenizer="tiny" if args.tiny else "llama3",
                   rows=args.rows, max_seq_len=args.max_seq_len,
                   rate=4 if args.tiny else 16, codebook_size=16 if args.tiny else 1024,
                   compressor_arch=TINY_COMPRESSOR if args.tiny else {}, reuse_base=args.reuse_base,
                   bf16=args.precision == "bf16",  # fp32: bf16 matmuls are slow on CPUs without native bf16
                   gen_dtype="bfloat16" if args.precision == "bf16" else "float32",
                   lora=args.finetune in ("lora", "both"), full_steps=2 if args.finetune in ("full", "both") else 0,
                   compare_backends=args.compare_backends)
    layers = f", {arch['num_hidden_layers']} of its {(TINY if args.tiny else LLAMA_32_3B)['num_hidden_layers']} layers"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, precision {args.precision}, finetune "
          f"{args.finetune}, {'tiny' if args.tiny else 'Llama-3.2-3B architecture, random weights'}{layers}")
    try:
        run_pipeline(opts)
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
