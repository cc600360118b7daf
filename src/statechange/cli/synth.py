"""``statechange synth``: write a small synthetic dataset in the ChangeIt layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from statechange.cli._common import add_subcommand
from statechange.config import SynthConfig
from statechange.runtime import default_workers


def register(subparsers: argparse._SubParsersAction) -> None:
    sizes = SynthConfig()
    parser = add_subcommand(
        subparsers, "synth",
        help="write a synthetic ChangeIt-format dataset (videos, annotations, relevance scores)",
        description=(
            "Write OUTPUT/videos/<category>/<id>.mp4|.webm, OUTPUT/dataset/ (annotations of the test videos, "
            "categories.csv, videos/<category>.csv) and OUTPUT/truth/ (labels of the training videos). "
            "Each category shows an object changing state under a hand-held tool; a quarter of the training "
            "videos are irrelevant and get low relevance scores."
        ),
    )
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder to write the dataset to")
    parser.add_argument("--n-categories", type=int, default=sizes.n_categories, metavar="N",
                        help="number of categories")
    parser.add_argument("--train-videos", type=int, default=sizes.n_train_videos, metavar="M",
                        help="training videos per category")
    parser.add_argument("--test-videos", type=int, default=sizes.n_test_videos, metavar="K",
                        help="annotated test videos per category")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; same seed, same files")
    parser.add_argument("--min-seconds", type=int, default=sizes.min_seconds, metavar="T",
                        help="shortest video length in seconds")
    parser.add_argument("--max-seconds", type=int, default=sizes.max_seconds, metavar="T",
                        help="longest video length in seconds")
    parser.add_argument("--size", type=int, nargs=2, default=sizes.frame_size, metavar=("WIDTH", "HEIGHT"),
                        help="frame size of the written videos")
    parser.add_argument("--difficulty", choices=("demo", "hard"), default="demo",
                        help="demo: clear state changes; hard: subtle end states, categories sharing objects, long "
                        "backgrounds (data.synth.Difficulty)")
    parser.add_argument("--workers", type=int, default=default_workers(), metavar="P",
                        help="processes rendering videos in parallel: the available CPUs, at most 4")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace videos/, dataset/ and truth/ when OUTPUT already holds them")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from statechange.data.synth import DIFFICULTIES, make_synthetic_dataset

    dataset = make_synthetic_dataset(
        args.output,
        n_categories=args.n_categories,
        n_train_videos=args.train_videos,
        n_test_videos=args.test_videos,
        seed=args.seed,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        frame_size=(args.size[0], args.size[1]),
        difficulty=DIFFICULTIES[args.difficulty],
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
