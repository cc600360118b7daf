"""`statechange download` (weights and videos) and the dataset-root options of `dataset` and `evaluate`,
from the command line, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from local_http import LocalServer

from statechange.cli import main
from statechange.data.changeit import changeit_root


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    yield local
    local.close()


def test_weights_that_do_not_verify_are_refused(tmp_path: Path, server: LocalServer, capsys) -> None:
    server.files["/ViT-L-14.pt"] = b"not OpenAI's file"
    code = main(["download", "--weights", "vit-l-14", "--output", str(tmp_path), "--url", f"{server.url}/ViT-L-14.pt",
                 "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2
    assert f"{server.url}/ViT-L-14.pt: its SHA-256 is" in error and "removed" in error
    assert list(tmp_path.iterdir()) == []


def test_weights_are_downloaded_where_asked(tmp_path: Path, server: LocalServer, capsys) -> None:
    state = tmp_path / "state.bin"
    torch.save({"visual.class_embedding": torch.zeros(4)}, state)
    server.files["/clip.bin"] = state.read_bytes()
    code = main(["download", "--weights", "vit-l-14-timm", "--output", str(tmp_path / "weights"),
                 "--url", f"{server.url}/clip.bin", "--no-progress"])
    assert code == 0
    path = tmp_path / "weights" / "vit_large_patch14_clip_224.openai.bin"
    assert path.read_bytes() == state.read_bytes()
    assert f"--clip-weights {path}" in capsys.readouterr().out


def small_dataset(root: Path) -> Path:
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "cut.csv").write_text("a1,0.9\ngone,0.8\nb2,0.7\n")
    (root / "categories.csv").write_text("DIR_NAME,ACTION_NAME,CENTERING_PARAM\ncut,Cutting,0.5\n")
    (root / "annotations" / "cut").mkdir(parents=True)
    (root / "annotations" / "cut" / "a1.fps1.csv").write_text("0,0\n1,1\n2,3\n")
    return root


def test_videos_then_the_missing_list(tmp_path: Path, server: LocalServer, capsys) -> None:
    from test_video_download import encoded_video

    pytest.importorskip("yt_dlp", reason="yt-dlp is not installed (pip install 'statechange[download]')")
    dataset = small_dataset(tmp_path / "dataset")
    server.files["/cut/a1.mp4"] = encoded_video(3, seed=1)
    videos = tmp_path / "videos"
    arguments = ["download", "--output", str(videos), "--dataset-root", str(dataset), "--split", "test",
                 "--url-template", f"{server.url}/{{category}}/{{id}}.mp4", "--workers", "1", "--no-progress"]
    assert main(arguments) == 0
    assert (videos / "cut" / "a1.mp4").read_bytes() == server.files["/cut/a1.mp4"]
    assert [r.path for r in server.requests if r.path != "/cut/a1.mp4"] == []  # --split test: annotated only

    assert main([*arguments[:6], "all", *arguments[7:]]) == 0
    out = capsys.readouterr().out
    assert "cut" in out and "missing.csv" in out
    with (videos / "missing.csv").open() as file:
        assert sorted(row["id"] for row in csv.DictReader(file)) == ["b2", "gone"]

    assert main(["dataset", "--video-roots", str(videos), "--dataset-root", str(dataset),
                 "--missing-out", str(tmp_path / "todo.txt")]) == 0
    assert (tmp_path / "todo.txt").read_text() == "gone\nb2\n"  # one id per line: yt-dlp --batch-file


def test_dataset_uses_the_built_in_changeit_metadata(tmp_path: Path, capsys) -> None:
    root = changeit_root()
    with (root / "videos" / "bacon.csv").open() as file:
        listed = [row[0] for row in csv.reader(file) if row]
    annotated = sorted(p.name.split(".")[0] for p in (root / "annotations" / "bacon").glob("*.fps1.csv"))
    (tmp_path / "videos" / "bacon").mkdir(parents=True)
    (tmp_path / "videos" / "bacon" / f"{annotated[0]}.mp4").write_bytes(b"")

    code = main(["dataset", "--video-roots", str(tmp_path / "videos"), "--missing-out", str(tmp_path / "todo.txt")])
    out = capsys.readouterr().out
    assert code == 0
    assert "Dataset metadata: ChangeIt's metadata built into statechange" in out
    assert "test    1" in out  # the built-in annotation makes the video a test video
    assert (tmp_path / "todo.txt").read_text().split() == [i for i in listed if i != annotated[0]]

    code = main(["dataset", "--video-roots", str(tmp_path / "videos"), "--dataset", "none"])
    assert code == 2  # no relevance scores without a dataset root
    assert "no dataset root (--dataset none)" in capsys.readouterr().out


def test_evaluate_without_annotations_says_how_to_get_them(tmp_path: Path, capsys) -> None:
    (tmp_path / "videos" / "my_category").mkdir(parents=True)
    code = main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--video-roots", str(tmp_path / "videos")])
    assert code == 2
    assert "--dataset-root DIR" in capsys.readouterr().err
