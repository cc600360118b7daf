"""ChangeIt's metadata, built into the package, and the choice of dataset root a command works with.

The folder ``statechange/changeit`` is a copy of the ChangeIt repository's metadata (MIT licence, in
``changeit/LICENCE``): ``annotations/<category>/<video_id>.fps1.csv`` (the 667 test videos),
``categories.csv`` and ``videos/<category>.csv`` (ids and relevance scores). Only the videos must be
downloaded; ``--dataset-root`` is needed only for other datasets or another copy of ChangeIt.

Importing this module is light (no numpy, no torch): the command line reads its constants while
building its parser; the functions import the dataset index when called.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from statechange.errors import StateChangeError

CHANGEIT = "changeit"  # --dataset changeit: the built-in ChangeIt metadata
NO_DATASET = "none"  # --dataset none: no dataset root (every video trains, no weights)
AUTO = "auto"  # --dataset auto: ChangeIt when the video roots hold ChangeIt's categories, else none
DATASET_CHOICES = (AUTO, CHANGEIT, NO_DATASET)

SPLIT_TRAIN, SPLIT_TEST, SPLIT_ALL = "train", "test", "all"  # which ids `statechange download` fetches
SPLITS = (SPLIT_TRAIN, SPLIT_TEST, SPLIT_ALL)


def changeit_root() -> Path:
    """The folder of the built-in ChangeIt metadata (a real directory of the installed package)."""
    from statechange.data.index import CATEGORIES_FILE

    folder = files("statechange").joinpath(CHANGEIT)
    if not isinstance(folder, Path) or not (folder / CATEGORIES_FILE).is_file():
        raise StateChangeError(
            f"The built-in ChangeIt metadata is missing from this installation ({folder}): reinstall statechange "
            "(pip install .) or pass --dataset-root with a clone of https://github.com/soCzech/ChangeIt."
        )
    return folder


def dataset_categories(dataset_root: Path) -> list[str]:
    """The category names of a dataset root: the DIR_NAME column of its categories.csv, in file order
    (empty when it has none)."""
    from statechange.data.index import CATEGORIES_FILE, read_categories

    centering, _ = read_categories(dataset_root / CATEGORIES_FILE)
    return list(centering)


@dataclass(frozen=True)
class DatasetChoice:
    """The dataset root a command uses and why, in words a user reads."""

    root: Path | None
    description: str


def resolve_dataset_root(
    video_roots: Sequence[str | Path], dataset_root: str | Path | None, dataset: str = AUTO
) -> DatasetChoice:
    """Which metadata goes with ``video_roots``: an explicit ``dataset_root`` always wins; otherwise
    ``dataset`` decides: ``changeit`` (built in), ``none``, or ``auto`` (ChangeIt when every category
    folder of the video roots is a ChangeIt category, else none)."""
    from statechange.data.index import category_folders

    if dataset not in DATASET_CHOICES:
        raise StateChangeError(f"Unknown dataset {dataset!r}: use one of {', '.join(DATASET_CHOICES)}.")
    if dataset_root is not None:
        return DatasetChoice(Path(dataset_root), f"dataset root {dataset_root} (--dataset-root)")
    if dataset == NO_DATASET:
        return DatasetChoice(None, "no dataset root (--dataset none): no annotations, no relevance scores")
    if dataset == CHANGEIT:
        return DatasetChoice(changeit_root(), "ChangeIt's metadata built into statechange (--dataset changeit)")
    folders = set(category_folders(video_roots))
    root = changeit_root()
    if folders and folders <= set(dataset_categories(root)):
        return DatasetChoice(
            root,
            "ChangeIt's metadata built into statechange (the video folders are ChangeIt categories; "
            "--dataset-root DIR or --dataset none to change)",
        )
    return DatasetChoice(None, "no dataset root (the video folders are not all ChangeIt categories)")


def listed_video_ids(dataset_root: Path, categories: Sequence[str] | None = None,
                     split: str = SPLIT_ALL) -> dict[str, list[str]]:
    """category -> video ids of the dataset: the annotated ones (``test``), the others listed in
    ``videos/<category>.csv`` (``train``), or both (``all``, annotated ones first), in file order."""
    from statechange.data.index import (
        ANNOTATIONS_DIR,
        CATEGORIES_FILE,
        RELEVANCE_DIR,
        RELEVANCE_SUFFIX,
        annotation_files,
        read_relevance,
        relevance_file,
    )

    if split not in SPLITS:
        raise StateChangeError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    annotated: dict[str, list[str]] = {}
    for key in annotation_files(dataset_root / ANNOTATIONS_DIR):
        category, video_id = key.split("/", 1)
        annotated.setdefault(category, []).append(video_id)
    listed = [path.name.removesuffix(RELEVANCE_SUFFIX)
              for path in sorted((dataset_root / RELEVANCE_DIR).glob(f"*{RELEVANCE_SUFFIX}"))]
    known = list(dict.fromkeys([*dataset_categories(dataset_root), *annotated, *listed]))
    chosen = list(categories) if categories else known
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise StateChangeError(
            f"Unknown categories {', '.join(unknown)} for the dataset at {dataset_root}: use names from its "
            f"{CATEGORIES_FILE} ({', '.join(known[:5])}, ...)."
        )
    ids: dict[str, list[str]] = {}
    for category in chosen:
        test = annotated.get(category, [])
        test_ids = set(test)
        train = [i for i in read_relevance(relevance_file(dataset_root, category)) if i not in test_ids]
        ids[category] = {SPLIT_TEST: test, SPLIT_TRAIN: train, SPLIT_ALL: test + train}[split]
    return ids


def parse_categories(values: str | Sequence[str] | None) -> list[str] | None:
    """``--categories`` (every command spells it alike): names, separated by spaces or commas, and files
    (one name per line, or a categories.csv's first column), in the order given."""
    if values is None:
        return None
    names: list[str] = []
    for value in [values] if isinstance(values, str) else values:
        path = Path(value)
        if path.is_file():
            rows = [row for row in csv.reader(path.read_text().splitlines()) if row and row[0].strip()]
            listed = [row[0].strip() for row in rows]
            names += listed[1:] if listed and listed[0] == "DIR_NAME" else listed  # ChangeIt's header
        else:
            names += [name.strip() for name in value.split(",") if name.strip()]
    return names


__all__ = [
    "AUTO",
    "CHANGEIT",
    "DATASET_CHOICES",
    "NO_DATASET",
    "SPLITS",
    "DatasetChoice",
    "changeit_root",
    "dataset_categories",
    "listed_video_ids",
    "parse_categories",
    "resolve_dataset_root",
]
