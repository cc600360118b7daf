"""The prediction-file format and ``statechange score`` end to end, on ChangeIt-format folders made
in the test (and on the real ChangeIt annotations when present)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from statechange.cli import main
from statechange.data.index import find_annotation_files
from statechange.errors import StateChangeError
from statechange.metrics import METRIC_NAMES, MetricsAccumulator
from statechange.predictions import (
    HEADER,
    check_coverage,
    find_prediction_files,
    prediction_path,
    read_predictions,
    score_files,
    write_predictions,
)

CHANGEIT = Path(os.environ.get("STATECHANGE_CHANGEIT", "/work/shared/changeit"))
VIDEOS_PER_CATEGORY = {"apple": 3, "bacon": 5, "cake": 2}


def random_curves(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(initial, action, end) float32 [n]: columns of softmaxes, as the model makes them."""
    state = np.exp(rng.normal(size=(n, 5)) * 3)
    state = (state / state.sum(1, keepdims=True)).astype(np.float32)
    action = np.exp(rng.normal(size=(n, 3)) * 3)
    action = (action / action.sum(1, keepdims=True)).astype(np.float32)
    return state[:, 0], action[:, 0], state[:, 1]


def write_annotation(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{second},{label}\n" for second, label in enumerate(labels)))


class Dataset:
    """Annotations and prediction files of a few random videos, plus the arrays they hold."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.annotations = root / "annotations"
        self.predictions = root / "predictions"
        self.videos: dict[str, tuple[tuple[np.ndarray, ...], np.ndarray]] = {}
        for category, n_videos in VIDEOS_PER_CATEGORY.items():
            for video in range(n_videos):
                n = int(rng.integers(4, 40))
                curves, labels = random_curves(rng, n), rng.integers(0, 4, size=n)
                write_annotation(self.annotations / category / f"v{video}.fps1.csv", labels)
                write_predictions(prediction_path(self.predictions, category, f"v{video}"), *curves)
                self.videos[f"{category}/v{video}"] = (curves, labels)

    def expected(self, keys=None) -> dict:
        """The summary MetricsAccumulator gives on the arrays, through JSON like the CLI's."""
        accumulator = MetricsAccumulator()
        for key in sorted(self.videos if keys is None else keys):
            curves, labels = self.videos[key]
            accumulator.add_video(*curves, labels, key.split("/")[0], key)
        return json.loads(json.dumps(accumulator.summary()))

    def score(self, *extra: str) -> int:
        return main(["score", "--predictions", str(self.predictions), "--annotations", str(self.annotations), *extra])


@pytest.fixture
def dataset(tmp_path) -> Dataset:
    return Dataset(tmp_path)


# ----------------------------------------------------------------------------------------------
# the prediction-file format


def test_prediction_files_round_trip_float32_exactly(tmp_path):
    rng = np.random.default_rng(1)
    extremes = np.array([0.0, 1.0, 1e-45, 1.1754944e-38, 0.1, 0.99999994, 1 / 3], dtype=np.float32)
    initial = np.concatenate([extremes, rng.random(50, dtype=np.float32)])
    action, end = rng.random(57, dtype=np.float32), rng.random(57, dtype=np.float32) ** 20
    path = write_predictions(tmp_path / "apple" / "abc.csv", initial, action, end)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(HEADER) == "second,initial_state,action,end_state"
    assert [line.split(",")[0] for line in lines[1:]] == [str(s) for s in range(57)]
    for written, read in zip((initial, action, end), read_predictions(path), strict=True):
        assert read.dtype == np.float32
        assert np.array_equal(written.view(np.uint32), read.view(np.uint32))


GOOD_ROWS = "0,0.1,0.2,0.3\n1,0.4,0.5,0.6\n"


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("second,initial,action,end\n" + GOOD_ROWS, 1),
        ("", 1),
        (",".join(HEADER) + "\n" + GOOD_ROWS + "2,0.1,0.2\n", 4),
        (",".join(HEADER) + "\n" + GOOD_ROWS + "2,0.1,zero,0.3\n", 4),
        (",".join(HEADER) + "\n0,0.1,0.2,0.3\n2,0.1,0.2,0.3\n", 3),
        (",".join(HEADER) + "\nzero,0.1,0.2,0.3\n", 2),
        (",".join(HEADER) + "\n0,0.1,1.5,0.3\n", 2),
        (",".join(HEADER) + "\n0,0.1,nan,0.3\n", 2),
        (",".join(HEADER) + "\n0,-0.1,0.2,0.3\n", 2),
    ],
)
def test_malformed_prediction_file_names_file_and_line(tmp_path, content, line):
    path = tmp_path / "bacon" / "xyz.csv"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(StateChangeError, match=rf"{path}.* line {line}:"):
        read_predictions(path)


def test_prediction_file_without_rows_is_an_error(tmp_path):
    path = tmp_path / "header_only.csv"
    path.write_text(",".join(HEADER) + "\n")
    with pytest.raises(StateChangeError, match=f"{path} has a header but no rows"):
        read_predictions(path)


def test_find_prediction_files_keys_by_category_and_video_id(dataset):
    found = find_prediction_files(dataset.predictions)
    assert sorted(found) == sorted(dataset.videos)
    assert found["bacon/v3"] == dataset.predictions / "bacon" / "v3.csv"
    (dataset.predictions / "bacon" / "v3.copy.csv").write_text("")  # the id is the name without its extension
    assert find_prediction_files(dataset.predictions)["bacon/v3.copy"] == dataset.predictions / "bacon" / "v3.copy.csv"
    with pytest.raises(StateChangeError, match="does not exist"):
        find_prediction_files(dataset.predictions / "nowhere")


# ----------------------------------------------------------------------------------------------
# statechange score


def test_score_json_equals_the_accumulator_on_the_same_arrays(dataset, capsys):
    assert dataset.score("--json") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert set(METRIC_NAMES) | {"per_category"} <= set(summary)
    assert set(summary["per_category"]) == set(VIDEOS_PER_CATEGORY)
    assert summary == dataset.expected()
    assert captured.err == ""


def test_score_prints_the_per_category_table(dataset, capsys):
    assert dataset.score() == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = dataset.expected()
    assert [line.split()[0] for line in lines[1:-1]] == list(VIDEOS_PER_CATEGORY)
    assert [int(line.split()[1]) for line in lines[1:-1]] == list(VIDEOS_PER_CATEGORY.values())
    overall = lines[-1].split()
    assert overall[:3] == ["overall", "(3", "categories)"]
    assert [float(v) for v in overall[4:]] == [round(expected[name], 1) for name in METRIC_NAMES]


def test_missing_predictions_are_an_error_unless_allowed(dataset, capsys):
    removed = ["apple/v0", "bacon/v1", "bacon/v2", "bacon/v4", "cake/v0", "cake/v1"]
    for key in removed:
        (dataset.predictions / f"{key}.csv").unlink()
    assert dataset.score("--json") == 2
    error = capsys.readouterr().err
    assert "6 of 10 annotated videos have no prediction file" in error
    assert all(key in error for key in removed[:5]) and "and 1 more" in error
    assert "--allow-missing" in error

    assert dataset.score("--json", "--allow-missing") == 0
    captured = capsys.readouterr()
    assert "6 annotated videos have no predictions" in captured.err
    assert "1 categories have no scored video" in captured.err and "cake" in captured.err
    summary = json.loads(captured.out)
    assert summary["n_videos"] == 4 and "cake" not in summary["per_category"]
    assert summary == dataset.expected(set(dataset.videos) - set(removed))


def test_no_predictions_at_all_is_an_error_even_when_missing_is_allowed(dataset, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["score", "--predictions", str(empty), "--annotations", str(dataset.annotations),
                 "--allow-missing"]) == 2
    assert "None of the 10 annotated videos has a prediction file" in capsys.readouterr().err


def test_malformed_prediction_file_fails_naming_file_and_line(dataset, capsys):
    path = dataset.predictions / "bacon" / "v2.csv"
    lines = path.read_text().splitlines()
    lines[3] = "2,0.5,0.5"
    path.write_text("\n".join(lines) + "\n")
    assert dataset.score() == 2
    error = capsys.readouterr().err
    assert f"{path} line 4:" in error and "Traceback" not in error


def test_malformed_annotation_fails_naming_file_and_line(dataset, capsys):
    path = dataset.annotations / "apple" / "v1.fps1.csv"
    path.write_text("0,0\n1,7\n")
    assert dataset.score() == 2
    error = capsys.readouterr().err
    assert str(path) in error and "line 2" in error


def test_length_mismatch_scores_the_shorter_length_with_a_warning(dataset, capsys):
    curves, labels = dataset.videos["apple/v2"]
    longer = tuple(np.concatenate([c, c[:3]]) for c in curves)
    write_predictions(prediction_path(dataset.predictions, "apple", "v2"), *longer)
    assert dataset.score("--json") == 0
    captured = capsys.readouterr()
    assert "warning: Video apple/v2" in captured.err
    assert f"{len(labels) + 3} seconds of predictions but {len(labels)} annotated seconds" in captured.err
    assert json.loads(captured.out) == dataset.expected()  # equal to scoring the arrays of annotated length


def test_prediction_without_annotation_is_ignored_with_a_note(dataset, capsys):
    write_predictions(prediction_path(dataset.predictions, "apple", "unannotated"), *random_curves(
        np.random.default_rng(9), 8))
    assert dataset.score("--json") == 0
    captured = capsys.readouterr()
    assert "ignoring 1 prediction files without an annotation (apple/unannotated)" in captured.err
    assert json.loads(captured.out) == dataset.expected()


def test_score_on_the_real_changeit_annotations(tmp_path, capsys):
    if not (CHANGEIT / "annotations").is_dir():
        pytest.skip(f"ChangeIt annotations not found at {CHANGEIT}; set STATECHANGE_CHANGEIT to the dataset root")
    from statechange.data.index import read_annotation

    rng = np.random.default_rng(2)
    accumulator = MetricsAccumulator()
    for category in ("apple", "bacon"):
        for path in sorted((CHANGEIT / "annotations" / category).glob("*.fps1.csv")):
            labels = read_annotation(path)
            video_id = path.name.split(".")[0]
            noise = rng.uniform(0, 0.3, size=(3, len(labels))).astype(np.float32)
            curves = [0.6 * (labels == code) + noise[row] for row, code in enumerate((1, 2, 3))]
            write_predictions(prediction_path(tmp_path, category, video_id), *curves)
            accumulator.add_video(*curves, labels, category, f"{category}/{video_id}")
    # the dataset root is accepted in place of its annotations/ folder
    assert main(["score", "--predictions", str(tmp_path), "--annotations", str(CHANGEIT), "--json",
                 "--allow-missing"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary == json.loads(json.dumps(accumulator.summary()))
    assert summary["n_categories"] == 2 and summary["n_videos"] == len(accumulator)
    n_categories = len([p for p in (CHANGEIT / "annotations").iterdir() if p.is_dir()])
    assert f"{n_categories - 2} categories have no scored video" in captured.err

    # without --annotations: ChangeIt's annotations built into statechange give the same numbers
    assert main(["score", "--predictions", str(tmp_path), "--json", "--allow-missing"]) == 0
    assert json.loads(capsys.readouterr().out) == summary


# ----------------------------------------------------------------------------------------------
# the same from Python, without the command line


def test_scoring_folders_from_python_equals_the_accumulator(dataset):
    annotations = find_annotation_files(dataset.annotations.parent)  # a dataset root holding annotations/
    assert annotations == find_annotation_files(dataset.annotations)
    assert sorted(annotations) == sorted(dataset.videos)
    predictions = find_prediction_files(dataset.predictions)
    assert check_coverage(predictions, annotations, dataset.predictions, allow_missing=False) == []
    summary = json.loads(json.dumps(score_files(predictions, annotations).summary()))
    assert summary == dataset.expected()


def test_coverage_from_python_fails_or_notes_what_is_left_out(dataset):
    removed = ["apple/v0", "bacon/v1", "bacon/v2", "bacon/v4", "cake/v0", "cake/v1"]
    for key in removed:
        (dataset.predictions / f"{key}.csv").unlink()
    write_predictions(prediction_path(dataset.predictions, "apple", "unannotated"), *random_curves(
        np.random.default_rng(9), 8))
    annotations, predictions = find_annotation_files(dataset.annotations), find_prediction_files(dataset.predictions)
    with pytest.raises(StateChangeError, match="6 of 10 annotated videos have no prediction file") as error:
        check_coverage(predictions, annotations, dataset.predictions, allow_missing=False)
    assert all(key in str(error.value) for key in removed[:5]) and "and 1 more" in str(error.value)

    notes = check_coverage(predictions, annotations, dataset.predictions, allow_missing=True)
    assert notes[0].startswith("6 annotated videos have no predictions")
    assert notes[1].startswith("1 categories have no scored video") and "cake" in notes[1]
    assert notes[2] == "ignoring 1 prediction files without an annotation (apple/unannotated)."
    summary = json.loads(json.dumps(score_files(predictions, annotations).summary()))
    assert summary["n_videos"] == 4 and "cake" not in summary["per_category"]
    assert summary == dataset.expected(set(dataset.videos) - set(removed))

    with pytest.raises(StateChangeError, match="None of the 10 annotated videos has a prediction file"):
        check_coverage({}, annotations, dataset.predictions, allow_missing=True)


def test_finding_annotations_fails_clearly_on_a_wrong_folder(tmp_path):
    with pytest.raises(StateChangeError, match=f"Annotation folder {tmp_path / 'nowhere'} does not exist"):
        find_annotation_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StateChangeError, match=r"No annotation files .* found under"):
        find_annotation_files(tmp_path / "empty")
