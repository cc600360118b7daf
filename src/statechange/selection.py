"""Honest model selection: the held-out validation set that chooses ``best``.

ChangeIt has only a test split, so a ``best`` chosen on it reports a test-selected number; the paper
reports the model after its fixed schedule (``last``). A run keeps a ``best`` only when it is given a
validation set that is neither trained on nor reported as test:

- ``--val-annotations DIR``: annotations (``<category>/<video_id>.fps1.csv``) of videos in the video
  roots; those videos leave the training set.
- ``--val-fraction F``: a seeded fraction of the annotated (test) videos; they leave the test report,
  and checkpoints list them so that ``evaluate`` leaves them out too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from statechange.data.index import TEST, DatasetIndex, IndexedVideo, annotation_files, read_annotation
from statechange.errors import StateChangeError, listing

SELECTION_METRIC = "state_precision"  # what chooses best, as the release's best did (on test)


@dataclass(frozen=True)
class HeldOut:
    """The validation videos of a run and, in words, which set they are (recorded with ``best``)."""

    videos: list[IndexedVideo]
    description: str  # e.g. "--val-fraction 0.2 (seed 0) of the annotated videos: 4 videos"
    excluded_from_test: tuple[str, ...] = ()  # video keys ``evaluate`` must leave out of a test report


def held_out_split(
    index: DatasetIndex, val_annotations: Path | None, val_fraction: float | None, seed: int
) -> tuple[list[IndexedVideo], list[IndexedVideo], HeldOut | None]:
    """(training videos, test videos, validation set or None) of a run."""
    check_validation_options(val_annotations, val_fraction)
    if val_annotations is not None:
        return _from_annotations(index, val_annotations)
    if val_fraction is not None:
        return _from_fraction(index, val_fraction, seed)
    return index.train, index.test, None


def _from_annotations(index: DatasetIndex, folder: Path) -> tuple[list[IndexedVideo], list[IndexedVideo], HeldOut]:
    files = annotation_files(folder)
    if not files:
        raise StateChangeError(
            f"--val-annotations {folder} holds no <category>/<video_id>.fps1.csv file; pass the folder of the "
            "validation videos' annotations."
        )
    on_test = sorted(k for k in files if k in {v.key for v in index.test})
    if on_test:
        raise StateChangeError(
            f"--val-annotations {folder} annotates test videos ({listing(on_test)}); a validation set must not be "
            "the test set, so remove them from one of the two folders."
        )
    validation = [replace(v, split=TEST, annotation=files[v.key]) for v in index.train if v.key in files]
    if not validation:
        raise StateChangeError(
            f"None of the {len(files)} videos annotated in --val-annotations {folder} is in the video roots; "
            "check --video-roots and the folder."
        )
    for video in validation:  # fail now on a malformed annotation, not after the first epoch
        read_annotation(video.annotation)
    keys = {v.key for v in validation}
    train = [v for v in index.train if v.key not in keys]
    return train, index.test, HeldOut(validation, f"--val-annotations {folder}: {len(validation)} videos")


def _from_fraction(index: DatasetIndex, fraction: float, seed: int
                   ) -> tuple[list[IndexedVideo], list[IndexedVideo], HeldOut]:
    annotated = index.test
    n_validation = round(fraction * len(annotated))
    if n_validation == 0 or n_validation == len(annotated):
        raise StateChangeError(
            f"--val-fraction {fraction} of {len(annotated)} annotated videos leaves no validation or no test video; "
            "pass a fraction between 0 and 1 that keeps at least one of each."
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(annotated), generator=generator).tolist()
    chosen = set(order[:n_validation])
    validation = [v for i, v in enumerate(annotated) if i in chosen]
    test = [v for i, v in enumerate(annotated) if i not in chosen]
    description = f"--val-fraction {fraction} (seed {seed}) of the annotated videos: {len(validation)} videos"
    return index.train, test, HeldOut(validation, description, tuple(v.key for v in validation))


def check_validation_options(val_annotations: Path | None, fraction: float | None) -> None:
    """Refuse both validation options at once, or a --val-fraction outside (0, 1), before any work starts (the
    dataset's size is checked by ``held_out_split``)."""
    if val_annotations is not None and fraction is not None:
        raise StateChangeError("Pass one of --val-annotations and --val-fraction, not both.")
    if fraction is not None and not 0 < fraction < 1:  # NaN too
        raise StateChangeError(f"--val-fraction must be between 0 and 1 (exclusive), got {fraction}: e.g. 0.2 holds "
                               "out a fifth of the annotated videos.")


def selection_metadata(held_out: HeldOut | None, val_metrics: dict[str, Any] | None) -> dict[str, Any]:
    """What the checkpoints of a run record about its validation set (nothing without one): the set that chose
    best, its metrics, its videos (a resume must keep them) and the annotated videos a test report leaves out."""
    if held_out is None:
        return {}
    return {"selected_by": {"set": held_out.description, "metric": SELECTION_METRIC}, "val_metrics": val_metrics,
            "validation_videos": sorted(v.key for v in held_out.videos),
            "excluded_from_test": list(held_out.excluded_from_test)}


def check_same_validation(saved_metadata: dict[str, Any], held_out: HeldOut | None, directory: Path) -> None:
    """Refuse a resume whose validation set differs from the one the run started with: best would then be
    chosen on two sets, and the test report would change its videos mid-run."""
    saved = saved_metadata.get("validation_videos")  # None: the run had no validation set
    now = sorted(v.key for v in held_out.videos) if held_out is not None else None
    if saved == now:
        return
    was = "no validation set" if saved is None else saved_metadata.get("selected_by", {}).get("set", "another set")
    raise StateChangeError(
        f"--resume: the run in {directory} was started with {was}, not "
        f"{'no validation set' if held_out is None else held_out.description}: resume with the same "
        "--val-annotations / --val-fraction (and --seed), or start a new run (another --output, or --overwrite)."
    )


__all__ = ["SELECTION_METRIC", "HeldOut", "check_same_validation", "check_validation_options",
           "held_out_split", "selection_metadata"]
