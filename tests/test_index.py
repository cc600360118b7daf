"""The ChangeIt dataset index: against the real ChangeIt metadata (a video root of empty, named files:
the index never opens a video) and against small hand-written datasets for every user error."""

from __future__ import annotations

import csv
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest

from statechange.cli import main
from statechange.config import LossConfig
from statechange.data.index import build_index, expand_videos, read_annotation, video_weight
from statechange.errors import StateChangeError

CHANGEIT = Path(os.environ.get("STATECHANGE_CHANGEIT", "/work/shared/changeit"))
TEMPERATURE = LossConfig().relevance_temperature

needs_changeit = pytest.mark.skipif(
    not (CHANGEIT / "categories.csv").is_file(),
    reason=f"the ChangeIt metadata is not at {CHANGEIT} (set STATECHANGE_CHANGEIT to its folder)",
)


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def listed_scores(category: str) -> dict[str, float]:
    """video_id -> relevance score of one category, read independently of the code under test."""
    with (CHANGEIT / "videos" / f"{category}.csv").open() as file:
        return {row[0]: float(row[1]) for row in csv.reader(file) if row}


def annotated_ids(category: str) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (CHANGEIT / "annotations" / category).glob("*.fps1.csv"))


@pytest.fixture
def changeit_root(tmp_path: Path) -> dict[str, list[str]]:
    """A video root with a few real ids of two categories: some annotated, some only listed."""
    chosen = {
        "bacon": annotated_ids("bacon")[:2]
        + [i for i in listed_scores("bacon") if i not in annotated_ids("bacon")][:3],
        "apple": annotated_ids("apple")[:1]
        + [i for i in listed_scores("apple") if i not in annotated_ids("apple")][:1],
    }
    for number, (category, ids) in enumerate(sorted(chosen.items())):
        for video_id in ids:
            touch(tmp_path / "videos" / category / f"{video_id}{('.mp4', '.webm')[number % 2]}")
    return chosen


@needs_changeit
def test_real_changeit_metadata(tmp_path: Path, changeit_root: dict[str, list[str]]) -> None:
    index = build_index([tmp_path / "videos"], CHANGEIT)

    assert index.categories == ["apple", "bacon"]
    with (CHANGEIT / "categories.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(index.action_names) == len(rows) == 44
    assert index.action_name("bacon") == next(r["ACTION_NAME"] for r in rows if r["DIR_NAME"] == "bacon")

    n_annotations = sum(1 for _ in (CHANGEIT / "annotations").glob("*/*.fps1.csv"))
    n_present_annotated = 3  # two bacon and one apple video
    assert n_annotations == 667
    assert len(index.test) == n_present_annotated
    assert len(index.train) == 4
    assert len(index.report.annotations_without_video) == n_annotations - n_present_annotated
    assert len(index.report.dataset_categories_without_videos) == 42

    for summary in index.report.categories:
        ids = changeit_root[summary.name]
        assert summary.n_listed_without_file == len(listed_scores(summary.name)) - len(ids)
        theta = next(float(r["CENTERING_PARAM"]) for r in rows if r["DIR_NAME"] == summary.name)
        assert summary.centering == theta
        train_scores = [listed_scores(summary.name)[i] for i in ids if i not in annotated_ids(summary.name)]
        assert summary.n_train_above_threshold == sum(score > theta for score in train_scores)

    for video in index.videos:
        theta = index.report.categories[video.category_index].centering
        score = listed_scores(video.category)[video.video_id]
        expected = 1.0 / (1.0 + math.exp(-(score - theta) / TEMPERATURE))
        assert index.weight_of(video) == pytest.approx(expected, rel=1e-9, abs=1e-300)
        assert (video.split == "test") == (video.annotation is not None)
        if video.annotation is not None:
            rows_in_file = video.annotation.read_text().strip().splitlines()
            assert len(read_annotation(video.annotation)) == len(rows_in_file)

    printed = index.report.format()
    bacon = next(line for line in printed.splitlines() if line.startswith("> bacon"))
    assert "train     3" in bacon and "test    2" in bacon
    assert f"annotations with no video file: {n_annotations - n_present_annotated}" in printed


@needs_changeit
def test_unscored_videos_need_ignore_video_weight(tmp_path: Path, changeit_root: dict[str, list[str]]) -> None:
    touch(tmp_path / "videos" / "bacon" / "notAChangeItId.mp4")
    with pytest.raises(StateChangeError, match="--ignore-video-weight") as error:
        build_index([tmp_path / "videos"], CHANGEIT)
    assert "bacon/notAChangeItId" in str(error.value) and "videos" in str(error.value)

    index = build_index([tmp_path / "videos"], CHANGEIT, ignore_video_weight=True)
    assert [index.weight_of(v) for v in index.train] == [1.0] * len(index.train)
    assert index.report.train_without_relevance == ("bacon/notAChangeItId",)


@needs_changeit
def test_dataset_command_prints_the_report(
    tmp_path: Path, changeit_root: dict[str, list[str]], capsys: pytest.CaptureFixture
) -> None:
    assert main(["dataset", "--video-roots", str(tmp_path / "videos"), "--dataset-root", str(CHANGEIT)]) == 0
    out = capsys.readouterr().out
    assert "> apple" in out and "> bacon" in out and "Total: 2 categories" in out

    touch(tmp_path / "videos" / "zucchini" / "abc.mp4")  # a category ChangeIt does not know
    assert main(["dataset", "--video-roots", str(tmp_path / "videos"), "--dataset-root", str(CHANGEIT)]) == 2
    captured = capsys.readouterr()
    assert "> zucchini" in captured.out
    assert "CENTERING_PARAM" in captured.err and "zucchini" in captured.err


def small_dataset(root: Path) -> tuple[Path, Path]:
    """Two categories, three videos in two roots, one annotated; scores and centring for all."""
    videos, other, dataset = root / "videos", root / "more-videos", root / "dataset"
    touch(videos / "cut" / "a1.mp4")
    touch(videos / "cut" / "a2.webm")
    touch(other / "fry" / "b1.mp4")
    touch(videos / ".cache" / "x.mp4")  # hidden folders are not categories
    touch(dataset / "categories.csv", 'DIR_NAME,ACTION_NAME,CENTERING_PARAM\ncut,"Cutting",0.4\nfry,"Frying",0.3\n')
    touch(dataset / "videos" / "cut.csv", "a1,0.45\na2,0.35\ngone,0.9\n")
    touch(dataset / "videos" / "fry.csv", "b1,0.3\n")
    touch(dataset / "annotations" / "cut" / "a2.fps1.csv", "0,0\n1,1\n2,2\n3,3\n")
    return videos, other


def test_splits_weights_and_order(tmp_path: Path) -> None:
    videos, other = small_dataset(tmp_path)
    index = build_index([videos, other], tmp_path / "dataset")

    assert index.categories == ["cut", "fry"]
    assert [(v.key, v.split, v.category_index, v.path.suffix) for v in index.videos] == [
        ("cut/a1", "train", 0, ".mp4"),
        ("cut/a2", "test", 0, ".webm"),
        ("fry/b1", "train", 1, ".mp4"),
    ]
    weights = {v.key: index.weight_of(v) for v in index.videos}
    assert weights["cut/a1"] == pytest.approx(1.0) and weights["fry/b1"] == pytest.approx(0.5)
    np.testing.assert_array_equal(read_annotation(index.test[0].annotation), [0, 1, 2, 3])
    assert index.category_index("fry") == 1
    with pytest.raises(StateChangeError, match="Unknown category 'bake'"):
        index.category_index("bake")
    assert index.report.categories[0].n_listed_without_file == 1  # "gone"


def test_without_dataset_root_every_video_trains_with_weight_one(tmp_path: Path) -> None:
    videos, _ = small_dataset(tmp_path)
    with pytest.raises(StateChangeError, match=r"--dataset-root .* or --ignore-video-weight"):
        build_index([videos], None)
    index = build_index([videos], None, ignore_video_weight=True)
    assert index.test == [] and len(index.train) == 2
    assert {index.weight_of(v) for v in index.train} == {1.0}
    assert "No dataset root" in index.report.format()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d / "categories.csv").unlink(), "categories.csv does not exist"),
        (lambda d: touch(d / "categories.csv", "DIR_NAME,ACTION_NAME,CENTERING_PARAM\ncut,Cutting,0.4\n"),
         "no CENTERING_PARAM for 1 categories \\(fry\\)"),
        (lambda d: touch(d / "categories.csv", "name,theta\ncut,0.4\n"), "must start with the header line"),
        (lambda d: touch(d / "categories.csv", "DIR_NAME,ACTION_NAME,CENTERING_PARAM\ncut,Cutting,high\n"),
         "categories.csv line 2"),
        (lambda d: touch(d / "videos" / "fry.csv", "b1;0.3\n"), "fry.csv line 1"),
        (lambda d: (d / "videos" / "fry.csv").unlink(), "1 training videos have no relevance score"),
    ],
)  # fmt: skip
def test_metadata_problems_name_the_file_and_the_fix(tmp_path: Path, change, message: str) -> None:
    videos, _ = small_dataset(tmp_path)
    change(tmp_path / "dataset")
    with pytest.raises(StateChangeError, match=message):
        build_index([videos, tmp_path / "more-videos"], tmp_path / "dataset")


def test_missing_roots_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(StateChangeError, match="--video-roots"):
        build_index([tmp_path / "nowhere"], None, ignore_video_weight=True)
    touch(tmp_path / "videos" / "cut" / "a.mp4")
    with pytest.raises(StateChangeError, match="--dataset-root"):
        build_index([tmp_path / "videos"], tmp_path / "nowhere")
    (tmp_path / "empty" / "cut").mkdir(parents=True)
    with pytest.raises(StateChangeError, match="No video files found"):
        build_index([tmp_path / "empty"], None, ignore_video_weight=True)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("0,0\n2,1\n", "line 2"),  # a second skipped
        ("0,0\n1,4\n", "line 2"),  # not a label
        ("0,0,1\n", "line 1"),  # three columns
        ("second,label\n0,1\n", "line 1"),  # a header
        ("0,0\n1,x\n", "line 2"),
        ("", "empty"),
    ],
)
def test_malformed_annotations_name_file_and_line(tmp_path: Path, text: str, line: str) -> None:
    path = touch(tmp_path / "bad.fps1.csv", text)
    with pytest.raises(StateChangeError, match=line) as error:
        read_annotation(path)
    assert str(path) in str(error.value)


def test_malformed_annotation_fails_when_indexing(tmp_path: Path) -> None:
    videos, other = small_dataset(tmp_path)
    touch(tmp_path / "dataset" / "annotations" / "cut" / "a2.fps1.csv", "0,0\n1,7\n")
    with pytest.raises(StateChangeError, match=r"a2\.fps1\.csv line 2"):
        build_index([videos, other], tmp_path / "dataset")


def test_video_weight_is_a_stable_sigmoid() -> None:
    theta = 0.37
    assert video_weight(theta, theta, TEMPERATURE) == 0.5
    assert video_weight(theta + 0.005, theta, TEMPERATURE) == pytest.approx(1 / (1 + math.exp(-5)))
    for distance in (0.001, 0.01, 0.3):
        assert video_weight(theta + distance, theta, TEMPERATURE) + video_weight(
            theta - distance, theta, TEMPERATURE
        ) == pytest.approx(1.0)
    assert video_weight(theta + 1.0, theta, TEMPERATURE) == 1.0  # exp(-1000) underflows quietly
    assert video_weight(theta - 1.0, theta, TEMPERATURE) == 0.0  # and exp(1000) never overflows
    scores = np.linspace(0.0, 1.0, 101)
    weights = [video_weight(float(r), theta, TEMPERATURE) for r in scores]
    assert all(a <= b for a, b in itertools.pairwise(weights))


def test_expand_videos_takes_files_as_given_and_folders_as_their_videos(tmp_path):
    folder = tmp_path / "videos"
    b, a = touch(folder / "b.webm"), touch(folder / "a.MP4")
    touch(folder / "notes.txt", "not a video")
    touch(folder / "nested" / "c.mp4")  # only the folder's own files
    single = touch(tmp_path / "z.mkv")
    assert expand_videos([single, folder]) == [single, a, b]
    assert expand_videos([str(single)]) == [single]
    with pytest.raises(StateChangeError, match=f"Video {tmp_path / 'missing.mp4'} does not exist"):
        expand_videos([tmp_path / "missing.mp4"])
    with pytest.raises(StateChangeError, match=f"Folder {folder / 'nested' / 'empty'} holds no video file"):
        (folder / "nested" / "empty").mkdir()
        expand_videos([folder / "nested" / "empty"])

def test_the_report_says_weights_are_ignored_only_when_they_are(tmp_path: Path) -> None:
    videos, other = small_dataset(tmp_path)
    touch(tmp_path / "dataset" / "categories.csv", "DIR_NAME,ACTION_NAME,CENTERING_PARAM\ncut,Cutting,0.4\n")
    (tmp_path / "dataset" / "videos" / "fry.csv").unlink()
    weighted = build_index([videos, other], tmp_path / "dataset", check=False).report.format()
    assert "weights ignored" not in weighted
    assert "(no centring parameter in categories.csv)" in weighted  # fry: an error to fix, not "ignored"
    assert "no relevance score: 1" in weighted
    ignored = build_index([videos, other], tmp_path / "dataset", ignore_video_weight=True).report.format()
    assert ignored.count("(weights ignored)") == 2
    assert "relevance score" not in ignored and "missing from categories.csv" not in ignored


def test_misnamed_annotations_and_a_missing_annotations_folder_are_reported(tmp_path: Path) -> None:
    videos, other = small_dataset(tmp_path)
    touch(tmp_path / "videos" / "fry" / "b2.mp4")
    touch(tmp_path / "dataset" / "annotations" / "fry" / "b2.csv", "0,0\n1,1\n")  # should be b2.fps1.csv
    touch(tmp_path / "dataset" / "annotations" / "stray.fps1.csv", "0,0\n")  # not in a category folder
    index = build_index([videos, other], tmp_path / "dataset", ignore_video_weight=True)
    assert [v.key for v in index.test] == ["cut/a2"]  # the misnamed file is not read...
    report = index.report.format()  # ...and the report says so, naming each file
    assert "not named <category>/<video_id>.fps1.csv (rename them): 2 (fry/b2.csv, stray.fps1.csv)" in report
    for path in (tmp_path / "dataset" / "annotations").rglob("*"):
        if path.is_file():
            path.unlink()
    for folder in sorted((tmp_path / "dataset" / "annotations").rglob("*"), reverse=True):
        folder.rmdir()
    (tmp_path / "dataset" / "annotations").rmdir()
    report = build_index([videos, other], tmp_path / "dataset", ignore_video_weight=True).report.format()
    assert "annotations does not exist: no video is annotated, so nothing will be evaluated" in report
