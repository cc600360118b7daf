"""``statechange score``: score prediction files against ChangeIt annotations."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from statechange.data.index import ANNOTATION_SUFFIX, annotation_files, read_annotation
from statechange.errors import StateChangeError, listing
from statechange.metrics import MetricsAccumulator
from statechange.predictions import find_prediction_files, read_predictions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score prediction files against ChangeIt annotations",
        description="Score per-second prediction files (<DIR>/<category>/<video_id>.csv) against ChangeIt "
        "annotations (<DIR>/<category>/<video_id>.fps1.csv): state and action precision@1, their joint "
        "versions and state accuracy, x100, averaged per category then over categories.",
    )
    parser.add_argument("--predictions", required=True, type=Path, metavar="DIR", help="prediction folder")
    parser.add_argument(
        "--annotations", required=True, type=Path, metavar="DIR",
        help="annotation folder (or a dataset root holding annotations/)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as a JSON object")
    parser.add_argument(
        "--allow-missing", action="store_true",
        help="score the annotated videos that have predictions instead of failing on the others",
    )
    parser.set_defaults(func=run)


def _note(message: str) -> None:
    print(f"statechange score: {message}", file=sys.stderr)


def find_annotation_files(directory: Path) -> dict[str, Path]:
    """Every ``<directory>/<category>/<video_id>.fps1.csv`` as {"category/video_id": path}, sorted;
    a dataset root holding ``annotations/`` is accepted too."""
    if not directory.is_dir():
        raise StateChangeError(f"Annotation folder {directory} does not exist; check the path.")
    if not any(directory.glob(f"*/*{ANNOTATION_SUFFIX}")) and (directory / "annotations").is_dir():
        directory = directory / "annotations"
    found = annotation_files(directory)
    if not found:
        raise StateChangeError(
            f"No annotation files (<category>/<video_id>{ANNOTATION_SUFFIX}) found under {directory}; "
            "pass the ChangeIt annotations folder."
        )
    return found


def _category(key: str) -> str:
    return key.split("/", 1)[0]


def score_files(predictions: dict[str, Path], annotations: dict[str, Path]) -> MetricsAccumulator:
    """Score every video that has both a prediction file and an annotation file."""
    accumulator = MetricsAccumulator()
    for key in sorted(predictions.keys() & annotations.keys()):
        initial, action, end = read_predictions(predictions[key])
        labels = read_annotation(annotations[key])
        accumulator.add_video(initial, action, end, labels, category=_category(key), key=key)
    return accumulator


def check_coverage(
    predictions: dict[str, Path], annotations: dict[str, Path], prediction_dir: Path, allow_missing: bool
) -> None:
    """Fail on annotated videos without predictions (unless allowed); note what is left out."""
    missing = sorted(annotations.keys() - predictions.keys())
    if len(missing) == len(annotations):
        raise StateChangeError(
            f"None of the {len(annotations)} annotated videos has a prediction file in {prediction_dir} "
            f"(expected e.g. {prediction_dir / missing[0]}.csv); check the folder."
        )
    if missing and not allow_missing:
        raise StateChangeError(
            f"{len(missing)} of {len(annotations)} annotated videos have no prediction file in {prediction_dir} "
            f"({listing(missing)}); write them or pass --allow-missing."
        )
    if missing:
        _note(f"note: {len(missing)} annotated videos have no predictions and are not scored ({listing(missing)}).")
        scored = annotations.keys() & predictions.keys()
        skipped = sorted({_category(k) for k in annotations} - {_category(k) for k in scored})
        if skipped:
            _note(
                f"note: {len(skipped)} categories have no scored video and are left out of the means "
                f"({listing(skipped)})."
            )
    ignored = sorted(predictions.keys() - annotations.keys())
    if ignored:
        _note(f"note: ignoring {len(ignored)} prediction files without an annotation ({listing(ignored)}).")


def run(args: argparse.Namespace) -> int:
    annotations = find_annotation_files(args.annotations)
    predictions = find_prediction_files(args.predictions)
    check_coverage(predictions, annotations, args.predictions, args.allow_missing)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accumulator = score_files(predictions, annotations)
    for warning in caught:
        _note(f"warning: {warning.message}")
    print(json.dumps(accumulator.summary(), indent=2) if args.json else accumulator.format_table())
    return 0
