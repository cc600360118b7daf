"""Per-video backbone features, computed once and kept on disk.

With a frozen backbone and no augmentation a frame's features never change (training and
evaluation both see the centre crop), so the heads can be trained on stored features: the same
results as recomputing the backbone every step, at a fraction of the cost. Entries are keyed by
everything that changes a video's features: a fingerprint of the backbone (its name and weights),
the frame settings, the precision and the device type, then per video by its frame source
(``data.cache.frame_source``: exact frames, or JPEG-cached ones of a given quality). A different
backbone, precision or frame source never reads stale features.

Layout: ``<root>/<fingerprint>/<frame source>/<category>/<video_id>.safetensors`` holding ``features``
float32 [T, F] and, in the header, the source video's size and modification time and the features'
checksum (``checksums``), checked on every read: damaged features are computed again.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from statechange._io import TEMP_SUFFIX, remove_abandoned, write_bytes
from statechange.checksums import ALGORITHM, checksum
from statechange.config import ForwardSettings, FrameConfig
from statechange.data.decode import VideoDecodeError
from statechange.data.index import VideoFile
from statechange.data.prefetch import prefetched
from statechange.inference import batched_features
from statechange.model import StateChangeModel
from statechange.progress import progress as progress_bar

V = TypeVar("V")  # a video, as the caller names it

FEATURE_FORMAT_VERSION = 1
FEATURES_CHECKSUM = f"features_{ALGORITHM}"  # header: checksum of the features' bytes, checked on every read


def backbone_fingerprint(
    backbone: torch.nn.Module, name: str, frames: FrameConfig, precision: str, device_type: str
) -> str:
    """A short hash of the backbone's weights, its name, the frame settings, the forward precision
    ("fp32" / "bf16") and the device type ("cpu", "cuda": their kernels round differently)."""
    digest = hashlib.sha256()
    settings = [FEATURE_FORMAT_VERSION, name, frames.__dict__, precision, device_type]
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for key, tensor in sorted(backbone.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _checksum(features: torch.Tensor) -> str:
    """The checksum of a float32 [T, F] CPU tensor's bytes."""
    return checksum(features.contiguous().numpy().reshape(-1).view(np.uint8))


def _source_stamp(path: Path) -> dict[str, str]:
    stat = path.stat()
    return {"source_size": str(stat.st_size), "source_mtime_ns": str(stat.st_mtime_ns)}


class FeatureStore:
    """Backbone features of videos under ``root``, for one backbone fingerprint."""

    def __init__(self, root: str | Path, fingerprint: str) -> None:
        self.root = Path(root)
        self.directory = self.root / fingerprint

    def remove_temp_files(self) -> int:
        """Delete the temporary files that interrupted writes left under ``root`` (every fingerprint; none a live
        writer holds); returns how many."""
        return remove_abandoned(self.root.glob(f"*/*/*/.*{TEMP_SUFFIX}"))

    def path_for(self, video: VideoFile, frame_source: str) -> Path:
        return self.directory / frame_source / video.category / f"{video.video_id}.safetensors"

    def get(self, video: VideoFile, frame_source: str) -> torch.Tensor | None:
        """Features [T, F] of the video's frames from ``frame_source``, or None when absent, unreadable,
        made from another file or damaged (their checksum differs: a warning, and the caller computes them
        again)."""
        path = self.path_for(video, frame_source)
        if not path.exists():
            return None
        try:
            with safe_open(path, framework="pt") as file:
                stamp = dict(file.metadata() or {})
                expected = stamp.pop(FEATURES_CHECKSUM, None)
                if stamp != _source_stamp(video.path):
                    return None
                features = file.get_tensor("features")
        except (OSError, ValueError, KeyError, SafetensorError):
            return None
        if expected is not None and _checksum(features) != expected:
            warnings.warn(f"Ignoring damaged stored features {path} (they differ from their checksum); "
                          "they are computed again.", stacklevel=2)
            return None
        return features

    def put(self, video: VideoFile, features: torch.Tensor, frame_source: str) -> None:
        """Store features [T, F] of frames from ``frame_source`` atomically (a temporary file renamed into place)."""
        path = self.path_for(video, frame_source)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"features": features.detach().float().cpu().contiguous()}
        metadata = {**_source_stamp(video.path), FEATURES_CHECKSUM: _checksum(tensors["features"])}
        write_bytes(path, save(tensors, metadata))  # in memory: no temporary file of safetensors


def compute_features(model: StateChangeModel, videos: Sequence[V], load: Callable[[V], np.ndarray],
                     put: Callable[[V, torch.Tensor], None], settings: ForwardSettings,
                     progress: bool = False) -> list[tuple[V, str]]:
    """Backbone features [T, F] of each video, handed to ``put`` (frames from ``load``: uint8 [T, H, W, 3]).

    The next video is loaded (decoded) in a background thread while the model runs, and short videos
    share forward passes so the model sees full chunks (``inference.batched_features``). Returns the
    videos that could not be decoded, with the reason; videos without frames are skipped.
    """
    failures: list[tuple[V, str]] = []

    def loaded() -> Iterator[tuple[V, np.ndarray]]:
        attempts = prefetched((video, _frames_or_error(load, video)) for video in videos)
        for video, frames in progress_bar(attempts, total=len(videos), desc="features", unit="video", enabled=progress,
                                          leave=False):
            if isinstance(frames, VideoDecodeError):
                failures.append((video, frames.reason))
            else:
                yield video, frames

    for video, features in batched_features(model, loaded(), settings):
        put(video, features)
    return failures


def _frames_or_error(load: Callable[[V], np.ndarray], video: V) -> np.ndarray | VideoDecodeError:
    try:
        return load(video)
    except VideoDecodeError as error:
        return error
