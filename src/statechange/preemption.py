"""SIGTERM as a request to stop training at the next safe point, agreed by every rank.

SLURM sends SIGTERM before it preempts a job, and before a time limit when the job asks for it
(``#SBATCH --signal=TERM@300``); torchrun's agent sends it when it shuts its workers down. Python's
default reaction ends the process at once, possibly between two ranks' halves of a step. Inside
``StopRequest`` the signal only sets a flag; training calls ``agreed()`` after every optimiser step,
one all-reduce of every rank's flag, so all ranks stop after the same step even when only one of
them was signalled, and rank 0 saves a resumable ``last``. The process then exits with
``EXIT_STOPPED``, which a job script can test to requeue itself.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

import torch

from statechange import distributed

STOP_SIGNALS = (signal.SIGTERM,)
EXIT_STOPPED = 75  # sysexits' EX_TEMPFAIL: stopped on request with `last` saved; run again with --resume


class StopRequest:
    """Within ``with StopRequest(...)``, SIGTERM marks this rank as asked to stop (instead of ending it)."""

    def __init__(self, rank: int, world_size: int, device: torch.device) -> None:
        self.rank, self.world_size, self.device = rank, world_size, device
        self.received: str | None = None  # name of the signal this rank received
        self.stopping_ranks: list[int] = []  # the ranks that had received one when all agreed to stop
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(number).name

    def agreed(self) -> bool:
        """Whether any rank was asked to stop (a collective: every rank calls it at the same point)."""
        flags = torch.zeros(self.world_size, dtype=torch.float32, device=self.device)  # [W]
        flags[self.rank] = float(self.received is not None)
        flags = distributed.all_reduce_sum(flags).cpu()
        self.stopping_ranks = [rank for rank in range(self.world_size) if flags[rank] > 0]
        return bool(self.stopping_ranks)
