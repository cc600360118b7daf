"""``statechange predict``: run a trained model on videos and show where the state change happens."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from statechange.cli._common import add_runtime_options, add_subcommand
from statechange.config import AUTO_PRECISION


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "predict",
        help="find the initial state, action and end state in videos",
        description="For each video: per-second probabilities (<OUTPUT>/<category>/<video_id>.csv), a JSON "
        "summary with the most likely (initial state, action, end state) seconds, and a PNG of the chosen "
        "frames above the probability timeline.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, metavar="PATH",
                        help="checkpoint directory made by `statechange train`")
    parser.add_argument("--category", required=True, help="the category of the videos (a name the model knows)")
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO",
                        help="video files, or folders (every video in them)")
    parser.add_argument("--output", type=Path, default=Path("predictions"), metavar="DIR",
                        help="where to write the files")
    add_runtime_options(parser, precision_default=AUTO_PRECISION)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from statechange.data.decode import VideoDecodeError
    from statechange.data.index import VideoFile, expand_videos, unique_by_key, video_id_of
    from statechange.inference import load_model, use_allowed_cores
    from statechange.viz import save_prediction

    videos = expand_videos(args.videos)
    # one output per id: two files with one name (in different folders) would overwrite each other's outputs
    videos = [v.path for v in unique_by_key(VideoFile(args.category, video_id_of(p), p) for p in videos).values()]
    use_allowed_cores()
    predictor = load_model(args.checkpoint, device=args.device, precision=args.precision, chunk_size=args.chunk_size)
    predictor.category_index(args.category)  # unknown category: fail before any work
    from statechange.recipes import describe_recipe

    print(f"{args.checkpoint}: {describe_recipe(predictor.recipe, predictor.model)}")
    failed = 0
    for video in tqdm(videos, desc="predict", unit="video", disable=args.no_progress or len(videos) < 2,
                      file=sys.stderr):
        try:
            prediction = predictor.predict(video, args.category)
            csv_path, png_path = save_prediction(prediction, args.output, video_id_of(video))
        except VideoDecodeError as error:
            print(f"statechange predict: {error}", file=sys.stderr)
            failed += 1
            continue
        print(_describe(prediction.summary(), csv_path, png_path))
    if failed:
        print(f"statechange predict: {failed} of {len(videos)} videos could not be read.", file=sys.stderr)
    return 1 if failed else 0


def _describe(summary: dict, csv_path: Path, png_path: Path) -> str:
    constrained = summary["constrained"]
    if constrained is None:
        where = "too short for a state change (fewer than 3 seconds)"
    else:
        where = ", ".join(f"{name.replace('_', ' ')} at {point['second']} s (p={point['probability']:.2f})"
                          for name, point in constrained.items())
    return f"{summary['video']}: {where}\n  -> {csv_path} (+ .json, .png: {png_path.name})"
