"""Progress reports that suit where they are read: a live bar on a terminal, plain lines in a log.

On a terminal, :func:`progress` is a tqdm bar. When its stream is not a terminal (a SLURM log, a
pipe, a file), carriage-return bars would leave one long garbled line, so it writes a complete
line instead: at the start, at most once every ``LOG_INTERVAL_SECONDS`` while it runs, and at the
end. Result lines go through :func:`write`, which never lands inside a bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

LOG_INTERVAL_SECONDS = 30.0  # at most one progress line per this many seconds when not on a terminal


def is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def write(message: str, file: IO[str] | None = None) -> None:
    """A line that never mixes with a live bar (stderr when ``file`` is not given)."""
    tqdm.write(message, file=file if file is not None else sys.stderr)


class LineProgress:
    """The subset of tqdm's interface used here, reporting in whole lines (for logs).

    ``desc: n/total unit, elapsed m:ss[, postfix]`` at the start, then when at least ``interval``
    seconds passed since the last line, and once at :meth:`close` (or the end of the iteration).
    """

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str | None = None,
                 unit: str = "it", initial: float = 0, unit_scale: bool = False, file: IO[str] | None = None,
                 interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.unit_scale = total, desc or "progress", unit, unit_scale
        self.n, self.file, self.interval = initial, file if file is not None else sys.stderr, interval
        self.postfix = ""
        self.started = time.monotonic()
        self.last_line = self.started
        self.closed = False
        self._line()

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if time.monotonic() - self.last_line >= self.interval:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key} {value}" for key, value in values.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line()

    def _line(self) -> None:
        self.last_line = time.monotonic()
        done = self._amount(self.n) + (f"/{self._amount(self.total)}" if self.total is not None else "")
        elapsed = tqdm.format_interval(self.last_line - self.started)
        unit = self.unit + "s" if self.unit.isalpha() and not self.unit.endswith("s") else self.unit  # video(s)
        line = f"{self.desc}: {done} {unit}, {elapsed}" + (f", {self.postfix}" if self.postfix else "")
        print(line, file=self.file, flush=True)

    def _amount(self, value: float) -> str:
        if self.unit_scale:
            return tqdm.format_sizeof(value, divisor=1024)
        return f"{value:g}"


def progress(iterable: Iterable | None = None, *, enabled: bool = True, file: IO[str] | None = None,
             **options: Any) -> Any:
    """A tqdm bar on a terminal, :class:`LineProgress` elsewhere, nothing when not ``enabled``.

    ``options`` are tqdm's (``total``, ``desc``, ``unit``, ``initial``, ``unit_scale``, ``leave``...);
    the line reporter keeps those it understands.
    """
    stream = file if file is not None else sys.stderr
    if not enabled:
        return tqdm(iterable, disable=True)
    if is_terminal(stream):
        return tqdm(iterable, file=stream, **options)
    kept = {key: options[key] for key in ("total", "desc", "unit", "initial", "unit_scale") if key in options}
    return LineProgress(iterable, file=stream, **kept)
