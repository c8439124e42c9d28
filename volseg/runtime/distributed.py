"""torch.distributed plumbing for ``torchrun``: one process per device, NCCL on GPUs, gloo on CPU; and the
device a ``--device`` string names (:func:`resolve_device`).

Outside torchrun (no WORLD_SIZE in the environment) everything here is a no-op, so the same code path
serves one process and many.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from volseg.errors import VolsegError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Context:
    """Join the process group torchrun describes (idempotent); single-process context otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context()
    ctx = Context(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and device != "cpu"
        if use_nccl:
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group("nccl" if use_nccl else "gloo", timeout=timedelta(minutes=30))
    return ctx


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken as given."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu" or spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        device = torch.device(spec)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise VolsegError(f"device {spec!r} requested but CUDA is not available; use --device cpu or auto")
        return device
    raise VolsegError(f"device must be one of auto, cpu, cuda, cuda:N; got {spec!r}")


def device_for(ctx: Context, device: str) -> str:
    """Under torchrun on GPUs each rank takes the GPU of its local rank."""
    if ctx.enabled and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ctx.local_rank}"
    return device


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


def gather(ctx: Context, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not ctx.enabled:
        return [value]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def mean(ctx: Context, value: float) -> float:
    return sum(gather(ctx, value)) / ctx.world_size if ctx.enabled else value


def teardown(ctx: Context) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
