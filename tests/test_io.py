"""Atomic, durable writes (statechange._io) and the machine defaults (statechange.runtime)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_checkpoint import CATEGORIES, assert_same_outputs, frames, tiny_model
from test_decode import write_video

import statechange
from statechange._io import atomic_directory, atomic_path, replaced_path, staging_path, temp_files, write_bytes
from statechange.checkpoint import load_checkpoint, save_checkpoint
from statechange.data.cache import EXACT_SOURCE, FrameCache, extract_videos
from statechange.data.index import VideoFile, find_videos
from statechange.features import FeatureStore
from statechange.runtime import MAX_DEFAULT_WORKERS, default_workers

LONGEST_NAME = 250  # characters; most file systems allow 255 bytes
WRITER_SIZE = 8 << 20  # bytes per version: each write takes long enough to be killed in the middle

# Writes two versions of one file, alternately, until killed.
WRITER = """
import sys
from pathlib import Path
from statechange._io import write_bytes
path, size = Path(sys.argv[1]), int(sys.argv[2])
versions = [bytes([65 + i]) * (size + i) for i in range(2)]
count = 0
while True:
    write_bytes(path, versions[count % 2])
    count += 1
    if count == 2:
        print("written", flush=True)
"""


@pytest.fixture
def default_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _kill_mid_write(path: Path) -> list[Path]:
    """Run WRITER on ``path``, SIGKILL it while a temporary file exists; returns the temporaries left."""
    env = {**os.environ, "PYTHONPATH": str(Path(statechange.__file__).parents[1])}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(WRITER_SIZE)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "written"
        deadline = time.monotonic() + 30
        while not temp_files(path) and time.monotonic() < deadline:
            time.sleep(0.001)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    return temp_files(path)


def test_a_killed_writer_leaves_a_complete_version_and_the_next_write_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    versions = [bytes([65 + i]) * (WRITER_SIZE + i) for i in range(2)]
    for _ in range(3):  # the kill must strike mid-write: retry in the rare case it fell between two writes
        left = _kill_mid_write(path)
        assert path.read_bytes() in versions
        if left:
            break
    assert left, "the writer was never killed while writing"

    write_bytes(path, b"next")
    assert path.read_bytes() == b"next"
    assert temp_files(path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_a_failed_write_keeps_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    write_bytes(path, b"old")
    with pytest.raises(RuntimeError, match="encoder failed"), atomic_path(path) as temp:
        temp.write_bytes(b"half of the new")
        raise RuntimeError("encoder failed")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_written_files_get_the_umask_permissions(tmp_path: Path, default_umask: None) -> None:
    source = write_video(tmp_path / "cat" / "vid.mp4", n_frames=10)
    video = VideoFile("cat", "vid", source)
    store = FeatureStore(tmp_path / "features", "fingerprint")
    store.put(video, torch.zeros(1, 4), EXACT_SOURCE)  # [T, F]
    write_bytes(tmp_path / "plain.bin", b"x")
    checkpoint = save_checkpoint(tmp_path / "last", tiny_model(seed=0), CATEGORIES, {})
    for path in (store.path_for(video, EXACT_SOURCE), tmp_path / "plain.bin", *checkpoint.iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_250_character_file_name_works(tmp_path: Path) -> None:
    video_id = "v" * (LONGEST_NAME - len(".frames"))  # its cache entry's name is 250 characters
    write_video(tmp_path / "videos" / "cat" / f"{video_id}.mp4", n_frames=20)
    summary = extract_videos(find_videos([tmp_path / "videos"]), tmp_path / "cache", progress=False)
    assert (summary.done, summary.failed) == (1, 0)
    (video,) = find_videos([tmp_path / "videos"])
    assert len(FrameCache(tmp_path / "cache").path_for(video).name) == LONGEST_NAME
    assert FrameCache(tmp_path / "cache").get(video).shape[0] == 2

    model = tiny_model(seed=0)
    directory = save_checkpoint(tmp_path / ("c" * LONGEST_NAME), model, CATEGORIES, {"epoch": 1})
    save_checkpoint(directory, model, CATEGORIES, {"epoch": 2})  # a swap: the old one moves aside
    assert load_checkpoint(directory).metadata == {"epoch": 2}
    assert_same_outputs(model, load_checkpoint(directory).model, frames())


def test_a_directory_is_swapped_in_only_when_complete(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    with atomic_directory(directory) as staging:
        (staging / "a.txt").write_text("old a")
    with atomic_directory(directory) as staging:
        (staging / "a.txt").write_text("new a")
        assert (directory / "a.txt").read_text() == "old a"  # half-written: the old one is still in place
        (staging / "b.txt").write_text("new b")
        assert sorted(p.name for p in directory.iterdir()) == ["a.txt"]
    assert {p.name: p.read_text() for p in directory.iterdir()} == {"a.txt": "new a", "b.txt": "new b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

    with pytest.raises(OSError, match="disk full"), atomic_directory(directory) as staging:
        (staging / "a.txt").write_text("newer a")
        raise OSError("disk full")
    assert {p.name: p.read_text() for p in directory.iterdir()} == {"a.txt": "new a", "b.txt": "new b"}
    assert not staging_path(directory).exists() and not replaced_path(directory).exists()


def test_default_workers_follow_the_cpus_this_process_may_use() -> None:
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("this OS has no CPU affinity")
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})  # as under `taskset -c 0` or a one-CPU SLURM job
        assert default_workers() == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert default_workers() == min(MAX_DEFAULT_WORKERS, len(allowed))
