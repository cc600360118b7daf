"""Per-video backbone features, computed once and kept on disk.

With a frozen backbone and no augmentation a frame's features never change (training and
evaluation both see the centre crop), so the heads can be trained on stored features: the same
results as recomputing the backbone every step, at a fraction of the cost. Entries are keyed by
video and by a fingerprint of the backbone's weights and the frame settings, so a different
backbone or different weights never read stale features.

Layout: ``<root>/<fingerprint>/<category>/<video_id>.safetensors`` holding ``features`` float32 [T, F]
and, in the header, the source video's size and modification time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from statechange._io import write_bytes
from statechange.config import FrameConfig
from statechange.data.index import VideoFile

FEATURE_FORMAT_VERSION = 1


def backbone_fingerprint(backbone: torch.nn.Module, name: str, frames: FrameConfig) -> str:
    """A short hash of the backbone's weights, its name and the frame settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps([FEATURE_FORMAT_VERSION, name, frames.__dict__], sort_keys=True).encode())
    for key, tensor in sorted(backbone.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _source_stamp(path: Path) -> dict[str, str]:
    stat = path.stat()
    return {"source_size": str(stat.st_size), "source_mtime_ns": str(stat.st_mtime_ns)}


class FeatureStore:
    """Backbone features of videos under ``root``, for one backbone fingerprint."""

    def __init__(self, root: str | Path, fingerprint: str) -> None:
        self.directory = Path(root) / fingerprint

    def path_for(self, video: VideoFile) -> Path:
        return self.directory / video.category / f"{video.video_id}.safetensors"

    def get(self, video: VideoFile) -> torch.Tensor | None:
        """Features [T, F] of the video, or None when absent, unreadable or made from another file."""
        path = self.path_for(video)
        if not path.exists():
            return None
        try:
            with safe_open(path, framework="pt") as file:
                if file.metadata() != _source_stamp(video.path):
                    return None
                return file.get_tensor("features")
        except (OSError, ValueError, KeyError, SafetensorError):
            return None

    def put(self, video: VideoFile, features: torch.Tensor) -> None:
        """Store features [T, F] atomically (a temporary file renamed into place)."""
        path = self.path_for(video)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"features": features.detach().float().cpu().contiguous()}
        write_bytes(path, save(tensors, _source_stamp(video.path)))  # in memory: no temporary file of safetensors
