"""The ChangeIt metrics (METHOD.md, "Evaluation"): precision@1 of states and actions, their joint
(causally ordered) versions, and state accuracy, averaged per category and then over categories.

``score_video`` is the one per-video scoring, used by training validation, ``statechange evaluate``
and ``statechange score``. ``MetricsAccumulator`` collects its ``VideoRecord``s; its state is plain
data, so ranks can exchange it with ``torch.distributed.all_gather_object`` and ``merge`` it.

Degenerate videos follow the release exactly, so the numbers equal it: its decoders start from
the index (0, 0) / (0, 0, 0) with a best score of -1, so a video of T = 1 second is scored on the
pair (0, 0) and a video of T < 3 seconds on the triplet (0, 0, 0), i.e. on its label at second 0.
A video with no seconds at all cannot be scored and is an error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from typing import Any

import numpy as np
import torch

from statechange.errors import StateChangeError
from statechange.labels import ANNOTATION_ACTION, ANNOTATION_END_STATE, ANNOTATION_INITIAL_STATE
from statechange.ordering import best_pair, best_triplet

METRIC_NAMES = (
    "state_precision",
    "action_precision",
    "joint_state_precision",
    "joint_action_precision",
    "state_accuracy",
)
PERCENT = 100.0  # metrics are reported x100

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


class LengthMismatchWarning(UserWarning):
    """Predictions and annotation of a video differ in length; the shorter length was scored."""


@dataclass(frozen=True)
class VideoRecord:
    """The five metrics of one video (each in [0, 1]); ``state_accuracy`` is None for a video
    without frames labelled initial or end state, which does not count for that metric."""

    category: str
    key: str  # "category/video_id" (as data.index.VideoFile.key); "" when unknown
    state_precision: float
    action_precision: float
    joint_state_precision: float
    joint_action_precision: float
    state_accuracy: float | None

    def to_list(self) -> list[Any]:
        """Plain data: [category, key, the five metrics]."""
        return list(astuple(self))

    @classmethod
    def from_list(cls, values: Sequence[Any]) -> VideoRecord:
        category, key, sp, ap, jsp, jap, accuracy = values
        return cls(
            str(category), str(key), float(sp), float(ap), float(jsp), float(jap),
            None if accuracy is None else float(accuracy),
        )


def _as_float32(values: ArrayLike) -> torch.Tensor:
    """A CPU float32 tensor [T] (the release evaluates in float32)."""
    tensor = torch.as_tensor(values).detach().to(device="cpu", dtype=torch.float32)
    if tensor.dim() != 1:
        raise ValueError(f"Per-second predictions must be 1-D [T], got shape {tuple(tensor.shape)}.")
    return tensor


def _as_labels(labels: ArrayLike) -> np.ndarray:
    """Annotation labels as int64 numpy [T]."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"Labels must be 1-D [T], got shape {array.shape}.")
    return array


CHOSEN_LABELS = (ANNOTATION_INITIAL_STATE, ANNOTATION_ACTION, ANNOTATION_END_STATE)  # what each chosen second must be


def seconds_right(labels: ArrayLike, seconds: Sequence[int]) -> tuple[bool, bool, bool]:
    """Whether each chosen (initial state, action, end state) second lies on a second annotated as such:
    the rule of every precision@1 (a second past the annotation's end is not right)."""
    labels = _as_labels(labels)
    return tuple(bool(0 <= s < len(labels) and labels[s] == code)  # type: ignore[return-value]
                 for s, code in zip(seconds, CHOSEN_LABELS, strict=True))


def _state_pair_precision(right: tuple[bool, bool, bool]) -> float:
    """Half a point for a right initial-state second, half for a right end-state second."""
    return (int(right[0]) + int(right[2])) / 2


def _state_accuracy(initial: torch.Tensor, end: torch.Tensor, labels: np.ndarray) -> float | None:
    """Fraction of state-labelled seconds whose larger probability (initial wins ties) is right."""
    is_state = (labels == ANNOTATION_INITIAL_STATE) | (labels == ANNOTATION_END_STATE)
    if not is_state.any():
        return None
    says_initial = (initial >= end).numpy()  # [T]; argmax over (P_s1, P_s2), first maximum
    correct = np.where(says_initial, ANNOTATION_INITIAL_STATE, ANNOTATION_END_STATE) == labels
    return float(correct[is_state].mean())


def score_video(
    initial: ArrayLike,
    action: ArrayLike,
    end: ArrayLike,
    labels: ArrayLike,
    category: str,
    key: str = "",
) -> VideoRecord:
    """Score one video: ``initial``, ``action``, ``end`` are the per-second probabilities
    P_s1, P_a, P_s2 [T] of its category, ``labels`` its annotation [T'] (labels.ANNOTATION_*).

    When T != T' the shorter length is scored and a ``LengthMismatchWarning`` names the video.
    """
    initial, action, end = _as_float32(initial), _as_float32(action), _as_float32(end)
    labels = _as_labels(labels)
    name = key or category
    if not len(initial) == len(action) == len(end):
        raise ValueError(
            f"Video {name}: initial, action and end predictions differ in length "
            f"({len(initial)}, {len(action)}, {len(end)})."
        )
    length = min(len(initial), len(labels))
    if len(initial) != len(labels):
        warnings.warn(
            f"Video {name} has {len(initial)} seconds of predictions but {len(labels)} annotated seconds; "
            f"scoring the first {length}.",
            LengthMismatchWarning,
            stacklevel=2,
        )
    if length == 0:
        raise StateChangeError(f"Video {name} has no seconds to score; its predictions or annotation are empty.")
    initial, action, end, labels = initial[:length], action[:length], end[:length], labels[:length]

    action_index = int(torch.argmax(action))  # first maximum
    # best_pair / best_triplet give -1 when the video is too short; the release then keeps its start index 0.
    pair = [max(int(i), 0) for i in best_pair(initial, end)]
    triplet = [max(int(i), 0) for i in best_triplet(initial, action, end, max_distance=None)]
    separate = seconds_right(labels, (pair[0], action_index, pair[1]))  # each task on its own
    joint = seconds_right(labels, triplet)  # the causally ordered triplet
    return VideoRecord(
        category=category,
        key=key,
        state_precision=_state_pair_precision(separate),
        action_precision=float(separate[1]),
        joint_state_precision=_state_pair_precision(joint),
        joint_action_precision=float(joint[1]),
        state_accuracy=_state_accuracy(initial, end, labels),
    )


def _mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


def _percent(value: float | None) -> float | None:
    return None if value is None else value * PERCENT


class MetricsAccumulator:
    """Collects ``VideoRecord``s (from one rank or many) and averages them the ChangeIt way.

    A video key seen twice (e.g. a DistributedSampler padding ranks by repeating videos) counts
    once: the first record is kept. Records with an empty key are never merged.
    """

    def __init__(self, records: Iterable[VideoRecord] = ()) -> None:
        self._records: list[VideoRecord] = []
        self._keys: set[tuple[str, str]] = set()
        for record in records:
            self.add(record)

    @property
    def records(self) -> list[VideoRecord]:
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: VideoRecord) -> None:
        """Add one video's record (ignored when its key is already present)."""
        if record.key:
            if (record.category, record.key) in self._keys:
                return
            self._keys.add((record.category, record.key))
        self._records.append(record)

    def add_video(
        self, initial: ArrayLike, action: ArrayLike, end: ArrayLike, labels: ArrayLike, category: str, key: str = ""
    ) -> VideoRecord:
        """``score_video`` then ``add``; returns the record."""
        record = score_video(initial, action, end, labels, category, key)
        self.add(record)
        return record

    def merge(self, other: MetricsAccumulator) -> MetricsAccumulator:
        """Add every record of ``other`` (in place); returns self."""
        for record in other._records:
            self.add(record)
        return self

    def to_state(self) -> list[list[Any]]:
        """Plain lists (str / float / None), for ``all_gather_object`` or JSON."""
        return [record.to_list() for record in self._records]

    @classmethod
    def from_state(cls, state: Iterable[Sequence[Any]]) -> MetricsAccumulator:
        return cls(VideoRecord.from_list(values) for values in state)

    @classmethod
    def from_states(cls, states: Iterable[Iterable[Sequence[Any]]]) -> MetricsAccumulator:
        """Merge the states gathered from every rank, in rank order."""
        merged = cls()
        for state in states:
            merged.merge(cls.from_state(state))
        return merged

    def _by_category(self) -> dict[str, list[VideoRecord]]:
        groups: dict[str, list[VideoRecord]] = {}
        for record in self._records:
            groups.setdefault(record.category, []).append(record)
        return dict(sorted(groups.items()))

    def summary(self) -> dict[str, Any]:
        """The five metrics x100: mean over each category's videos, then over the categories.

        Categories without videos do not exist here and so are skipped; for ``state_accuracy`` the
        categories whose videos have no state-labelled second are skipped too. A metric with no
        video to average is None. ``per_category`` holds {category: {n_videos, the five x100}}.
        """
        per_category: dict[str, dict[str, Any]] = {}
        for category, records in self._by_category().items():
            row: dict[str, Any] = {"n_videos": len(records)}
            for name in METRIC_NAMES:
                row[name] = _percent(_mean(getattr(r, name) for r in records))
            per_category[category] = row
        summary: dict[str, Any] = {
            name: _mean(row[name] for row in per_category.values()) for name in METRIC_NAMES
        }
        summary["n_categories"] = len(per_category)
        summary["n_videos"] = len(self._records)
        summary["per_category"] = per_category
        return summary

    def format_table(self) -> str:
        """A per-category table (x100) and the overall line (mean over categories)."""
        summary = self.summary()
        headers = ("category", "videos", "state P@1", "action P@1", "joint state", "joint action", "state acc")
        width = max([len(headers[0]), *(len(c) for c in summary["per_category"])])
        overall = f"overall ({summary['n_categories']} categories)"
        width = max(width, len(overall))

        def line(first: str, n_videos: int, values: dict[str, Any]) -> str:
            cells = [f"{first:<{width}}", f"{n_videos:>{len(headers[1])}}"]
            for header, name in zip(headers[2:], METRIC_NAMES, strict=True):
                value = values[name]
                cells.append(f"{'-' if value is None else f'{value:.1f}':>{len(header)}}")
            return "  ".join(cells)

        rows = ["  ".join([f"{headers[0]:<{width}}", *headers[1:]])]
        rows += [line(c, row["n_videos"], row) for c, row in summary["per_category"].items()]
        rows.append(line(overall, summary["n_videos"], summary))
        return "\n".join(rows)
