"""Launcher detection, process-group set-up and in-memory gathers; nothing else.

Works with no manual environment variables under
- ``torchrun`` (any number of processes and nodes): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT;
- SLURM ``srun`` (one task per GPU): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, and the first host of
  SLURM_JOB_NODELIST as the rendezvous address, with a port derived from SLURM_JOB_ID;
- a plain ``python``/``statechange`` call: one process, no process group.
NCCL on GPUs, gloo on the CPU.

A rank that dies takes the others down: gloo fails their next collective at once ("connection closed
by peer"), NCCL's watchdog aborts them; a rank that stalls fails the others' collectives after
``COLLECTIVE_TIMEOUT_MINUTES`` (``--collective-timeout``). ``collective_failures_explained`` turns
either failure into one message that names the rank.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from statechange.config import COLLECTIVE_TIMEOUT_MINUTES
from statechange.errors import StateChangeError
from statechange.runtime import checked_device

SLURM_PORT_BASE = 15000  # rendezvous port = base + SLURM_JOB_ID % SLURM_PORT_SPAN
SLURM_PORT_SPAN = 20000
COLLECTIVE_FAILURE_MARKERS = ("gloo", "NCCL", "Connection closed by peer", "Connection reset by peer", "Timed out")


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
    device = checked_device(requested)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def setup(requested_device: str | None = None,
          timeout_minutes: float = COLLECTIVE_TIMEOUT_MINUTES) -> DistributedContext:
    """Join the process group of whatever launcher started us (if any) and pick this process's device."""
    launcher, rank, local_rank, world_size = detect_launcher()
    device = pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if launcher == "slurm":
            os.environ.setdefault("MASTER_ADDR", first_host(os.environ.get("SLURM_JOB_NODELIST", "localhost")))
            job_id = int(re.sub(r"\D", "", os.environ.get("SLURM_JOB_ID", "0")) or 0)
            os.environ.setdefault("MASTER_PORT", str(SLURM_PORT_BASE + job_id % SLURM_PORT_SPAN))
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(minutes=timeout_minutes)
        dist.init_process_group(
            backend=backend,
            store=rendezvous_store(rank, world_size, timeout),
            rank=rank,
            world_size=world_size,
            timeout=timeout,
            device_id=device if device.type == "cuda" else None,
        )
    return DistributedContext(rank, local_rank, world_size, device, launcher)


def rendezvous_store(rank: int, world_size: int, timeout: datetime.timedelta) -> dist.Store:
    """The key-value store at MASTER_ADDR:MASTER_PORT where the process group meets, under a prefix of its own
    for each torchrun restart.

    torchrun's agent serves one store for all of a run's restarts (TORCHELASTIC_USE_AGENT_STORE); without
    the prefix, a restarted group reads the dead group's addresses from it and cannot connect.
    """
    agent_serves = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=rank == 0 and not agent_serves, timeout=timeout, multi_tenant=not agent_serves)
    return dist.PrefixStore(f"statechange/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


@contextmanager
def collective_failures_explained(context: DistributedContext, timeout_minutes: float) -> Iterator[None]:
    """Re-raise a failed collective (a dead or stalled peer) as a StateChangeError naming this rank."""
    try:
        yield
    except (RuntimeError, dist.DistError) as error:
        text = str(error)
        if not context.is_distributed or not any(marker in text for marker in COLLECTIVE_FAILURE_MARKERS):
            raise
        first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        raise StateChangeError(
            f"rank {context.rank} of {context.world_size} stopped because a collective operation failed "
            f"({first_line[:300]}): another process died or stalled for over {timeout_minutes:g} minutes "
            "(--collective-timeout); its own output says why."
        ) from error


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
