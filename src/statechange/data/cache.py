"""The decode-once frame cache, ``load_frames`` and ``statechange extract``'s engine.

Decoding a long web video to 1-fps frames costs seconds; training reads every video every epoch.
``extract_videos`` decodes each video once into ``<cache>/<category>/<video_id>.frames``: its 1-fps
398x224 frames as JPEG images (a quality of 1-95, Pillow/libjpeg-turbo) or PNG images
(``LOSSLESS``: bit-identical to decoding) in one file, with an index.

JPEG entries are lossy. At q90, on the data benchmark's source (300 s of textured, moving 640x360
H.264, benchmarks/data.py), an entry takes about 23 KB per frame, reads back more than 10x faster
than decoding the source, and differs from directly decoded frames by a mean absolute error of
about 2 grey levels (PSNR about 38.5 dB; ``MEAN_ABS_ERROR_BOUND`` is the bound the tests hold it
to); single pixels on sharp colour edges can be off by up to ~75 levels (4:2:0 chroma). What that
changes in backbone features and learning is measured in docs/benchmarks.md
(benchmarks/cache_quality.py). Evaluation never sees it: ``load_frames(..., exact=True)`` uses a
lossless entry or decodes, and ``extract`` stores the annotated videos losslessly when given the
dataset (``lossless_keys``).

Entry layout (little-endian)::

    [0, 8)      magic b"SCFRAME1"
    [8, 16)     uint64: file position of the index
    [16, ...)   the JPEG or PNG images, back to back
    index:      uint32 header length, header (UTF-8 JSON: source size and mtime, fps, width,
                height, n_frames, codec "jpeg" with its quality or "png", the images' checksum,
                and for a video that ends early "partial"), (n_frames + 1) uint64
                offsets: frame i is the bytes [offsets[i], offsets[i + 1])

An entry is fresh while its source file has the size and modification time recorded in it and
was made with the fps and size asked for; otherwise it is ignored and ``extract`` rebuilds it
(``extract`` also rebuilds entries stored at another quality than the one it is asked for).
Entries are written atomically (``_io.atomic_write``: a temporary file in the same folder, synced
and renamed into place), so a killed run leaves only complete entries (and ``.*.tmp`` files,
removed by the next ``extract``). An extraction holds the cache's lock file (``LOCK_FILE``): a
second one on the same cache is refused.
"""

from __future__ import annotations

import array
import csv
import io
import json
import multiprocessing
import os
import struct
import tempfile
import warnings
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from PIL import Image

from statechange._io import TEMP_SUFFIX, atomic_write, remove_abandoned, temp_files, write_text
from statechange.checksums import ALGORITHM, checksum, incremental_checksum
from statechange.config import DEFAULT_CACHE_QUALITY, JPEG_QUALITY, LOSSLESS
from statechange.data.decode import (
    DEFAULT_FPS,
    DEFAULT_SIZE,
    DecodeReport,
    VideoDecodeError,
    decode_video,
    iter_frame_chunks,
    partial_video_message,
    warn_partial_video,
)
from statechange.data.index import VideoFile
from statechange.errors import StateChangeError
from statechange.progress import progress as progress_bar
from statechange.runtime import die_with_parent, worker_lifeline

CACHE_SUFFIX = ".frames"
FAILURES_FILE = "failures.csv"
FAILED, PARTIAL = "failed", "partial"  # statuses in failures.csv: not cached / cached but ending early
FAILURES_HEADER = ("path", "status", "error", "source_size", "source_mtime_ns")
PARTIAL_KEY = "partial"  # index header of a video that ends early: {"decoded_seconds", "declared_seconds"}
PNG_COMPRESS_LEVEL = 1  # zlib level of lossless entries: the fastest, the files barely shrink beyond it
EXACT_SOURCE = "exact"  # frame source of frames identical to direct decoding (decoded, or a lossless entry)
CacheQuality = int | str  # a JPEG quality 1-95, or LOSSLESS
DEFAULT_QUALITY: CacheQuality = DEFAULT_CACHE_QUALITY
FRAMES_CHECKSUM = f"frames_{ALGORITHM}"  # index header: checksum of an entry's images
MISSING, STALE, DAMAGED, FRESH = "missing", "stale", "damaged", "fresh"  # FrameCache.entry_state
LOCK_FILE = ".extract.lock"  # held by the one extraction writing the cache
MEAN_ABS_ERROR_BOUND = 3.0  # grey levels, cached vs directly decoded frames (measured: about 2)

_MAGIC = b"SCFRAME1"
_FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sQ")  # magic, index position
_HEADER_LENGTH = struct.Struct("<I")
_OFFSET_DTYPE = np.dtype("<u8")
_EXTRACT_CHUNK_FRAMES = 64  # frames a worker holds while streaming a video into the cache
_WORKER_DIED = "the worker process decoding it died (killed, out of memory, or crashed inside FFmpeg)"


class _UnreadableEntry(Exception):
    """A cache file that is not a complete entry of this format."""


@dataclass(frozen=True)
class _EntryInfo:
    """What an entry's index says about it."""

    header: dict[str, Any]
    offsets: np.ndarray  # (n_frames + 1,) uint64 file positions


class FrameCache:
    """A folder of cached 1-fps frames, one file per video: ``<root>/<category>/<video_id>.frames``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, video: VideoFile) -> Path:
        """Where the entry of a video lives (whether or not it exists)."""
        return self.root / video.category / f"{video.video_id}{CACHE_SUFFIX}"

    def get(
        self,
        video: VideoFile,
        fps: float = DEFAULT_FPS,
        size: tuple[int, int] = DEFAULT_SIZE,
        exact: bool = False,
    ) -> np.ndarray | None:
        """The cached frames uint8 [T, H, W, 3], or None when the entry is absent or stale
        (or, with ``exact``, stored lossily)."""
        path = self.path_for(video)
        try:
            data = path.read_bytes()
            info = _parse_entry(data)
            if not _matches(info.header, video, fps, size) or (exact and _source_of(info.header) != EXACT_SOURCE):
                return None
            _check_frames(data, info)
            frames = _decode_frames(data, info)
        except FileNotFoundError:
            return None
        except (_UnreadableEntry, OSError, ValueError) as error:
            warnings.warn(f"Ignoring unreadable frame cache entry {path} ({error}).", stacklevel=2)
            return None
        partial = info.header.get(PARTIAL_KEY)
        if partial:  # the video ends early: said wherever its frames are used, as decoding it says
            warn_partial_video(video.path, partial["decoded_seconds"], partial["declared_seconds"], stacklevel=2)
        return frames

    def partial_message(self, video: VideoFile) -> str | None:
        """Why the video of an entry ends early (one sentence), None when it does not or has no readable entry;
        reads only the index."""
        try:
            partial = _read_index(self.path_for(video)).header.get(PARTIAL_KEY)
        except (OSError, _UnreadableEntry):
            return None
        if not partial:
            return None
        return partial_video_message(video.path, partial["decoded_seconds"], partial["declared_seconds"])

    def is_fresh(
        self,
        video: VideoFile,
        fps: float = DEFAULT_FPS,
        size: tuple[int, int] = DEFAULT_SIZE,
        quality: CacheQuality | None = None,
    ) -> bool:
        """Whether a usable entry exists (stored at ``quality``, when given; its images are checked against
        their checksum, not decoded)."""
        return self.entry_state(video, fps, size, quality) == FRESH

    def entry_state(
        self,
        video: VideoFile,
        fps: float = DEFAULT_FPS,
        size: tuple[int, int] = DEFAULT_SIZE,
        quality: CacheQuality | None = None,
    ) -> str:
        """MISSING, STALE (made from another file, with other settings, or at another ``quality`` than the one
        given), DAMAGED (unreadable, or its images differ from their checksum) or FRESH."""
        try:
            data = self.path_for(video).read_bytes()
        except FileNotFoundError:
            return MISSING
        except OSError:
            return DAMAGED
        try:
            info = _parse_entry(data)
            if not _matches(info.header, video, fps, size) or (
                quality is not None and _source_of(info.header) != frame_source_of(quality)
            ):
                return STALE
            _check_frames(data, info)
        except _UnreadableEntry:
            return DAMAGED
        return FRESH

    def source_of(
        self, video: VideoFile, fps: float = DEFAULT_FPS, size: tuple[int, int] = DEFAULT_SIZE
    ) -> str | None:
        """The frame source of a fresh entry (``EXACT_SOURCE`` or ``"jpeg-q<quality>"``), None without one
        (reading only its index)."""
        try:
            info = _read_index(self.path_for(video))
        except (OSError, _UnreadableEntry):
            return None
        return _source_of(info.header) if _matches(info.header, video, fps, size) else None

    def put(
        self,
        video: VideoFile,
        frames: np.ndarray,
        fps: float = DEFAULT_FPS,
        source_stat: os.stat_result | None = None,
        quality: CacheQuality = JPEG_QUALITY,
    ) -> Path:
        """Store frames uint8 [T, H, W, 3] as the entry of ``video``, atomically, at ``quality``.

        ``source_stat`` is the source's ``os.stat`` taken before it was decoded (default: now).
        """
        return self.put_chunks(video, [frames], fps=fps, source_stat=source_stat, quality=quality)

    def put_chunks(
        self,
        video: VideoFile,
        chunks: Iterable[np.ndarray],
        fps: float = DEFAULT_FPS,
        source_stat: os.stat_result | None = None,
        quality: CacheQuality = JPEG_QUALITY,
        report: DecodeReport | None = None,
    ) -> Path:
        """Like ``put``, from chunks uint8 [t, H, W, 3] consumed one at a time (bounded memory). ``report``,
        filled by the decoder once the chunks are exhausted, marks the entry of a video that ends early."""
        check_quality(quality)
        if source_stat is None:
            source_stat = os.stat(video.path)
        final = self.path_for(video)
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(final) as file:
            _write_entry(file, chunks, _source_header(source_stat, fps, quality), report)
        return final

    def remove_temp_files(self) -> int:
        """Delete temporary files left by interrupted writes (none a live writer holds); returns how many."""
        return remove_abandoned(self.root.glob(f"*/.*{TEMP_SUFFIX}"))


def load_frames(
    video: VideoFile,
    cache: FrameCache | None,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    exact: bool = False,
) -> np.ndarray:
    """A video's frames uint8 [T, H, W, 3]: from the cache when it holds a fresh entry, else decoded.

    With ``exact`` (evaluation) only a lossless entry is used; otherwise the video is decoded, so the
    frames are exactly those of direct decoding. The one way training, evaluation and inference get
    frames. It never writes the cache (``statechange extract`` does).
    """
    if cache is not None:
        frames = cache.get(video, fps=fps, size=size, exact=exact)
        if frames is not None:
            return frames
    return decode_video(video.path, fps=fps, size=size)


def frame_source(
    video: VideoFile,
    cache: FrameCache | None,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    exact: bool = False,
) -> str:
    """Where ``load_frames`` with these arguments takes the frames from: ``EXACT_SOURCE`` (decoding or a
    lossless entry) or ``"jpeg-q<quality>"``. Stored features are keyed by it."""
    if cache is None or exact:
        return EXACT_SOURCE
    return cache.source_of(video, fps, size) or EXACT_SOURCE


def frame_source_of(quality: CacheQuality) -> str:
    """The frame source of entries stored at ``quality``."""
    return EXACT_SOURCE if quality == LOSSLESS else f"jpeg-q{quality}"


def check_quality(quality: CacheQuality) -> None:
    """Raise ValueError unless ``quality`` is a JPEG quality 1-95 or ``LOSSLESS``."""
    if quality == LOSSLESS:
        return
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ValueError(f"The frame cache quality must be a JPEG quality from 1 to 95 or {LOSSLESS!r}, "
                         f"got {quality!r}.")


def parse_quality(text: str) -> CacheQuality:
    """A command-line cache quality: ``lossless`` or a JPEG quality 1-95."""
    quality: CacheQuality = text if text == LOSSLESS else int(text) if text.isdigit() else text
    check_quality(quality)
    return quality


# ---------------------------------------------------------------------------------------------
# statechange extract


@dataclass
class ExtractSummary:
    """What one ``extract_videos`` run did."""

    done: int = 0  # entries written
    skipped: int = 0  # entries already fresh
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video path, error)
    partial: list[tuple[str, str]] = field(default_factory=list)  # (video path, why): cached, but it ends early
    damaged: list[str] = field(default_factory=list)  # entries found damaged (and rebuilt)
    not_retried: int = 0  # failures of the last run, unchanged since, not tried again (counted in failures)

    @property
    def failed(self) -> int:
        return len(self.failures)


def extract_videos(
    videos: Sequence[VideoFile],
    cache_root: str | Path,
    workers: int = 1,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    progress: bool = True,
    quality: CacheQuality = JPEG_QUALITY,
    lossless_keys: Iterable[str] = (),
    retry_failed: bool = False,
) -> ExtractSummary:
    """Decode every video without a fresh entry into the cache, ``workers`` processes in parallel.

    Entries are stored at ``quality``, except those of the videos whose key is in ``lossless_keys``
    (the annotated videos: evaluation reads only exact frames), stored losslessly. Fresh entries
    (of the quality asked for) are skipped, others rebuilt (damaged ones too, listed in ``damaged``).
    Videos that cannot be decoded are listed in ``<cache_root>/failures.csv`` (rewritten each run) as
    ``failed``, with those cached but ending early (truncated files) as ``partial``. With ``workers`` > 1 each video is
    decoded and written by a worker process; one that dies (killed, out of memory) has its
    videos retried, each alone, and a video that kills its worker again is recorded as failed.
    Worker processes re-import the main module: call this under ``if __name__ == "__main__":``
    in a script. One extraction at a time writes a cache: a second one is refused
    (``StateChangeError``) while the first holds the cache's lock file. A video that failed in the
    previous run is not tried again while its file is unchanged (same size and modification time)
    unless ``retry_failed``; it stays listed as failed.
    """
    check_quality(quality)
    settings = _ExtractSettings(fps, size, quality, frozenset(lossless_keys))
    Path(cache_root).mkdir(parents=True, exist_ok=True)
    with _cache_lock(Path(cache_root)):
        return _extract_locked(videos, cache_root, workers, settings, progress, retry_failed)


@contextmanager
def _cache_lock(cache_root: Path) -> Iterator[None]:
    """Hold the cache's lock file (an OS file lock, released even when this process is killed)."""
    lock = FileLock(cache_root / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except FileLockTimeout:
        raise StateChangeError(
            f"Another statechange extract is writing to the frame cache {cache_root} (it holds "
            f"{cache_root / LOCK_FILE}): wait for it to finish, or extract into another --cache."
        ) from None
    try:
        yield
    finally:
        lock.release()


def _extract_locked(videos: Sequence[VideoFile], cache_root: str | Path, workers: int, settings: _ExtractSettings,
                    progress: bool, retry_failed: bool) -> ExtractSummary:
    """``extract_videos`` once the cache's lock is held."""
    cache = FrameCache(cache_root)
    cache.root.mkdir(parents=True, exist_ok=True)
    cache.remove_temp_files()
    summary = ExtractSummary()
    todo = []
    for video in videos:
        state = cache.entry_state(video, settings.fps, settings.size, settings.quality_for(video))
        if state == FRESH:
            summary.skipped += 1
            _note_partial(cache, video, summary)
        else:
            todo.append(video)
        if state == DAMAGED:
            summary.damaged.append(str(cache.path_for(video)))
    if not retry_failed:
        todo = _skip_unchanged_failures(todo, _previous_failures(cache.root / FAILURES_FILE), summary)
    bar = progress_bar(total=len(videos), initial=summary.skipped + summary.not_retried, unit="video",
                       desc="extract", enabled=progress)
    bar.set_postfix(done=0, skipped=summary.skipped, failed=0)
    try:
        results = (
            _extract_in_workers(todo, cache, workers, settings)
            if workers > 1 and len(todo) > 1
            else ((video, _extract_one(video, cache.root, settings)) for video in todo)
        )
        for video, error in results:
            if error is None:
                summary.done += 1
                _note_partial(cache, video, summary)
            else:
                summary.failures.append((str(video.path), error))
            bar.update(1)
            bar.set_postfix(done=summary.done, skipped=summary.skipped, failed=summary.failed)
    finally:
        bar.close()
        _write_failures(cache.root / FAILURES_FILE, summary)
    return summary


def _note_partial(cache: FrameCache, video: VideoFile, summary: ExtractSummary) -> None:
    """List a cached video in ``summary.partial`` when its entry says it ends early."""
    message = cache.partial_message(video)
    if message is not None:
        summary.partial.append((str(video.path), message))


@dataclass(frozen=True)
class _ExtractSettings:
    """What one ``extract_videos`` run writes: frame rate, size and the quality of each entry."""

    fps: float
    size: tuple[int, int]
    quality: CacheQuality
    lossless_keys: frozenset[str]

    def quality_for(self, video: VideoFile) -> CacheQuality:
        return LOSSLESS if video.key in self.lossless_keys else self.quality


def _extract_one(video: VideoFile, cache_root: str | Path, settings: _ExtractSettings) -> str | None:
    """Decode one video into the cache; returns None on success, else why it failed."""
    try:
        source_stat = os.stat(video.path)  # before decoding: a file changed meanwhile reads as stale
        report = DecodeReport()  # an entry of a video that ends early says so (no warning from a worker)
        chunks = iter_frame_chunks(video.path, _EXTRACT_CHUNK_FRAMES, fps=settings.fps, size=settings.size,
                                   report=report)
        FrameCache(cache_root).put_chunks(video, chunks, fps=settings.fps, source_stat=source_stat,
                                          quality=settings.quality_for(video), report=report)
    except VideoDecodeError as error:
        return error.reason
    except FileNotFoundError:
        return "no such file"
    except Exception as error:  # one bad video must not stop a dataset-wide extraction
        return f"{type(error).__name__}: {error}"
    return None


def _write_failures(path: Path, summary: ExtractSummary) -> None:
    """Write ``FAILURES_HEADER`` rows (header included) atomically: the videos that failed (FAILED) and those
    cached but ending early (PARTIAL), with their files' size and modification time."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(FAILURES_HEADER)
    for status, rows in ((FAILED, summary.failures), (PARTIAL, summary.partial)):
        writer.writerows((video, status, error, *_size_and_mtime(Path(video))) for video, error in rows)
    write_text(path, text.getvalue())


def _size_and_mtime(path: Path) -> tuple[int, int] | tuple[str, str]:
    """A file's size and modification time (ns); empty fields when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return "", ""
    return stat.st_size, stat.st_mtime_ns


def _previous_failures(path: Path) -> dict[str, tuple[str, str, str]]:
    """video path -> (error, size, mtime) of the videos that failed in the last run (failures.csv); empty when
    absent or of an older layout."""
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError):
        return {}
    if not rows or tuple(rows[0]) != FAILURES_HEADER:
        return {}
    return {video: (error, size, mtime) for video, status, error, size, mtime in
            (row for row in rows[1:] if len(row) == len(FAILURES_HEADER)) if status == FAILED}


def _skip_unchanged_failures(todo: list[VideoFile], previous: dict[str, tuple[str, str, str]],
                             summary: ExtractSummary) -> list[VideoFile]:
    """``todo`` without the videos that failed last time and are unchanged since (recorded as failed again)."""
    remaining = []
    for video in todo:
        error, size, mtime = previous.get(str(video.path), ("", None, None))
        if (size, mtime) == tuple(str(value) for value in _size_and_mtime(video.path)):
            summary.failures.append((str(video.path), error))
            summary.not_retried += 1
        else:
            remaining.append(video)
    return remaining


def _extract_in_workers(
    videos: list[VideoFile], cache: FrameCache, workers: int, settings: _ExtractSettings
) -> Iterator[tuple[VideoFile, str | None]]:
    """(video, error or None) as worker processes finish them, surviving workers that die.

    A worker that dies breaks its pool. The videos being written at that moment (those with a
    temporary file; else the first unfinished one) are retried one at a time, each in a pool of
    its own, and recorded as failed if their worker dies again; the others go back in the queue.
    Every break settles at least one video, so this always ends.
    """
    pending = list(videos)
    while pending:
        unfinished = yield from _run_pool(pending, cache, min(workers, len(pending)), settings)
        if not unfinished:
            return
        in_flight = _videos_with_temp_files(cache, unfinished)
        suspects = [video for video in unfinished if video.key in in_flight] or unfinished[:1]
        cache.remove_temp_files()
        for suspect in suspects:
            if (yield from _run_pool([suspect], cache, 1, settings)):
                cache.remove_temp_files()
                yield suspect, _WORKER_DIED
        pending = [video for video in unfinished if video not in suspects]


def _run_pool(
    videos: list[VideoFile], cache: FrameCache, workers: int, settings: _ExtractSettings
) -> Generator[tuple[VideoFile, str | None], None, list[VideoFile]]:
    """Extract videos in one process pool, yielding results as they come.

    Returns the videos left unfinished because a worker died (empty when none did).
    """
    finished: set[str] = set()
    context = _worker_context()
    lifeline, kept_open = worker_lifeline(context)  # the workers end when this process does, however it ends
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent,
                               initargs=(lifeline,))
    try:
        futures: dict[Future[str | None], VideoFile] = {
            pool.submit(_extract_one, video, cache.root, settings): video for video in videos
        }
        for future in as_completed(futures):
            try:
                error = future.result()
            except BrokenProcessPool:
                continue
            finished.add(futures[future].key)
            yield futures[future], error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        lifeline.close()
        kept_open.close()
    return [video for video in videos if video.key not in finished]


def _worker_context() -> multiprocessing.context.BaseContext:
    """forkserver where available (workers fork from a server that already imported this module),
    else spawn; never plain fork, which is unsafe in a process that may hold threads."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _videos_with_temp_files(cache: FrameCache, videos: list[VideoFile]) -> set[str]:
    """Keys of the videos that have a temporary file, i.e. were being written."""
    return {video.key for video in videos if temp_files(cache.path_for(video))}


# ---------------------------------------------------------------------------------------------
# The entry format


def _source_header(source_stat: os.stat_result, fps: float, quality: CacheQuality) -> dict[str, Any]:
    codec = {"codec": "png"} if quality == LOSSLESS else {"codec": "jpeg", "quality": quality}
    return {
        "format_version": _FORMAT_VERSION,
        **codec,
        "fps": fps,
        "source_size": source_stat.st_size,
        "source_mtime_ns": source_stat.st_mtime_ns,
    }


def _write_entry(file: io.BufferedWriter, chunks: Iterable[np.ndarray], header: dict[str, Any],
                 report: DecodeReport | None = None) -> None:
    """Write the preamble, the JPEG images of every chunk, then the index (marking a video that ``report``
    says ends early)."""
    file.write(_PREAMBLE.pack(_MAGIC, 0))
    offsets = [file.tell()]
    frame_shape = None
    digest = incremental_checksum()  # of the images, checked on every read
    for chunk in chunks:
        if chunk.dtype != np.uint8 or chunk.ndim != 4 or chunk.shape[-1] != 3:
            raise ValueError(f"Frames must be uint8 [T, H, W, 3], got {chunk.dtype} {list(chunk.shape)}.")
        if frame_shape is not None and chunk.shape[1:] != frame_shape:
            raise ValueError(f"Frame size changed from {frame_shape} to {chunk.shape[1:]} within a video.")
        frame_shape = chunk.shape[1:]
        for image in _encode_images(chunk, header):
            file.write(image)
            digest.update(image)
            offsets.append(file.tell())
    if frame_shape is None or len(offsets) == 1:
        raise ValueError("Cannot cache a video without frames.")
    index_position = offsets[-1]
    height, width = frame_shape[0], frame_shape[1]
    header = {**header, "width": width, "height": height, "n_frames": len(offsets) - 1,
              FRAMES_CHECKSUM: digest.hexdigest()}
    if report is not None and report.ends_early:
        header[PARTIAL_KEY] = {"decoded_seconds": report.decoded_seconds, "declared_seconds": report.declared_seconds}
    header_bytes = json.dumps(header).encode("utf-8")
    file.write(_HEADER_LENGTH.pack(len(header_bytes)))
    file.write(header_bytes)
    file.write(np.asarray(offsets, dtype=_OFFSET_DTYPE).tobytes())
    file.seek(0)
    file.write(_PREAMBLE.pack(_MAGIC, index_position))


def _encode_images(frames: np.ndarray, header: dict[str, Any]) -> Iterator[bytes]:
    """The image bytes (the header's codec) of each frame of uint8 [T, H, W, 3]."""
    options = (
        {"format": "PNG", "compress_level": PNG_COMPRESS_LEVEL}
        if header["codec"] == "png"
        else {"format": "JPEG", "quality": header["quality"]}
    )
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame, mode="RGB").save(buffer, **options)
        yield buffer.getvalue()


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """One uint8 [H, W, 3] RGB frame as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes | memoryview) -> np.ndarray:
    """JPEG bytes -> uint8 [H, W, 3] RGB."""
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
        return np.asarray(image.convert("RGB"))


class SpooledFrames:
    """Every frame of a stream kept as a JPEG image in an unnamed temporary file, for reading a few
    back at the end (the frames of a prediction's picture): a long video costs 8 bytes of memory per
    frame (its offset), not a decoded frame, and the file vanishes when closed."""

    def __init__(self, quality: int = JPEG_QUALITY) -> None:
        self.quality = quality
        self._file = tempfile.TemporaryFile()
        self._offsets = array.array("Q", [0])  # frame i is the bytes [offsets[i], offsets[i + 1])

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def extend(self, frames: np.ndarray) -> None:
        """Append uint8 frames [n, H, W, 3]."""
        for frame in frames:
            data = encode_jpeg(frame, self.quality)
            self._file.write(data)
            self._offsets.append(self._offsets[-1] + len(data))

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame ``index``, uint8 [H, W, 3] (JPEG-decoded)."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} of {len(self)}")
        self._file.seek(self._offsets[index])
        return decode_jpeg(self._file.read(self._offsets[index + 1] - self._offsets[index]))

    def close(self) -> None:
        self._file.close()


def _source_of(header: dict[str, Any]) -> str:
    """The frame source of an entry, from its header."""
    return EXACT_SOURCE if header.get("codec") == "png" else f"jpeg-q{header.get('quality')}"


def _check_frames(data: bytes, info: _EntryInfo) -> None:
    """Raise ``_UnreadableEntry`` when the images differ from the checksum in the index (entries written
    before checksums have none and are not checked)."""
    expected = info.header.get(FRAMES_CHECKSUM)
    images = memoryview(data)[int(info.offsets[0]) : int(info.offsets[-1])]
    if expected is not None and checksum(images) != expected:
        raise _UnreadableEntry("damaged: its images differ from their checksum")


def _decode_frames(data: bytes, info: _EntryInfo) -> np.ndarray:
    """Decode every image of an entry into uint8 [T, H, W, 3]."""
    header, offsets = info.header, info.offsets
    n_frames, height, width = header["n_frames"], header["height"], header["width"]
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    view = memoryview(data)
    for i in range(n_frames):
        with Image.open(io.BytesIO(view[offsets[i] : offsets[i + 1]]), formats=["JPEG", "PNG"]) as image:
            if image.size != (width, height) or image.mode != "RGB":
                raise _UnreadableEntry(f"frame {i} is a {image.mode} {image.size} image")
            frames[i] = np.asarray(image)  # (H, W, 3)
    return frames


def _matches(header: dict[str, Any], video: VideoFile, fps: float, size: tuple[int, int]) -> bool:
    """Whether an entry was made from the video's current file with these settings."""
    try:
        source = os.stat(video.path)
    except OSError:
        return False
    return (
        header.get("format_version") == _FORMAT_VERSION
        and header.get("source_size") == source.st_size
        and header.get("source_mtime_ns") == source.st_mtime_ns
        and header.get("fps") == fps
        and (header.get("width"), header.get("height")) == tuple(size)
    )


def _parse_entry(data: bytes) -> _EntryInfo:
    """The index of a whole entry read into memory."""
    index_position = _index_position(data)
    return _parse_index(memoryview(data)[index_position:], index_position)


def _read_index(path: Path) -> _EntryInfo:
    """An entry's index only, reading the preamble and the tail of the file."""
    with open(path, "rb") as file:
        index_position = _index_position(file.read(_PREAMBLE.size))
        file.seek(index_position)
        return _parse_index(file.read(), index_position)


def _index_position(preamble: bytes | bytearray) -> int:
    """Check an entry's preamble and return where its index starts."""
    if len(preamble) < _PREAMBLE.size:
        raise _UnreadableEntry("the file is too short")
    magic, index_position = _PREAMBLE.unpack_from(preamble)
    if magic != _MAGIC:
        raise _UnreadableEntry("not a frame cache entry")
    return index_position


def _parse_index(tail: bytes | memoryview, index_position: int) -> _EntryInfo:
    """Parse an entry's index (the bytes from ``index_position`` to the end), checking it is whole."""
    try:
        (header_length,) = _HEADER_LENGTH.unpack_from(tail)
        header_end = _HEADER_LENGTH.size + header_length
        header = json.loads(bytes(tail[_HEADER_LENGTH.size : header_end]).decode("utf-8"))
        n_frames = int(header["n_frames"])
        offsets = np.frombuffer(tail, dtype=_OFFSET_DTYPE, count=n_frames + 1, offset=header_end).copy()
    except (struct.error, ValueError, KeyError, TypeError) as error:
        raise _UnreadableEntry(f"damaged index ({error})") from error
    if (
        n_frames < 1
        or header_end + offsets.nbytes != len(tail)
        or offsets[0] != _PREAMBLE.size
        or offsets[-1] != index_position
        or np.any(offsets[1:] <= offsets[:-1])
    ):
        raise _UnreadableEntry("inconsistent index")
    return _EntryInfo(header=header, offsets=offsets)

