"""``statechange predict``: run a trained model on videos and show where the state change happens."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from statechange.cli._common import add_categories_option, add_runtime_options, add_subcommand
from statechange.config import AUTO_PRECISION, NO_CHANGE_THRESHOLD

AUTO = "auto"  # inference.AUTO_CATEGORY (not imported: the CLI loads no torch to parse)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "predict",
        help="find the initial state, action and end state in videos",
        description="For each video: per-second probabilities (<OUTPUT>/<category>/<video_id>.csv), a JSON "
        "summary with the most likely (initial state, action, end state) seconds, and a PNG of the chosen "
        "frames above the probability timeline.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, metavar="PATH",
                        help="checkpoint directory made by `statechange train`, or a release .pth file")
    parser.add_argument("--category", default=None, metavar="NAME",
                        help="the category of every video (a name the model knows), or 'auto' to rank the model's "
                        "categories per video and keep the best; when not given, the name of the folder holding "
                        "each video")
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO",
                        help="video files, folders of videos, or <category>/<video> trees (every video in them)")
    parser.add_argument("--output", type=Path, default=Path("predictions"), metavar="DIR",
                        help="where to write the files (and summary.csv, one row per video)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip videos whose outputs exist (their row still goes into summary.csv)")
    parser.add_argument("--no-change-threshold", type=float, default=NO_CHANGE_THRESHOLD, metavar="SCORE",
                        help="flag 'no clear state change' when the triplet score (geometric mean of the three "
                        "chosen probabilities) is below this; calibrated on synthetic videos without a change")
    parser.add_argument("--annotations", type=Path, default=None, metavar="DIR",
                        help="ChangeIt annotations (<DIR>/<category>/<video_id>.fps1.csv, or a dataset root holding "
                        "annotations/): the picture of an annotated video shades the annotated seconds and marks "
                        "each chosen second right or wrong; when not given, pictures show the prediction alone")
    add_categories_option(parser)
    add_runtime_options(parser, precision_default=AUTO_PRECISION)
    parser.set_defaults(func=run)


def _check_one_output_each(videos: list, category: str | None) -> None:
    """Refuse, before any work, two videos whose outputs would have one name (OUTPUT/<category>/<video_id>.*)."""
    from statechange.errors import StateChangeError

    seen: dict[str, object] = {}
    for video in videos:
        # with --category NAME every output lands in one folder; with auto the folder is known only later
        name = video.video_id if category is not None else f"{video.category}/{video.video_id}"
        other = seen.setdefault(name, video)
        if other is not video:
            raise StateChangeError(
                f"Videos {other.path} and {video.path} would write the same outputs ({name}.*): predict them "
                "in two runs with different --output folders, or rename one."
            )


def run(args: argparse.Namespace) -> int:
    from statechange.data.changeit import parse_categories
    from statechange.data.decode import VideoDecodeError
    from statechange.data.index import expand_video_tree, find_annotation_files, unique_by_key
    from statechange.inference import load_model, use_allowed_cores
    from statechange.predictions import SUMMARY_FILE, write_summary
    from statechange.progress import progress, write
    from statechange.viz import save_prediction

    # one output per category/id: two files with one name would overwrite each other's outputs
    videos = list(unique_by_key(expand_video_tree(args.videos)).values())
    _check_one_output_each(videos, args.category)
    annotations = find_annotation_files(args.annotations) if args.annotations is not None else {}
    use_allowed_cores()
    predictor = load_model(args.checkpoint, device=args.device, precision=args.precision, chunk_size=args.chunk_size,
                           categories=parse_categories(args.categories))
    _check_categories(args.category, videos, predictor.categories)  # fail before any work
    print(f"{args.checkpoint}: {predictor.recipe}")
    failed, summaries = 0, []
    one_video = len(videos) == 1  # one bar: over the seconds of a single video, else over the videos
    bar = progress(videos, desc="predict", unit="video", enabled=not (args.no_progress or one_video))
    for video in bar:
        category = video.category if args.category is None else args.category
        existing = _existing_summary(args.output, category, video.video_id) if args.skip_existing else None
        if existing is not None:
            write(f"{video.path}: outputs exist, skipped ({existing.parent})")
            summaries.append(json.loads(existing.read_text()))
            continue
        try:
            prediction = predictor.predict(video.path, None if category == AUTO else category,
                                           no_change_threshold=args.no_change_threshold,
                                           progress=one_video and not args.no_progress)
            csv_path, png_path = save_prediction(prediction, args.output, video.video_id,
                                                 annotations.get(f"{prediction.category}/{video.video_id}"))
        except VideoDecodeError as error:
            write(f"statechange predict: {error}")
            failed += 1
            continue
        summaries.append(prediction.summary())
        write(_describe(summaries[-1], csv_path, png_path), file=sys.stdout)
    bar.close()
    if len(videos) > 1 and summaries:
        print(f"summary of {len(summaries)} videos -> {write_summary(args.output / SUMMARY_FILE, summaries)}")
    if failed:
        print(f"statechange predict: {failed} of {len(videos)} videos could not be read.", file=sys.stderr)
    return 1 if failed else 0


def _check_categories(category: str | None, videos: list, known: list[str]) -> None:
    """A named category must be the model's; without one, every video's folder must name one of them."""
    from statechange.errors import StateChangeError, listing

    if category is not None and category != AUTO and category not in known:
        raise StateChangeError(f"Unknown category {category!r}: this model knows {', '.join(known)}; "
                               f"pass one of them or --category {AUTO}.")
    if category is None:
        unknown = [str(v.path) for v in videos if v.category not in known]
        if unknown:
            raise StateChangeError(
                f"The folders of {len(unknown)} videos ({listing(unknown)}) name no category this model knows "
                f"({', '.join(known)}); pass --category NAME or --category {AUTO}."
            )


def _existing_summary(output: Path, category: str, video_id: str) -> Path | None:
    """The JSON summary a previous run wrote for the video (any category under ``auto``), if any."""
    pattern = f"*/{video_id}.json" if category == AUTO else f"{category}/{video_id}.json"
    return next(iter(sorted(output.glob(pattern))), None) if output.is_dir() else None


def _describe(summary: dict, csv_path: Path, png_path: Path) -> str:
    constrained = summary["constrained"]
    if constrained is None:
        where = "too short for a state change (fewer than 3 seconds)"
    else:
        where = ", ".join(f"{name.replace('_', ' ')} at {point['second']} s (p={point['probability']:.2f})"
                          for name, point in constrained.items())
    score = summary["triplet_score"]
    sureness = "" if score is None else f"; triplet score {score:.2f}" + (
        " - no clear state change" if summary["no_clear_change"] else "")
    return (f"{summary['video']} [{summary['category']}]: {where}{sureness}\n"
            f"  -> {csv_path} (+ .json, .png: {png_path.name})")
