"""Downloading a dataset's videos with yt-dlp (``statechange download --output VIDEOS``).

Each id becomes ``VIDEOS/<category>/<id>.<ext>`` (mp4 preferred, else webm), video stream only, at
most ``max_height`` pixels high (the authors distribute 480p copies). Safe to interrupt and re-run:

- an id whose file exists, is not empty and has a readable video header is skipped;
- yt-dlp downloads into ``VIDEOS/.download/<category>/`` (a hidden folder no command reads), resuming
  its ``.part`` file after an interruption; the finished file is checked and only then renamed into
  ``VIDEOS/<category>/``: a partial download never carries a final name;
- transient errors (network, server errors, rate limits) are retried with exponential backoff; what
  still fails is tried again on the next run;
- permanent failures (404, removed, private, geo-blocked, ...) go to ``VIDEOS/missing.csv``
  (``category,id,reason``) and are skipped by later runs unless ``retry_missing``.

yt-dlp is an optional dependency (``pip install 'statechange[download]'``), imported when used; so
are PyAV and the index, so that the command line reads this module's defaults without loading them.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statechange._io import fsync_directory, write_text
from statechange.errors import StateChangeError

DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={id}"
DEFAULT_MAX_HEIGHT = 480  # the height of the copies the ChangeIt authors distribute
DEFAULT_WORKERS = 4  # videos downloaded at once
DEFAULT_RETRIES = 3  # further attempts after a transient error
DEFAULT_BACKOFF_SECONDS = 10.0  # wait before the first retry; doubled for each further one
STAGING_FOLDER = ".download"  # VIDEOS/.download/<category>/: downloads in progress
MISSING_FILE = "missing.csv"  # VIDEOS/missing.csv: permanent failures
MISSING_HEADER = ("category", "id", "reason")
PREFERRED_EXTENSIONS = ("mp4", "webm")  # what the release reads, in order of preference

PRESENT, DOWNLOADED, MISSING, KNOWN_MISSING, FAILED = "present", "downloaded", "missing", "known missing", "failed"

# Messages of yt-dlp (and of the sites behind it) that mean the video will not come back by retrying,
# with the reason written to missing.csv. Everything else is treated as transient.
_PERMANENT_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"HTTP Error 404", "not found (HTTP 404)"),
    (r"HTTP Error 410", "gone (HTTP 410)"),
    (r"private video", "private"),
    (r"account .* terminated", "removed (account terminated)"),
    (r"copyright", "removed (copyright claim)"),
    (r"removed", "removed"),
    (r"available in your country|blocked it in your country|geo.?restrict", "geo-blocked"),
    (r"confirm your age|age.?restricted|inappropriate for some users", "age-restricted"),
    (r"members.?only|join this channel", "members only"),
    (r"requested format is not available", "no format at most the maximum height"),
    (r"unsupported url", "unsupported URL"),
    (r"video unavailable|is not available|does not exist", "unavailable"),
)


@dataclass(frozen=True)
class VideoDownloadOptions:
    url_template: str = DEFAULT_URL_TEMPLATE  # with {id} and optionally {category}
    max_height: int = DEFAULT_MAX_HEIGHT
    with_audio: bool = False  # also the audio stream (merging needs ffmpeg)
    workers: int = DEFAULT_WORKERS
    retries: int = DEFAULT_RETRIES
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    retry_missing: bool = False  # try the ids of missing.csv again
    progress: bool = True


@dataclass
class CategoryCounts:
    present: int = 0  # already there before this run
    downloaded: int = 0  # downloaded by this run
    missing: int = 0  # permanently unavailable (missing.csv), found now or before
    failed: int = 0  # transient failures left after the retries: tried again next run


@dataclass
class VideoDownloadSummary:
    output: Path
    counts: dict[str, CategoryCounts] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (category, id, reason), transient

    def total(self) -> CategoryCounts:
        total = CategoryCounts()
        for counts in self.counts.values():
            total.present += counts.present
            total.downloaded += counts.downloaded
            total.missing += counts.missing
            total.failed += counts.failed
        return total

    def format(self) -> str:
        """One line per category (present / downloaded now / missing / failed) and the totals."""
        width = max([len("category"), *(len(c) for c in self.counts)])
        rows = [*self.counts.items(), ("total", self.total())]
        lines = [f"{'category':<{width}}  {'present':>8}  {'downloaded':>10}  {'missing':>8}  {'failed':>7}"]
        lines += [f"{name:<{width}}  {c.present:>8}  {c.downloaded:>10}  {c.missing:>8}  {c.failed:>7}"
                  for name, c in rows]
        total = self.total()
        if total.missing:
            lines.append(f"Missing videos are listed in {self.output / MISSING_FILE}; "
                         "--retry-missing tries them again.")
        if total.failed:
            lines.append(f"{total.failed} videos failed for now (e.g. {self.failures[0][0]}/{self.failures[0][1]}: "
                         f"{self.failures[0][2]}); run the command again to retry them.")
        return "\n".join(lines)


def download_videos(ids: Mapping[str, Sequence[str]], output: str | Path,
                    options: VideoDownloadOptions = VideoDownloadOptions()) -> VideoDownloadSummary:
    """Download the videos ``ids`` (category -> video ids) into ``output``; see the module docstring."""
    from statechange.data.decode import video_header_problem

    _check_options(options)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    summary = VideoDownloadSummary(output, {category: CategoryCounts() for category in ids})
    known_missing = read_missing(output / MISSING_FILE)
    to_fetch: list[tuple[str, str]] = []
    for category, video_ids in ids.items():
        existing = _existing_files(output / category)
        for video_id in video_ids:
            if any(video_header_problem(path) is None for path in existing.get(video_id, ())):
                summary.counts[category].present += 1
            elif (category, video_id) in known_missing and not options.retry_missing:
                summary.counts[category].missing += 1
            else:
                to_fetch.append((category, video_id))

    new_missing: dict[tuple[str, str], str] = {}
    downloaded: set[tuple[str, str]] = set()
    missing_file = output / MISSING_FILE
    try:
        for (category, video_id), (outcome, reason) in _run_all(to_fetch, output, options):
            counts = summary.counts[category]
            if outcome == DOWNLOADED:
                counts.downloaded += 1
                downloaded.add((category, video_id))
            elif outcome == MISSING:
                counts.missing += 1
                new_missing[(category, video_id)] = reason
                _append_missing(missing_file, category, video_id, reason)  # kept even if the run is killed
            else:
                counts.failed += 1
                summary.failures.append((category, video_id, reason))
    finally:
        rows = {key: reason for key, reason in known_missing.items() if key not in downloaded}
        rows.update(new_missing)
        write_missing(missing_file, rows)
        _remove_empty_folders(output / STAGING_FOLDER)
    return summary


# --------------------------------------------------------------------------------------------------
# missing.csv
# --------------------------------------------------------------------------------------------------


def read_missing(path: Path) -> dict[tuple[str, str], str]:
    """(category, id) -> reason from a missing.csv; empty when there is none. A line cut short by a
    killed run is ignored (its video is simply tried again)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    return {(row[0], row[1]): row[2] for row in rows if len(row) == 3 and tuple(row) != MISSING_HEADER}


def write_missing(path: Path, rows: Mapping[tuple[str, str], str]) -> None:
    """Write missing.csv atomically, sorted by category and id (no file when nothing is missing)."""
    if not rows:
        path.unlink(missing_ok=True)
        return
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MISSING_HEADER)
    writer.writerows([category, video_id, reason] for (category, video_id), reason in sorted(rows.items()))
    write_text(path, text.getvalue())


def _append_missing(path: Path, category: str, video_id: str, reason: str) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        if new:
            writer.writerow(MISSING_HEADER)
        writer.writerow([category, video_id, reason])


# --------------------------------------------------------------------------------------------------
# One video
# --------------------------------------------------------------------------------------------------


def classify_error(message: str, status: int | None = None) -> str | None:
    """The reason a failure is permanent (for missing.csv), or None when it is worth retrying."""
    if status in (404, 410):
        return f"{'not found' if status == 404 else 'gone'} (HTTP {status})"
    for pattern, reason in _PERMANENT_PATTERNS:
        if re.search(pattern, message, flags=re.IGNORECASE):
            return reason
    return None


def format_selector(max_height: int, with_audio: bool) -> str:
    """A yt-dlp format: the best stream at most ``max_height`` high, mp4 before webm; video only unless
    ``with_audio``. ``<=?`` lets through files whose height is unknown (plain file URLs)."""
    height = f"[height<=?{max_height}]"
    if with_audio:
        return f"bv{height}+ba/b{height}"
    video_only = [f"bv{height}[ext={ext}]" for ext in PREFERRED_EXTENSIONS]
    return "/".join([*video_only, f"bv{height}", f"b{height}"])


def _run_all(to_fetch: list[tuple[str, str]], output: Path,
             options: VideoDownloadOptions) -> Iterable[tuple[tuple[str, str], tuple[str, str]]]:
    """(category, id) -> (outcome, reason) as the downloads finish, ``options.workers`` at a time."""
    if not to_fetch:
        return
    youtube_dl = _import_yt_dlp()
    from statechange.progress import progress

    pool = ThreadPoolExecutor(max_workers=options.workers)
    try:
        with progress(total=len(to_fetch), unit="video", desc="download", enabled=options.progress) as bar:
            futures = {pool.submit(_download_with_retries, youtube_dl, category, video_id, output, options):
                       (category, video_id) for category, video_id in to_fetch}
            for future in as_completed(futures):
                bar.update(1)
                yield futures[future], future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # interrupted: downloads not yet started never start


def _download_with_retries(youtube_dl: Any, category: str, video_id: str, output: Path,
                           options: VideoDownloadOptions) -> tuple[str, str]:
    """(outcome, reason) of one video: permanent errors end at once, transient ones are retried."""
    reason = ""
    for attempt in range(options.retries + 1):
        if attempt:
            time.sleep(options.backoff_seconds * 2 ** (attempt - 1))
        try:
            _download_one(youtube_dl, category, video_id, output, options)
            return DOWNLOADED, ""
        except _PermanentError as error:
            return MISSING, str(error)
        except _TransientError as error:
            reason = str(error)
    return FAILED, reason


class _PermanentError(Exception):
    pass


class _TransientError(Exception):
    pass


def _download_one(youtube_dl: Any, category: str, video_id: str, output: Path, options: VideoDownloadOptions) -> None:
    staging = output / STAGING_FOLDER / category
    staging.mkdir(parents=True, exist_ok=True)
    url = options.url_template.format(id=video_id, category=category)
    params = {
        "format": format_selector(options.max_height, options.with_audio),
        "merge_output_format": "/".join(PREFERRED_EXTENSIONS),
        "outtmpl": {"default": str(staging / f"{video_id}.%(ext)s")},
        "noplaylist": True,
        "continuedl": True,  # resume a .part file left by an interrupted run
        "overwrites": False,
        "retries": 1,  # yt-dlp's own retries; ours (with backoff) are around the whole download
        "fragment_retries": 1,
        "socket_timeout": 30,
        "cachedir": False,
        "quiet": True,
        "noprogress": True,
        "logger": _SilentLogger(),
    }
    try:
        with youtube_dl.YoutubeDL(params) as downloader:
            info = downloader.extract_info(url, download=True)
    except youtube_dl.utils.DownloadError as error:
        cause = error.exc_info[1] if error.exc_info else None
        status = getattr(cause, "status", None) or getattr(getattr(cause, "cause", None), "status", None)
        message = _short_message(str(error))
        permanent = classify_error(message, status if isinstance(status, int) else None)
        raise (_PermanentError(permanent) if permanent else _TransientError(message)) from None
    from statechange.data.decode import video_header_problem

    downloaded = Path(info["requested_downloads"][0]["filepath"])
    problem = video_header_problem(downloaded)
    if problem is not None:
        downloaded.unlink(missing_ok=True)
        raise _TransientError(f"the downloaded file is not a readable video ({problem})")
    _move_into_place(downloaded, output / category / f"{video_id}{downloaded.suffix}")


def _move_into_place(downloaded: Path, destination: Path) -> None:
    """Rename the checked file into ``<category>/``, replacing any unreadable file of the same id."""
    from statechange.data.index import video_id_of

    destination.parent.mkdir(parents=True, exist_ok=True)
    for stale in _existing_files(destination.parent).get(video_id_of(destination), ()):
        if stale != destination:
            stale.unlink(missing_ok=True)
    os.replace(downloaded, destination)
    fsync_directory(destination.parent)


def _existing_files(folder: Path) -> dict[str, list[Path]]:
    """video id -> its video files in ``folder``."""
    from statechange.data.index import VIDEO_EXTENSIONS, video_id_of

    found: dict[str, list[Path]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                found.setdefault(video_id_of(path), []).append(path)
    return found


def _short_message(message: str) -> str:
    """yt-dlp's error without its ``ERROR: [extractor] id:`` prefix."""
    message = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return re.sub(r"^ERROR: (\[[^\]]+\] )?([^:\s]+: )?", "", message)


class _SilentLogger:
    """yt-dlp's messages stay out of the terminal: errors come back as exceptions, and are summarised."""

    def debug(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass


def _import_yt_dlp() -> Any:
    try:
        import yt_dlp
    except ImportError:
        raise StateChangeError(
            "Downloading videos needs yt-dlp, which is not installed: pip install 'statechange[download]' "
            "(or pip install yt-dlp)."
        ) from None
    return yt_dlp


def _check_options(options: VideoDownloadOptions) -> None:
    if options.workers < 1:
        raise StateChangeError(f"--workers must be at least 1, got {options.workers}.")
    if options.max_height < 1:
        raise StateChangeError(f"--max-height must be a positive number of pixels, got {options.max_height}.")
    if "{id}" not in options.url_template:
        raise StateChangeError(
            f"--url-template {options.url_template!r} has no {{id}}: write where a video comes from, "
            "e.g. https://mirror.example/{category}/{id}.mp4."
        )
    try:
        options.url_template.format(id="x", category="x")
    except (KeyError, IndexError, ValueError) as error:
        raise StateChangeError(
            f"--url-template {options.url_template!r} cannot be filled in ({error!r}): "
            "use only {id} and {category}."
        ) from None


def _remove_empty_folders(folder: Path) -> None:
    if not folder.is_dir():
        return
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


__all__ = [
    "DEFAULT_URL_TEMPLATE",
    "MISSING_FILE",
    "CategoryCounts",
    "VideoDownloadOptions",
    "VideoDownloadSummary",
    "classify_error",
    "download_videos",
    "format_selector",
    "read_missing",
    "write_missing",
]
