"""Checksums of the files this package writes, checked whenever they are read back (issue 9).

A checkpoint's config.json records the checksums of its model.safetensors and training_state.pt, a
frame-cache entry's index that of its images, a stored feature file's header that of its features.
A file whose bytes no longer match is damaged: a checkpoint is then an error naming it, a cache or
feature entry is ignored (and rebuilt).

The checksum is XXH3-128 (``xxhash``). It guards against damage (flipped bits, a truncated or
swapped file), not against a forger, and runs at several GB/s on one core, where SHA-256 manages
about 1 GB/s (docs/benchmarks.md, "Integrity checks"): checking a file costs little beside reading
it. A file is hashed in small chunks as it is read, so the hash reads from the CPU's cache; loaders
that read a file themselves (checkpoints) run ``verify_file`` in a thread beside them, so the pages
are read from disk once and the hashing overlaps the load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import xxhash

ALGORITHM = "xxh3_128"  # the name under which checksums are recorded (config.json, entry headers)
READ_CHUNK_BYTES = 1 << 20  # fits the L2 cache: each chunk is hashed right after it is read


def checksum(data: bytes | bytearray | memoryview) -> str:
    """The checksum (hex) of bytes in memory."""
    return xxhash.xxh3_128(data).hexdigest()


def incremental_checksum() -> xxhash.xxh3_128:
    """A checksum fed piece by piece: ``update(bytes)``, then ``hexdigest()`` (equal to ``checksum`` of the whole)."""
    return xxhash.xxh3_128()


def file_checksum(path: str | Path) -> str:
    """The checksum (hex) of a file's content, read once in ``READ_CHUNK_BYTES`` chunks."""
    digest = incremental_checksum()
    buffer = memoryview(bytearray(READ_CHUNK_BYTES))
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(buffer):
            digest.update(buffer[:count])
    return digest.hexdigest()


@contextmanager
def verified_while_loading(path: Path, expected: str | None, damaged: Callable[[Path], Exception]) -> Iterator[None]:
    """Check ``path`` against its ``expected`` checksum while the block loads it.

    The file is hashed in a background thread (xxhash releases the GIL) and compared when the block
    ends: a mismatch raises ``damaged(path)``, also when the block failed (damaged bytes often make a
    loader fail first, and the mismatch is the clearer reason). ``expected`` None (files written
    before checksums) checks nothing.
    """
    if expected is None:
        yield
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="checksum") as pool:
        actual = pool.submit(file_checksum, path)
        try:
            yield
        except Exception as error:
            if actual.result() != expected:
                raise damaged(path) from error
            raise
        if actual.result() != expected:
            raise damaged(path)


__all__ = ["ALGORITHM", "checksum", "file_checksum", "incremental_checksum", "verified_while_loading"]
