"""Training recipes: ``--recipe paper`` is the training that existed before recipes, bit for bit;
``--recipe improved`` (EMA teacher, smoothed probabilities) trains, saves, resumes exactly, evaluates and
predicts with its smoothing, on real encoded synthetic videos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from statechange.checkpoint import load_checkpoint
from statechange.cli import main
from statechange.config import ModelConfig, TrainConfig
from statechange.data.index import build_index
from statechange.errors import StateChangeError
from statechange.factory import build_model
from statechange.inference import load_model
from statechange.ordering import smooth_over_time
from statechange.recipes import EmaTeacher, apply_recipe

REPOSITORY = Path(__file__).resolve().parents[1]
# main just before recipes existed: its `statechange train` is the paper's training this change must keep.
PRE_RECIPE_COMMIT = "8bcec050f366e66bee043a40d12936994230db38"


def train_arguments(dataset: Path, output: Path, *extra: str) -> list[str]:
    return ["train", "--video-roots", str(dataset / "videos"), "--dataset-root", str(dataset / "dataset"),
            "--backbone", "tiny", "--hidden-sizes", "32", "--n-epochs", "2", "--warmup-epochs", "1", "--lr", "0.01",
            "--device", "cpu", "--num-workers", "0", "--no-progress", "--output", str(output), *extra]
    # --num-workers: the name the pre-recipe source knows (today's --workers keeps it as an alias)


def run_cli(source: Path, arguments: list[str]) -> None:
    """``python -m statechange ARGUMENTS`` in a fresh process importing the package from ``source``."""
    environment = {**os.environ, "PYTHONPATH": str(source)}
    completed = subprocess.run([sys.executable, "-m", "statechange", *arguments], env=environment,
                               capture_output=True, text=True, timeout=3600)
    assert completed.returncode == 0, completed.stderr[-2000:]


def pre_recipe_source(destination: Path) -> Path:
    """The package's sources at PRE_RECIPE_COMMIT, unpacked from the repository's own history."""
    archive = destination / "source.tar"
    try:
        with open(archive, "wb") as file:
            subprocess.run(["git", "-C", str(REPOSITORY), "archive", PRE_RECIPE_COMMIT, "src"], stdout=file,
                           stderr=subprocess.PIPE, check=True, timeout=120)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"the repository's history up to {PRE_RECIPE_COMMIT[:8]} is not available here ({error})")
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    return destination / "src"


# what the log records gained after the pre-recipe commit: the run's optimiser step, per-category metrics
LOG_KEYS_ADDED_SINCE = {"step", "per_category"}


def log_without_times(output: Path) -> list[dict]:
    records = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in record.items() if k != "seconds" and k not in LOG_KEYS_ADDED_SINCE}
            for record in records]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--augment", "--train-backbone", "--lr-backbone", "0.001"]],
                         ids=["stored-features", "augmented-fine-tuned"])
def test_paper_recipe_is_the_training_from_before_recipes_bit_for_bit(tiny_dataset, tmp_path, mode):
    old_source = pre_recipe_source(tmp_path)
    run_cli(old_source, train_arguments(tiny_dataset, tmp_path / "before", *mode))
    run_cli(REPOSITORY / "src", train_arguments(tiny_dataset, tmp_path / "paper", "--recipe", "paper", *mode))
    run_cli(REPOSITORY / "src", train_arguments(tiny_dataset, tmp_path / "default", *mode))

    before = load_file(tmp_path / "before" / "last" / "model.safetensors")
    for run in ("paper", "default"):
        now = load_file(tmp_path / run / "last" / "model.safetensors")
        assert now.keys() == before.keys()
        for key, tensor in before.items():
            assert torch.equal(now[key], tensor), (run, key)
        assert log_without_times(tmp_path / run) == log_without_times(tmp_path / "before")
        saved = load_checkpoint(tmp_path / run / "last")
        assert saved.metadata["train_config"]["recipe"] == {"name": "paper", "teacher_decay": 0.0}
        assert saved.model.config.smoothing_seconds == 0
        assert "teacher" not in saved.training_state


@pytest.mark.slow
def test_improved_recipe_trains_resumes_exactly_evaluates_and_predicts(tiny_dataset, tmp_path, capsys):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(train_arguments(tiny_dataset, straight, "--recipe", "improved")) == 0
    assert main(train_arguments(tiny_dataset, interrupted, "--recipe", "improved", "--stop-after-epoch", "1")) == 0
    assert main(train_arguments(tiny_dataset, interrupted, "--recipe", "improved", "--resume")) == 0
    assert "recipe: improved (EMA teacher" in capsys.readouterr().err

    finished, resumed = load_checkpoint(straight / "last"), load_checkpoint(interrupted / "last")
    assert finished.metadata["train_config"]["recipe"]["name"] == "improved"
    for key, tensor in finished.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], tensor), key
    teacher = finished.training_state["teacher"]
    assert teacher.keys() == {k for k in finished.model.state_dict() if not k.startswith("backbone.")}
    for key, tensor in teacher.items():
        assert torch.equal(resumed.training_state["teacher"][key], tensor), key
        if key.startswith("state_head"):  # the teacher lags behind the model it averages
            assert not torch.equal(tensor, finished.model.state_dict()[key]), key

    data = ["--video-roots", str(tiny_dataset / "videos"), "--dataset-root", str(tiny_dataset / "dataset")]
    assert main(["evaluate", "--checkpoint", str(straight / "last"), *data, "--device", "cpu", "--no-progress"]) == 0
    assert "recipe: improved" in capsys.readouterr().out

    video = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").test[0]
    smoothed = load_model(straight / "last", device="cpu")
    radius = smoothed.model.config.smoothing_seconds
    assert radius > 0
    unsmoothed = load_model(straight / "last", device="cpu")
    unsmoothed.model.config = replace(unsmoothed.model.config, smoothing_seconds=0)
    prediction, raw = smoothed.predict(video.path, video.category), unsmoothed.predict(video.path, video.category)
    for name in ("initial_state", "action", "end_state"):
        curve, raw_curve = torch.from_numpy(getattr(prediction, name)), torch.from_numpy(getattr(raw, name))
        assert torch.allclose(curve, smooth_over_time(raw_curve, radius), atol=1e-6), name
        assert not torch.equal(curve, raw_curve), name  # a curve that is not constant changes


@pytest.mark.slow
def test_resuming_with_another_recipe_is_refused_with_the_fix(tiny_dataset, tmp_path, capsys):
    output = tmp_path / "run"
    assert main(train_arguments(tiny_dataset, output, "--recipe", "improved", "--stop-after-epoch", "1")) == 0
    assert main(train_arguments(tiny_dataset, output, "--resume")) == 2
    assert "recipe" in capsys.readouterr().err  # named among the settings the resume would change


def test_smoothing_averages_the_neighbours_inside_the_video():
    spike = torch.tensor([0.0, 0.0, 3.0, 0.0, 0.0])
    assert torch.allclose(smooth_over_time(spike, 1), torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))
    edge = torch.tensor([3.0, 0.0, 0.0, 0.0])
    assert torch.allclose(smooth_over_time(edge, 1), torch.tensor([1.5, 1.0, 0.0, 0.0]))  # 2 frames at the edge
    batch = torch.rand(2, 7)
    assert torch.allclose(smooth_over_time(batch, 2)[1], smooth_over_time(batch[1], 2))
    assert smooth_over_time(batch, 0) is batch  # the paper: untouched


def test_teacher_follows_the_model_as_a_moving_average_and_shares_a_frozen_backbone():
    model = build_model(ModelConfig(backbone="tiny", hidden_sizes=(8,)), 2, seed=0)
    model.backbone.requires_grad_(False)
    teacher = EmaTeacher(model, decay=0.75)
    assert teacher.model.backbone is model.backbone
    before = teacher.model.state_head[0].weight.clone()
    with torch.no_grad():
        model.state_head[0].weight.add_(1.0)
    teacher.update(model)
    assert torch.allclose(teacher.model.state_head[0].weight, before + 0.25)
    assert not any(key.startswith("backbone.") for key in teacher.state_dict())


def test_the_paper_recipe_is_the_default_config_and_improved_changes_only_recipe_settings():
    paper = TrainConfig()
    assert apply_recipe(paper, "paper") == paper
    improved = apply_recipe(paper, "improved")
    assert improved.recipe.name == "improved" and improved.recipe.teacher_decay > 0
    assert improved.model.smoothing_seconds > 0
    assert (improved.optim, improved.loss, improved.frames, improved.augment) == (
        paper.optim, paper.loss, paper.frames, paper.augment)
    with pytest.raises(StateChangeError, match="paper, improved"):
        apply_recipe(paper, "best")
