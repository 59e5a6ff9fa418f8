"""Process-group setup for ``torchrun`` (gloo on CPU, NCCL on CUDA) and small collective helpers."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def pick_device(requested: str) -> str:
    """'auto' -> cuda when available, else cpu; explicit values are checked."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    return requested


def init(requested_device: str = "auto") -> DistEnv:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group if world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device)
    if device == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        # device_id binds NCCL to this GPU; gloo on CPU must not get one (open_clip's CPU bug).
        kwargs = {"device_id": torch.device(device)} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    return DistEnv(rank, local_rank, world, device)


def barrier(env: DistEnv) -> None:
    """Wait for every rank."""
    if env.distributed:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int = 0) -> None:
    """End a rank of a multi-process job once its work is written: flush, then ``os._exit``.

    After DDP on gloo, the process group outlives ``destroy_process_group`` (a reference held on
    the C++ side) and its threads are still running when the interpreter finalizes; destroying
    them then aborts the process ("terminate called without an active exception", SIGABRT) in a
    good share of runs, after all the work is done, and the launcher reports a failure. Leaving
    without finalization avoids that; call it only after every file is closed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
