"""Honest model selection: ``best`` only from a held-out validation set, which the test report leaves out;
length mismatches between decoded frames and annotations are an error in ``evaluate`` unless allowed.
Real synthetic videos, real training of the tiny backbone."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from statechange.checkpoint import load_checkpoint
from statechange.cli import main
from statechange.config import ModelConfig, OptimConfig, TrainConfig
from statechange.errors import StateChangeError
from statechange.train import TrainOptions, TrainPaths, train

pytestmark = pytest.mark.slow

CONFIG = TrainConfig(model=ModelConfig(backbone="tiny", hidden_sizes=(16,)),
                     optim=OptimConfig(n_epochs=1, warmup_epochs=0.0, lr=1e-2))
OPTIONS = TrainOptions(device="cpu", num_workers=0, progress=False)


def paths_for(dataset: Path, output: Path, **extra) -> TrainPaths:
    return TrainPaths(video_roots=(dataset / "videos",), dataset_root=dataset / "dataset", output=output, **extra)


def data_args(dataset: Path, dataset_root: Path | None = None) -> list[str]:
    return ["--video-roots", str(dataset / "videos"), "--dataset-root", str(dataset_root or dataset / "dataset"),
            "--device", "cpu", "--no-progress", "--json"]


def n_videos(summary: dict) -> int:
    return sum(c["n_videos"] for c in summary["per_category"].values())


@pytest.fixture(scope="module")
def fraction_run(tiny_dataset, tmp_path_factory):
    output = tmp_path_factory.mktemp("fraction")
    result = train(CONFIG, paths_for(tiny_dataset, output), TrainOptions(**{**OPTIONS.__dict__, "val_fraction": 0.5}))
    return output, result


def test_val_fraction_chooses_best_and_is_left_out_of_every_test_report(fraction_run, tiny_dataset, capsys):
    output, result = fraction_run
    n_annotated = len(list((tiny_dataset / "dataset" / "annotations").glob("*/*.fps1.csv")))
    best = load_checkpoint(output / "best")
    held_out = best.metadata["excluded_from_test"]
    assert len(held_out) == n_annotated // 2
    assert best.metadata["selected_by"] == {
        "set": f"--val-fraction 0.5 (seed 0) of the annotated videos: {len(held_out)} videos",
        "metric": "state_precision"}
    assert best.metadata["val_metrics"]["state_precision"] is not None
    assert n_videos(result.summary) == n_annotated - len(held_out)  # the training log's test report
    assert best.metadata["validation_videos"] == sorted(held_out)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(output / "last"), *data_args(tiny_dataset)]) == 0
    captured = capsys.readouterr()
    evaluated = json.loads(captured.out)
    assert n_videos(evaluated) == n_annotated - len(held_out)
    assert f"left out {len(held_out)} annotated video(s) that chose the run's best" in captured.err
    assert evaluated["state_precision"] == pytest.approx(result.summary["state_precision"])


def test_without_a_validation_set_there_is_no_best(tiny_dataset, tmp_path):
    train(CONFIG, paths_for(tiny_dataset, tmp_path / "run"), OPTIONS)
    assert (tmp_path / "run" / "last" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "best").exists()


def test_val_annotations_take_their_videos_out_of_training(tiny_dataset, tmp_path, capsys):
    truth = sorted((tiny_dataset / "truth").glob("*/*.fps1.csv"))
    validation = tmp_path / "val"
    chosen = [truth[0], truth[-1]]  # one training video of each category
    for file in chosen:
        (validation / file.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(file, validation / file.parent.name / file.name)
    output = tmp_path / "run"
    train(CONFIG, paths_for(tiny_dataset, output, val_annotations=validation), OPTIONS)
    best = load_checkpoint(output / "best")
    assert best.metadata["selected_by"]["set"] == f"--val-annotations {validation}: 2 videos"
    assert best.metadata["excluded_from_test"] == []
    log = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    n_train = len(list((tiny_dataset / "truth").glob("*/*.fps1.csv")))
    assert f"training on {n_train - 2} videos" in capsys.readouterr().err
    assert log[0]["val_metrics"]["state_precision"] == best.metadata["val_metrics"]["state_precision"]
    annotated = sorted((tiny_dataset / "dataset" / "annotations").glob("*/*.fps1.csv"))
    (validation / annotated[0].parent.name / annotated[0].name).write_text(annotated[0].read_text())
    with pytest.raises(StateChangeError, match="annotates test videos"):
        train(CONFIG, paths_for(tiny_dataset, tmp_path / "other", val_annotations=validation), OPTIONS)


def test_a_length_mismatch_is_an_error_in_evaluate_unless_allowed(fraction_run, tiny_dataset, tmp_path, capsys):
    output, _ = fraction_run
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_dataset / "dataset", dataset)
    held_out = set(load_checkpoint(output / "last").metadata["excluded_from_test"])
    annotation = next(p for p in sorted((dataset / "annotations").glob("*/*.fps1.csv"))
                      if f"{p.parent.name}/{p.name.removesuffix('.fps1.csv')}" not in held_out)
    lines = annotation.read_text().splitlines()
    annotation.write_text("\n".join([*lines, *(f"{len(lines) + i},0" for i in range(2))]) + "\n")  # 2 s longer
    key = f"{annotation.parent.name}/{annotation.name.removesuffix('.fps1.csv')}"
    args = ["evaluate", "--checkpoint", str(output / "last"), *data_args(tiny_dataset, dataset)]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "1 video(s) decode to a different number of frames than their annotation" in error
    assert key in error and "--allow-length-mismatch" in error
    assert main([*args, "--allow-length-mismatch", "--report", str(tmp_path / "report")]) == 0
    captured = capsys.readouterr()
    assert key.split("/")[1] in (tmp_path / "report" / "index.html").read_text()  # its row, drawn as scored
    assert f"1 video(s) scored on the shorter of frames and annotation: {key}" in captured.err
    n_annotated = len(list((dataset / "annotations").glob("*/*.fps1.csv")))
    assert n_videos(json.loads(captured.out)) == n_annotated - len(held_out)  # the mismatched video is scored


def test_resume_keeps_the_validation_set_it_started_with(fraction_run, tiny_dataset, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(fraction_run[0], output)
    resume = TrainOptions(**{**OPTIONS.__dict__, "resume": True})
    for changed in (resume, replace(resume, val_fraction=0.25)):  # none, then another share
        with pytest.raises(StateChangeError, match=r"--resume: the run in .* was started with --val-fraction 0.5"):
            train(CONFIG, paths_for(tiny_dataset, output), changed)
    same = train(CONFIG, paths_for(tiny_dataset, output), replace(resume, val_fraction=0.5))
    assert same.epochs_run == []  # the schedule was already complete: accepted, nothing left to run


def test_a_bad_val_fraction_is_refused_before_overwrite_deletes_anything(fraction_run, tiny_dataset, tmp_path, capsys):
    output = tmp_path / "run"
    shutil.copytree(fraction_run[0], output)
    args = ["train", "--video-roots", str(tiny_dataset / "videos"), "--dataset-root", str(tiny_dataset / "dataset"),
            "--backbone", "tiny", "--device", "cpu", "--no-progress", "--output", str(output), "--overwrite"]
    assert main([*args, "--val-fraction", "1.5"]) == 2
    assert "--val-fraction must be between 0 and 1" in capsys.readouterr().err
    assert main([*args, "--val-fraction", "0.5", "--val-annotations", str(tiny_dataset / "truth")]) == 2
    assert "Pass one of --val-annotations and --val-fraction" in capsys.readouterr().err
    assert (output / "last" / "model.safetensors").exists() and (output / "best" / "model.safetensors").exists()
