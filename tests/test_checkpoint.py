"""Checkpoints: exact round trips, self-describing files, atomic replacement, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from statechange import _io as io_module
from statechange.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    replaced_path,
    save_checkpoint,
    staging_path,
)
from statechange.config import ModelConfig, TrainConfig, to_dict
from statechange.factory import build_model
from statechange.model import EFFICIENTNET_LITE0, TINY_BACKBONE, StateChangeModel
from statechange.weights import WeightFileError

TINY = ModelConfig(backbone=TINY_BACKBONE, hidden_sizes=(16,))
CATEGORIES = ["apple", "bacon", "cake"]


def frames(seed: int = 0, n: int = 3, size: int = 224) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def outputs(model: StateChangeModel, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return model(batch)


def tiny_model(seed: int) -> StateChangeModel:
    return build_model(TINY, len(CATEGORIES), seed=seed)


def assert_same_outputs(a: StateChangeModel, b: StateChangeModel, batch: torch.Tensor) -> None:
    for x, y in zip(outputs(a, batch), outputs(b, batch), strict=True):
        assert torch.equal(x, y)


def test_round_trip_with_training_state(tmp_path):
    model = tiny_model(seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state_logits, action_logits = model(frames())
    (state_logits.sum() + action_logits.sum()).backward()
    optimizer.step()
    metadata = {"epoch": 3, "metrics": {"state_precision": 41.5, "action_precision": 60.25},
                "train_config": to_dict(TrainConfig())}
    training_state = {"epoch": 3, "optimizers": [optimizer.state_dict()], "torch_rng": torch.get_rng_state(),
                      "python_rng": [3, [1, 2, 3], None], "best": 41.5}
    directory = save_checkpoint(tmp_path / "last", model, CATEGORIES, metadata, training_state)

    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors", "training_state.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no staging or replaced copies left
    loaded = load_checkpoint(directory)
    assert not loaded.model.training
    assert all(p.requires_grad for p in loaded.model.parameters())  # trainable, e.g. to resume
    assert loaded.categories == CATEGORIES
    assert loaded.metadata == json.loads(json.dumps(metadata))  # tuples come back as lists, as in JSON
    assert_same_outputs(model, loaded.model, frames(seed=1))

    # The training state is plain data: torch.load(weights_only=True) reads it, and an optimiser resumes from it.
    state = torch.load(directory / "training_state.pt", weights_only=True)
    assert torch.equal(state["torch_rng"], training_state["torch_rng"])
    assert state["python_rng"] == [3, [1, 2, 3], None]
    resumed = torch.optim.SGD(loaded.model.parameters(), lr=0.1, momentum=0.9)
    resumed.load_state_dict(loaded.training_state["optimizers"][0])
    momentum = optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(resumed.state_dict()["state"][0]["momentum_buffer"], momentum)


def test_model_file_alone_describes_the_checkpoint(tmp_path):
    model = tiny_model(seed=0)
    directory = save_checkpoint(tmp_path / "best", model, CATEGORIES, {"epoch": 1})
    config = json.loads((directory / "config.json").read_text())
    assert config["format"] == CHECKPOINT_FORMAT and config["format_version"] == 1
    assert config["backbone"] == TINY_BACKBONE and config["feature_dim"] == model.feature_dim
    assert config["model"] == to_dict(TINY) | {"hidden_sizes": [16]}
    assert config["categories"] == CATEGORIES and config["metadata"] == {"epoch": 1}
    checksums = config.pop("xxh3_128")  # config.json alone records the files' checksums (a file cannot hold its own)
    assert set(checksums) == {"model.safetensors"}
    with safe_open(str(directory / "model.safetensors"), framework="pt") as file:
        assert json.loads(file.metadata()["statechange"]) == config

    alone = tmp_path / "copied.safetensors"  # the model file moved elsewhere still loads
    os.replace(directory / "model.safetensors", alone)
    loaded = load_checkpoint(alone)
    assert loaded.categories == CATEGORIES and loaded.training_state is None
    assert_same_outputs(model, loaded.model, frames())


def test_batch_norm_statistics_survive_the_round_trip(tmp_path):
    model = build_model(ModelConfig(backbone=EFFICIENTNET_LITE0, hidden_sizes=(8,)), 2, seed=0)
    model.train()
    with torch.no_grad():
        model(frames(n=2, size=64))  # moves the running statistics away from the pretrained ones
    directory = save_checkpoint(tmp_path / "last", model, ["a", "b"], {})
    loaded = load_checkpoint(directory)
    assert torch.equal(loaded.model.backbone.bn1.running_mean, model.backbone.bn1.running_mean)
    assert_same_outputs(model, loaded.model, frames(n=2, size=64))


def test_any_timm_backbone_round_trips_including_computed_buffers(tmp_path):
    """EfficientViT keeps unsaved index buffers: the loader must rebuild them, not leave them empty."""
    config = ModelConfig(backbone="efficientvit_m0", hidden_sizes=(8,))
    with pytest.warns(UserWarning, match="randomly initialised"):
        model = build_model(config, 1, seed=0)
    directory = save_checkpoint(tmp_path / "last", model, ["only"], {})
    loaded = load_checkpoint(directory)
    assert torch.equal(loaded.model.pixel_mean.flatten(), torch.tensor(model.backbone.pretrained_cfg["mean"]))
    assert_same_outputs(model, loaded.model, frames(n=1))


def test_checkpoint_backbone_serves_as_pretrained_weights(tmp_path):
    trained = tiny_model(seed=0)
    directory = save_checkpoint(tmp_path / "last", trained, CATEGORIES, {})
    fresh = build_model(TINY, 5, weights=directory, seed=1)  # other categories, same backbone
    with torch.no_grad():
        assert torch.equal(fresh.features(frames()), trained.eval().features(frames()))
    with pytest.raises(WeightFileError, match=r"holds a tiny backbone, not efficientnet_lite0"):
        build_model(ModelConfig(backbone=EFFICIENTNET_LITE0), 5, weights=directory / "model.safetensors")


# ---- atomic replacement --------------------------------------------------------------------------


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    old = tiny_model(seed=0)
    directory = save_checkpoint(tmp_path / "last", old, CATEGORIES, {"epoch": 1})
    with pytest.raises(TypeError):
        save_checkpoint(directory, tiny_model(seed=1), CATEGORIES, {"epoch": 2, "optimizer": object()})
    with pytest.raises(TypeError, match=r"training_state\['rng'\] is a ndarray"):
        save_checkpoint(directory, tiny_model(seed=1), CATEGORIES, {}, {"rng": np.zeros(3)})
    loaded = load_checkpoint(directory)
    assert loaded.metadata == {"epoch": 1}
    assert_same_outputs(old, loaded.model, frames())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_crash_while_swapping_in_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    old = tiny_model(seed=0)
    directory = save_checkpoint(tmp_path / "last", old, CATEGORIES, {"epoch": 1})
    real_replace = os.replace

    def failing_replace(source, target):
        if Path(source) == staging_path(directory):
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr(io_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(directory, tiny_model(seed=1), CATEGORIES, {"epoch": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # the old one was put back, nothing left over
    loaded = load_checkpoint(directory)
    assert loaded.metadata == {"epoch": 1}
    assert_same_outputs(old, loaded.model, frames())


def test_process_killed_mid_save_leaves_a_loadable_checkpoint(tmp_path):
    old, new = tiny_model(seed=0), tiny_model(seed=1)
    directory = save_checkpoint(tmp_path / "last", old, CATEGORIES, {"epoch": 1})

    # Killed while writing: a partial staging directory beside the intact old checkpoint.
    staging_path(directory).mkdir()
    (staging_path(directory) / "model.safetensors").write_bytes(b"\x00" * 10)
    assert load_checkpoint(directory).metadata == {"epoch": 1}

    # Killed between the two renames: only the moved-away old checkpoint exists.
    os.replace(directory, replaced_path(directory))
    with pytest.warns(UserWarning, match="save was interrupted"):
        recovered = load_checkpoint(directory)
    assert recovered.metadata == {"epoch": 1}
    assert_same_outputs(old, recovered.model, frames())

    # The next save cleans up both leftovers and puts the new checkpoint in place.
    save_checkpoint(directory, new, CATEGORIES, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    loaded = load_checkpoint(directory)
    assert loaded.metadata == {"epoch": 2}
    assert_same_outputs(new, loaded.model, frames())


# ---- errors ---------------------------------------------------------------------------------------


def test_paths_that_are_not_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match=r"nowhere does not exist"):
        load_checkpoint(tmp_path / "nowhere")

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty is not a statechange checkpoint \(it has no model.safetensors\)"):
        load_checkpoint(tmp_path / "empty")

    hf = tmp_path / "hf-model"  # another program's model directory
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "clip"}))
    save_file({"w": torch.zeros(2)}, str(hf / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"hf-model is not a statechange checkpoint \(its config.json"):
        load_checkpoint(hf)

    timm_file = tmp_path / "vit.safetensors"  # a timm weight file
    save_file(tiny_model(seed=0).backbone.state_dict(), str(timm_file))
    with pytest.raises(CheckpointError, match=r"vit.safetensors is a safetensors file but not a statechange"):
        load_checkpoint(timm_file)


def test_unknown_format_version_is_refused(tmp_path):
    directory = save_checkpoint(tmp_path / "last", tiny_model(seed=0), CATEGORIES, {})
    model_file = directory / "model.safetensors"
    with safe_open(str(model_file), framework="pt") as file:
        config = json.loads(file.metadata()["statechange"])
    config["format_version"] = 99
    save_file(load_file(str(model_file)), str(model_file), metadata={"statechange": json.dumps(config)})
    with pytest.raises(CheckpointError, match=r"format version 99 but this statechange .* reads version 1"):
        load_checkpoint(directory)
