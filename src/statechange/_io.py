"""Durable writes: a file or a whole directory replaced atomically, the one way this package writes results.

A file is written to a temporary sibling, flushed and synced to disk, renamed over its final name
(``os.replace``) and the rename is synced (the directory is fsynced). A process killed at any
moment leaves the old content or the new one, never a mix. Written files get the permissions a
plain ``open(path, "w")`` gives (0644 under the usual umask 022), not ``mkstemp``'s 0600.

Temporary names are short, whatever the final name's length: ``.<digest>.<pid>.<random>.tmp``,
where ``<digest>`` is a hash of the final name, so a 250-character file name still has legal ones.
A writer holds a lock (``flock``) on its temporary file; the next write of the same name removes
the temporary files no live writer holds, i.e. those of killed processes.

A directory (e.g. a checkpoint) is written into ``.<digest>.staging``, every file in it synced;
then the old directory is renamed to ``.<digest>.replaced``, the new one renamed into place and
the old one deleted. A crash leaves the old directory, the new one, or (between the two renames)
the old one under ``replaced_path``, which ``interrupted_directory`` finds.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # not POSIX: no locks, stale temporary files are left for the caller to remove
    fcntl = None  # type: ignore[assignment]

TEMP_SUFFIX = ".tmp"
STAGING_TAG = "staging"
REPLACED_TAG = "replaced"
DIGEST_CHARS = 12  # hex digits of the final name's hash in a temporary name (48 bits: no collisions in a folder)
NEW_FILE_MODE = 0o666  # before the umask, as open() uses
TEST_PAUSE_VARIABLE = "STATECHANGE_TEST_PAUSE_BETWEEN_RENAMES"  # test hook, see _test_pause


def sibling_name(path: str | Path, tag: str) -> Path:
    """A short hidden name beside ``path`` for its temporary copies: ``.<digest>.<tag>``."""
    path = Path(path)
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:DIGEST_CHARS]
    return path.with_name(f".{digest}.{tag}")


def temp_files(path: str | Path) -> list[Path]:
    """The temporary files of writes to ``path`` now on disk (of live writers or killed ones)."""
    pattern = sibling_name(path, f"*{TEMP_SUFFIX}").name  # the digest is hex: no glob characters
    return sorted(Path(path).parent.glob(pattern))


def staging_path(directory: str | Path) -> Path:
    """Where a directory is written before it is swapped in."""
    return sibling_name(directory, STAGING_TAG)


def replaced_path(directory: str | Path) -> Path:
    """Where the previous directory waits while the new one is swapped in."""
    return sibling_name(directory, REPLACED_TAG)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to (by name: PyAV, safetensors, ...).

    The temporary file exists (empty) when the block starts; writers may truncate it or replace
    it by a file of their own (safetensors does, with mode 0600: the mode is set back). When the
    block ends without an error it is synced and renamed over ``path``; on an error it is deleted
    and ``path`` keeps its old content.
    """
    path = Path(path)
    remove_abandoned(temp_files(path))
    temp, descriptor = _create_locked_temp(path)
    try:
        yield temp
        _sync_file(temp, file_mode=stat.S_IMODE(os.fstat(descriptor).st_mode))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        os.close(descriptor)  # releases the lock
    fsync_directory(path.parent)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file, open for writing (and seeking), that replaces ``path`` when the block ends."""
    with atomic_path(path) as temp, open(temp, "wb") as file:
        yield file


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path``'s content with ``data`` atomically and durably."""
    with atomic_write(path) as file:
        file.write(data)


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path``'s content with UTF-8 ``text`` atomically and durably."""
    write_bytes(path, text.encode("utf-8"))


def remove_abandoned(temps: Iterable[Path]) -> int:
    """Delete the temporary files no live writer holds (left by killed processes); returns how many."""
    removed = 0
    for temp in temps:
        try:
            descriptor = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            if _try_lock(descriptor):
                temp.unlink(missing_ok=True)
                removed += 1
        finally:
            os.close(descriptor)
    return removed


def _create_locked_temp(path: Path) -> tuple[Path, int]:
    """A new, empty temporary file beside ``path`` and a descriptor holding its lock."""
    while True:
        temp = sibling_name(path, f"{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            descriptor = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, NEW_FILE_MODE)
        except FileExistsError:
            continue
        if fcntl is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            if os.stat(temp).st_ino == os.fstat(descriptor).st_ino:
                return temp, descriptor
        except FileNotFoundError:
            pass  # another writer's clean-up took it before we locked it: try a new name
        os.close(descriptor)


def _sync_file(path: str | Path, file_mode: int | None = None) -> None:
    """fsync a file by name, first setting its permission bits to ``file_mode`` where given."""
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if file_mode is not None and stat.S_IMODE(os.fstat(descriptor).st_mode) != file_mode:
            os.fchmod(descriptor, file_mode)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _try_lock(descriptor: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def fsync_directory(path: str | Path) -> None:
    """Make renames and new entries in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # e.g. file systems that refuse fsync on directories
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------------------------------
# Directories
# --------------------------------------------------------------------------------------------------


@contextmanager
def atomic_directory(directory: str | Path) -> Iterator[Path]:
    """An empty staging directory to fill; it replaces ``directory`` atomically when the block ends.

    Files written into it need no syncing of their own: every file and folder in it is synced
    before the swap. On an error the staging directory is deleted and ``directory`` is untouched.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(directory)
    remove_path(staging)  # left over from a crashed write
    staging.mkdir()
    try:
        yield staging
        _sync_tree(staging)
        _swap_in(staging, directory, replaced_path(directory))
    except BaseException:
        remove_path(staging)
        raise


def interrupted_directory(directory: str | Path) -> Path | None:
    """The previous version of a missing ``directory`` whose swap was cut between its two renames."""
    replaced = replaced_path(directory)
    return replaced if not Path(directory).exists() and replaced.is_dir() else None


def _swap_in(staging: Path, directory: Path, replaced: Path) -> None:
    """Rename ``staging`` to ``directory``, keeping the old directory until the new one is in place."""
    if directory.exists():
        remove_path(replaced)  # a stale copy: ``directory`` is complete
        os.replace(directory, replaced)
        fsync_directory(directory.parent)
        _test_pause()
    try:
        os.replace(staging, directory)
    except BaseException:
        if replaced.exists() and not directory.exists():
            os.replace(replaced, directory)  # put the old one back
        raise
    fsync_directory(directory.parent)
    remove_path(replaced)


def _test_pause() -> None:
    """Tests hold a swap between its two renames (to kill it there) by setting ``TEST_PAUSE_VARIABLE`` to seconds."""
    seconds = os.environ.get(TEST_PAUSE_VARIABLE)
    if seconds:
        time.sleep(float(seconds))


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (deepest first, ``root`` last), giving the files the
    permissions of a plain new file (those of ``root`` without the execute bits)."""
    file_mode = stat.S_IMODE(root.stat().st_mode) & NEW_FILE_MODE
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            _sync_file(os.path.join(folder, name), file_mode)
        fsync_directory(folder)


def remove_path(path: Path) -> None:
    """Delete a file, link or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
