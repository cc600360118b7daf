"""Using a trained model: `statechange evaluate`, `statechange predict`, the Python API and the demo,
end to end on real encoded synthetic videos with a small checkpoint trained in the test."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from statechange.cli import main
from statechange.data.decode import decode_video
from statechange.data.index import build_index
from statechange.inference import load_model
from statechange.predictions import read_predictions
from statechange.viz import FIGURE_DPI, FIGURE_SIZE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def test_video(tiny_dataset: Path):
    return build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").test[0]


def data_args(dataset: Path) -> list[str]:
    return ["--video-roots", str(dataset / "videos"), "--dataset-root", str(dataset / "dataset")]


def test_evaluate_numbers_equal_score_on_its_own_prediction_files(checkpoint, tiny_dataset, tmp_path, capsys):
    predictions = tmp_path / "predictions"
    assert main(["evaluate", "--checkpoint", str(checkpoint), *data_args(tiny_dataset), "--json",
                 "--predictions-out", str(predictions), "--device", "cpu", "--no-progress"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert main(["score", "--predictions", str(predictions), "--annotations",
                 str(tiny_dataset / "dataset" / "annotations"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    for key in ("state_precision", "action_precision", "joint_state_precision", "joint_action_precision",
                "state_accuracy", "per_category"):
        assert evaluated[key] == scored[key], key
    n_annotated = len(list((tiny_dataset / "dataset" / "annotations").glob("*/*.fps1.csv")))
    assert sum(c["n_videos"] for c in evaluated["per_category"].values()) == n_annotated


def test_predict_writes_rows_per_second_a_summary_and_a_picture(checkpoint, test_video, tmp_path, capsys):
    output = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), "--category", test_video.category,
                 str(test_video.path), "--output", str(output), "--device", "cpu"]) == 0
    csv_path = output / test_video.category / f"{test_video.video_id}.csv"
    initial, action, end = read_predictions(csv_path)
    n_seconds = len(decode_video(test_video.path))
    assert len(initial) == len(action) == len(end) == n_seconds
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["duration_seconds"] == n_seconds and summary["category"] == test_video.category
    constrained = summary["constrained"]
    assert constrained["initial_state"]["second"] < constrained["action"]["second"] < constrained["end_state"]["second"]
    assert constrained["action"]["probability"] == pytest.approx(float(action[constrained["action"]["second"]]),
                                                                 abs=1e-6)
    assert summary["unconstrained"]["action"]["second"] == int(np.argmax(action))
    with Image.open(csv_path.with_suffix(".png")) as picture:
        assert picture.size == (int(FIGURE_SIZE[0] * FIGURE_DPI), int(FIGURE_SIZE[1] * FIGURE_DPI))
    assert str(csv_path) in capsys.readouterr().out


def test_api_and_cli_agree_and_chunking_does_not_change_the_result(checkpoint, test_video, tmp_path):
    output = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), "--category", test_video.category,
                 str(test_video.path), "--output", str(output), "--device", "cpu"]) == 0
    from_cli = read_predictions(output / test_video.category / f"{test_video.video_id}.csv")

    predictor = load_model(checkpoint, device="cpu")
    from_path = predictor.predict(test_video.path, test_video.category)
    for cli_values, api_values in zip(from_cli, (from_path.initial_state, from_path.action, from_path.end_state),
                                      strict=True):
        np.testing.assert_array_equal(cli_values, api_values)
    from_frames = predictor.predict(decode_video(test_video.path), test_video.category)
    small_chunks = load_model(checkpoint, device="cpu", chunk_size=3).predict(test_video.path, test_video.category)
    for other in (from_frames, small_chunks):
        np.testing.assert_allclose(other.action, from_path.action, atol=1e-6)
        assert other.triplet == from_path.triplet
    assert from_path.triplet is not None and from_path.triplet[0] < from_path.triplet[1] < from_path.triplet[2]


def test_predict_a_folder_means_every_video_in_it(checkpoint, test_video, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(test_video.path, folder / f"a{test_video.path.suffix}")
    shutil.copy(test_video.path, folder / f"b{test_video.path.suffix}")
    (folder / "notes.txt").write_text("not a video")
    assert main(["predict", "--checkpoint", str(checkpoint), "--category", test_video.category, str(folder),
                 "--output", str(tmp_path / "out"), "--device", "cpu", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / test_video.category).glob("*.csv")) == ["a.csv", "b.csv"]


def test_predict_auto_ranks_every_category_from_one_pass_and_keeps_the_best(checkpoint, test_video, tmp_path):
    predictor = load_model(checkpoint, device="cpu")
    auto = predictor.predict(test_video.path)  # category=None: choose
    ranking = auto.category_ranking
    assert sorted(name for name, _ in ranking) == sorted(predictor.categories)
    assert [score for _, score in ranking] == sorted((score for _, score in ranking), reverse=True)
    assert auto.category == ranking[0][0] and auto.triplet_score == ranking[0][1]
    for name, score in ranking:  # each score is that category's own best triplet, as a named prediction finds it
        named = predictor.predict(test_video.path, name)
        assert named.triplet_score == pytest.approx(score, abs=1e-6)
        values = [named.initial_state[named.triplet[0]], named.action[named.triplet[1]],
                  named.end_state[named.triplet[2]]]
        assert score == pytest.approx(float(np.prod(values)) ** (1 / 3), abs=1e-6)
    chosen = predictor.predict(test_video.path, auto.category)
    np.testing.assert_array_equal(chosen.action, auto.action)
    assert chosen.triplet == auto.triplet and chosen.category_ranking is None

    output = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), "--category", "auto", str(test_video.path),
                 "--output", str(output), "--device", "cpu"]) == 0
    summary = json.loads((output / auto.category / f"{test_video.video_id}.json").read_text())
    assert summary["category"] == auto.category
    assert [entry["category"] for entry in summary["category_ranking"]] == [name for name, _ in ranking]
    assert summary["triplet_score"] == pytest.approx(auto.triplet_score, abs=1e-6)


def _tree(root: Path, videos) -> Path:
    """A <category>/<video> tree of copies of ``videos``."""
    for video in videos:
        (root / video.category).mkdir(parents=True, exist_ok=True)
        shutil.copy(video.path, root / video.category / video.path.name)
    return root


def test_predict_a_category_tree_takes_folder_categories_writes_a_summary_and_skips_existing(
        checkpoint, tiny_dataset, tmp_path, capsys):
    index = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset")
    videos = [next(v for v in index.test if v.category == c) for c in sorted({v.category for v in index.test})]
    tree, output = _tree(tmp_path / "tree", videos), tmp_path / "out"
    command = ["predict", "--checkpoint", str(checkpoint), str(tree), "--output", str(output), "--device", "cpu",
               "--no-progress"]
    assert main(command) == 0
    rows = list(csv.DictReader((output / "summary.csv").open()))
    assert [(row["category"], Path(row["video"]).name) for row in rows] == [(v.category, v.path.name) for v in videos]
    for row, video in zip(rows, videos, strict=True):
        summary = json.loads((output / video.category / f"{video.video_id}.json").read_text())
        assert int(row["action_second"]) == summary["constrained"]["action"]["second"]
        assert float(row["triplet_score"]) == summary["triplet_score"]
        assert row["no_clear_change"] == str(int(summary["triplet_score"] < summary["no_change_threshold"]))
    written = {p: p.stat().st_mtime_ns for p in output.glob("*/*.*")}
    capsys.readouterr()

    assert main([*command, "--skip-existing"]) == 0
    assert {p: p.stat().st_mtime_ns for p in output.glob("*/*.*")} == written  # nothing predicted again
    assert capsys.readouterr().err.count("skipped") == len(videos)
    assert list(csv.DictReader((output / "summary.csv").open())) == rows


def test_no_clear_change_flag_follows_the_threshold(checkpoint, test_video, tmp_path):
    output = tmp_path / "out"
    base = ["predict", "--checkpoint", str(checkpoint), "--category", test_video.category, str(test_video.path),
            "--output", str(output), "--device", "cpu"]
    summary_path = output / test_video.category / f"{test_video.video_id}.json"
    assert main([*base, "--no-change-threshold", "1.0"]) == 0
    assert json.loads(summary_path.read_text())["no_clear_change"] is True
    assert main([*base, "--no-change-threshold", "0.0"]) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["no_clear_change"] is False and summary["no_change_threshold"] == 0.0


def test_videos_in_a_folder_that_names_no_category_need_category(checkpoint, test_video, tmp_path, capsys):
    folder = tmp_path / "holiday"
    folder.mkdir()
    shutil.copy(test_video.path, folder / test_video.path.name)
    assert main(["predict", "--checkpoint", str(checkpoint), str(folder), "--output", str(tmp_path / "out"),
                 "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert test_video.path.name in error
    assert "--category auto" in error and not (tmp_path / "out").exists()


def test_user_errors_get_one_sentence_naming_the_fix(checkpoint, test_video, tmp_path, capsys):
    base = ["predict", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "out"), "--device", "cpu"]
    assert main([*base, "--category", "no_such_category", str(test_video.path)]) == 2
    error = capsys.readouterr().err
    assert "no_such_category" in error and test_video.category in error

    assert main([*base, "--category", test_video.category, str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4" in capsys.readouterr().err

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"this is not a video" * 100)
    assert main([*base, "--category", test_video.category, str(corrupt)]) == 1
    assert "corrupt.mp4" in capsys.readouterr().err

    not_a_checkpoint = tmp_path / "weights"
    not_a_checkpoint.mkdir()
    (not_a_checkpoint / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    assert main(["predict", "--checkpoint", str(not_a_checkpoint), "--category", test_video.category,
                 str(test_video.path), "--device", "cpu"]) == 2
    assert "weights" in capsys.readouterr().err


def test_demo_runs_end_to_end_and_reuses_its_output(tmp_path, capsys):
    from statechange.demo import DemoSettings, run_demo

    settings = DemoSettings(n_categories=2, n_train_videos=2, n_test_videos=1, n_epochs=1, backbone="tiny")
    metrics = run_demo(tmp_path / "demo", settings, device="cpu", progress=False)
    first = capsys.readouterr()
    assert "chance (uniform random)" in first.out and "picture:" in first.out
    assert set(metrics) >= {"state_precision", "action_precision"}
    assert list((tmp_path / "demo" / "predictions").glob("*/*.png"))
    (summary,) = (tmp_path / "demo" / "predictions").glob("*/*.json")  # a test video: its picture shows the truth
    assert (tmp_path / "demo" / "report" / "index.html").is_file() and "report of every test video" in first.out
    assert set(json.loads(summary.read_text())["annotation"]["right"]) == {"initial_state", "action", "end_state"}
    run_demo(tmp_path / "demo", settings, device="cpu", progress=False)
    second = capsys.readouterr()
    assert "already there" in second.err and "already trained" in second.err
