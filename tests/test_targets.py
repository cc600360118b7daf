"""Pseudo-label frames and targets from a decoded triplet (METHOD.md, step 3)."""

from __future__ import annotations

import pytest
import torch

from statechange.config import PseudoLabelConfig
from statechange.targets import frame_offsets, pseudo_labels


def test_the_fifteen_frames_and_their_targets_in_the_middle_of_a_video():
    # category 2 of 5, triplet (100, 200, 300) in a 1000-frame video
    labels = pseudo_labels((100, 200, 300), category=2, n_categories=5, n_frames=1000)
    assert labels.frames.tolist() == [99, 100, 101, 299, 300, 301, 199, 200, 201, 139, 140, 141, 259, 260, 261]
    # state head: 2c = 4 initial, 2c+1 = 5 end, 2N = 10 background
    assert labels.state_targets[:9].tolist() == [4, 4, 4, 5, 5, 5, 10, 10, 10]
    assert labels.state_mask.tolist() == [1.0] * 9 + [0.0] * 6
    # action head: c = 2 action, N = 5 background
    assert labels.action_targets.tolist() == [5] * 6 + [2] * 3 + [5] * 6


def test_indices_are_clamped_at_both_ends():
    labels = pseudo_labels((0, 1, 2), category=0, n_categories=1, n_frames=3)
    assert labels.frames.tolist() == [0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 0, 0, 2, 2, 2]
    assert labels.frames.min() >= 0 and labels.frames.max() <= 2


def test_single_category_uses_columns_zero_and_one():
    labels = pseudo_labels((10, 20, 30), category=0, n_categories=1, n_frames=100)
    assert set(labels.state_targets[:3].tolist()) == {0}
    assert set(labels.state_targets[3:6].tolist()) == {1}
    assert set(labels.state_targets[6:9].tolist()) == {2}
    assert set(labels.action_targets[6:9].tolist()) == {0}
    assert set(labels.action_targets[:6].tolist()) == {1}


def test_frames_per_target_and_kappa_come_from_the_config():
    config = PseudoLabelConfig(n_frames_per_target=1, kappa=5)
    labels = pseudo_labels((10, 20, 30), category=1, n_categories=2, n_frames=100, config=config)
    assert labels.frames.tolist() == [10, 30, 20, 15, 25]
    config = PseudoLabelConfig(n_frames_per_target=5, kappa=60)
    labels = pseudo_labels((10, 20, 30), category=1, n_categories=2, n_frames=100, config=config)
    assert len(labels.frames) == 25 and labels.frames[:5].tolist() == [8, 9, 10, 11, 12]
    assert frame_offsets(3).tolist() == [-1, 0, 1]


@pytest.mark.parametrize("triplet", [(5, 5, 6), (7, 3, 9), (0, 1, 10), (-1, 2, 3)])
def test_unordered_or_outside_triplets_are_rejected(triplet):
    with pytest.raises(ValueError, match="ordered"):
        pseudo_labels(triplet, category=0, n_categories=1, n_frames=10)


def test_accepts_a_row_of_best_triplet():
    labels = pseudo_labels(torch.tensor([1, 2, 3]), category=0, n_categories=1, n_frames=10)
    assert labels.frames.dtype == torch.long and labels.state_mask.dtype == torch.float32
