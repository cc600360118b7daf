"""``statechange score``: score prediction files against ChangeIt annotations."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from statechange.cli._common import add_subcommand


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "score",
        help="score prediction files against ChangeIt annotations",
        description="Score per-second prediction files (<DIR>/<category>/<video_id>.csv) against ChangeIt "
        "annotations (<DIR>/<category>/<video_id>.fps1.csv): state and action precision@1, their joint "
        "versions and state accuracy, x100, averaged per category then over categories.",
    )
    parser.add_argument("--predictions", required=True, type=Path, metavar="DIR", help="prediction folder")
    parser.add_argument(
        "--annotations", type=Path, default=None, metavar="DIR",
        help="annotation folder (or a dataset root holding annotations/); when not given, ChangeIt's annotations "
        "built into statechange"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as a JSON object")
    parser.add_argument(
        "--allow-missing", action="store_true",
        help="score the annotated videos that have predictions instead of failing on the others",
    )
    parser.set_defaults(func=run)


def _note(message: str) -> None:
    print(f"statechange score: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from statechange.data.changeit import changeit_root
    from statechange.data.index import find_annotation_files
    from statechange.predictions import check_coverage, find_prediction_files, score_files

    annotations = find_annotation_files(args.annotations if args.annotations is not None else changeit_root())
    predictions = find_prediction_files(args.predictions)
    for note in check_coverage(predictions, annotations, args.predictions, args.allow_missing):
        _note(f"note: {note}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accumulator = score_files(predictions, annotations)
    for warning in caught:
        _note(f"warning: {warning.message}")
    print(json.dumps(accumulator.summary(), indent=2) if args.json else accumulator.format_table())
    return 0
