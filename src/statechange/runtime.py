"""Defaults that depend on the machine a run is on: which device, how many worker processes.

Torch-light: importing this module imports no torch, so the command line can use it for defaults.
"""

from __future__ import annotations

import os

MAX_DEFAULT_WORKERS = 4  # decoding / rendering processes; more rarely pay off against one disk


def default_device() -> str:
    """The first GPU when there is one, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, e.g. under SLURM or taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_workers() -> int:
    """Worker processes for extraction and rendering: the available CPUs, at most ``MAX_DEFAULT_WORKERS``."""
    return min(MAX_DEFAULT_WORKERS, available_cpus())
