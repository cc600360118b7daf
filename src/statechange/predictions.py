"""The project's one file format for per-second predictions.

Layout: ``<DIR>/<category>/<video_id>.csv``, one row per second of the video::

    second,initial_state,action,end_state
    0,0.0123,0.00017,0.9031
    1,...

The values are the probabilities P_s1, P_a, P_s2 of the video's category, written as the shortest
decimal that reads back as the same float32, so scoring a file equals scoring the arrays.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from statechange.data.index import read_annotation, video_id_of
from statechange.errors import StateChangeError, listing
from statechange.metrics import MetricsAccumulator

HEADER = ("second", "initial_state", "action", "end_state")
SUFFIX = ".csv"
SUMMARY_FILE = "summary.csv"  # <OUTPUT>/summary.csv of a predict batch: one row per video
CURVE_NAMES = HEADER[1:]
SUMMARY_HEADER = ("video", "category", *(f"{n}_second" for n in CURVE_NAMES),
                  *(f"{n}_probability" for n in CURVE_NAMES), "triplet_score", "no_clear_change")

Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]  # (initial, action, end), float32 [T] each


def prediction_path(directory: str | Path, category: str, video_id: str) -> Path:
    """Where the predictions of ``category/video_id`` live under ``directory``."""
    return Path(directory) / category / f"{video_id}{SUFFIX}"


def _column(values: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().float().numpy()
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"The {name} predictions must be 1-D [T], got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"The {name} predictions contain NaN or infinite values.")
    return array


def write_predictions(
    path: str | Path,
    initial: np.ndarray | torch.Tensor,
    action: np.ndarray | torch.Tensor,
    end: np.ndarray | torch.Tensor,
) -> Path:
    """Write one video's per-second probabilities [T] (parent folders are created); returns the path."""
    columns = [_column(initial, "initial state"), _column(action, "action"), _column(end, "end state")]
    if len({len(c) for c in columns}) != 1:
        raise ValueError(f"Predictions differ in length: {[len(c) for c in columns]}.")
    lines = [",".join(HEADER)]
    # str() of a numpy float32 is the shortest decimal that reads back as the same float32.
    lines += [f"{second},{a},{b},{c}" for second, (a, b, c) in enumerate(zip(*columns, strict=True))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_summary(path: str | Path, summaries: Sequence[dict[str, Any]]) -> Path:
    """Write a batch's summary CSV (``SUMMARY_HEADER``), one row per ``Prediction.summary()``; empty
    cells where a video is too short for a triplet. Written atomically; returns the path."""
    from statechange._io import write_text

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(SUMMARY_HEADER)
    for summary in summaries:
        points = summary["constrained"] or {}
        seconds = [points[n]["second"] if n in points else "" for n in CURVE_NAMES]
        probabilities = [points[n]["probability"] if n in points else "" for n in CURVE_NAMES]
        score = "" if summary["triplet_score"] is None else summary["triplet_score"]
        writer.writerow([summary["video"], summary["category"], *seconds, *probabilities, score,
                         int(summary["no_clear_change"])])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text.getvalue())
    return path


def _parse_row(path: Path, line_number: int, line: str, expected_second: int) -> tuple[float, float, float]:
    """The three probabilities of one data row, checked."""
    fields = line.split(",")
    if len(fields) != len(HEADER):
        raise StateChangeError(
            f"{path} line {line_number}: expected {len(HEADER)} comma-separated columns "
            f"({','.join(HEADER)}), found {len(fields)}; fix or rewrite the file."
        )
    try:
        second = int(fields[0])
    except ValueError:
        raise StateChangeError(
            f"{path} line {line_number}: the second {fields[0]!r} is not an integer; fix or rewrite the file."
        ) from None
    if second != expected_second:
        raise StateChangeError(
            f"{path} line {line_number}: expected second {expected_second}, found {second}; "
            "rows must be seconds 0, 1, 2, ... in order."
        )
    values = []
    for name, text in zip(HEADER[1:], fields[1:], strict=True):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:  # also rejects NaN
            raise StateChangeError(
                f"{path} line {line_number}: {name} {text.strip()!r} is not a probability in [0, 1]; "
                "fix or rewrite the file."
            )
        values.append(value)
    return values[0], values[1], values[2]


def read_predictions(path: str | Path) -> Predictions:
    """Read a prediction file: (initial, action, end) float32 numpy [T], T >= 1."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise StateChangeError(f"Prediction file {path} does not exist; check the path.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StateChangeError(f"Prediction file {path} cannot be read as text ({error}); rewrite it.") from None
    lines = text.splitlines()
    header = [field.strip() for field in lines[0].split(",")] if lines else []
    if tuple(header) != HEADER:
        found = lines[0] if lines else ""
        raise StateChangeError(
            f"{path} line 1: expected the header {','.join(HEADER)!r}, found {found!r}; "
            "write prediction files with statechange.predictions.write_predictions."
        )
    rows: list[tuple[float, float, float]] = []
    for line_number, line in enumerate(lines[1:], start=2):
        if line.strip():
            rows.append(_parse_row(path, line_number, line, expected_second=len(rows)))
    if not rows:
        raise StateChangeError(f"{path} has a header but no rows; write one row per second of the video.")
    table = np.asarray(rows, dtype=np.float32)  # [T, 3]
    return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy()


def find_prediction_files(directory: str | Path) -> dict[str, Path]:
    """Every ``<directory>/<category>/<video_id>.csv``, as {"category/video_id": path}, sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        raise StateChangeError(f"Prediction folder {directory} does not exist; check the path.")
    found: dict[str, Path] = {}
    for category_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for path in sorted(category_dir.glob(f"*{SUFFIX}")):
            if not path.is_file():
                continue
            found[f"{category_dir.name}/{video_id_of(path)}"] = path  # one file per id: the name without .csv
    return found


# ----------------------------------------------------------------------------------------------
# Scoring a folder of prediction files against a folder of annotations (``statechange score``)


def score_files(predictions: dict[str, Path], annotations: dict[str, Path]) -> MetricsAccumulator:
    """Score every video that has both a prediction file and an annotation file (both keyed by
    "category/video_id", as ``find_prediction_files`` and ``index.find_annotation_files`` give them).
    A length mismatch scores the shorter length, with a warning."""
    accumulator = MetricsAccumulator()
    for key in sorted(predictions.keys() & annotations.keys()):
        initial, action, end = read_predictions(predictions[key])
        labels = read_annotation(annotations[key])
        accumulator.add_video(initial, action, end, labels, category=_category(key), key=key)
    return accumulator


def check_coverage(
    predictions: dict[str, Path], annotations: dict[str, Path], prediction_dir: str | Path, allow_missing: bool
) -> list[str]:
    """Fail on annotated videos without predictions (unless ``allow_missing``); returns notes on what
    is left out of the scores (videos, whole categories, predictions without an annotation)."""
    prediction_dir = Path(prediction_dir)
    missing = sorted(annotations.keys() - predictions.keys())
    if len(missing) == len(annotations):
        raise StateChangeError(
            f"None of the {len(annotations)} annotated videos has a prediction file in {prediction_dir} "
            f"(expected e.g. {prediction_dir / missing[0]}.csv); check the folder."
        )
    if missing and not allow_missing:
        raise StateChangeError(
            f"{len(missing)} of {len(annotations)} annotated videos have no prediction file in {prediction_dir} "
            f"({listing(missing)}); write them or pass --allow-missing (allow_missing=True)."
        )
    notes = []
    if missing:
        notes.append(f"{len(missing)} annotated videos have no predictions and are not scored ({listing(missing)}).")
        scored = annotations.keys() & predictions.keys()
        skipped = sorted({_category(k) for k in annotations} - {_category(k) for k in scored})
        if skipped:
            notes.append(
                f"{len(skipped)} categories have no scored video and are left out of the means ({listing(skipped)})."
            )
    ignored = sorted(predictions.keys() - annotations.keys())
    if ignored:
        notes.append(f"ignoring {len(ignored)} prediction files without an annotation ({listing(ignored)}).")
    return notes


def _category(key: str) -> str:
    return key.split("/", 1)[0]

