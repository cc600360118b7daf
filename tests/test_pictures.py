"""Prediction pictures beside the annotated truth: `statechange predict --annotations`, on real encoded
synthetic videos and a checkpoint of the tiny backbone trained in the test; the PNG is read back as pixels."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from statechange.cli import main
from statechange.data.index import build_index, read_annotation
from statechange.inference import load_model
from statechange.labels import ANNOTATION_ACTION, ANNOTATION_END_STATE, ANNOTATION_INITIAL_STATE
from statechange.metrics import score_video
from statechange.predictions import read_predictions
from statechange.viz import ANNOTATION_ALPHA, CURVES, FIGURE_DPI, RIGHT_COLOUR, WRONG_COLOUR, prediction_figure

pytestmark = pytest.mark.slow  # trains the shared tiny checkpoint (about 10 s) unless another test did

CODES = (ANNOTATION_INITIAL_STATE, ANNOTATION_ACTION, ANNOTATION_END_STATE)  # in the order of viz.CURVES


@pytest.fixture(scope="module")
def video(tiny_dataset: Path):
    return build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").test[0]


@pytest.fixture(scope="module")
def pictures(tiny_checkpoint: Path, tiny_dataset: Path, video, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The CLI's outputs for one test video, with and without --annotations."""
    out = tmp_path_factory.mktemp("pictures")
    base = ["predict", "--checkpoint", str(tiny_checkpoint), "--category", video.category, str(video.path),
            "--device", "cpu", "--precision", "fp32"]
    assert main([*base, "--output", str(out / "plain")]) == 0
    assert main([*base, "--output", str(out / "annotated"), "--annotations", str(tiny_dataset / "dataset")]) == 0
    name = Path(video.category) / f"{video.video_id}"
    return {kind: out / kind / name for kind in ("plain", "annotated")}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)  # [H, W, 3]


def to_pixel(figure, axis, x: float, y: float, y_in_axes: bool = False) -> tuple[int, int]:
    """(row, column) in the saved PNG of data point (x, y); y in axes fractions when asked."""
    figure.canvas.draw()
    transform = axis.get_xaxis_transform() if y_in_axes else axis.transData
    column, row_from_bottom = transform.transform((x, y))
    return round(float(figure.bbox.height - row_from_bottom)), round(float(column))


def shaded_rgb(colour: str) -> np.ndarray:
    return np.round((np.array(to_rgb(colour)) * ANNOTATION_ALPHA + (1 - ANNOTATION_ALPHA)) * 255)


def clear_height(curves: list[np.ndarray], second: int) -> float | None:
    """A probability at least 0.12 from every curve around ``second``, or None."""
    around = np.concatenate([c[max(second - 1, 0): second + 2] for c in curves])
    for y in np.linspace(0.05, 0.95, 19):
        if np.abs(around - y).min() > 0.12:
            return float(y)
    return None


def test_annotated_picture_shades_the_truth_under_the_curves(pictures, tiny_checkpoint, video):
    prediction = load_model(tiny_checkpoint, device="cpu", precision="fp32").predict(video.path, video.category)
    labels = read_annotation(video.annotation)
    figure = prediction_figure(prediction, prediction.triplet_frames, annotation=labels)
    timeline = figure.axes[-1]
    annotated, plain = pixels(pictures["annotated"].with_suffix(".png")), pixels(pictures["plain"].with_suffix(".png"))
    assert annotated.shape == plain.shape == (figure.bbox.height, figure.bbox.width, 3)
    curves = [prediction.initial_state, prediction.action, prediction.end_state]
    checked = 0
    for code, (_, label, colour) in zip(CODES, CURVES, strict=True):
        candidates = [s for s in np.flatnonzero(labels == code) if all(abs(s - t) > 1 for t in prediction.triplet)]
        spots = [(s, clear_height(curves, s)) for s in candidates]
        spots = [(s, y) for s, y in spots if y is not None]
        if not spots:
            continue
        second, height = spots[0]
        row, column = to_pixel(figure, timeline, second, height)
        np.testing.assert_allclose(annotated[row, column], shaded_rgb(colour), atol=6,
                                   err_msg=f"annotated {label} at second {second}")
        assert (plain[row, column] == 255).all(), f"without an annotation, second {second} is not shaded"
        checked += 1
    assert checked >= 2  # the synthetic annotations have each span several seconds long
    # background seconds stay white
    background = [s for s in np.flatnonzero(labels == 0) if all(abs(s - t) > 1 for t in prediction.triplet)]
    clear = [(s, clear_height(curves, s)) for s in background]
    for second, height in [(s, y) for s, y in clear if y is not None][:1]:
        row, column = to_pixel(figure, timeline, second, height)
        assert (annotated[row, column] == 255).all()


def test_right_and_wrong_marks_follow_the_metric(pictures, tiny_checkpoint, video):
    summary = json.loads(pictures["annotated"].with_suffix(".json").read_text())
    right = summary["annotation"]["right"]
    labels = read_annotation(video.annotation)
    # the metrics' own verdict, from the per-second file the CLI wrote
    record = score_video(*read_predictions(pictures["annotated"].with_suffix(".csv")), labels, video.category)
    assert float(right["action"]) == record.joint_action_precision
    assert (right["initial_state"] + right["end_state"]) / 2 == record.joint_state_precision
    assert "annotation" not in json.loads(pictures["plain"].with_suffix(".json").read_text())

    prediction = load_model(tiny_checkpoint, device="cpu", precision="fp32").predict(video.path, video.category)
    figure = prediction_figure(prediction, prediction.triplet_frames, annotation=labels)
    timeline = figure.axes[-1]
    annotated, plain = pixels(pictures["annotated"].with_suffix(".png")), pixels(pictures["plain"].with_suffix(".png"))
    for second, verdict in zip(prediction.triplet, (right["initial_state"], right["action"], right["end_state"]),
                               strict=True):
        row, column = to_pixel(figure, timeline, second, 1.0, y_in_axes=True)
        np.testing.assert_allclose(annotated[row, column], np.array(to_rgb(RIGHT_COLOUR if verdict else WRONG_COLOUR))
                                   * 255, atol=6)
        assert not np.allclose(plain[row, column], annotated[row, column], atol=6)  # no marks without annotation
    titles = [axis.get_title() for axis in figure.axes[:3]]
    assert [title.endswith(" - right") for title in titles] == [right[k] for k in ("initial_state", "action",
                                                                                    "end_state")]


def test_timeline_reads_in_minutes_and_seconds_with_the_legend_beside_it(tiny_checkpoint, video, tmp_path):
    prediction = load_model(tiny_checkpoint, device="cpu", precision="fp32").predict(video.path, video.category)
    long = replace(prediction, initial_state=np.tile(prediction.initial_state, 10),
                   action=np.tile(prediction.action, 10), end_state=np.tile(prediction.end_state, 10))
    figure = prediction_figure(long, long.triplet_frames, annotation=np.tile(read_annotation(video.annotation), 10))
    figure.canvas.draw()
    timeline = figure.axes[-1]
    ticks = [label.get_text() for label in timeline.get_xticklabels() if label.get_text()]
    assert len(ticks) >= 3 and all(re.fullmatch(r"\d+:\d\d", tick) for tick in ticks), ticks
    assert any(tick.startswith("1:") or tick.startswith("2:") for tick in ticks), ticks  # over a minute: m:ss
    legend = timeline.get_legend().get_window_extent()
    assert not legend.overlaps(timeline.get_window_extent())
    assert legend.x1 <= figure.bbox.x1  # whole, not cut by the picture's edge
    assert {t.get_text() for t in timeline.get_legend().get_texts()} >= {"annotated action", "chosen second wrong"}


def test_a_mark_at_second_zero_is_whole(tiny_checkpoint, video, tmp_path):
    prediction = load_model(tiny_checkpoint, device="cpu", precision="fp32").predict(video.path, video.category)
    labels = read_annotation(video.annotation)
    at_zero = replace(prediction, triplet=(0, *prediction.triplet[1:]))
    figure = prediction_figure(at_zero, at_zero.triplet_frames, annotation=labels)
    figure.savefig(tmp_path / "zero.png", dpi=FIGURE_DPI)
    timeline = figure.axes[-1]
    row, column = to_pixel(figure, timeline, 0, 1.0, y_in_axes=True)
    colour = RIGHT_COLOUR if labels[0] == ANNOTATION_INITIAL_STATE else WRONG_COLOUR
    np.testing.assert_allclose(pixels(tmp_path / "zero.png")[row, column], np.array(to_rgb(colour)) * 255, atol=6)
    marks = [line for line in timeline.get_lines() if line.get_marker() in ("o", "X")]
    first = min(marks, key=lambda line: line.get_xdata()[0])
    assert first.get_window_extent().x0 >= timeline.get_window_extent().x0  # not cut by the axis's left edge
