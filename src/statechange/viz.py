"""Pictures of a prediction: the chosen frames above the probability timeline (matplotlib, lazily)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from statechange.inference import Prediction

if TYPE_CHECKING:  # matplotlib is imported only when a picture is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CURVES = (  # (attribute, label, colour)
    ("initial_state", "initial state", "tab:blue"),
    ("action", "action", "tab:orange"),
    ("end_state", "end state", "tab:green"),
)
FIGURE_SIZE = (12.0, 6.0)  # inches
FIGURE_DPI = 100  # -> 1200 x 600 pixels
FIGURE_RIGHT = 0.81  # the plots end here (fraction of the width); the legend sits right of the timeline
ANNOTATION_ALPHA = 0.22  # opacity of the annotated seconds' shading under the curves
RIGHT_COLOUR = "#1a9850"  # the mark of a chosen second that lies on its annotated label
WRONG_COLOUR = "#d73027"  # ... and of one that does not
MARK_SIZE = 11  # points; the marks sit on the top edge of the timeline, above each chosen second
TIME_TICK_STEPS = (1, 1.5, 2, 3, 5, 6, 10)  # tick spacings x 10^k seconds: 1, 2, 5, 10, 15, 30, 60 s ...


def plot_prediction(prediction: Prediction, images: Sequence[np.ndarray] | None, path: str | Path,
                    title: str | None = None, annotation: np.ndarray | None = None) -> Path:
    """Write ``prediction_figure`` as a PNG of FIGURE_SIZE x FIGURE_DPI pixels."""
    import matplotlib.pyplot as plt

    figure = prediction_figure(prediction, images, title, annotation)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=FIGURE_DPI)
    plt.close(figure)
    return path


def prediction_figure(prediction: Prediction, images: Sequence[np.ndarray] | None, title: str | None = None,
                      annotation: np.ndarray | None = None) -> Figure:
    """The three chosen frames side by side, labelled, above the three probability curves with the chosen
    seconds marked. ``images`` are the frames at ``prediction.triplet`` (or None). ``annotation`` (labels
    per second, labels.ANNOTATION_*) shades the annotated seconds under the curves and marks each chosen
    second right or wrong (``metrics.seconds_right``, the rule of the metrics)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    grid = figure.add_gridspec(2, 3, height_ratios=(1.1, 1.0), hspace=0.4, wspace=0.05, right=FIGURE_RIGHT)
    triplet = prediction.triplet
    right = annotation_verdicts(prediction, annotation)
    for column, (attribute, label, colour) in enumerate(CURVES):
        axis = figure.add_subplot(grid[0, column])
        axis.set_xticks([])
        axis.set_yticks([])
        if triplet is not None and images is not None:
            axis.imshow(images[column])
        if triplet is not None:
            second = triplet[column]
            probability = float(getattr(prediction, attribute)[second])
            verdict = "" if right is None else (" - right" if right[column] else " - wrong")
            axis.set_title(f"{label}: {clock(second)}  (p = {probability:.2f}){verdict}", color=colour, fontsize=11)
        else:
            axis.set_title(f"{label}: video too short", fontsize=11)
        for spine in axis.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(3)
    _draw_timeline(figure.add_subplot(grid[1, :]), prediction, annotation, right)
    figure.suptitle(title or f"{Path(prediction.video).name} - {prediction.category}{_sureness(prediction)}",
                    fontsize=13, color="tab:red" if prediction.no_clear_change else "black")
    return figure


def annotation_verdicts(prediction: Prediction, annotation: np.ndarray | None) -> tuple[bool, bool, bool] | None:
    """Whether each chosen second is right by ``annotation``; None without an annotation or a triplet."""
    from statechange.metrics import seconds_right

    if annotation is None or prediction.triplet is None:
        return None
    return seconds_right(annotation, prediction.triplet)


def _draw_timeline(timeline: Axes, prediction: Prediction, annotation: np.ndarray | None,
                   right: tuple[bool, bool, bool] | None) -> None:
    """The curves over the seconds (m:ss), the annotated spans shaded beneath, the chosen seconds dashed
    and, with an annotation, marked right or wrong on the top edge; the legend right of the axes."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from statechange.metrics import CHOSEN_LABELS

    seconds = np.arange(prediction.duration)
    handles: list = []
    for column, (attribute, label, colour) in enumerate(CURVES):
        (line,) = timeline.plot(seconds, getattr(prediction, attribute), color=colour, label=label, linewidth=1.5,
                                zorder=2)
        handles.append(line)
        if prediction.triplet is not None:
            timeline.axvline(prediction.triplet[column], color=colour, linestyle="--", linewidth=1.2, zorder=3)
    if annotation is not None:
        for code, (_, label, colour) in zip(CHOSEN_LABELS, CURVES, strict=True):
            for first, last in _runs(np.asarray(annotation) == code):
                # second s covers [s - 0.5, s + 0.5], as the curve's point at s
                timeline.axvspan(first - 0.5, last + 0.5, color=colour, alpha=ANNOTATION_ALPHA, linewidth=0, zorder=1)
            handles.append(Patch(color=colour, alpha=ANNOTATION_ALPHA, label=f"annotated {label}"))
    if right is not None and prediction.triplet is not None:
        top = timeline.get_xaxis_transform()  # x in seconds, y in axes fractions
        for second, is_right in zip(prediction.triplet, right, strict=True):
            timeline.plot([second], [1.0], transform=top, clip_on=False, linestyle="none", zorder=5,
                          marker="o" if is_right else "X", markersize=MARK_SIZE, markeredgecolor="white",
                          markerfacecolor=RIGHT_COLOUR if is_right else WRONG_COLOUR)
        handles += [Line2D([], [], linestyle="none", marker=marker, markersize=MARK_SIZE * 0.8, markerfacecolor=colour,
                           markeredgecolor="white", label=label)
                    for marker, colour, label in (("o", RIGHT_COLOUR, "chosen second right"),
                                                  ("X", WRONG_COLOUR, "chosen second wrong"))]
    # half a second of margin on each side: a mark at second 0 (or at the last second) is whole
    timeline.set_xlim(-0.5, max(prediction.duration, 2) - 0.5)
    timeline.set_ylim(0, 1.02)
    timeline.xaxis.set_major_locator(MaxNLocator(nbins=12, steps=list(TIME_TICK_STEPS), integer=True))
    timeline.xaxis.set_major_formatter(FuncFormatter(lambda value, _: clock(round(value)) if value >= 0 else ""))
    timeline.set_xlabel("time (m:ss)")
    timeline.set_ylabel("probability")
    timeline.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False,
                    borderaxespad=0.0)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) indices of each run of True in a 1-D boolean array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))  # starts at even positions, ends (exclusive) at odd ones
    return [(int(start), int(stop) - 1) for start, stop in zip(edges[::2], edges[1::2], strict=True)]


def save_prediction(prediction: Prediction, output: str | Path, video_id: str,
                    annotation: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``<output>/<category>/<video_id>``.csv (per second), .json (summary) and .png (picture).

    Returns (csv path, png path); the picture shows the frames the prediction kept (no second decode).
    With an ``annotation`` file (ChangeIt ``second,label``), the picture shades the annotated seconds and
    marks each chosen second right or wrong, and the JSON summary says which (``annotation``).
    """
    from statechange.data.index import read_annotation
    from statechange.predictions import prediction_path, write_predictions

    labels = None if annotation is None else read_annotation(annotation)
    csv_path = write_predictions(prediction_path(output, prediction.category, video_id),
                                 prediction.initial_state, prediction.action, prediction.end_state)
    summary = prediction.summary()
    if annotation is not None:
        right = annotation_verdicts(prediction, labels)
        summary["annotation"] = {"file": str(annotation), "right": None if right is None else dict(
            zip(("initial_state", "action", "end_state"), right, strict=True))}
    csv_path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return csv_path, plot_prediction(prediction, prediction.triplet_frames, csv_path.with_suffix(".png"),
                                     annotation=labels)


def _sureness(prediction: Prediction) -> str:
    """The title's note on the triplet score: the score, and the flag when it is below the threshold."""
    if prediction.triplet_score is None:
        return ""
    flag = " - NO CLEAR STATE CHANGE" if prediction.no_clear_change else ""
    return f"  (triplet score {prediction.triplet_score:.2f}{flag})"


def clock(second: int) -> str:
    """A second as m:ss (h:mm:ss from an hour on), as the time axis and the report write it."""
    minutes, seconds = divmod(int(second), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
