"""``statechange dataset``: index a ChangeIt-format dataset and print what it holds and lacks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from statechange.cli._common import add_dataset_root_options, add_subcommand, dataset_choice
from statechange.errors import StateChangeError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "dataset",
        help="summarise a ChangeIt-format dataset: videos per category and split, missing files and scores",
        description=(
            "Index VIDEO_ROOT/<category>/<video_id>.<ext> against DATASET_ROOT (annotations/, categories.csv, "
            "videos/<category>.csv) without decoding any video, and print which metadata is used, one line per "
            "category, and what is missing. Exits with status 2 when training could not use the dataset as given."
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
    add_dataset_root_options(parser)
    parser.add_argument(
        "--ignore-video-weight",
        action="store_true",
        help="do not require relevance scores (every training video gets weight 1)",
    )
    parser.add_argument(
        "--missing-out", type=Path, default=None, metavar="FILE",
        help="write the ids of listed or annotated videos that have no file, one per line (a batch file for "
        "yt-dlp --batch-file); when not given, only their number is printed",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from statechange._io import write_text
    from statechange.data.index import build_index

    choice = dataset_choice(args)
    print(f"Dataset metadata: {choice.description}")
    index = build_index(args.video_roots, choice.root, args.ignore_video_weight, check=False)
    print(index.report.format())
    if args.missing_out is not None:
        missing = [key.split("/", 1)[1] for key in index.report.missing_videos()]
        try:
            args.missing_out.parent.mkdir(parents=True, exist_ok=True)
            write_text(args.missing_out, "".join(f"{video_id}\n" for video_id in missing))
        except OSError as error:
            raise StateChangeError(
                f"Cannot write {args.missing_out} ({error}): pass a writable path to --missing-out."
            ) from None
        print(f"Wrote the ids of {len(missing)} missing videos to {args.missing_out}.")
    problems = index.report.problems()
    for problem in problems[:-1]:
        print(f"statechange {args.command}: error: {problem}", file=sys.stderr)
    if problems:
        raise StateChangeError(problems[-1])
    return 0
