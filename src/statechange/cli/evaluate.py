"""``statechange evaluate``: the metrics of a checkpoint on annotated ChangeIt-format videos."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from statechange.cli._common import (
    add_categories_option,
    add_dataset_root_options,
    add_runtime_options,
    add_subcommand,
    dataset_choice,
    forward_settings,
)
from statechange.errors import StateChangeError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "evaluate",
        help="evaluate a checkpoint on annotated videos",
        description="State / action precision@1, joint precisions and state accuracy of a checkpoint on the "
        "annotated (test) videos of a ChangeIt-format dataset; centre crop, no augmentation. Runs distributed "
        "under torchrun or srun like training.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, metavar="PATH",
                        help="checkpoint directory made by `statechange train` (e.g. runs/x/last) or a release .pth")
    parser.add_argument("--video-roots", nargs="+", required=True, type=Path, metavar="DIR",
                        help="folders holding <category>/<video_id>.<ext>")
    add_dataset_root_options(parser)
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="frame cache made by `statechange extract`: only its lossless entries are read, other "
                        "videos are decoded, so the frames are exactly those of decoding; when not given, videos "
                        "are decoded")
    parser.add_argument("--predictions-out", type=Path, default=None, metavar="DIR",
                        help="also write per-second prediction files (<DIR>/<category>/<video_id>.csv); when not "
                        "given, none are written")
    parser.add_argument("--report", type=Path, default=None, metavar="DIR",
                        help="also write an HTML report to DIR/index.html (viewable offline; the folder moves as a "
                        "whole): the per-category table beside chance and one row per test video with its picture, "
                        "the annotated seconds shaded and each chosen second marked right or wrong; rows sort by "
                        "category and by correctness; when not given, no report is written")
    parser.add_argument("--allow-length-mismatch", action="store_true",
                        help="score videos whose decoded frames and annotation differ in length on the shorter "
                        "length (and report how many); without it such videos are an error")
    parser.add_argument("--json", action="store_true", help="print the summary as a JSON object")
    add_categories_option(parser)
    add_runtime_options(parser, precision_default="fp32")  # fp32 by default, as the release
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from statechange import distributed
    from statechange.data.changeit import parse_categories
    from statechange.evaluate import evaluate_checkpoint
    from statechange.inference import use_allowed_cores

    use_allowed_cores()
    choice = dataset_choice(args)
    if choice.root is None:
        raise StateChangeError(
            f"Evaluation needs annotations, and there is {choice.description}: pass --dataset-root DIR "
            "(with annotations/) or --dataset changeit."
        )
    context = distributed.setup(args.device)
    try:
        result = evaluate_checkpoint(
            args.checkpoint, args.video_roots, choice.root, forward_settings(args, context.device),
            frame_cache=args.cache, predictions_out=args.predictions_out,
            progress=context.is_main and not args.no_progress, categories=parse_categories(args.categories),
            report_dir=args.report,
            allow_length_mismatch=args.allow_length_mismatch,
        )
    finally:
        distributed.cleanup()
    if context.is_main:
        if not args.json:  # stdout is the JSON object alone
            print(f"Dataset metadata: {choice.description}")
        for key, reason in result.failed:
            print(f"skipped {key}: {reason}")
    if len(result.metrics) == 0:  # an empty table would read as a result
        raise StateChangeError(
            f"None of the {len(result.failed)} annotated videos could be scored (every one failed to decode, "
            "see the lines above): check the videos under --video-roots (or --cache) and run again."
        )
    if context.is_main:
        if result.held_out:
            print(f"left out {result.held_out} annotated video(s) that chose the run's best (--val-fraction): they "
                  "are not test videos of this checkpoint", file=sys.stderr)
        if result.length_mismatches:
            print(f"{len(result.length_mismatches)} video(s) scored on the shorter of frames and annotation: "
                  f"{', '.join(result.length_mismatches)}", file=sys.stderr)
        if args.json:
            print(json.dumps({"recipe": result.recipe, **result.metrics.summary()}, indent=2))
        else:
            print(f"{args.checkpoint}: {result.recipe}")
            print(result.metrics.format_table())
            if result.report is not None:
                print(f"report: {result.report}")
    return 0
