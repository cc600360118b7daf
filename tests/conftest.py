"""Shared fixtures: the test device and a tiny synthetic ChangeIt-format dataset of real encoded videos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests run on the CPU unless STATECHANGE_TEST_DEVICE names another device (e.g. cuda).
TEST_DEVICE = torch.device(os.environ.get("STATECHANGE_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="session")
def test_device() -> torch.device:
    return TEST_DEVICE


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 categories x (4 training + 2 test) videos of 11-16 s, H.264 and VP9, in the ChangeIt layout.

    Returns the root holding videos/, dataset/ and truth/.
    """
    from statechange.data.synth import make_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, n_categories=2, n_train_videos=4, n_test_videos=2, seed=1, min_seconds=11,
                           max_seconds=16, frame_size=(160, 90))
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the tiny backbone trained one epoch on ``tiny_dataset`` (its ``last`` directory)."""
    from statechange.config import ModelConfig, OptimConfig, TrainConfig
    from statechange.train import TrainOptions, TrainPaths, train

    output = tmp_path_factory.mktemp("trained")
    config = TrainConfig(model=ModelConfig(backbone="tiny", hidden_sizes=(32,)),
                         optim=OptimConfig(n_epochs=1, warmup_epochs=0.0, lr=1e-2))
    paths = TrainPaths(video_roots=(tiny_dataset / "videos",), dataset_root=tiny_dataset / "dataset", output=output)
    train(config, paths, TrainOptions(device="cpu", num_workers=0, progress=False))
    return output / "last"
