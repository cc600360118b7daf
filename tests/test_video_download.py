"""Downloading videos through yt-dlp's generic extractor from a real HTTP server on 127.0.0.1 that
serves encoded videos for some ids, 404 for others and server errors for a while for one: files,
missing.csv, retries, resumption after a kill, and a second run that downloads nothing."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from local_http import LocalServer

import statechange
from statechange.data.decode import decode_video
from statechange.data.index import find_videos
from statechange.data.video_download import (
    MISSING_FILE,
    STAGING_FOLDER,
    VideoDownloadOptions,
    classify_error,
    download_videos,
)

pytest.importorskip("yt_dlp", reason="yt-dlp is not installed (pip install 'statechange[download]')")


def encoded_video(seconds: int, size: tuple[int, int] = (64, 48), noise: bool = False, seed: int = 0) -> bytes:
    """An H.264 mp4 at 2 fps whose grey level is the second (or random noise, to make a large file)."""
    rng = np.random.default_rng(seed)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"statechange-video-{os.getpid()}-{seed}.mp4"
    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=2)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if noise:
            stream.options = {"crf": "0"}
        for i in range(seconds * 2):
            if noise:
                image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            else:
                image = np.full((height, width, 3), 20 * (i // 2) % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer(files={
        "/cut/a1.mp4": encoded_video(3, seed=1),
        "/cut/a2.mp4": encoded_video(4, seed=2),
        "/fold/b1.mp4": encoded_video(5, seed=3),
        "/fold/flaky.mp4": encoded_video(2, seed=4),
    })
    local.failures["/fold/flaky.mp4"] = 2  # two 503s, then the file
    yield local
    local.close()


def options(server: LocalServer, **changes) -> VideoDownloadOptions:
    settings = dict(url_template=f"{server.url}/{{category}}/{{id}}.mp4", workers=2, retries=2,
                    backoff_seconds=0.01, progress=False)
    return VideoDownloadOptions(**{**settings, **changes})


def missing_rows(videos: Path) -> list[list[str]]:
    with (videos / MISSING_FILE).open(newline="") as file:
        return list(csv.reader(file))


def video_requests(server: LocalServer) -> list[str]:
    return [r.path for r in server.requests]


def test_download_then_a_second_run_downloads_nothing(tmp_path: Path, server: LocalServer) -> None:
    videos = tmp_path / "videos"
    ids = {"cut": ["a1", "a2", "gone"], "fold": ["b1", "flaky"]}
    summary = download_videos(ids, videos, options(server))

    for key in ("cut/a1", "cut/a2", "fold/b1", "fold/flaky"):
        path = videos / f"{key}.mp4"
        assert path.read_bytes() == server.files[f"/{key}.mp4"]
    assert decode_video(videos / "fold" / "b1.mp4").shape[0] == 5  # 5 s at 1 fps
    assert [v.key for v in find_videos([videos])] == ["cut/a1", "cut/a2", "fold/b1", "fold/flaky"]
    assert not (videos / STAGING_FOLDER).exists()
    assert missing_rows(videos) == [["category", "id", "reason"], ["cut", "gone", "not found (HTTP 404)"]]
    assert video_requests(server).count("/fold/flaky.mp4") >= 3  # two server errors, retried, then downloaded
    assert video_requests(server).count("/cut/gone.mp4") == 1  # a 404 is not retried
    counts = summary.counts
    assert (counts["cut"].present, counts["cut"].downloaded, counts["cut"].missing) == (0, 2, 1)
    assert (counts["fold"].downloaded, counts["fold"].failed) == (2, 0)
    assert "cut" in summary.format() and MISSING_FILE in summary.format()

    seen = len(server.requests)
    again = download_videos(ids, videos, options(server))
    assert len(server.requests) == seen  # complete files and known-missing ids are not asked for
    assert (again.total().present, again.total().downloaded, again.total().missing) == (4, 0, 1)

    server.files["/cut/gone.mp4"] = encoded_video(2, seed=5)  # it came back: only --retry-missing asks
    download_videos(ids, videos, options(server, retry_missing=True))
    assert video_requests(server)[seen:] == ["/cut/gone.mp4"] * len(video_requests(server)[seen:])
    assert (videos / "cut" / "gone.mp4").is_file()
    assert not (videos / MISSING_FILE).exists()


def test_unreadable_files_are_downloaded_again_and_failures_wait_for_the_next_run(
    tmp_path: Path, server: LocalServer
) -> None:
    videos = tmp_path / "videos"
    (videos / "cut").mkdir(parents=True)
    (videos / "cut" / "a1.mp4").write_bytes(b"")  # empty
    (videos / "cut" / "a2.webm").write_bytes(b"not a video")  # unreadable, another container
    server.failures["/fold/flaky.mp4"] = 10
    summary = download_videos({"cut": ["a1", "a2"], "fold": ["flaky"]}, videos, options(server, retries=1))

    assert (videos / "cut" / "a1.mp4").read_bytes() == server.files["/cut/a1.mp4"]
    assert sorted(p.name for p in (videos / "cut").iterdir()) == ["a1.mp4", "a2.mp4"]
    assert summary.counts["fold"].failed == 1 and summary.failures[0][:2] == ("fold", "flaky")
    assert "503" in summary.failures[0][2]
    assert not (videos / MISSING_FILE).exists()  # a server error is not a missing video
    assert "run the command again" in summary.format()


def test_a_killed_download_leaves_no_final_file_and_resumes(tmp_path: Path, server: LocalServer) -> None:
    server.files["/cut/big.mp4"] = encoded_video(6, size=(160, 120), noise=True, seed=6)
    assert len(server.files["/cut/big.mp4"]) > 300_000
    server.throttle_seconds, server.chunk_bytes = 0.1, 16 * 1024  # ~160 KB/s: the kill lands mid-file
    videos = tmp_path / "videos"
    script = (
        "import sys; from statechange.data.video_download import VideoDownloadOptions, download_videos; "
        "download_videos({'cut': ['big']}, sys.argv[1], VideoDownloadOptions(url_template=sys.argv[2], progress=False))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(statechange.__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-c", script, str(videos), f"{server.url}/{{category}}/{{id}}.mp4"],
                               env=env)
    staging = videos / STAGING_FOLDER / "cut"
    try:
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size >= 64 * 1024 for p in staging.glob("*.part")):
            assert process.poll() is None and time.monotonic() < deadline, "the download did not start"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert find_videos([videos]) == []  # nothing under a final name
    (partial,) = staging.glob("*.part")
    kept = partial.stat().st_size

    server.throttle_seconds = 0.0
    summary = download_videos({"cut": ["big"]}, videos, options(server))
    assert summary.counts["cut"].downloaded == 1
    assert f"bytes={kept}-" in [r.range for r in server.requests]  # resumed, not started over
    assert (videos / "cut" / "big.mp4").read_bytes() == server.files["/cut/big.mp4"]


def test_permanent_and_transient_errors_are_told_apart() -> None:
    assert classify_error("Private video. Sign in if you've been granted access") == "private"
    assert classify_error("Video unavailable. This video has been removed by the uploader") == "removed"
    assert classify_error("Video unavailable. The uploader has not made this video available in your country.") \
        == "geo-blocked"
    assert classify_error("anything", status=404) == "not found (HTTP 404)"
    assert classify_error("HTTP Error 503: Service Unavailable") is None
    assert classify_error("HTTP Error 429: Too Many Requests") is None
    assert classify_error("Read timed out.") is None
