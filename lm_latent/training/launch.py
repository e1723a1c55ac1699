"""How ``lm-latent train`` is launched: one process per GPU, never ``torch.nn.DataParallel``.

The HF ``Trainer`` wraps the model in ``DataParallel`` when one process sees several GPUs
(slower than DDP, and it gathers every output on GPU 0). :func:`launch_refusal` decides, from the
visible device count and the environment alone (a pure function, tested without GPUs), whether a
run must instead be started with ``accelerate launch``; :func:`batch_plan` turns a global batch into
per-device batch and gradient accumulation for the world size.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Mapping, Sequence

# Set by torchrun / ``accelerate launch`` (multi-process) / deepspeed: the process is one rank of a group.
DISTRIBUTED_ENV = ("LOCAL_RANK", "WORLD_SIZE")


def is_distributed_launch(env: Mapping[str, str]) -> bool:
    return any(env.get(name) not in (None, "") for name in DISTRIBUTED_ENV)


def launch_command(num_processes: int, argv: Sequence[str]) -> str:
    """The command that runs ``argv`` as one process per GPU."""
    return shlex.join(["accelerate", "launch", "--num_processes", str(num_processes), "-m",
                       "lm_latent.training.train", *argv])


def launch_refusal(device_count: int, env: Mapping[str, str], argv: Sequence[str]) -> str | None:
    """``None`` when this process may train as it is; else the error message naming the command to run.

    Several visible GPUs without a distributed launcher would make the Trainer use DataParallel:
    refused, with the exact ``accelerate launch`` command (or ``CUDA_VISIBLE_DEVICES=0`` for one GPU).
    """
    if device_count <= 1 or is_distributed_launch(env):
        return None
    return (f"{device_count} GPUs are visible but this is a single process: lm-latent train never uses "
            f"torch.nn.DataParallel. Run one process per GPU:\n  {launch_command(device_count, argv)}\n"
            f"or train on one GPU with CUDA_VISIBLE_DEVICES=0.")


def _on(env: Mapping[str, str], name: str) -> bool:
    return str(env.get(name, "")).strip().lower() in ("1", "true", "yes")


def sharding_refusal(env: Mapping[str, str]) -> str | None:
    """``accelerate launch --use_fsdp`` / ``--use_deepspeed`` are refused (``None``: plain DDP or one process).

    Verified on CPU (gloo, torch 2.13, accelerate 1.16, transformers 5.25): under ``--use_fsdp`` the
    Trainer silently trains with DDP, whole model per process, while FSDP2 itself works there. The
    adapter is written by the main process alone from its own copy of the weights, which a sharded
    model does not have; neither path has been run on GPUs, so both are refused rather than
    trusted. DDP (``accelerate launch --multi_gpu``) fits Llama-3.2-3B even for full fine-tuning
    on 80 GB GPUs (docs/training.md).
    """
    for name, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if _on(env, name):
            return (f"{what} is not supported by lm-latent train yet (the adapter is written from the main "
                    f"process's full copy of the weights; not verified with sharded models). Launch with DDP "
                    f"instead: accelerate launch --multi_gpu --num_processes N -m lm_latent.training.train ...")
    return None


@dataclass(frozen=True)
class BatchPlan:
    """Per-device batch x accumulation x processes = the global batch of one optimizer step."""

    global_batch: int
    per_device: int
    grad_accum: int
    world_size: int

    def describe(self) -> str:
        return (f"global batch {self.global_batch} = {self.per_device} per device x {self.grad_accum} "
                f"accumulation x {self.world_size} process(es)")


def batch_plan(world_size: int, per_device: int, grad_accum: int, global_batch: int | None = None) -> BatchPlan:
    """Without ``global_batch``: the given per-device batch and accumulation (global = their product x world).

    With ``global_batch`` G: the per-device batch is the largest divisor of G / world that is at most
    ``per_device`` (a memory cap), and accumulation fills the rest, so that every world size that
    divides G takes the same optimizer steps on the same samples.
    """
    if world_size < 1 or per_device < 1 or grad_accum < 1:
        raise ValueError(f"world size, batch size and accumulation must be >= 1, got {world_size}, "
                         f"{per_device}, {grad_accum}")
    if global_batch is None:
        return BatchPlan(per_device * grad_accum * world_size, per_device, grad_accum, world_size)
    if global_batch < 1 or global_batch % world_size:
        raise ValueError(f"--global-batch-size {global_batch} must be a positive multiple of the number of "
                         f"processes ({world_size})")
    per_rank = global_batch // world_size
    size = max(d for d in range(1, min(per_device, per_rank) + 1) if per_rank % d == 0)
    return BatchPlan(global_batch, size, per_rank // size, world_size)
