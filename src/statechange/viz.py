"""Pictures of a prediction: the chosen frames above the probability timeline (matplotlib, lazily)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from statechange.inference import Prediction

CURVES = (  # (attribute, label, colour)
    ("initial_state", "initial state", "tab:blue"),
    ("action", "action", "tab:orange"),
    ("end_state", "end state", "tab:green"),
)
FIGURE_SIZE = (12.0, 6.0)  # inches
FIGURE_DPI = 100  # -> 1200 x 600 pixels


def plot_prediction(prediction: Prediction, images: Sequence[np.ndarray] | None, path: str | Path,
                    title: str | None = None) -> Path:
    """Write a PNG: the three chosen frames side by side, labelled, above the three probability curves
    with the chosen seconds marked. ``images`` are the frames at ``prediction.triplet`` (or None)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    grid = figure.add_gridspec(2, 3, height_ratios=(1.1, 1.0), hspace=0.35, wspace=0.05)
    triplet = prediction.triplet
    for column, (attribute, label, colour) in enumerate(CURVES):
        axis = figure.add_subplot(grid[0, column])
        axis.set_xticks([])
        axis.set_yticks([])
        if triplet is not None and images is not None:
            second = triplet[column]
            axis.imshow(images[column])
            probability = float(getattr(prediction, attribute)[second])
            axis.set_title(f"{label}: {_clock(second)}  (p = {probability:.2f})", color=colour, fontsize=11)
        else:
            axis.set_title(f"{label}: video too short", fontsize=11)
        for spine in axis.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(3)
    timeline = figure.add_subplot(grid[1, :])
    seconds = np.arange(prediction.duration)
    for column, (attribute, label, colour) in enumerate(CURVES):
        timeline.plot(seconds, getattr(prediction, attribute), color=colour, label=label, linewidth=1.5)
        if triplet is not None:
            timeline.axvline(triplet[column], color=colour, linestyle="--", linewidth=1.2)
    timeline.set_xlim(0, max(1, prediction.duration - 1))
    timeline.set_ylim(0, 1.02)
    timeline.set_xlabel("time (s)")
    timeline.set_ylabel("probability")
    timeline.legend(loc="upper right", ncols=3, fontsize=9)
    figure.suptitle(title or f"{Path(prediction.video).name} - {prediction.category}{_sureness(prediction)}",
                    fontsize=13, color="tab:red" if prediction.no_clear_change else "black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=FIGURE_DPI)
    plt.close(figure)
    return path


def save_prediction(prediction: Prediction, output: str | Path, video_id: str) -> tuple[Path, Path]:
    """Write ``<output>/<category>/<video_id>``.csv (per second), .json (summary) and .png (picture).

    Returns (csv path, png path); the picture shows the frames the prediction kept (no second decode).
    """
    from statechange.predictions import prediction_path, write_predictions

    csv_path = write_predictions(prediction_path(output, prediction.category, video_id),
                                 prediction.initial_state, prediction.action, prediction.end_state)
    csv_path.with_suffix(".json").write_text(json.dumps(prediction.summary(), indent=2) + "\n")
    return csv_path, plot_prediction(prediction, prediction.triplet_frames, csv_path.with_suffix(".png"))


def _sureness(prediction: Prediction) -> str:
    """The title's note on the triplet score: the score, and the flag when it is below the threshold."""
    if prediction.triplet_score is None:
        return ""
    flag = " - NO CLEAR STATE CHANGE" if prediction.no_clear_change else ""
    return f"  (triplet score {prediction.triplet_score:.2f}{flag})"


def _clock(second: int) -> str:
    minutes, seconds = divmod(int(second), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
