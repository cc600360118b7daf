"""The dataset index: which videos exist, their category, split, relevance and annotations
(the ChangeIt layout of METHOD.md, read as-is)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Containers the decoder is tried on when listing video roots; anything FFmpeg reads works.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv")


@dataclass(frozen=True)
class VideoFile:
    """One video file found under a video root: ``<root>/<category>/<video_id>.<ext>``."""

    category: str
    video_id: str  # the file name up to its first dot
    path: Path

    @property
    def key(self) -> str:
        """``category/video_id``: unique within a dataset, used for caches and logs."""
        return f"{self.category}/{self.video_id}"


def video_id_of(path: Path) -> str:
    """The ChangeIt video id of a file: its name up to the first dot."""
    return path.name.split(".", 1)[0]


def find_videos(video_roots: Sequence[str | Path]) -> list[VideoFile]:
    """Every video file under the roots, sorted by (category, video_id).

    When the same ``category/video_id`` is found more than once (several roots, or two
    containers), the first root given wins and the others are ignored.
    """
    found: dict[str, VideoFile] = {}
    for root in map(Path, video_roots):
        for category_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for path in sorted(category_dir.iterdir()):
                if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                    video = VideoFile(category_dir.name, video_id_of(path), path)
                    found.setdefault(video.key, video)
    return sorted(found.values(), key=lambda v: (v.category, v.video_id))
