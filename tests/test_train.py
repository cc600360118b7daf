"""Training end to end on real encoded synthetic videos: logs, checkpoints, resume, skipping, divergence."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from statechange.checkpoint import load_checkpoint, save_checkpoint
from statechange.config import AugmentConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig
from statechange.errors import StateChangeError
from statechange.factory import build_model
from statechange.train import TrainOptions, TrainPaths, train, warmup_cosine

pytestmark = pytest.mark.slow


def tiny_config(**optim) -> TrainConfig:
    settings = {"n_epochs": 2, "local_batch_size": 2, "warmup_epochs": 1.0, "lr": 1e-2} | optim
    return TrainConfig(model=ModelConfig(backbone="tiny", hidden_sizes=(32,)), optim=OptimConfig(**settings))


def paths_for(dataset: Path, output: Path, **extra) -> TrainPaths:
    return TrainPaths(video_roots=(dataset / "videos",), dataset_root=dataset / "dataset", output=output, **extra)


OPTIONS = TrainOptions(device="cpu", num_workers=0, progress=False)


def read_log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]


def n_test_videos(dataset: Path) -> int:
    return len(list((dataset / "dataset" / "annotations").glob("*/*.fps1.csv")))


def test_training_logs_validates_every_test_video_and_writes_loadable_checkpoints(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    result = train(tiny_config(), paths_for(tiny_dataset, output), OPTIONS)

    log = read_log(output)
    assert [r["epoch"] for r in log] == [1, 2]
    for record in log:
        assert np.isfinite(record["loss"]) and record["loss"] > 0
        assert record["grad_norm"] > 0
        assert set(record["metrics"]) >= {"state_precision", "action_precision", "joint_state_precision",
                                          "joint_action_precision", "state_accuracy"}
    # the per-step schedule: after epoch 2 of 2 the cosine has reached 0
    assert log[1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert 0 < log[0]["lr"] <= 1e-2
    per_category = result.summary["per_category"]
    assert sum(c["n_videos"] for c in per_category.values()) == n_test_videos(tiny_dataset)

    last = load_checkpoint(output / "last")
    assert last.training_state["epoch"] == 2
    assert last.categories == result.categories
    for key, value in result.model.state_dict().items():
        assert torch.equal(last.model.state_dict()[key], value.cpu()), key
    assert not (output / "best").exists()  # no held-out validation set: no best (tests/test_selection.py)
    assert any((output / "tensorboard").iterdir())


def test_warmup_then_cosine_schedule():
    assert warmup_cosine(0, 10, 100) == 0.0
    assert warmup_cosine(5, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0)


def test_resume_continues_exactly(tiny_dataset, tmp_path):
    """Two epochs in one go equal one epoch, a stop, and one resumed epoch (augmented frames)."""
    config = replace(tiny_config(), augment=replace(AugmentConfig(), enabled=True))
    straight = train(config, paths_for(tiny_dataset, tmp_path / "straight"), OPTIONS)

    interrupted = paths_for(tiny_dataset, tmp_path / "interrupted")
    first = train(config, interrupted, replace(OPTIONS, stop_after_epoch=1))
    assert first.epochs_run == [1]
    resumed = train(config, interrupted, replace(OPTIONS, resume=True))
    assert resumed.epochs_run == [2]
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert [r["epoch"] for r in read_log(tmp_path / "interrupted")] == [1, 2]


def test_only_a_fine_tuned_backbone_changes(tiny_dataset, tmp_path):
    config = tiny_config(n_epochs=1)
    initial = build_model(config.model, 2, seed=config.seed).backbone.state_dict()
    frozen = train(config, paths_for(tiny_dataset, tmp_path / "frozen"), OPTIONS)
    for key, value in frozen.model.backbone.state_dict().items():
        assert torch.equal(value, initial[key]), key
    tuned_config = tiny_config(n_epochs=1, train_backbone=True, lr_backbone=1e-3)
    tuned = train(tuned_config, paths_for(tiny_dataset, tmp_path / "tuned"), OPTIONS)
    changed = [k for k, v in tuned.model.backbone.state_dict().items() if not torch.equal(v, initial[k])]
    assert changed, "fine-tuning left every backbone weight untouched"


def write_video(path: Path, n_seconds: int, fps: int = 2) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(n_seconds * fps):
            image = np.full((48, 64, 3), (index * 20) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_undecodable_and_too_short_videos_are_skipped_and_counted(tiny_dataset, tmp_path):
    dataset = tmp_path / "dataset_copy"
    shutil.copytree(tiny_dataset, dataset)
    category = sorted(p.name for p in (dataset / "videos").iterdir())[0]
    (dataset / "videos" / category / "corrupt0001.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    write_video(dataset / "videos" / category / "short000001.mp4", n_seconds=2)
    config = replace(tiny_config(n_epochs=1, local_batch_size=1), loss=LossConfig(ignore_video_weight=True))
    train(config, paths_for(dataset, tmp_path / "run"), OPTIONS)
    (record,) = read_log(tmp_path / "run")
    assert record["skipped_undecodable"] == 1
    assert record["skipped_too_short"] == 1
    assert np.isfinite(record["loss"])


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tiny_dataset, tmp_path):
    dataset = tmp_path / "dataset_copy"
    shutil.copytree(tiny_dataset, dataset)
    output = tmp_path / "run"
    config = tiny_config(n_epochs=2)
    train(config, paths_for(dataset, output), replace(OPTIONS, stop_after_epoch=1))
    # NaN momentum in the saved optimiser state: the first resumed step makes the weights NaN, hence the outputs
    # (the index refuses NaN relevance scores, so the input data can no longer cause this)
    last = load_checkpoint(output / "last")
    state = last.training_state
    for parameter_state in state["optimizers"][0]["state"].values():
        parameter_state["momentum_buffer"] = torch.full_like(parameter_state["momentum_buffer"], math.nan)
    save_checkpoint(output / "last", last.model, last.categories, last.metadata, state)
    saved = (output / "last" / "model.safetensors").read_bytes()
    with pytest.raises(StateChangeError, match="non-finite"):
        train(config, paths_for(dataset, output), replace(OPTIONS, resume=True))
    assert (output / "last" / "model.safetensors").read_bytes() == saved
    assert load_checkpoint(output / "last").training_state["epoch"] == 1


def test_too_few_training_videos_for_one_step_is_a_clear_error(tiny_dataset, tmp_path):
    with pytest.raises(StateChangeError, match="local-batch-size"):
        train(tiny_config(local_batch_size=1000), paths_for(tiny_dataset, tmp_path / "run"), OPTIONS)


def test_train_command_end_to_end_and_a_missing_root(tiny_dataset, tmp_path, capsys):
    from statechange.cli import main

    output = tmp_path / "cli-run"
    arguments = ["train", "--video-roots", str(tiny_dataset / "videos"), "--dataset-root",
                 str(tiny_dataset / "dataset"), "--backbone", "tiny", "--hidden-sizes", "32", "--n-epochs", "1",
                 "--lr", "0.01", "--device", "cpu", "--workers", "0", "--no-progress", "--output", str(output)]
    assert main(arguments) == 0
    assert load_checkpoint(output / "last").metadata["train_config"]["model"]["backbone"] == "tiny"
    assert main([*arguments[:2], str(tmp_path / "nowhere"), *arguments[3:-1], str(tmp_path / "other-run")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_a_run_that_fails_in_its_set_up_leaves_no_output_folder(tiny_dataset, tmp_path):
    output = tmp_path / "never-started"
    paths = TrainPaths(video_roots=(tiny_dataset / "videos",), dataset_root=tiny_dataset / "dataset", output=output,
                       backbone_weights=tmp_path / "no-such-weights.pt")
    with pytest.raises(StateChangeError, match=r"no-such-weights\.pt"):
        train(tiny_config(), paths, OPTIONS)
    with pytest.raises(StateChangeError, match="local-batch-size"):
        train(tiny_config(local_batch_size=1000), paths_for(tiny_dataset, output), OPTIONS)
    assert not output.exists()
