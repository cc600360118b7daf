"""The frame cache, load_frames and `statechange extract`, on videos encoded here with PyAV."""

from __future__ import annotations

import csv
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from test_decode import SMALL_SIZE, write_video

from statechange.cli import main
from statechange.data.cache import (
    EXACT_SOURCE,
    FAILURES_FILE,
    LOSSLESS,
    MEAN_ABS_ERROR_BOUND,
    TEMP_SUFFIX,
    FrameCache,
    extract_videos,
    frame_source,
    load_frames,
)
from statechange.data.decode import decode_video
from statechange.data.index import VideoFile, find_videos


def textured(t: float) -> np.ndarray:
    """A moving, textured 160x90 image: JPEG has real work to do on it."""
    yy, xx = np.mgrid[0:90, 0:160]
    shift = 8 * t
    red = 128 + 60 * np.sin((xx + shift) / 5.0) * np.cos(yy / 7.0)
    green = 128 + 50 * np.sin((xx - yy + shift) / 11.0)
    blue = 100 + 40 * np.cos((yy + 2 * shift) / 3.0)
    return np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8)


def make_root(root: Path, layout: dict[str, int], corrupt: tuple[str, ...] = ()) -> Path:
    """A video root: ``layout`` maps ``category/video_id`` to seconds (10 fps, 64x48, H.264)."""
    for key, seconds in layout.items():
        path = root / f"{key}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, n_frames=10 * seconds)
    for key in corrupt:
        path = root / f"{key}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    return root


def read_failures(cache: Path) -> list[dict[str, str]]:
    with open(cache / FAILURES_FILE, newline="") as file:
        return list(csv.DictReader(file))


def test_round_trip_matches_direct_decoding_within_the_stated_loss(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cat" / "vid.mp4", n_frames=40, size=(160, 90), image_at=textured)
    video = VideoFile("cat", "vid", path)
    cache = FrameCache(tmp_path / "cache")
    direct = decode_video(path)

    assert cache.get(video) is None
    assert np.array_equal(load_frames(video, cache), direct)  # a miss decodes the source...
    assert not cache.path_for(video).exists()  # ...and does not write the cache

    cache.put(video, direct)
    cached = cache.get(video)

    assert cached is not None and cached.shape == direct.shape == (4, 224, 398, 3)
    error = np.abs(cached.astype(np.int16) - direct.astype(np.int16))
    assert 0 < error.mean() <= MEAN_ABS_ERROR_BOUND
    np.testing.assert_array_equal(load_frames(video, cache), cached)
    assert cache.get(video, size=SMALL_SIZE) is None  # made at another size: not a hit


def test_lossless_entries_are_bit_identical_and_exact_reads_never_see_jpeg(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cat" / "vid.mp4", n_frames=30, size=(160, 90), image_at=textured)
    video = VideoFile("cat", "vid", path)
    direct = decode_video(path)
    jpeg, lossless = FrameCache(tmp_path / "jpeg"), FrameCache(tmp_path / "lossless")
    jpeg.put(video, direct, quality=90)
    lossless.put(video, direct, quality=LOSSLESS)

    assert np.array_equal(lossless.get(video), direct)
    assert np.array_equal(lossless.get(video, exact=True), direct)
    assert not np.array_equal(jpeg.get(video), direct)
    assert jpeg.get(video, exact=True) is None  # evaluation never reads a lossy entry...
    assert np.array_equal(load_frames(video, jpeg, exact=True), direct)  # ...it decodes instead
    assert frame_source(video, jpeg) == "jpeg-q90"
    assert frame_source(video, jpeg, exact=True) == frame_source(video, lossless) == EXACT_SOURCE
    assert frame_source(video, None) == EXACT_SOURCE


def test_extract_stores_listed_videos_losslessly_and_rebuilds_on_a_quality_change(tmp_path: Path) -> None:
    root = make_root(tmp_path / "videos", {"cat/train": 2, "cat/test": 2})
    videos = find_videos([root])
    train_video, test_video = sorted(videos, key=lambda v: v.video_id != "train")
    cache = FrameCache(tmp_path / "cache")

    first = extract_videos(videos, cache.root, quality=95, lossless_keys={test_video.key}, progress=False)
    again = extract_videos(videos, cache.root, quality=95, lossless_keys={test_video.key}, progress=False)
    other_quality = extract_videos(videos, cache.root, quality=80, lossless_keys={test_video.key}, progress=False)

    assert (first.done, again.skipped, other_quality.done, other_quality.skipped) == (2, 2, 1, 1)
    assert cache.source_of(train_video) == "jpeg-q80"
    assert cache.source_of(test_video) == EXACT_SOURCE
    assert np.array_equal(cache.get(test_video, exact=True), decode_video(test_video.path))


@pytest.mark.parametrize("quality", ["0", "96", "best"])
def test_extract_cli_rejects_a_bad_quality(tmp_path: Path, capsys, quality: str) -> None:
    root = make_root(tmp_path / "videos", {"cat/a": 1})

    code = main(["extract", "--video-roots", str(root), "--cache", str(tmp_path / "cache"), "--quality", quality])

    assert code == 2
    assert "--quality" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_entry_goes_stale_when_the_source_changes(tmp_path: Path) -> None:
    root = make_root(tmp_path / "videos", {"cat/vid": 3})
    cache_root = tmp_path / "cache"
    (video,) = find_videos([root])
    cache = FrameCache(cache_root)
    extract_videos([video], cache_root, progress=False)
    assert len(cache.get(video)) == 3

    stat = video.path.stat()
    os.utime(video.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    assert cache.get(video) is None and not cache.is_fresh(video)

    write_video(video.path, n_frames=50)  # replaced by a 5 s video
    assert np.array_equal(load_frames(video, cache), decode_video(video.path))
    summary = extract_videos([video], cache_root, progress=False)

    assert (summary.done, summary.skipped) == (1, 0)
    assert len(cache.get(video)) == 5


def test_extract_cli_skips_a_corrupt_video_and_lists_it(tmp_path: Path, capsys) -> None:
    root = make_root(tmp_path / "videos", {"bacon/a": 2, "bacon/b": 3, "eggs/c": 1}, corrupt=("eggs/broken",))
    cache_root = tmp_path / "cache"
    argv = ["extract", "--video-roots", str(root), "--cache", str(cache_root), "--workers", "1", "--no-progress"]

    assert main(argv) == 0

    assert "3 extracted, 0 already cached, 1 failed" in capsys.readouterr().out
    failures = read_failures(cache_root)
    assert [row["path"] for row in failures] == [str(root / "eggs" / "broken.mp4")]
    assert failures[0]["error"]
    cache = FrameCache(cache_root)
    for video in find_videos([root]):
        if video.video_id != "broken":
            assert np.array_equal(load_frames(video, cache), cache.get(video))
            assert len(cache.get(video)) == {"a": 2, "b": 3, "c": 1}[video.video_id]

    (root / "eggs" / "broken.mp4").unlink()  # the user removes the bad file and runs again
    assert main(argv) == 0

    assert "0 extracted, 3 already cached, 0 failed" in capsys.readouterr().out
    assert read_failures(cache_root) == []


def test_extract_cli_fails_when_nothing_can_be_extracted(tmp_path: Path, capsys) -> None:
    root = make_root(tmp_path / "videos", {}, corrupt=("cat/x", "cat/y"))
    cache_root = tmp_path / "cache"

    code = main(["extract", "--video-roots", str(root), "--cache", str(cache_root), "--no-progress"])

    assert code != 0
    assert "0 extracted, 0 already cached, 2 failed" in capsys.readouterr().out
    assert len(read_failures(cache_root)) == 2


def test_extract_cli_rejects_a_missing_video_root(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "not_mounted"

    code = main(["extract", "--video-roots", str(missing), "--cache", str(tmp_path / "cache")])

    assert code == 2
    assert str(missing) in capsys.readouterr().err


def test_run_interrupted_mid_write_resumes_and_cleans_up(tmp_path: Path) -> None:
    root = make_root(tmp_path / "videos", {"cat/a": 2, "cat/b": 2})
    cache_root = tmp_path / "cache"
    videos = find_videos([root])
    # A run killed while writing b: a complete entry for a, a partial temporary file for b.
    extract_videos(videos[:1], cache_root, progress=False)
    stray = cache_root / "cat" / f".b.12345.deadbeef{TEMP_SUFFIX}"
    stray.write_bytes(b"SCFRAME1 half an entry")
    cache = FrameCache(cache_root)
    assert cache.get(videos[1]) is None

    summary = extract_videos(videos, cache_root, progress=False)

    assert (summary.done, summary.skipped, summary.failed) == (1, 1, 0)
    assert not stray.exists()
    assert all(len(cache.get(video)) == 2 for video in videos)


def test_killed_worker_process_does_not_lose_videos(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    first = write_video(root / "cat" / "v0.mp4", n_frames=1800, rate=30, size=(160, 90))  # 60 s
    for i in range(1, 4):
        (root / "cat" / f"v{i}.mp4").write_bytes(first.read_bytes())
    cache_root = tmp_path / "cache"
    videos = find_videos([root])
    killed: list[int] = []

    def kill_a_worker_mid_write() -> None:  # a temporary file names the pid of the worker writing it
        while not killed and not finished.is_set():
            for temp in (cache_root / "cat").glob(f".*{TEMP_SUFFIX}"):
                pid = int(temp.name.split(".")[2])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            finished.wait(0.002)

    finished = threading.Event()
    killer = threading.Thread(target=kill_a_worker_mid_write)
    killer.start()
    try:
        summary = extract_videos(videos, cache_root, workers=2, size=SMALL_SIZE, progress=False)
    finally:
        finished.set()
        killer.join()

    assert killed and killed[0] != os.getpid()
    assert (summary.done, summary.failed) == (4, 0)
    cache = FrameCache(cache_root)
    assert all(cache.get(video, size=SMALL_SIZE).shape == (60, 18, 32, 3) for video in videos)
    assert not list(cache_root.glob(f"*/.*{TEMP_SUFFIX}"))


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_entry_reads_as_absent(tmp_path: Path, damage: str) -> None:
    root = make_root(tmp_path / "videos", {"cat/a": 2})
    (video,) = find_videos([root])
    cache = FrameCache(tmp_path / "cache")
    cache.put(video, decode_video(video.path))
    entry = cache.path_for(video)
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) - 7] if damage == "truncate" else os.urandom(len(data)))

    assert not cache.is_fresh(video)
    with pytest.warns(UserWarning, match="unreadable frame cache entry"):
        assert cache.get(video) is None
        assert np.array_equal(load_frames(video, cache), decode_video(video.path))
