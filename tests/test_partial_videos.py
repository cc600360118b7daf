"""Videos cut off during download that still decode partly (issue 9, point 6): a faststart mp4 or a webm
keeps the header that declares the full duration, so decoding gives only the first seconds. They are
reported (a warning naming the file wherever frames are decoded or read from the cache, a ``partial``
status in extract's failures.csv and report) and still used. Real encoded videos, cut on disk."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import av
import numpy as np
import pytest

from statechange.checkpoint import save_checkpoint
from statechange.cli import main
from statechange.config import ModelConfig
from statechange.data.cache import FrameCache, load_frames
from statechange.data.decode import PartialVideoWarning, decode_video
from statechange.data.index import find_videos
from statechange.data.synth import ENCODERS
from statechange.factory import build_model

SECONDS = 14
FPS = 8
CUT_FRACTION = 0.3


def write_video(path: Path, seconds: int = SECONDS) -> Path:
    """A real encoded video of random frames (bytes spread evenly over time); mp4 with its index in front."""
    container_format, codec, options = ENCODERS[path.suffix]
    muxer_options = {"movflags": "+faststart"} if path.suffix == ".mp4" else {}
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container_format, options=muxer_options) as container:
        stream = container.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for index in range(seconds * FPS):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def cut(path: Path, fraction: float = CUT_FRACTION) -> Path:
    """Keep the first ``fraction`` of the file's bytes, as an interrupted download does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def partial_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(warning.message) for warning in caught if issubclass(warning.category, PartialVideoWarning)]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_cut_off_video_decodes_its_first_seconds_with_a_warning_naming_it(tmp_path, suffix):
    complete = write_video(tmp_path / f"complete{suffix}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(decode_video(complete)) == SECONDS
    assert partial_warnings(caught) == []  # a whole video: nothing to say

    truncated = cut(write_video(tmp_path / f"truncated{suffix}"))
    with pytest.warns(PartialVideoWarning) as caught:
        frames = decode_video(truncated)
    assert 0 < len(frames) < SECONDS / 2
    (message,) = partial_warnings(caught)
    assert message.startswith(f"Video {truncated} ends early: only ")
    assert f"of its {SECONDS:.1f} s could be decoded" in message


def test_extract_lists_cut_off_videos_as_partial_and_caches_them(tmp_path, capsys):
    videos, cache_root = tmp_path / "videos", tmp_path / "cache"
    write_video(videos / "cut" / "whole.mp4")
    truncated = [cut(write_video(videos / "cut" / name)) for name in ("short.mp4", "cut.webm")]
    extract = ["extract", "--video-roots", str(videos), "--cache", str(cache_root), "--workers", "1", "--no-progress"]

    for run in ("first", "again"):  # a re-run finds the entries fresh and still reports them
        assert main(extract) == 0
        out = capsys.readouterr().out
        cached = "3 extracted, 0 already cached" if run == "first" else "0 extracted, 3 already cached"
        assert f"3 videos: {cached}, 0 failed; 2 cached but ending early" in out, out
        assert all(f"extract: Video {path} ends early" in out for path in truncated)
        with open(cache_root / "failures.csv", newline="") as file:
            rows = list(csv.DictReader(file))
        assert sorted((row["path"], row["status"]) for row in rows) == sorted(
            (str(path), "partial") for path in truncated)

    cache = FrameCache(cache_root)
    by_name = {video.path.name: video for video in find_videos([videos])}
    for path in truncated:  # still used: the cache holds its frames, and reading them says it ends early
        with pytest.warns(PartialVideoWarning, match=f"Video {path} ends early"):
            frames = load_frames(by_name[path.name], cache)  # how training and evaluation get frames
        with pytest.warns(PartialVideoWarning):
            assert len(frames) == len(decode_video(path)) < SECONDS / 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_frames(by_name["whole.mp4"], cache)
    assert partial_warnings(caught) == []


def test_predict_warns_about_a_cut_off_video_and_still_predicts(tmp_path):
    model = build_model(ModelConfig(backbone="tiny", hidden_sizes=(32,)), 1, seed=0)
    checkpoint = save_checkpoint(tmp_path / "last", model, ["cut"], {})
    truncated = cut(write_video(tmp_path / "videos" / "short.webm"))
    with pytest.warns(PartialVideoWarning, match=f"Video {truncated} ends early"):
        assert main(["predict", "--checkpoint", str(checkpoint), "--category", "cut", "--output",
                     str(tmp_path / "predictions"), "--device", "cpu", str(truncated)]) == 0
    assert (tmp_path / "predictions" / "cut" / "short.csv").is_file()
