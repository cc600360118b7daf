"""Configs round-trip through checkpoints, and checkpoints written before a setting moved still load."""

from __future__ import annotations

import pytest

from statechange.config import ForwardSettings, PseudoLabelConfig, TrainConfig, from_dict, to_dict
from statechange.errors import StateChangeError


def test_a_train_config_round_trips_through_its_dict():
    config = TrainConfig(pseudo_labels=PseudoLabelConfig(kappa=30), seed=7)
    assert from_dict(TrainConfig, to_dict(config)) == config


def test_a_checkpoint_config_with_the_old_chunk_size_still_loads():
    saved = to_dict(TrainConfig())
    saved["pseudo_labels"]["chunk_size"] = 64  # written by versions where chunk size was a method setting
    assert from_dict(TrainConfig, saved) == TrainConfig()
    saved["pseudo_labels"]["not_a_setting"] = 1
    with pytest.raises(ValueError, match="not_a_setting"):
        from_dict(TrainConfig, saved)


def test_forward_settings_refuse_values_that_cannot_work():
    with pytest.raises(StateChangeError, match="--chunk-size"):
        ForwardSettings(chunk_size=0)
    with pytest.raises(ValueError, match="precision"):
        ForwardSettings(precision="fp16")
