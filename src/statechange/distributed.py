"""Launcher detection, process-group set-up and in-memory gathers; nothing else.

Works with no manual environment variables under
- ``torchrun`` (any number of processes and nodes): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT;
- SLURM ``srun`` (one task per GPU): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, and the first host of
  SLURM_JOB_NODELIST as the rendezvous address, with a port derived from SLURM_JOB_ID;
- a plain ``python``/``statechange`` call: one process, no process group.
NCCL on GPUs, gloo on the CPU.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from statechange.errors import StateChangeError
from statechange.runtime import default_device

SLURM_PORT_BASE = 15000  # rendezvous port = base + SLURM_JOB_ID % SLURM_PORT_SPAN
SLURM_PORT_SPAN = 20000


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    launcher: str  # "torchrun", "slurm" or "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def detect_launcher(environ: dict[str, str] | None = None) -> tuple[str, int, int, int]:
    """(launcher, rank, local_rank, world_size) from the environment; torchrun wins over SLURM."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return "torchrun", int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"])
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return "slurm", int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"])
    return "single", 0, 0, 1


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[003-004,007],cpu1`` -> ``gpu003``."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise StateChangeError(f"Cannot read SLURM_JOB_NODELIST={nodelist!r}; set MASTER_ADDR to the first node.")
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def pick_device(requested: str | None, local_rank: int) -> torch.device:
    """``--device`` if given (``cuda`` means this process's GPU), else this process's GPU, else the CPU."""
    if requested in (None, "auto"):
        requested = default_device()
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StateChangeError(f"--device {requested} was asked for but no CUDA GPU is visible; use --device cpu.")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def setup(requested_device: str | None = None, timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the process group of whatever launcher started us (if any) and pick this process's device."""
    launcher, rank, local_rank, world_size = detect_launcher()
    device = pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if launcher == "slurm":
            os.environ.setdefault("MASTER_ADDR", first_host(os.environ.get("SLURM_JOB_NODELIST", "localhost")))
            job_id = int(re.sub(r"\D", "", os.environ.get("SLURM_JOB_ID", "0")) or 0)
            os.environ.setdefault("MASTER_PORT", str(SLURM_PORT_BASE + job_id % SLURM_PORT_SPAN))
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(minutes=timeout_minutes),
            device_id=device if device.type == "cuda" else None,
        )
    return DistributedContext(rank, local_rank, world_size, device, launcher)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable plain data), in rank order; ``[obj]`` without a process group."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over ranks (in place, returned); unchanged without a process group."""
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
