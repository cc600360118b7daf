"""Evaluation on annotated videos: centre crop, no augmentation, the metrics of METHOD.md.

Evaluation sees exactly the frames of direct decoding (those of the release's ffmpeg command): a
frame cache is read only where it holds a lossless entry, and stored features only when they were
computed from exact frames.

The videos are sharded across ranks (rank r takes videos r, r + W, r + 2W, ...: every video exactly
once, no padding) and the per-video records are merged in memory with ``all_gather_object``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from statechange import distributed, report
from statechange.config import ForwardSettings, FrameConfig
from statechange.data.cache import EXACT_SOURCE, FrameCache, load_frames
from statechange.data.decode import VideoDecodeError
from statechange.data.index import IndexedVideo, build_index, read_annotation
from statechange.data.prefetch import prefetched
from statechange.errors import StateChangeError, listing
from statechange.features import FeatureStore
from statechange.inference import frames_config_of, ready_for_inference, recipe_line, video_logits
from statechange.labels import category_probabilities
from statechange.metrics import LengthMismatchWarning, MetricsAccumulator
from statechange.model import StateChangeModel
from statechange.predictions import prediction_path, write_predictions
from statechange.progress import progress as progress_bar
from statechange.release import load_any_checkpoint


@dataclass
class EvaluationResult:
    metrics: MetricsAccumulator
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video key, reason), all ranks
    recipe: str | None = None  # the evaluated checkpoint's training recipe, described (evaluate_checkpoint)
    report: Path | None = None  # the HTML report (<report_dir>/index.html) when one was asked for
    report_videos: list[report.ReportVideo] = field(default_factory=list)  # its rows, all ranks
    length_mismatches: list[str] = field(default_factory=list)  # "key (T frames, T' annotated seconds)", all ranks
    held_out: int = 0  # annotated videos left out: they chose the checkpoint's run's best (evaluate_checkpoint)


VideoInputs = torch.Tensor | np.ndarray  # stored features float32 [T, F], or frames uint8 [T, H, W, 3]


def video_inputs(video: IndexedVideo, frames_config: FrameConfig = FrameConfig(), frame_cache: FrameCache | None = None,
                 feature_store: FeatureStore | None = None) -> VideoInputs:
    """What the model needs for a video's exact frames: its stored features when there are some, else its
    frames (a lossless cache entry, else decoded)."""
    features = feature_store.get(video.video, EXACT_SOURCE) if feature_store is not None else None
    if features is not None:
        return features
    return load_frames(video.video, frame_cache, fps=frames_config.fps, size=frames_config.size, exact=True)


@torch.no_grad()
def logits_of(model: StateChangeModel, inputs: VideoInputs,
              settings: ForwardSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """State and action logits [T, .] from ``video_inputs``: the heads alone on features, else the whole model."""
    if isinstance(inputs, np.ndarray):
        return video_logits(model, inputs, settings)
    return model.heads(inputs.to(settings.device))


def category_logits(
    model: StateChangeModel,
    video: IndexedVideo,
    settings: ForwardSettings,
    frames_config: FrameConfig = FrameConfig(),
    frame_cache: FrameCache | None = None,
    feature_store: FeatureStore | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """State and action logits [T, .] of a video's exact frames: ``video_inputs`` through ``logits_of``."""
    return logits_of(model, video_inputs(video, frames_config, frame_cache, feature_store), settings)


def evaluate(
    model: StateChangeModel,
    videos: Sequence[IndexedVideo],
    settings: ForwardSettings,
    frames_config: FrameConfig = FrameConfig(),
    frame_cache: FrameCache | None = None,
    feature_store: FeatureStore | None = None,
    predictions_out: Path | None = None,
    progress: bool = False,
    report_dir: Path | None = None,
    report_title: str = "statechange evaluation",
    allow_length_mismatch: bool = False,
) -> EvaluationResult:
    """Score every annotated video once across all ranks; every rank gets the merged result.

    The next video is loaded (decoded, or read from the caches) in a background thread while the
    model runs on the current one. ``report_dir``: also write the HTML report there (``report.py``: the
    metrics beside chance, each video's picture with the annotated truth).

    A video whose decoded frames and annotation differ in length (the symptom of a decoding
    misalignment) is an error naming every such video, as the release asserted; with
    ``allow_length_mismatch`` the shorter length is scored and the videos are listed in the result.
    """
    rank, world_size = distributed.rank_and_world_size()
    model.eval()
    local = MetricsAccumulator()
    failed: list[tuple[str, str]] = []
    rows: list[report.ReportVideo] = []
    mismatches: list[str] = []
    shard = list(videos)[rank::world_size]
    for video in shard:
        if video.annotation is None:
            raise ValueError(f"Video {video.key} has no annotation; only annotated videos can be evaluated.")
    loaded = prefetched((video, _inputs_or_error(video, frames_config, frame_cache, feature_store))
                        for video in shard)
    for video, inputs in progress_bar(loaded, total=len(shard), desc="evaluate", unit="video", enabled=progress,
                                      leave=False):
        if isinstance(inputs, VideoDecodeError):
            failed.append((video.key, inputs.reason))
            continue
        state, action = logits_of(model, inputs, settings)
        initial, act, end = (p.cpu() for p in category_probabilities(state, action, video.category_index))
        labels = read_annotation(video.annotation)  # [T']
        if len(labels) != len(initial):
            mismatches.append(f"{video.key} ({len(initial)} frames, {len(labels)} annotated seconds)")
            if not allow_length_mismatch:
                continue
        with warnings.catch_warnings():  # counted in the result instead
            warnings.simplefilter("ignore", LengthMismatchWarning)
            record = local.add_video(initial, act, end, labels, video.category, video.key)
        if predictions_out is not None:
            write_predictions(prediction_path(predictions_out, video.category, video.video_id), initial, act, end)
        if report_dir is not None:
            n = min(len(initial), len(labels))  # an allowed length mismatch is shown as it is scored
            frames = inputs[:n] if isinstance(inputs, np.ndarray) else None  # stored features have no frames
            rows.append(report.add_video(report_dir, video.path, video.category, video.video_id,
                                         (initial[:n], act[:n], end[:n]), labels[:n], record, frames))
    merged = MetricsAccumulator.from_states(distributed.all_gather_objects(local.to_state()))
    all_failed = [item for part in distributed.all_gather_objects(failed) for item in part]
    all_mismatches = [item for part in distributed.all_gather_objects(mismatches) for item in part]
    if all_mismatches and not allow_length_mismatch:
        raise StateChangeError(
            f"{len(all_mismatches)} video(s) decode to a different number of frames than their annotation has "
            f"seconds, a sign of misaligned decoding: {listing(sorted(all_mismatches))}; check how these files decode, "
            "or pass --allow-length-mismatch to score the shorter length."
        )
    result = EvaluationResult(merged, all_failed, length_mismatches=all_mismatches)
    if report_dir is not None:
        result.report_videos = [row for part in distributed.all_gather_objects(rows) for row in part]
        if rank == 0:
            result.report = report.write_report(report_dir, merged.summary(), chance_summary(videos),
                                                result.report_videos, report_title, all_failed)
    return result


def _inputs_or_error(video: IndexedVideo, frames_config: FrameConfig, frame_cache: FrameCache | None,
                     feature_store: FeatureStore | None) -> VideoInputs | VideoDecodeError:
    try:
        return video_inputs(video, frames_config, frame_cache, feature_store)
    except VideoDecodeError as error:
        return error


def evaluate_checkpoint(
    checkpoint: Path,
    video_roots: Sequence[Path],
    dataset_root: Path,
    settings: ForwardSettings,
    frame_cache: Path | None = None,
    predictions_out: Path | None = None,
    progress: bool = False,
    categories: list[str] | None = None,
    report_dir: Path | None = None,
    allow_length_mismatch: bool = False,
) -> EvaluationResult:
    """Evaluate a saved checkpoint, or a release ``.pth`` file (``categories`` name its classes), on the
    annotated videos of a dataset (categories matched by name); ``report_dir``: also write the HTML report.

    The crop is the checkpoint's own (``settings.crop`` is replaced by it). Videos that chose the
    checkpoint's run's ``best`` (``--val-fraction``) are left out.
    """
    loaded = load_any_checkpoint(checkpoint, device=settings.device, categories=categories)
    index = build_index(video_roots, dataset_root, ignore_video_weight=True)
    held_out = set(loaded.metadata.get("excluded_from_test") or [])  # the run's --val-fraction videos
    test = [v for v in index.test if v.key not in held_out]
    unknown = sorted({v.category for v in test} - set(loaded.categories))
    if unknown:
        raise StateChangeError(
            f"The dataset has annotated videos of categories the checkpoint {checkpoint} was not trained on "
            f"({', '.join(unknown)}); evaluate with the video roots of its training categories."
        )
    if not test:
        raise StateChangeError(f"No annotated video found for {dataset_root}/annotations in the video roots; "
                               "check --video-roots and --dataset-root.")
    videos = [replace(v, category_index=loaded.categories.index(v.category)) for v in test]
    frames_config = frames_config_of(loaded)
    recipe = recipe_line(loaded)
    model = ready_for_inference(loaded.model, settings.device)
    result = evaluate(model, videos, replace(settings, crop=frames_config.crop), frames_config,
                      frame_cache=FrameCache(frame_cache) if frame_cache else None, predictions_out=predictions_out,
                      progress=progress, report_dir=report_dir,
                      allow_length_mismatch=allow_length_mismatch, report_title=f"{checkpoint}: {recipe}")
    result.recipe = recipe
    result.held_out = len(index.test) - len(test)
    return result


def chance_summary(videos: Sequence[IndexedVideo], draws: int = 20, seed: int = 0) -> dict[str, Any]:
    """Expected ``MetricsAccumulator.summary()`` of uniformly random per-second probabilities, scored the
    same way (each number the mean of ``draws`` draws), per category too."""
    generator = torch.Generator().manual_seed(seed)
    labels = [(v, read_annotation(v.annotation)) for v in videos if v.annotation is not None]
    draws_made = []
    for _ in range(draws):
        accumulator = MetricsAccumulator()
        for video, y in labels:
            initial, action, end = torch.rand(3, len(y), generator=generator)
            accumulator.add_video(initial, action, end, y, video.category, video.key)
        draws_made.append(accumulator.summary())
    return _mean_of_summaries(draws_made)


def chance_metrics(videos: Sequence[IndexedVideo], draws: int = 20, seed: int = 0) -> dict[str, float]:
    """The overall metrics of ``chance_summary`` (those that are numbers)."""
    return {k: v for k, v in chance_summary(videos, draws, seed).items() if isinstance(v, float)}


def _mean_of_summaries(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each float of the summaries averaged (nested dicts alike); other values from the first."""
    mean: dict[str, Any] = {}
    for key, value in summaries[0].items():
        if isinstance(value, dict):
            mean[key] = _mean_of_summaries([s[key] for s in summaries])
        elif isinstance(value, float):
            mean[key] = sum(s[key] for s in summaries) / len(summaries)
        else:
            mean[key] = value
    return mean
