"""``statechange synth``: write a small synthetic dataset in the ChangeIt layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from statechange.data import synth
from statechange.runtime import default_workers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic ChangeIt-format dataset (videos, annotations, relevance scores)",
        description=(
            "Write OUTPUT/videos/<category>/<id>.mp4|.webm, OUTPUT/dataset/ (annotations of the test videos, "
            "categories.csv, videos/<category>.csv) and OUTPUT/truth/ (labels of the training videos). "
            "Each category shows an object changing state under a hand-held tool; a quarter of the training "
            "videos are irrelevant and get low relevance scores."
        ),
    )
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder to write the dataset to")
    parser.add_argument("--categories", type=int, default=3, metavar="N", help="number of categories (default 3)")
    parser.add_argument(
        "--train-videos", type=int, default=12, metavar="M", help="training videos per category (default 12)"
    )
    parser.add_argument(
        "--test-videos", type=int, default=4, metavar="K", help="annotated test videos per category (default 4)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; same seed, same files")
    parser.add_argument(
        "--min-seconds",
        type=int,
        default=synth.MIN_SECONDS,
        metavar="T",
        help=f"shortest video length in seconds (default {synth.MIN_SECONDS})",
    )
    parser.add_argument(
        "--max-seconds",
        type=int,
        default=synth.MAX_SECONDS,
        metavar="T",
        help=f"longest video length in seconds (default {synth.MAX_SECONDS})",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=synth.FRAME_SIZE,
        metavar=("WIDTH", "HEIGHT"),
        help="frame size of the written videos (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        metavar="P",
        help="processes rendering videos in parallel (default: CPU cores, at most 4)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace videos/, dataset/ and truth/ when OUTPUT already holds them"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = synth.make_synthetic_dataset(
        args.output,
        n_categories=args.categories,
        n_train_videos=args.train_videos,
        n_test_videos=args.test_videos,
        seed=args.seed,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        frame_size=(args.size[0], args.size[1]),
        workers=args.workers,
        overwrite=args.overwrite,
    )
    seconds = sum(len(video.labels) for video in dataset.videos)
    print(
        f"Wrote {len(dataset.videos)} videos ({seconds} s; {len(dataset.train)} training, {len(dataset.test)} test) "
        f"of {len(dataset.styles)} categories ({', '.join(dataset.categories)}) to {dataset.root}."
    )
    print(
        f"Index it with: statechange dataset --video-roots {dataset.video_root} --dataset-root {dataset.dataset_root}"
    )
    return 0
