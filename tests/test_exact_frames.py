"""Evaluation sees exactly the frames of direct decoding, and stored features are keyed by everything
that changes them (precision, device type, frame source), on real encoded synthetic videos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from statechange.config import ForwardSettings, ModelConfig, OptimConfig, TrainConfig
from statechange.data.cache import EXACT_SOURCE, FrameCache, extract_videos, load_frames
from statechange.data.index import build_index, find_videos
from statechange.evaluate import category_logits
from statechange.features import FeatureStore, backbone_fingerprint
from statechange.inference import video_features
from statechange.model import init_model
from statechange.train import TrainOptions, TrainPaths, train


def tiny_model(n_categories: int = 2):
    return init_model(ModelConfig(backbone="tiny", hidden_sizes=(32,)), n_categories, seed=0).eval()


def test_evaluation_with_a_jpeg_cache_sees_the_decoded_frames(tiny_dataset: Path, tmp_path: Path) -> None:
    index = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset", ignore_video_weight=True)
    cache = FrameCache(tmp_path / "cache")
    extract_videos(find_videos([tiny_dataset / "videos"]), cache.root, quality=90, progress=False)
    model, settings = tiny_model(len(index.categories)), ForwardSettings()

    for video in index.test[:2]:
        assert cache.source_of(video.video) == "jpeg-q90"
        from_cache = category_logits(model, video, settings, frame_cache=cache)
        decoded = category_logits(model, video, settings)
        assert all(torch.equal(a, b) for a, b in zip(from_cache, decoded, strict=True))


def test_fingerprint_changes_with_precision_and_device_type() -> None:
    backbone = tiny_model().backbone
    config = TrainConfig().frames

    fingerprints = {
        backbone_fingerprint(backbone, "tiny", config, precision, device)
        for precision in ("fp32", "bf16")
        for device in ("cpu", "cuda")
    }

    assert len(fingerprints) == 4


@pytest.mark.slow
def test_features_from_jpeg_frames_are_not_reused_for_exact_frames(tiny_dataset: Path, tmp_path: Path) -> None:
    config = TrainConfig(model=ModelConfig(backbone="tiny", hidden_sizes=(32,)),
                         optim=OptimConfig(n_epochs=1, local_batch_size=2, warmup_epochs=0.0))
    cache = FrameCache(tmp_path / "cache")
    extract_videos(find_videos([tiny_dataset / "videos"]), cache.root, quality=90, progress=False)
    features = tmp_path / "features"
    options = TrainOptions(device="cpu", num_workers=0, progress=False)

    def run(output: str, frame_cache: Path | None):
        paths = TrainPaths(video_roots=(tiny_dataset / "videos",), dataset_root=tiny_dataset / "dataset",
                           output=tmp_path / output, frame_cache=frame_cache, feature_cache=features)
        return train(config, paths, options)

    with_cache = run("jpeg", cache.root)
    (fingerprint,) = [p.name for p in features.iterdir()]
    store = FeatureStore(features, fingerprint)
    index = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset", ignore_video_weight=True)
    model = with_cache.model.eval()
    for video in index.test:  # evaluated videos: features of the decoded frames, never of the JPEG cache
        exact = video_features(model, load_frames(video.video, None), ForwardSettings())
        assert torch.equal(store.get(video.video, EXACT_SOURCE), exact)
    for video in index.train:
        assert store.get(video.video, "jpeg-q90") is not None
        assert store.get(video.video, EXACT_SOURCE) is None

    run("direct", None)  # the same backbone without the cache: training videos' features are recomputed

    for video in index.train:
        exact = video_features(model, load_frames(video.video, None), ForwardSettings())
        assert torch.equal(store.get(video.video, EXACT_SOURCE), exact)
        assert not torch.equal(store.get(video.video, "jpeg-q90"), exact)
