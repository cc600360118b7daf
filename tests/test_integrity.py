"""Checksums (issue 9, point 5): a damaged checkpoint is an error naming the file; a damaged frame-cache
entry or stored feature file is never used: it is decoded or computed again, reported, and rebuilt.
Real checkpoints, real encoded videos and the real extract / train code; bytes flipped on disk."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from statechange.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from statechange.cli import main
from statechange.config import ForwardSettings, ModelConfig, OptimConfig, TrainConfig
from statechange.data.cache import EXACT_SOURCE, MEAN_ABS_ERROR_BOUND, FrameCache, load_frames
from statechange.data.decode import decode_video
from statechange.data.index import build_index, find_videos
from statechange.factory import build_model
from statechange.features import FeatureStore
from statechange.inference import video_features
from statechange.train import TrainOptions, TrainPaths, train

TINY = ModelConfig(backbone="tiny", hidden_sizes=(32,))


def flip_bytes(path: Path, start: int, count: int) -> None:
    data = bytearray(path.read_bytes())
    for position in range(start, start + count):
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A real checkpoint of the tiny backbone with a training state."""
    model = build_model(TINY, 2, seed=0)
    return save_checkpoint(tmp_path / "last", model, ["a", "b"], {"epoch": 1}, {"epoch": 1, "lr": [0.1]})


# ---------------------------------------------------------------------------------------------
# checkpoints


def test_a_checkpoint_with_flipped_bytes_is_an_error_naming_the_file(checkpoint, tiny_dataset, capsys):
    model_file = checkpoint / "model.safetensors"
    flip_bytes(model_file, model_file.stat().st_size - 4096, 4096)  # the last 4 KB: weights; the header reads fine
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(model_file))} is damaged: its checksum differs"):
        load_checkpoint(checkpoint)

    video = sorted((tiny_dataset / "videos").rglob("*.mp4"))[0]
    output = checkpoint.parent / "predictions"
    assert main(["predict", "--checkpoint", str(checkpoint), "--category", "a", "--output", str(output),
                 str(video)]) == 2  # the command line: one sentence, no traceback
    assert f"{model_file} is damaged" in capsys.readouterr().err


def test_a_damaged_training_state_is_an_error_naming_the_file(checkpoint):
    state_file = checkpoint / "training_state.pt"
    flip_bytes(state_file, state_file.stat().st_size // 2, 3)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(state_file))} is damaged"):
        load_checkpoint(checkpoint)
    assert load_checkpoint(checkpoint, load_training_state=False).categories == ["a", "b"]  # the weights are fine


def test_a_foreign_training_state_is_an_error_naming_the_file(checkpoint):
    state_file = checkpoint / "training_state.pt"
    torch.save([1, 2, 3], state_file)  # another program's file, recorded as the checkpoint's own
    remove_checksums(checkpoint)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(state_file))} is not a statechange training state"):
        load_checkpoint(checkpoint)


def remove_checksums(checkpoint: Path) -> None:
    """Make a checkpoint look like one written before checksums were recorded."""
    config_file = checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    del config["xxh3_128"]
    config_file.write_text(json.dumps(config))


def test_checksums_are_recorded_and_checkpoints_without_them_still_load(checkpoint):
    recorded = json.loads((checkpoint / "config.json").read_text())["xxh3_128"]
    assert set(recorded) == {"model.safetensors", "training_state.pt"}
    expected = load_checkpoint(checkpoint).model.state_dict()

    remove_checksums(checkpoint)
    loaded = load_checkpoint(checkpoint)
    assert loaded.training_state["epoch"] == 1
    assert all(torch.equal(loaded.model.state_dict()[key], value) for key, value in expected.items())


# ---------------------------------------------------------------------------------------------
# the frame cache


def test_a_damaged_cache_entry_is_decoded_instead_and_rebuilt_by_extract(tiny_dataset, tmp_path, capsys):
    videos, cache_root = tmp_path / "videos", tmp_path / "cache"
    source = sorted((tiny_dataset / "videos" / "disc_slicing").glob("*.mp4"))[0]
    (videos / "disc_slicing").mkdir(parents=True)
    shutil.copy2(source, videos / "disc_slicing" / source.name)
    extract = ["extract", "--video-roots", str(videos), "--cache", str(cache_root), "--workers", "1", "--no-progress"]
    assert main(extract) == 0
    (video,) = find_videos([videos])
    cache = FrameCache(cache_root)
    entry = cache.path_for(video)
    decoded = decode_video(video.path)
    flip_bytes(entry, entry.stat().st_size // 2, 3)  # inside the images: they decode, to other pixels

    with pytest.warns(UserWarning, match=rf"{re.escape(str(entry))} \(damaged: its images differ"):
        frames = load_frames(video, cache)  # how training, evaluation and prediction get frames
    np.testing.assert_array_equal(frames, decoded)  # decoded from the video, not the damaged entry
    assert not cache.is_fresh(video)

    capsys.readouterr()
    assert main(extract) == 0
    out = capsys.readouterr().out
    assert "1 extracted, 0 already cached" in out and f"rebuilt the damaged cache entry {entry}" in out
    rebuilt = cache.get(video)
    assert cache.is_fresh(video) and rebuilt is not None
    assert np.abs(rebuilt.astype(np.float64) - decoded).mean() < MEAN_ABS_ERROR_BOUND

    assert main(extract) == 0  # rebuilt once: the next run finds it fresh and reports nothing
    out = capsys.readouterr().out
    assert "0 extracted, 1 already cached" in out and "damaged" not in out


# ---------------------------------------------------------------------------------------------
# stored features


@pytest.mark.slow
def test_damaged_stored_features_are_computed_again_with_a_warning(tiny_dataset, tmp_path):
    config = TrainConfig(model=TINY, optim=OptimConfig(n_epochs=1, local_batch_size=2, warmup_epochs=0.0))
    features = tmp_path / "features"

    def run(output: str):
        paths = TrainPaths(video_roots=(tiny_dataset / "videos",), dataset_root=tiny_dataset / "dataset",
                           output=tmp_path / output, feature_cache=features)
        return train(config, paths, TrainOptions(device="cpu", num_workers=0, progress=False))

    model = run("first").model.eval()
    (fingerprint,) = [path.name for path in features.iterdir()]
    store = FeatureStore(features, fingerprint)
    video = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset", ignore_video_weight=True).train[0].video
    path = store.path_for(video, EXACT_SOURCE)
    flip_bytes(path, path.stat().st_size - 8, 3)  # inside the tensor: it still reads, as other numbers

    with pytest.warns(UserWarning, match=rf"Ignoring damaged stored features {re.escape(str(path))}"):
        run("second")
    assert torch.equal(store.get(video, EXACT_SOURCE), video_features(model, load_frames(video, None),
                                                                      ForwardSettings()))
