"""Defaults that depend on the machine a run is on: which device, how many worker processes; and worker
processes that end with the process that started them (``die_with_parent``).

Torch-light: importing this module imports no torch, so the command line can use it for defaults.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import threading
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MAX_DEFAULT_WORKERS = 4  # decoding / rendering processes; more rarely pay off against one disk


def default_device() -> str:
    """The first GPU when there is one, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def checked_device(requested: str | torch.device | None) -> torch.device:
    """``--device`` as a torch.device (None or "auto": ``default_device``). A device that is not a device, or a
    GPU that is not there, is one sentence naming the option and the fix."""
    import torch

    from statechange.errors import StateChangeError

    name = default_device() if requested in (None, "auto") else str(requested)
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise StateChangeError(f"--device {name} is not a device ({error}); use cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StateChangeError(f"--device {name} was asked for but no CUDA GPU is visible; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise StateChangeError(f"--device {name} was asked for but only {torch.cuda.device_count()} CUDA GPU(s) "
                                   "are visible (cuda:0 ...); use one of them or --device cpu.")
    return device


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, e.g. under SLURM or taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_workers() -> int:
    """Worker processes for extraction and rendering: the available CPUs, at most ``MAX_DEFAULT_WORKERS``."""
    return min(MAX_DEFAULT_WORKERS, available_cpus())


def die_with_parent(lifeline: Connection) -> None:
    """Make this worker process end when the process that started it dies, e.g. so that a killed
    ``statechange extract`` leaves no worker decoding on. A pool's initialiser, given the reading end of a pipe
    whose writing end only the starting process holds (``worker_lifeline``): a daemon thread waits on it and
    exits the process at end of file, i.e. when the starter is gone however it ended. (The starter is not
    simply the parent: under forkserver the parent is the fork server, which lives as long as any worker.)"""
    threading.Thread(target=_exit_at_end_of_file, args=(lifeline,), name="die-with-parent", daemon=True).start()


def worker_lifeline(context: multiprocessing.context.BaseContext) -> tuple[Connection, Connection]:
    """A pipe: (the reading end, for ``die_with_parent`` in the workers; the writing end, which this process
    keeps open as long as its workers may run)."""
    return context.Pipe(duplex=False)


def _exit_at_end_of_file(lifeline: Connection) -> None:
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(1)
