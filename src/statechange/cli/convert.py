"""``statechange convert``: a release ``.pth`` checkpoint as a statechange checkpoint directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from statechange.cli._common import add_categories_option, add_subcommand


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "convert",
        help="turn a release .pth checkpoint into a statechange checkpoint",
        description="Read a checkpoint saved by the original release's training (torch.save of state_dict, args, "
        "n_classes; loaded with weights_only=True) and write it as a statechange checkpoint directory "
        "(model.safetensors + config.json) that predict, evaluate and train --init-from take.",
    )
    parser.add_argument("--release", required=True, type=Path, metavar="PATH", help="the release's .pth file")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="checkpoint directory to write")
    add_categories_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from statechange.data.changeit import parse_categories
    from statechange.release import convert_release_checkpoint

    loaded = convert_release_checkpoint(args.release, args.output, parse_categories(args.categories))
    print(f"{args.release} -> {args.output} ({loaded.config.backbone}, {len(loaded.categories)} categories)")
    return 0
