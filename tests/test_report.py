"""`statechange evaluate --report DIR`: the static HTML report, on real encoded synthetic videos and a
checkpoint of the tiny backbone trained in the test, checked as written and as rendered by headless
Chromium (Debian's `chromium`; those tests skip without it)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from statechange.cli import main
from statechange.config import ForwardSettings
from statechange.data.index import build_index, read_annotation
from statechange.evaluate import chance_summary, evaluate_checkpoint
from statechange.inference import Prediction
from statechange.metrics import score_video
from statechange.predictions import read_predictions
from statechange.viz import FIGURE_DPI, FIGURE_SIZE, RIGHT_COLOUR, WRONG_COLOUR, prediction_figure

pytestmark = pytest.mark.slow  # evaluates with the shared tiny checkpoint (trained once per session)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                    "(apt-get install chromium): the report is not rendered in a browser")
WINDOW = (1280, 1600)  # the screenshot's size in pixels


@pytest.fixture(scope="module")
def evaluated(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`statechange evaluate --report` with its per-second predictions and JSON metrics."""
    out = tmp_path_factory.mktemp("report")
    args = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--video-roots", str(tiny_dataset / "videos"),
            "--dataset-root", str(tiny_dataset / "dataset"), "--device", "cpu", "--no-progress", "--json",
            "--report", str(out / "report"), "--predictions-out", str(out / "predictions")]
    assert main(args) == 0
    return {"report": out / "report", "predictions": out / "predictions", "dataset": tiny_dataset}


class _Page(HTMLParser):
    """The report's tables as text cells, its rows' data attributes and every linked resource."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.rows: list[dict[str, str]] = []  # data-* of each video row
        self.marks: list[list[str]] = []  # class (right / wrong) of each chosen second, per video row
        self.resources: list[str] = []  # src / href of every element
        self.tags: set[str] = set()
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        self.tags.add(tag)
        self.resources += [value for name, value in attrs if name in ("src", "href")]
        if tag == "table":
            self._table = attributes.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
            if attributes.get("class") == "video":
                self.rows.append({k.removeprefix("data-"): v for k, v in attrs if k.startswith("data-")})
                self.marks.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "span" and self.marks and attributes.get("class") in ("right", "wrong"):
            self.marks[-1].append(attributes["class"])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_report_is_self_contained_with_the_table_beside_chance_and_a_row_per_test_video(evaluated):
    report = evaluated["report"]
    page = parse(report / "index.html")
    assert not {"link", "iframe", "object"} & page.tags  # styles and script are inline
    text = (report / "index.html").read_text()
    assert "http://" not in text and "https://" not in text  # nothing fetched from the network
    for resource in page.resources:  # every picture is a file inside the report folder
        assert not re.match(r"[a-z]+:", resource) and not resource.startswith("/"), resource
        assert (report / resource).resolve().is_relative_to(report.resolve()) and (report / resource).is_file()

    index = build_index([evaluated["dataset"] / "videos"], evaluated["dataset"] / "dataset")
    assert sorted((row["category"], row["video"]) for row in page.rows) == sorted(
        (v.category, v.video_id) for v in index.test)
    chance = chance_summary(index.test)
    table = {row[0]: row for row in page.tables["metrics"][2:]}  # two header rows
    for category in {v.category for v in index.test}:
        cells = table[category]
        assert cells[1] == str(sum(v.category == category for v in index.test))
        expected_chance = chance["per_category"][category]["action_precision"]
        assert cells[5] == f"{expected_chance:.1f}"  # action P@1: model in 4, chance beside it in 5
    assert table[next(k for k in table if k.startswith("overall"))][3] == f"{chance['state_precision']:.1f}"


def test_each_rows_marks_and_picture_follow_the_metric(evaluated):
    report, predictions = evaluated["report"], evaluated["predictions"]
    page = parse(report / "index.html")
    index = {(v.category, v.video_id): v for v in build_index([evaluated["dataset"] / "videos"],
                                                                evaluated["dataset"] / "dataset").test}
    for row, marks in zip(page.rows, page.marks, strict=True):
        video = index[(row["category"], row["video"])]
        labels = read_annotation(video.annotation)
        curves = read_predictions(predictions / video.category / f"{video.video_id}.csv")
        record = score_video(*curves, labels, video.category)  # the metric's own verdict
        right = [mark == "right" for mark in marks]
        assert float(right[1]) == record.joint_action_precision
        assert (right[0] + right[2]) / 2 == record.joint_state_precision
        assert int(row["right"]) == sum(right)
        # the picture's marks on the timeline have the same verdicts
        prediction = Prediction.from_curves(str(video.path), video.category, *map(np.asarray, curves))
        figure = prediction_figure(prediction, None, annotation=labels)
        figure.canvas.draw()
        picture_path = report / "pictures" / video.category / f"{video.video_id}.png"
        with Image.open(picture_path) as image:
            assert image.size == (int(FIGURE_SIZE[0] * FIGURE_DPI), int(FIGURE_SIZE[1] * FIGURE_DPI))
            picture = np.asarray(image.convert("RGB"), dtype=np.int16)
        timeline = figure.axes[-1]
        for second, is_right in zip(prediction.triplet, right, strict=True):
            column, from_bottom = timeline.get_xaxis_transform().transform((second, 1.0))
            pixel = picture[round(float(figure.bbox.height - from_bottom)), round(float(column))]
            np.testing.assert_allclose(pixel, np.array(to_rgb(RIGHT_COLOUR if is_right else WRONG_COLOUR)) * 255,
                                       atol=6)


def test_python_api_writes_the_report_and_lists_an_unreadable_video(tiny_checkpoint, tiny_dataset, tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(tiny_dataset / "videos", videos)
    broken = build_index([videos], tiny_dataset / "dataset").test[-1]
    broken.path.write_bytes(b"not a video")
    result = evaluate_checkpoint(tiny_checkpoint, [videos], tiny_dataset / "dataset",
                                 ForwardSettings("cpu", "fp32"), report_dir=tmp_path / "report")
    assert result.report == tmp_path / "report" / "index.html" and result.report.is_file()
    records = {r.key: r for r in result.metrics.records}
    assert len(result.report_videos) == len(records) and broken.key not in records
    page = parse(result.report)
    assert broken.video_id not in {row["video"] for row in page.rows}
    assert f"{broken.key}: " in result.report.read_text()  # named among the videos not scored, with the reason
    for video in result.report_videos:
        record = records[f"{video.category}/{video.video_id}"]
        assert float(video.right[1]) == record.joint_action_precision
        assert (video.right[0] + video.right[2]) / 2 == record.joint_state_precision
        assert (tmp_path / "report" / video.picture).is_file()


# --- in a real browser ------------------------------------------------------------------------

# Appended to a copy of the report (beside it, so its relative pictures resolve): once the page and its
# images have loaded, it records each image's natural width and the row order after clicking the headers.
PROBE = """<script>
window.addEventListener("load", function () {
  const order = function () {
    return Array.from(document.querySelectorAll("#videos tbody tr")).map(function (r) {
      return [r.dataset.category, r.dataset.video, Number(r.dataset.right)]; });
  };
  const click = function (key) { document.querySelector('#videos th[data-sort="' + key + '"] button').click(); };
  const seen = {widths: Array.from(document.images).map(function (i) { return i.naturalWidth; }),
                metric_rows: document.querySelectorAll("#metrics tbody tr").length, initial: order()};
  click("right"); seen.right = order();
  click("right"); seen.right_again = order();
  click("category"); seen.category = order();
  click("category"); seen.category_again = order();
  const out = document.createElement("pre"); out.id = "probe"; out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>"""


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with a throw-away profile (``--no-sandbox``: tests may run as root)."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=120)


def rendered(report: Path, profile: Path) -> dict:
    """What the probe saw in Chromium's DOM after the page's JavaScript ran."""
    probe = report / "probe.html"
    probe.write_text((report / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(profile, "--dump-dom", probe.as_uri()).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, f"the probe did not run; Chromium printed: {dom[:500]}"
    return json.loads(html.unescape(found.group(1)))


@needs_chromium
def test_chromium_renders_the_tables_loads_every_picture_and_sorts(evaluated, tmp_path):
    report = tmp_path / "report"
    shutil.copytree(evaluated["report"], report)  # the folder moves as a whole
    seen = rendered(report, tmp_path / "profile")
    n_videos = len(parse(report / "index.html").rows)
    assert seen["metric_rows"] == len({row["category"] for row in parse(report / "index.html").rows}) + 1
    assert len(seen["initial"]) == n_videos and seen["widths"] == [1200] * n_videos  # every picture decoded

    most_right_first = sorted(seen["initial"], key=lambda r: (-r[2], r[0], r[1]))
    assert seen["right"] == most_right_first
    assert seen["right_again"] == sorted(seen["initial"], key=lambda r: (r[2], r[0], r[1]))
    assert seen["category"] == sorted(seen["initial"], key=lambda r: (r[0], r[1]))
    assert [r[0] for r in seen["category_again"]] == sorted((r[0] for r in seen["initial"]), reverse=True)
    if len({r[2] for r in seen["initial"]}) > 1:  # the verdicts differ: sorting by them moves rows
        assert [r[2] for r in seen["right"]] != [r[2] for r in seen["right_again"]]


@needs_chromium
def test_chromium_screenshot_shows_the_report(evaluated, tmp_path):
    screenshot = tmp_path / "report.png"
    result = chromium(tmp_path / "profile", f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={screenshot}",
                      (evaluated["report"] / "index.html").as_uri())
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000, result.stderr[-500:]
    with Image.open(screenshot) as image:
        assert image.format == "PNG" and image.size == WINDOW
        colours = np.asarray(image.convert("RGB").resize((320, 400)))
    # the pictures drew: besides text on white, the shaded spans and frames give many colours
    assert len(np.unique(colours.reshape(-1, 3), axis=0)) > 500
