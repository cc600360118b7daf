"""What every subcommand shares: one parser layout, and the runtime options declared once.

Imports nothing heavier than ``statechange.config``, so that building the parser (``statechange
--help``) never loads torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from statechange.config import AUTO_PRECISION, PRECISION_CHOICES, PRECISIONS, ForwardSettings

if TYPE_CHECKING:
    from statechange.data.changeit import DatasetChoice

DEVICE_HELP = "cpu, cuda or cuda:N; when not given, this process's GPU if there is one, else the CPU"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default after its help. A one-line description is wrapped to the terminal;
    text written on several lines (the examples of an epilog) is printed as written.

    Defaults that say nothing are left out: ``None`` (the help says what happens instead), on/off
    flags (off unless given) and required options.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.required or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def add_subcommand(
    subparsers: argparse._SubParsersAction, name: str, *, help: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of one subcommand, laid out like all the others."""
    return subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=HelpFormatter)


def add_runtime_options(
    parser: argparse.ArgumentParser, *, device: bool = True, forward: bool = True, chunk_help: str | None = None,
    precision_default: str | None = None,
) -> None:
    """``--device``, ``--precision``, ``--chunk-size`` and ``--no-progress``, in a "runtime" group.

    ``device=False`` leaves out ``--device``; ``forward=False`` leaves out the forward-pass settings
    (precision and chunk size). ``precision_default`` offers "auto" too, with that default.
    """
    group = parser.add_argument_group("runtime")
    if device:
        group.add_argument("--device", default=None, help=DEVICE_HELP)
    if forward:
        add_precision_option(group, precision_default)
        group.add_argument("--chunk-size", type=int, default=ForwardSettings.chunk_size, metavar="N",
                           help=chunk_help or "frames per forward pass (memory only; results do not change)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_precision_option(parser: argparse._ActionsContainer, default: str | None = None) -> None:
    """``--precision``: fp32 / bf16, and "auto" when ``default`` is given (as the default, or beside fp32)."""
    if default is None:
        parser.add_argument("--precision", choices=PRECISIONS, default=ForwardSettings.precision,
                            help="fp32, or bf16 autocast for the forward passes")
        return
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=default,
                        help=f"fp32, bf16 autocast, or {AUTO_PRECISION}: bf16 where the device runs it fast "
                        "(GPUs with bf16, CPUs with AMX / AVX-512-BF16), else fp32")


CATEGORIES_HELP = ("category names of a release .pth checkpoint, in its class order: NAMES separated by spaces or "
                   "commas, or a FILE of one name per line; when not given, ChangeIt's 44 sorted names for a "
                   "44-category file")


def add_categories_option(parser: argparse.ArgumentParser) -> None:
    """``--categories NAMES|FILE``: the class names a release checkpoint does not store."""
    parser.add_argument("--categories", nargs="+", default=None, metavar="NAMES|FILE", help=CATEGORIES_HELP)


def forward_settings(args: argparse.Namespace, device: object) -> ForwardSettings:
    """The forward-pass settings of the parsed runtime options, on ``device`` (a name or torch.device);
    precision "auto" is resolved here, for that device."""
    from statechange.inference import resolve_precision

    return ForwardSettings(str(device), resolve_precision(args.precision, device), args.chunk_size)


def add_dataset_root_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--dataset-root DIR`` and ``--dataset {auto,changeit,none}`` (ChangeIt's metadata is built in)."""
    from statechange.data.changeit import AUTO, DATASET_CHOICES  # constants only: no numpy, no torch

    parser.add_argument(
        "--dataset-root", type=Path, default=None, metavar="DIR",
        help="folder with annotations/, categories.csv and videos/<category>.csv; it wins over --dataset; "
        "when not given, --dataset decides",
    )
    parser.add_argument(
        "--dataset", choices=DATASET_CHOICES, default=AUTO,
        help="without --dataset-root: 'changeit' uses ChangeIt's metadata built into statechange, 'none' no "
        "metadata (every video trains, no relevance weights), 'auto' ChangeIt when every video folder is a "
        "ChangeIt category, else none",
    )


def dataset_choice(args: argparse.Namespace) -> DatasetChoice:
    """The dataset root that the parsed ``--dataset-root``, ``--dataset`` and ``--video-roots`` come to."""
    from statechange.data.changeit import resolve_dataset_root

    return resolve_dataset_root(getattr(args, "video_roots", None) or [], args.dataset_root, args.dataset)
