"""The evaluation report: one static HTML page (``<DIR>/index.html``) that needs no network to view.

It holds the per-category metrics beside chance and one row per test video with its picture
(``<DIR>/pictures/<category>/<video_id>.png``, relative links: the folder moves as a whole), each chosen
second marked right or wrong by the rule of the metrics. The rows sort by category and by correctness
with a few lines of inline JavaScript; the styles are inline too.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from statechange.inference import Frames, Prediction
from statechange.metrics import METRIC_NAMES, VideoRecord

REPORT_FILE = "index.html"
METRICS_FILE = "metrics.json"  # the same numbers, for scripts
PICTURES_DIR = "pictures"  # <DIR>/pictures/<category>/<video_id>.png
METRIC_HEADERS = ("state P@1", "action P@1", "joint state", "joint action", "state acc")  # as format_table
CHOSEN_NAMES = ("initial state", "action", "end state")


@dataclass(frozen=True)
class ReportVideo:
    """One test video's row: where its picture is and what the model chose, right or wrong."""

    category: str
    video_id: str
    picture: str  # relative to the report folder
    seconds: tuple[int, int, int] | None  # the chosen (initial state, action, end state); None if T < 3
    right: tuple[bool, bool, bool] | None  # each chosen second on its annotated label (metrics.seconds_right)
    triplet_score: float | None
    joint_state_precision: float  # the video's own metrics (metrics.score_video), in [0, 1]
    joint_action_precision: float

    @property
    def n_right(self) -> int:
        """How many of the three chosen seconds are right (0 when the video is too short for a triplet)."""
        return sum(self.right) if self.right is not None else 0


def picture_path(category: str, video_id: str) -> str:
    """Where a video's picture goes, relative to the report folder."""
    return f"{PICTURES_DIR}/{category}/{video_id}.png"


def add_video(report_dir: Path, video: str | Path, category: str, video_id: str,
              curves: tuple[torch.Tensor, torch.Tensor, torch.Tensor], labels: np.ndarray, record: VideoRecord,
              frames: Frames | None) -> ReportVideo:
    """Draw one evaluated video's picture into the report folder and return its row.

    ``curves`` are the evaluated (initial, action, end) probabilities [T]; ``labels`` its annotation [T'];
    ``frames`` its uint8 frames [T, H, W, 3] for the picture (None: a picture without them).
    """
    from statechange.viz import annotation_verdicts, plot_prediction

    prediction = Prediction.from_curves(str(video), category, *curves, frames=frames)
    relative = picture_path(category, video_id)
    plot_prediction(prediction, prediction.triplet_frames, report_dir / relative, annotation=labels)
    return ReportVideo(category, video_id, relative, prediction.triplet, annotation_verdicts(prediction, labels),
                       prediction.triplet_score, record.joint_state_precision, record.joint_action_precision)


def write_report(report_dir: Path, summary: dict[str, Any], chance: dict[str, Any], videos: Sequence[ReportVideo],
                 title: str, failed: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``<report_dir>/index.html`` (and ``metrics.json``); the pictures are already there (``add_video``).

    ``summary`` is ``MetricsAccumulator.summary()``, ``chance`` ``evaluate.chance_summary`` of the same videos,
    ``failed`` the (video key, reason) of videos that could not be read (listed, not scored).
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    rows = sorted(videos, key=lambda v: (v.category, v.video_id))
    skipped = "".join(f"<li>{html.escape(key)}: {html.escape(reason)}</li>" for key, reason in failed)
    page = _PAGE.format(title=html.escape(title), style=_STYLE, script=_SCRIPT,
                        failed=f"<p>Not scored (unreadable):</p><ul>{skipped}</ul>" if failed else "",
                        n_videos=len(rows), n_categories=summary["n_categories"],
                        metrics=_metrics_table(summary, chance), videos="\n".join(_video_row(v) for v in rows))
    (report_dir / METRICS_FILE).write_text(json.dumps(
        {"title": title, "model": summary, "chance": chance, "videos": [asdict(v) for v in rows],
         "failed": [list(item) for item in failed]}, indent=2) + "\n")
    path = report_dir / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _metrics_table(summary: dict[str, Any], chance: dict[str, Any]) -> str:
    """The per-category table: each metric of the model with chance beside it (x100), then the overall row."""
    head = "".join(f'<th colspan="2">{name}</th>' for name in METRIC_HEADERS)
    sub = "".join('<th>model</th><th class="chance">chance</th>' for _ in METRIC_HEADERS)
    lines = ['<thead><tr><th rowspan="2">category</th><th rowspan="2">videos</th>'
             f"{head}</tr><tr>{sub}</tr></thead>", "<tbody>"]

    def row(name: str, values: dict[str, Any], chance_values: dict[str, Any], css: str) -> str:
        cells = "".join(f"<td>{_cell(values.get(m))}</td><td class=\"chance\">{_cell(chance_values.get(m))}</td>"
                        for m in METRIC_NAMES)
        return f'<tr class="{css}"><td>{html.escape(name)}</td><td>{values["n_videos"]}</td>{cells}</tr>'

    chance_rows = chance.get("per_category", {})
    for category, values in summary["per_category"].items():
        lines.append(row(category, values, chance_rows.get(category, {}), "category"))
    lines.append(row(f"overall ({summary['n_categories']} categories)", summary, chance, "overall"))
    lines.append("</tbody>")
    return "\n".join(lines)


def _video_row(video: ReportVideo) -> str:
    """One ``<tr>``: category, video, the chosen seconds marked right or wrong, the count right, the picture."""
    from statechange.viz import clock

    if video.seconds is None:
        chosen = "too short for a triplet"
    else:
        marks = video.right if video.right is not None else (None, None, None)
        chosen = "<br>".join(
            f'<span class="{"right" if ok else "wrong"}">{"&#10004;" if ok else "&#10008;"} {name} '
            f"{clock(second)}</span>"
            for name, second, ok in zip(CHOSEN_NAMES, video.seconds, marks, strict=True))
    score = "-" if video.triplet_score is None else f"{video.triplet_score:.2f}"
    name = html.escape(video.video_id)
    return (f'<tr class="video" data-category="{html.escape(video.category)}" data-video="{name}" '
            f'data-right="{video.n_right}">'
            f"<td>{html.escape(video.category)}</td><td>{name}</td><td>{chosen}</td>"
            f"<td>{video.n_right} / 3<br><small>joint state {video.joint_state_precision * 100:.0f}<br>"
            f"joint action {video.joint_action_precision * 100:.0f}<br>triplet score {score}</small></td>"
            f'<td><a href="{html.escape(video.picture)}"><img src="{html.escape(video.picture)}" '
            f'alt="prediction of {name}" width="600"></a></td></tr>')


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
td:first-child, th:first-child, #videos td { text-align: left; }
th { background: #f2f2f2; }
th button { font: inherit; font-weight: bold; border: none; background: none; cursor: pointer; padding: 0; }
th button::after { content: " \\2195"; color: #888; }
.chance { color: #777; }
tr.overall { font-weight: bold; }
.right { color: #1a9850; }
.wrong { color: #d73027; }
img { display: block; max-width: 600px; height: auto; }
#videos th { text-align: left; }
#videos td:nth-child(3), #videos td:nth-child(4) { white-space: nowrap; }
"""

# Clicking a sortable header orders the rows by it (category A to Z, right: most first; clicked again: reversed);
# ties keep category, then video, order.
_SCRIPT = """
function sortVideos(key) {
  const body = document.querySelector("#videos tbody");
  const header = document.querySelector('#videos th[data-sort="' + key + '"]');
  const first = key === "right" ? "descending" : "ascending";
  const order = header.dataset.order === first ? (first === "ascending" ? "descending" : "ascending") : first;
  document.querySelectorAll("#videos th[data-sort]").forEach(function (th) { delete th.dataset.order; });
  header.dataset.order = order;
  const descending = order === "descending";
  const value = function (row) { return key === "right" ? Number(row.dataset.right) : row.dataset.category; };
  const rows = Array.from(body.rows);
  rows.sort(function (a, b) {
    const x = value(a), y = value(b);
    const sign = x < y ? -1 : x > y ? 1 : 0;
    if (sign !== 0) { return descending ? -sign : sign; }
    return (a.dataset.category + "/" + a.dataset.video).localeCompare(b.dataset.category + "/" + b.dataset.video);
  });
  rows.forEach(function (row) { body.appendChild(row); });
}
document.querySelectorAll("#videos th[data-sort] button").forEach(function (button) {
  button.addEventListener("click", function () { sortVideos(button.parentElement.dataset.sort); });
});
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
<p>{n_videos} annotated test videos of {n_categories} categories. Metrics x100, averaged over each category's
videos, then over the categories; chance: uniformly random per-second probabilities scored the same way.</p>
{failed}
<table id="metrics">
{metrics}
</table>
<h2>Test videos</h2>
<p>Each picture shades the annotated seconds (initial state, action, end state) under the predicted curves and
marks each chosen second right (green dot) or wrong (red cross). Click a column name to sort.</p>
<table id="videos">
<thead><tr><th data-sort="category"><button type="button">category</button></th><th>video</th><th>chosen seconds</th>
<th data-sort="right"><button type="button">right</button></th><th>picture</th></tr></thead>
<tbody>
{videos}
</tbody>
</table>
<script>{script}</script>
</body>
</html>
"""
