"""Decoding overlapped with the model: the next item is produced in a background thread.

    main thread:        model(chunk 0)   model(chunk 1)   model(chunk 2) ...
    background thread:  decode(chunk 1)  decode(chunk 2)  decode(chunk 3) ...

FFmpeg, Pillow and torch release the GIL while they work, so a prediction costs about
max(decode, model) instead of their sum. At most ``depth`` items wait in the queue (plus the one
being produced and the one being consumed), so memory stays bounded whatever the length of the
stream. Items come out in order and unchanged: the result equals a sequential loop's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

PREFETCH_DEPTH = 1  # items decoded ahead of the model: one chunk (or video) is enough to hide decoding
_POLL_SECONDS = 0.1  # how often a blocked producer checks whether the consumer has gone away


class _Done:
    """End of the stream; carries the producer's exception, if it raised one."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def prefetched(items: Iterable[T], depth: int = PREFETCH_DEPTH) -> Iterator[T]:
    """The items of ``items``, in order, produced by a background thread up to ``depth`` ahead.

    An exception raised while producing an item is raised here, at that item's place. Leaving the
    loop early (break, an exception, garbage collection) stops the producer after its current item.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}.")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    producer = threading.Thread(target=_produce, args=(iter(items), ready, stop), name="statechange-prefetch",
                                daemon=True)
    producer.start()
    try:
        while True:
            item = ready.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        producer.join()


def _produce(items: Iterator[T], ready: queue.Queue, stop: threading.Event) -> None:
    """Put each item on ``ready`` until the items end, one raises, or ``stop`` is set."""
    try:
        for item in items:
            if not _put(ready, item, stop):
                return
    except BaseException as error:  # handed to the consumer, raised there
        _put(ready, _Done(error), stop)
        return
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # a generator left early releases what it holds (an open video file) now, in this thread
    _put(ready, _Done(), stop)


def _put(ready: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Wait for room on ``ready``; False if the consumer stopped first."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False
