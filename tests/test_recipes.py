"""Training recipes: ``--recipe paper`` is the training that existed before recipes, bit for bit;
``--recipe improved`` (the paper's with the heads' learning rate IMPROVED_LR and an ensemble of
IMPROVED_ENSEMBLE head pairs) trains, saves, resumes exactly, evaluates and predicts, on real encoded
synthetic videos, and says what it changed; an ensemble's members train exactly as lone pairs would."""

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

from statechange.checkpoint import load_checkpoint, save_checkpoint
from statechange.cli import build_parser, main
from statechange.cli.train import config_from_args
from statechange.config import IMPROVED_ENSEMBLE, IMPROVED_LR, ModelConfig, OptimConfig, TrainConfig, from_dict
from statechange.data.index import build_index
from statechange.errors import StateChangeError
from statechange.model import init_model
from statechange.recipes import apply_recipe

REPOSITORY = Path(__file__).resolve().parents[1]
# main just before recipes existed: its `statechange train` is the paper's training this change must keep.
PRE_RECIPE_COMMIT = "8bcec050f366e66bee043a40d12936994230db38"


def train_arguments(dataset: Path, output: Path, *extra: str, lr: str | None = "0.01") -> list[str]:
    """``lr`` None: the recipe's learning rate."""
    return ["train", "--video-roots", str(dataset / "videos"), "--dataset-root", str(dataset / "dataset"),
            "--backbone", "tiny", "--hidden-sizes", "32", "--n-epochs", "2", "--warmup-epochs", "1",
            *(["--lr", lr] if lr is not None else []),
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
    parse = build_parser().parse_args  # and no --recipe is --recipe paper
    default = train_arguments(tiny_dataset, tmp_path / "default", *mode)
    assert config_from_args(parse(default)) == config_from_args(parse([*default, "--recipe", "paper"]))

    before = load_file(tmp_path / "before" / "last" / "model.safetensors")
    now = load_file(tmp_path / "paper" / "last" / "model.safetensors")
    assert now.keys() == before.keys()
    for key, tensor in before.items():
        assert torch.equal(now[key], tensor), key
    assert log_without_times(tmp_path / "paper") == log_without_times(tmp_path / "before")
    saved = load_checkpoint(tmp_path / "paper" / "last")
    assert saved.metadata["train_config"]["recipe"] == {"name": "paper"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--augment", "--train-backbone", "--lr-backbone", "0.001", "--ensemble-size",
                                        "2"]], ids=["stored-features", "augmented-fine-tuned"])
def test_improved_recipe_trains_resumes_exactly_evaluates_and_predicts(tiny_dataset, tmp_path, capsys, mode):
    """Fine-tuned, every member's 15 frames go through the backbone: two members keep the test short."""
    ensemble_size = int(mode[-1]) if mode else IMPROVED_ENSEMBLE
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(train_arguments(tiny_dataset, straight, "--recipe", "improved", *mode, lr=None)) == 0
    assert main(train_arguments(tiny_dataset, interrupted, "--recipe", "improved", "--stop-after-epoch", "1",
                                *mode, lr=None)) == 0
    assert main(train_arguments(tiny_dataset, interrupted, "--recipe", "improved", "--resume", *mode,
                                lr=None)) == 0
    said = (f"recipe: improved (heads' learning rate {IMPROVED_LR:g}, the paper's {OptimConfig.lr:g}; an ensemble "
            f"of {ensemble_size} head pairs)")
    assert said in capsys.readouterr().err

    finished, resumed = load_checkpoint(straight / "last"), load_checkpoint(interrupted / "last")
    trained_with = from_dict(TrainConfig, finished.metadata["train_config"])
    assert trained_with.recipe.name == "improved" and trained_with.optim.lr == IMPROVED_LR
    assert trained_with.model.ensemble_size == finished.model.config.ensemble_size == ensemble_size
    for key, tensor in finished.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], tensor), key
    if mode:  # evaluate and predict read an ensemble's checkpoint the same way however it was trained
        return

    data = ["--video-roots", str(tiny_dataset / "videos"), "--dataset-root", str(tiny_dataset / "dataset")]
    assert main(["evaluate", "--checkpoint", str(straight / "last"), *data, "--device", "cpu", "--no-progress"]) == 0
    assert said in capsys.readouterr().out
    video = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").test[0]
    assert main(["predict", "--checkpoint", str(straight / "last"), str(video.path), "--category", video.category,
                 "--output", str(tmp_path / "predicted"), "--device", "cpu", "--no-progress"]) == 0
    assert said in capsys.readouterr().out
    curves = list((tmp_path / "predicted").rglob(f"{video.video_id}*.csv"))
    assert curves, sorted(str(p) for p in (tmp_path / "predicted").rglob("*"))


@pytest.mark.slow
def test_resuming_with_another_recipe_is_refused_with_the_fix(tiny_dataset, tmp_path, capsys):
    output = tmp_path / "run"
    assert main(train_arguments(tiny_dataset, output, "--recipe", "improved", "--stop-after-epoch", "1")) == 0
    assert main(train_arguments(tiny_dataset, output, "--resume")) == 2
    assert "recipe" in capsys.readouterr().err  # named among the settings the resume would change


def test_the_paper_recipe_is_the_default_config_and_improved_changes_only_the_heads():
    paper = TrainConfig()
    assert apply_recipe(paper, "paper") == paper
    improved = apply_recipe(paper, "improved")
    assert improved.recipe.name == "improved" and improved.optim.lr == IMPROVED_LR != paper.optim.lr
    assert improved.model.ensemble_size == IMPROVED_ENSEMBLE != paper.model.ensemble_size == 1
    assert improved == apply_recipe(improved, "improved")  # applying twice changes nothing more
    changed = {name for name in ("model", "pseudo_labels", "loss", "optim", "augment", "frames", "recipe")
               if getattr(improved, name) != getattr(paper, name)}
    assert changed == {"model", "optim", "recipe"}
    assert replace(improved.model, ensemble_size=1) == paper.model
    assert replace(improved.optim, lr=paper.optim.lr) == paper.optim
    with pytest.raises(StateChangeError, match="paper, improved"):
        apply_recipe(paper, "best")


def test_an_explicit_lr_or_ensemble_size_wins_over_the_recipes(tmp_path):
    parse = build_parser().parse_args
    base = ["train", "--video-roots", str(tmp_path), "--output", str(tmp_path / "run")]
    assert config_from_args(parse(base)).optim.lr == OptimConfig.lr
    assert config_from_args(parse([*base, "--recipe", "improved"])).optim.lr == IMPROVED_LR
    assert config_from_args(parse([*base, "--recipe", "improved", "--lr", "0.02"])).optim.lr == 0.02
    assert config_from_args(parse([*base, "--lr", "0.02"])).optim.lr == 0.02
    assert config_from_args(parse(base)).model.ensemble_size == 1
    assert config_from_args(parse([*base, "--recipe", "improved"])).model.ensemble_size == IMPROVED_ENSEMBLE
    assert config_from_args(parse([*base, "--recipe", "improved", "--ensemble-size", "1"])).model.ensemble_size == 1
    assert config_from_args(parse([*base, "--ensemble-size", "2"])).model.ensemble_size == 2


@pytest.mark.slow
def test_each_ensemble_member_trains_exactly_as_a_lone_pair_of_heads_from_the_same_start(tiny_dataset, tmp_path):
    """Members decode their own predictions and fit their own pseudo-labels: an ensemble started from two
    different pairs of heads ends as those two pairs trained alone (not averaged, not on shared labels)."""
    categories = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").categories
    lone_config = ModelConfig(backbone="tiny", hidden_sizes=(32,))
    lones = [init_model(lone_config, len(categories), seed=seed) for seed in (5, 7)]
    lones[1].backbone.load_state_dict(lones[0].backbone.state_dict())  # one backbone, two different pairs
    ensemble = init_model(replace(lone_config, ensemble_size=2), len(categories), seed=6)
    ensemble.backbone.load_state_dict(lones[0].backbone.state_dict())
    for lone, state_member, action_member in zip(lones, ensemble.state_head.members, ensemble.action_head.members,
                                                 strict=True):
        state_member.load_state_dict(lone.state_head.state_dict())
        action_member.load_state_dict(lone.action_head.state_dict())
    for name, model in (("lone0", lones[0]), ("lone1", lones[1]), ("ensemble", ensemble)):
        save_checkpoint(tmp_path / f"{name}-start", model, categories, {})
        extra = ["--ensemble-size", "2"] if name == "ensemble" else []
        assert main(train_arguments(tiny_dataset, tmp_path / name, "--init-from", str(tmp_path / f"{name}-start"),
                                    *extra)) == 0

    trained = {name: load_checkpoint(tmp_path / name / "last").model for name in ("lone0", "lone1", "ensemble")}
    assert not torch.allclose(trained["lone0"].state_head[0].weight, lones[0].state_head[0].weight, atol=1e-3)
    assert not torch.allclose(trained["lone0"].state_head[0].weight, trained["lone1"].state_head[0].weight)
    for member, name in enumerate(("lone0", "lone1")):
        for head in ("state_head", "action_head"):
            alone = getattr(trained[name], head).state_dict()
            together = getattr(trained["ensemble"], head).members[member].state_dict()
            for key, expected in alone.items():
                assert torch.allclose(together[key], expected, atol=1e-5), (member, head, key)
    logs = {name: [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
            for name in trained}
    for epoch, record in enumerate(logs["ensemble"]):  # the log shows the members' mean loss
        mean = (logs["lone0"][epoch]["loss"] + logs["lone1"][epoch]["loss"]) / 2
        assert record["loss"] == pytest.approx(mean, rel=1e-4)


def test_checkpoints_of_the_retired_teacher_and_smoothing_settings_still_load():
    old = {"recipe": {"name": "improved", "teacher_decay": 0.99}, "model": {"smoothing_seconds": 0}}
    config = from_dict(TrainConfig, old)  # the settings as an improved run before 2026-12-01 recorded them
    assert config.recipe.name == "improved" and config.model == TrainConfig().model
