"""The ChangeIt metadata built into the package: identical to the ChangeIt repository's files, shipped
in the wheel, chosen automatically for ChangeIt video folders, and the id lists the downloader uses."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from statechange.data.changeit import (
    changeit_root,
    listed_video_ids,
    resolve_dataset_root,
)
from statechange.data.index import build_index, find_videos
from statechange.errors import StateChangeError

SHARED_CHANGEIT = Path(os.environ.get("STATECHANGE_CHANGEIT", "/work/shared/changeit"))
REPO = Path(__file__).resolve().parents[1]


def relative_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.mark.skipif(not (SHARED_CHANGEIT / "categories.csv").is_file(),
                    reason=f"no ChangeIt clone at {SHARED_CHANGEIT} (set STATECHANGE_CHANGEIT to one)")
def test_packaged_metadata_equals_the_changeit_repository() -> None:
    packaged = changeit_root()
    files = relative_files(SHARED_CHANGEIT)
    assert relative_files(packaged) == files
    assert {"LICENCE", "README.md", "categories.csv", "videos/bacon.csv"} <= files
    assert sum(f.startswith("annotations/") for f in files) == 667
    different = [f for f in sorted(files) if (packaged / f).read_bytes() != (SHARED_CHANGEIT / f).read_bytes()]
    assert different == []


@pytest.mark.slow
def test_the_wheel_ships_every_metadata_file(tmp_path: Path) -> None:
    """`pip install .` (not only an editable install) gets the metadata: build the wheel from a copy."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools (in the dev extra)")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((REPO / name).read_bytes())
    subprocess.run(["cp", "-r", str(REPO / "src"), str(source / "src")], check=True)
    for egg_info in (source / "src").glob("*.egg-info"):
        subprocess.run(["rm", "-rf", str(egg_info)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "out"),
         str(source)],
        check=True, capture_output=True,
    )
    (wheel,) = (tmp_path / "out").glob("statechange-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name.removeprefix("statechange/changeit/") for name in archive.namelist()
                   if name.startswith("statechange/changeit/")}
    assert shipped == relative_files(REPO / "src" / "statechange" / "changeit")
    assert len(shipped) > 700


def test_changeit_folders_get_the_built_in_metadata(tmp_path: Path) -> None:
    root = changeit_root()
    annotated = sorted(p.name.split(".")[0] for p in (root / "annotations" / "bacon").glob("*.fps1.csv"))
    touch(tmp_path / "videos" / "bacon" / f"{annotated[0]}.mp4")
    touch(tmp_path / "videos" / "bacon" / "not_listed.mp4")
    touch(tmp_path / "videos" / "apple" / "other.webm")

    choice = resolve_dataset_root([tmp_path / "videos"], None)
    assert choice.root == root
    assert "built into statechange" in choice.description
    index = build_index([tmp_path / "videos"], choice.root, check=False)
    assert [v.key for v in index.test] == [f"bacon/{annotated[0]}"]  # the built-in annotation makes it a test video
    assert index.report.categories[0].centering == pytest.approx(0.309)  # apple's theta in categories.csv

    own = tmp_path / "own_dataset"
    own.mkdir()
    assert resolve_dataset_root([tmp_path / "videos"], own).root == own  # an explicit root wins
    assert resolve_dataset_root([tmp_path / "videos"], None, "none").root is None

    touch(tmp_path / "videos" / "my_category" / "x.mp4")  # one folder that ChangeIt does not have
    choice = resolve_dataset_root([tmp_path / "videos"], None)
    assert choice.root is None
    assert "not all ChangeIt categories" in choice.description
    assert resolve_dataset_root([tmp_path / "videos"], None, "changeit").root == root


def test_listed_ids_follow_the_split(tmp_path: Path) -> None:
    root = changeit_root()
    with (root / "videos" / "bacon.csv").open() as file:
        listed = [row[0] for row in csv.reader(file) if row]
    annotated = {p.name.split(".")[0] for p in (root / "annotations" / "bacon").glob("*.fps1.csv")}

    test = listed_video_ids(root, ["bacon"], "test")["bacon"]
    train = listed_video_ids(root, ["bacon"], "train")["bacon"]
    every = listed_video_ids(root, ["bacon", "apple"], "all")
    assert set(test) == annotated and len(test) == len(annotated)
    assert train == [i for i in listed if i not in annotated]
    assert every["bacon"] == test + train
    assert list(every) == ["bacon", "apple"]
    assert len(listed_video_ids(root)) == 44
    assert sum(map(len, listed_video_ids(root, split="test").values())) == 667

    with pytest.raises(StateChangeError, match="Unknown categories baconn"):
        listed_video_ids(root, ["baconn"])


def test_hidden_folders_are_not_videos_and_missing_videos_are_listed(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    (dataset / "videos").mkdir(parents=True)
    (dataset / "videos" / "cut.csv").write_text("a,0.5\nb,0.4\nc,0.3\n")
    touch(dataset / "annotations" / "cut" / "d.fps1.csv").write_text("0,0\n1,1\n")
    touch(dataset / "annotations" / "other" / "e.fps1.csv").write_text("0,0\n")
    touch(tmp_path / "videos" / "cut" / "b.mp4")
    touch(tmp_path / "videos" / ".download" / "cut" / "c.mp4")  # a download in progress

    assert [v.key for v in find_videos([tmp_path / "videos"])] == ["cut/b"]
    report = build_index([tmp_path / "videos"], dataset, ignore_video_weight=True).report
    assert report.missing_videos() == ["cut/a", "cut/c", "cut/d"]  # not other/e: no folder "other" indexed
