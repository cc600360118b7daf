"""``statechange dataset``: index a ChangeIt-format dataset and print what it holds and lacks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from statechange.cli._common import add_subcommand
from statechange.errors import StateChangeError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "dataset",
        help="summarise a ChangeIt-format dataset: videos per category and split, missing files and scores",
        description=(
            "Index VIDEO_ROOT/<category>/<video_id>.<ext> against DATASET_ROOT (annotations/, categories.csv, "
            "videos/<category>.csv) without decoding any video, and print one line per category plus what is "
            "missing. Exits with status 2 when training could not use the dataset as given."
        ),
    )
    parser.add_argument(
        "--video-roots",
        type=Path,
        nargs="+",
        required=True,
        metavar="DIR",
        help="folders holding one sub-folder of videos per category",
    )
    parser.add_argument(
        "--dataset-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with annotations/, categories.csv and videos/<category>.csv; when not given, every video "
        "counts as a training video and the report lists what is missing",
    )
    parser.add_argument(
        "--ignore-video-weight",
        action="store_true",
        help="do not require relevance scores (every training video gets weight 1)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from statechange.data.index import build_index

    index = build_index(args.video_roots, args.dataset_root, args.ignore_video_weight, check=False)
    print(index.report.format())
    problems = index.report.problems()
    for problem in problems[:-1]:
        print(f"statechange {args.command}: error: {problem}", file=sys.stderr)
    if problems:
        raise StateChangeError(problems[-1])
    return 0
