"""Evaluation on annotated videos: centre crop, no augmentation, the metrics of METHOD.md.

The videos are sharded across ranks (rank r takes videos r, r + W, r + 2W, ...: every video exactly
once, no padding) and the per-video records are merged in memory with ``all_gather_object``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from statechange import distributed
from statechange.config import FrameConfig
from statechange.data.cache import FrameCache, load_frames
from statechange.data.decode import VideoDecodeError
from statechange.data.index import IndexedVideo, read_annotation
from statechange.features import FeatureStore
from statechange.inference import video_logits
from statechange.labels import category_probabilities
from statechange.metrics import MetricsAccumulator
from statechange.model import StateChangeModel
from statechange.predictions import prediction_path, write_predictions


@dataclass
class EvaluationResult:
    metrics: MetricsAccumulator
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video key, reason), all ranks


@torch.no_grad()
def category_logits(
    model: StateChangeModel,
    video: IndexedVideo,
    device: torch.device,
    frame_cache: FrameCache | None = None,
    feature_store: FeatureStore | None = None,
    frames_config: FrameConfig = FrameConfig(),
    chunk_size: int = 64,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """State and action logits [T, .] of a video: from stored features when there are some, else from frames."""
    features = feature_store.get(video.video) if feature_store is not None else None
    if features is not None:
        return model.heads(features.to(device))
    frames = load_frames(video.video, frame_cache, fps=frames_config.fps, size=(frames_config.width, frames_config.height))
    return video_logits(model, frames, device, chunk_size, precision, None, frames_config.crop)


def evaluate(
    model: StateChangeModel,
    videos: Sequence[IndexedVideo],
    device: torch.device,
    frame_cache: FrameCache | None = None,
    feature_store: FeatureStore | None = None,
    frames_config: FrameConfig = FrameConfig(),
    chunk_size: int = 64,
    precision: str = "fp32",
    predictions_out: Path | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Score every annotated video once across all ranks; every rank gets the merged result."""
    rank, world_size = _rank_and_world()
    model.eval()
    local = MetricsAccumulator()
    failed: list[tuple[str, str]] = []
    shard = list(videos)[rank::world_size]
    for video in tqdm(shard, desc="evaluate", unit="video", disable=not progress, file=sys.stderr, leave=False):
        if video.annotation is None:
            raise ValueError(f"Video {video.key} has no annotation; only annotated videos can be evaluated.")
        try:
            state, action = category_logits(
                model, video, device, frame_cache, feature_store, frames_config, chunk_size, precision
            )
        except VideoDecodeError as error:
            failed.append((video.key, error.reason))
            continue
        initial, act, end = (p.cpu() for p in category_probabilities(state, action, video.category_index))
        local.add_video(initial, act, end, read_annotation(video.annotation), video.category, video.key)
        if predictions_out is not None:
            write_predictions(prediction_path(predictions_out, video.category, video.video_id), initial, act, end)
    merged = MetricsAccumulator.from_states(distributed.all_gather_objects(local.to_state()))
    all_failed = [item for part in distributed.all_gather_objects(failed) for item in part]
    return EvaluationResult(merged, all_failed)


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
