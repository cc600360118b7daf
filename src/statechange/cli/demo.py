"""``statechange demo``: the whole pipeline on synthetic videos, on a CPU, in a few minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from statechange.cli._common import add_precision_option, add_runtime_options, add_subcommand
from statechange.config import AUTO_PRECISION


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "demo",
        help="generate synthetic videos, train, evaluate and predict (CPU, offline, a few minutes)",
        description="Generate a small synthetic ChangeIt-format dataset, extract its frame cache, train a model on "
        "the pretrained EfficientNet-Lite0 backbone from video-level labels only, evaluate it beside chance and "
        "predict one test video. Re-running reuses what is already in OUTPUT.",
    )
    parser.add_argument("--output", type=Path, default=Path("statechange-demo"), metavar="DIR",
                        help="where everything goes")
    parser.add_argument("--n-epochs", "--epochs", type=int, default=None, metavar="E",
                        help="training epochs; when not given, the paper's 20")
    add_runtime_options(parser, forward=False)
    add_precision_option(parser, AUTO_PRECISION)  # of evaluation and prediction; training stays fp32
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from statechange.demo import DemoSettings, run_demo
    from statechange.inference import use_allowed_cores

    settings = DemoSettings() if args.n_epochs is None else replace(DemoSettings(), n_epochs=args.n_epochs)
    use_allowed_cores()
    run_demo(args.output, settings, device=args.device, progress=not args.no_progress, precision=args.precision)
    return 0
