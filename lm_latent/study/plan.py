"""A recipe's plan: its stages, the exact command each runs, and estimates of what each costs.

Every cost is an *estimate* from parameter, token and FLOP counts, never a measurement:
training ``6·N·tokens`` FLOPs for full fine-tuning (``4·N·tokens`` with LoRA: no weight gradients
for the frozen base), plus ``2·N·tokens`` when gradient checkpointing recomputes the forward pass;
generation ``2·N`` FLOPs per prompt or generated token; GPU-hours = FLOPs / (peak bf16 FLOP/s x
an assumed utilisation). The assumptions sit in the recipe's ``estimates:`` section.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from lm_latent.study.recipe import Recipe, explicit_flags

__all__ = ["GPUS", "Arch", "Stage", "architecture", "build_plan", "data_file", "launcher_argv", "render_plan",
           "stage_commands", "sweep_argv", "train_argv"]

#: name -> (peak dense bf16 FLOP/s, memory in GB); vendor data sheet numbers, no sparsity
GPUS = {"h100-80gb": (989e12, 80.0), "h200-141gb": (989e12, 141.0), "a100-80gb": (312e12, 80.0)}

GB = 1e9


@dataclass
class Arch:
    """The sizes of a Llama-style decoder that the estimates need."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @property
    def params(self) -> float:
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        mlp = 3 * self.hidden * self.intermediate
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return embed + self.layers * (attn + mlp + 2 * self.hidden) + self.hidden

    def lora_params(self, r: int) -> float:
        """LoRA on every linear layer: r x (in + out) per layer."""
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        per_layer = (self.hidden + q) * 2 + (self.hidden + kv) * 2 + (self.hidden + self.intermediate) * 3
        return r * per_layer * self.layers

    @property
    def kv_bytes_per_token(self) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * 2  # K and V, bf16


#: the published config.json values of the bases the shipped recipes name
KNOWN_ARCHS = {
    "meta-llama/Llama-3.2-1B": Arch(2048, 16, 8192, 32, 8, 64, 128256, True),
    "meta-llama/Llama-3.2-3B": Arch(3072, 28, 8192, 24, 8, 128, 128256, True),
    "meta-llama/Llama-3.1-8B": Arch(4096, 32, 14336, 32, 8, 128, 128256, False),
}


def architecture(base: str) -> Arch | None:
    """From a local base folder's config.json, else the built-in table (no network); None if unknown."""
    config = Path(base).expanduser() / "config.json"
    if config.is_file():
        c = json.loads(config.read_text(encoding="utf-8"))
        heads = c["num_attention_heads"]
        return Arch(c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], heads,
                    c.get("num_key_value_heads", heads), c.get("head_dim") or c["hidden_size"] // heads,
                    c["vocab_size"], bool(c.get("tie_word_embeddings", False)))
    return KNOWN_ARCHS.get(base)


@dataclass
class Stage:
    name: str
    commands: list[str]
    gpu_hours: float | None = None
    mem_gb: float | None = None  # per GPU
    disk_gb: float | None = None  # kept after the stage
    scratch_gb: float = 0.0  # also needed while it runs (Trainer checkpoints, deleted on success)
    notes: list[str] = field(default_factory=list)
    gpus: int | None = None  # GPUs the stage runs on (None: all of the recipe's)

    @property
    def trains_a_rate(self) -> bool:
        return self.name.startswith(("adapter", "compressor"))

    def wall_hours(self, world_size: int) -> float:
        """Estimated wall time on ``world_size`` GPUs: rates on fewer GPUs each train several at once."""
        gpus = self.gpus or world_size
        concurrent = world_size // gpus if self.trains_a_rate else 1
        return (self.gpu_hours or 0.0) / gpus / concurrent


def _q(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def finetune_method(recipe: Recipe) -> str:
    """``lora`` or ``full``: the config's (``--finetune``), or a pending flag's."""
    return str(recipe.pending.get("--finetune") or getattr(recipe.train.finetune, "mode", None) or "lora")


def launcher_argv(processes: int, nodes: int = 1, port: int | None = None) -> list[str]:
    """``accelerate launch`` for several processes (multi-node: each node's rank and the main node's address).

    ``--multi_gpu`` is accelerate's torchrun-based launcher; it starts CPU processes too (gloo), which
    is how the tests run it.
    """
    if processes * nodes == 1:
        return []
    argv = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(processes * nodes)]
    if nodes > 1:
        argv += ["--num_machines", str(nodes), "--machine_rank", "$MACHINE_RANK", "--main_process_ip",
                 "$MAIN_PROCESS_IP", "--main_process_port", "29500"]
    elif port is not None:
        argv += ["--main_process_port", str(port)]
    return argv


def _with_env(argv: list[str]) -> str:
    text = _q(argv)
    for var in ("$MACHINE_RANK", "$MAIN_PROCESS_IP"):  # left for the shell (SLURM sets them per node)
        text = text.replace(shlex.quote(var), var)
    return text


def data_file(recipe: Recipe) -> Path | None:
    """Where the data stage writes a hub dataset (None: ``data`` is a local file, used as it is)."""
    if Path(recipe.data).expanduser().exists():
        return None
    return Path(recipe.out) / "data" / f"{recipe.train.split}.jsonl"


def gpus_for_each_rate(recipe: Recipe) -> int:
    """GPUs each rate trains on: all of them, or ``gpus_per_rate`` (several rates at once on disjoint sets)."""
    return min(recipe.gpus_per_rate or recipe.gpus, recipe.gpus) if recipe.nodes == 1 else recipe.gpus


def train_argv(recipe: Recipe, rate: int) -> list[str]:
    """The ``lm-latent train`` flags for one rate, written from the validated TrainConfig."""
    from dataclasses import replace

    from lm_latent.utils.dataclass_cli import to_argv

    local = data_file(recipe)
    cfg = replace(recipe.train, rate=rate, out=str(Path(recipe.out) / "adapters"),
                  data=str(local) if local is not None else recipe.train.data)
    argv = to_argv(cfg)  # what differs from lm-latent train's defaults (train_flags were parsed into cfg)
    # the recipe's own settings are written even where they equal today's defaults: a later default
    # must not change what a recipe trains
    for flag, value in (("--base", cfg.base), ("--data", cfg.data)):
        if flag not in argv:
            argv[2:2] = [flag, value]
    written = set(argv)
    extra = explicit_flags(cfg, recipe.train_keys)
    for i in range(0, len(extra), 2):
        if extra[i] not in written:
            argv += extra[i:i + 2]
    return argv


def sweep_argv(recipe: Recipe) -> list[str]:
    """The ``lm-latent sweep`` flags: every rate on the recipe's tasks, using every GPU of one node.

    ``latent-vllm``: vLLM's own data parallelism (``data_parallel_size`` = GPUs / tensor parallel size);
    ``latent``: one lm_eval process per GPU through accelerate (``--num-processes``), lm-eval's data
    parallelism.
    """
    ev, out = recipe.eval, Path(recipe.out)
    model_args = [f"pretrained={recipe.base}", f"adapters={out / 'adapters'}", f"max_gen_toks={ev.max_gen_toks}",
                  f"dtype={ev.dtype}"]
    argv = ["--rates", ",".join(map(str, recipe.rates)), "--tasks", ev.tasks, "--model", ev.model]
    if ev.model == "latent-vllm":
        if ev.tensor_parallel_size > 1:
            model_args.append(f"tensor_parallel_size={ev.tensor_parallel_size}")
        if recipe.gpus // ev.tensor_parallel_size > 1:
            model_args.append(f"data_parallel_size={recipe.gpus // ev.tensor_parallel_size}")
    elif recipe.gpus > 1:
        argv += ["--num-processes", str(recipe.gpus)]
    argv += ["--model_args", ",".join(model_args), "--out", str(out / "results"), "--batch_size", ev.batch_size]
    if ev.limit is not None:
        argv += ["--limit", str(ev.limit)]
    if ev.data_dir is not None:
        argv += ["--metadata", json.dumps({"data_dir": ev.data_dir})]
    return argv


def stage_commands(recipe: Recipe) -> list[tuple[str, list[str]]]:
    """Each stage's commands as a user would type them (``lm-latent study`` runs the same, itself)."""
    out = Path(recipe.out)
    stages: list[tuple[str, list[str]]] = []
    local = data_file(recipe)
    data_cmds = [] if local is None else [_q(["python", "-m", "lm_latent.study.data", recipe.data, "--split",
                                               recipe.train.split, "--out", str(local)])]
    stages.append(("data", data_cmds))
    base_cmds = []
    if not Path(recipe.base).expanduser().exists():
        base_cmds.append(_q(["hf", "download", recipe.base, "--exclude", "original/*"]))
    stages.append(("base", base_cmds))
    per_rate = gpus_for_each_rate(recipe)
    launcher = launcher_argv(per_rate, recipe.nodes)
    for rate in recipe.rates:
        train = ["lm-latent", "train"] if not launcher else [*launcher, "-m", "lm_latent.training.train"]
        label = "adapter rate 0 (CoT baseline)" if rate == 0 else f"compressor + adapter rate {rate}"
        stages.append((label, [_with_env([*train, *train_argv(recipe, rate)])]))
    stages.append(("sweep", [_q(["lm-latent", "sweep", *sweep_argv(recipe)])]))
    stages.append(("report", [_q(["lm-latent", "plot", "--out", str(out / "results")])]))
    return stages


# --- estimates -------------------------------------------------------------------------------------------

def _compressor_cost(recipe: Recipe, rate: int, peak: float) -> tuple[float, float]:
    """GPU-hours and per-GPU GB of one compressor (a small encoder-decoder over the base vocabulary)."""
    arch = architecture(recipe.base)
    assert arch is not None
    est, comp = recipe.estimates, recipe.train.compressor
    h, layers = comp.model.hidden_size, comp.model.num_layers
    n = 2 * arch.vocab * h + 2 * layers * 12 * h * h  # text embedding + reconstruction head + encoder/decoder
    chunk = recipe.train.chunk_len or rate
    tokens_per_item = chunk + comp.model.max_prompt_len
    if comp.max_steps > 0:
        items = comp.max_steps * comp.batch_size
    else:
        items = comp.epochs * est.train_samples * est.tokens_per_sample / chunk
    flops = 6 * n * items * tokens_per_item
    mem = (16 * n + comp.batch_size * tokens_per_item * arch.vocab * 6) / GB
    return flops / (peak * est.train_mfu) / 3600, mem


def _finetune_cost(recipe: Recipe, arch: Arch, peak: float) -> tuple[float, float, float, float, list[str]]:
    """GPU-hours, per-GPU GB, disk GB kept (the adapter) and scratch GB (Trainer checkpoints) of one rate."""
    est, ft = recipe.estimates, recipe.train.finetune
    n = arch.params
    full = finetune_method(recipe) == "full"
    checkpointing = ft.gradient_checkpointing is not False  # default: on with CUDA
    per_token = (6 if full else 4) + (2 if checkpointing else 0)
    tokens = est.train_samples * est.tokens_per_sample * ft.epochs
    flops = per_token * n * tokens
    b, s = ft.batch_size, ft.max_seq_len
    activations = b * s * arch.hidden * 2 * arch.layers + b * s * (16 * arch.hidden + 2 * arch.intermediate) * 2
    logits = b * s * arch.vocab * 6  # bf16 logits + the fp32 copy the loss takes
    lora = arch.lora_params(ft.lora_r)
    if full:
        states = 16 * n  # bf16 weights and grads, fp32 master weights and AdamW moments (mixed precision)
        adapter = 2 * n
        checkpoint = 12 * n  # weights + AdamW moments
    else:
        states = 2 * n + 16 * lora
        adapter = 4 * lora
        checkpoint = 12 * lora
    notes = [f"{per_token}·N·tokens FLOPs ({'full' if full else 'LoRA'}"
             f"{', gradient checkpointing' if checkpointing else ''}), N = {n / 1e9:.2f}B, "
             f"tokens = {est.train_samples:,} samples x {est.tokens_per_sample} x {ft.epochs} epoch(s) "
             f"= {tokens / 1e9:.3f}B (an upper bound for latent rates: their samples are shorter)"]
    if full and recipe.world_size > 1:
        notes.append(f"per-GPU memory with DDP (every GPU holds all states); FSDP/ZeRO-3 shares the "
                     f"{states / GB:.0f} GB of states: ~{states / recipe.world_size / GB:.0f} GB each")
    scratch = ft.save_total_limit * checkpoint
    return (flops / (peak * est.train_mfu) / 3600, (states + activations + logits) / GB, adapter / GB, scratch / GB,
            notes)


def build_plan(recipe: Recipe) -> list[Stage]:
    """The study's stages with their commands and estimates (kind ``study`` recipes)."""
    arch = architecture(recipe.base)
    est = recipe.estimates
    peak, card_gb = GPUS[est.gpu]
    stages = [Stage(name, cmds) for name, cmds in stage_commands(recipe)]
    if arch is None:
        for stage in stages:
            stage.notes.append(f"no estimate: the architecture of {recipe.base} is unknown here "
                               f"(a local folder with config.json, or one of {', '.join(KNOWN_ARCHS)})")
        return stages
    n = est.params or arch.params
    by_name = {s.name: s for s in stages}
    by_name["data"].gpu_hours, by_name["data"].disk_gb = 0.0, est.data_gb
    by_name["base"].gpu_hours, by_name["base"].disk_gb = 0.0, 2 * n / GB
    by_name["base"].notes.append("bf16 safetensors; original/ (a second copy in Meta's format) excluded")
    for stage, rate in zip(stages[2:2 + len(recipe.rates)], recipe.rates, strict=True):
        hours, mem, disk, scratch, notes = _finetune_cost(recipe, arch, peak)
        if rate:
            c_hours, c_mem = _compressor_cost(recipe, rate, peak)
            hours += c_hours
            mem = max(mem, c_mem)
            notes.append(f"compressor: ~{c_hours:.2f} GPU-hours, ~{c_mem:.1f} GB")
        stage.gpu_hours, stage.mem_gb, stage.disk_gb, stage.scratch_gb, stage.notes = hours, mem, disk, scratch, notes
        stage.gpus = recipe.train_world_size
        if recipe.train_world_size < recipe.world_size:
            stage.notes.append(f"{recipe.world_size // recipe.train_world_size} rates train at once, each on "
                               f"{recipe.train_world_size} GPU(s) (gpus_per_rate)")
        if mem > card_gb:
            stage.notes.append(f"over the {card_gb:.0f} GB of one {est.gpu}: lower --batch-size (raise "
                               f"--grad-accum) or shard the states (FSDP)")
    sweep = by_name["sweep"]
    tokens = est.eval_samples * (est.eval_prompt_tokens + est.eval_gen_tokens)
    sweep.gpu_hours = len(recipe.rates) * 2 * n * tokens / (peak * est.decode_mfu) / 3600
    sweep.mem_gb = 2 * n / GB
    sweep.gpus = recipe.gpus  # one node: the sweep's vLLM data parallelism stays inside it
    if recipe.nodes > 1:
        sweep.notes.append(f"runs on one node ({recipe.gpus} GPUs); the other nodes are idle")
    sweep.disk_gb = (2 * n * len(recipe.rates) if recipe.eval.model == "latent-vllm" else 0) / GB
    sweep.notes.append(f"2·N FLOPs per token, {est.eval_samples:,} problems x ({est.eval_prompt_tokens} prompt + "
                       f"{est.eval_gen_tokens} generated) tokens per rate at {est.decode_mfu:.0%} utilisation")
    sweep.notes.append(f"per-GPU memory: the bf16 weights; the KV cache takes the rest "
                       f"({arch.kv_bytes_per_token / 1e3:.0f} kB per token; vLLM reserves 90% of the card)")
    if recipe.eval.model == "latent-vllm":
        sweep.notes.append("disk: one merged bf16 checkpoint per rate (lm-latent cache lists and clears them)")
    by_name["report"].gpu_hours, by_name["report"].disk_gb = 0.0, 0.0
    return stages


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "?"
    return f"~{value:.1f} {unit}" if value >= 0.1 or value == 0 else f"~{value:.2f} {unit}"


def render_plan(recipe: Recipe, stages: list[Stage]) -> str:
    arch = architecture(recipe.base)
    n = recipe.estimates.params or (arch.params if arch else None)
    lines = [f"study {recipe.name}  ({recipe.source})"]
    if recipe.description:
        lines.append("  " + recipe.description.splitlines()[0])
    size = f" ({n / 1e9:.2f}B parameters)" if n else ""
    lines.append(f"  base {recipe.base}{size}; data {recipe.data}; rates {','.join(map(str, recipe.rates))}; "
                 f"fine-tuning {finetune_method(recipe)}; {recipe.nodes} node(s) x {recipe.gpus} GPU(s); "
                 f"estimates for {recipe.estimates.gpu}")
    for flag, text in recipe.pending.items():
        lines.append(f"  NOT YET: this lm-latent train has no {flag} flag; the commands below leave "
                     f"'{flag} {text}' out (estimates are for the recipe's setting)")
    total_hours = total_wall = total_disk = scratch = 0.0
    for i, stage in enumerate(stages, 1):
        lines.append(f"stage {i}/{len(stages)} {stage.name}")
        for cmd in stage.commands or ["(nothing to run)"]:
            lines.append(f"  $ {cmd}" if stage.commands else f"  {cmd}")
        if stage.gpu_hours is not None or stage.disk_gb is not None:
            gpus = stage.gpus or recipe.world_size
            wall = f", ~{stage.gpu_hours / gpus:.1f} h on {gpus} GPUs" if stage.gpu_hours and gpus > 1 else ""
            memory = f"{_num(stage.mem_gb, 'GB')} per GPU; " if stage.mem_gb else ""
            scratch_text = (f" (+{_num(stage.scratch_gb, 'GB')} of checkpoints while it runs)"
                            if stage.scratch_gb else "")
            lines.append(f"  estimate: {_num(stage.gpu_hours, 'GPU-hours')}{wall}; {memory}"
                         f"disk {_num(stage.disk_gb, 'GB')}{scratch_text}")
            total_hours += stage.gpu_hours or 0.0
            total_wall += stage.wall_hours(recipe.world_size)
            total_disk += stage.disk_gb or 0.0
            scratch = max(scratch, stage.scratch_gb)
        lines += [f"    ({note})" for note in stage.notes if note]
    lines.append(f"total estimate: ~{total_hours:.0f} GPU-hours (~{total_wall:.1f} h wall on "
                 f"{recipe.world_size} GPU(s)); disk ~{total_disk:.0f} GB kept, ~{total_disk + scratch:.0f} GB at the "
                 f"peak (one rate's Trainer checkpoints, deleted when it succeeds)")
    lines.append("Every number above is an estimate from parameter, token and FLOP counts and the recipe's "
                 "estimates: section; none was measured on a GPU.")
    return "\n".join(lines)
