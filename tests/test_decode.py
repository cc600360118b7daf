"""1-fps decoding: real videos encoded here with PyAV, decoded through statechange.data.decode."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from statechange.data.decode import PartialVideoWarning, VideoDecodeError, decode_video, iter_frame_chunks

# Distinct, in-gamut colours (they survive YUV 4:2:0 encoding within a few levels).
PALETTE = np.array(
    [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200), (200, 40, 200)],
    dtype=np.uint8,
)
COLOUR_TOLERANCE = 12  # grey levels, per channel, of a frame's mean colour after lossy encoding
SMALL_SIZE = (32, 18)  # decoded size where only the count or colour matters: keeps tests light


def colour_of_second(second: int) -> np.ndarray:
    return PALETTE[second % len(PALETTE)]


def write_video(
    path: Path,
    n_frames: int,
    rate: Fraction | int = 10,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    image_at: object = None,
    rotation: int | None = None,
) -> Path:
    """Encode ``n_frames`` frames at ``rate`` whose colour changes every second (or ``image_at(t)``)."""
    rate = Fraction(rate)
    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            t = i / rate
            if image_at is None:
                image = np.empty((height, width, 3), dtype=np.uint8)
                image[:] = colour_of_second(math.floor(t))
            else:
                image = image_at(float(t))
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def mean_colours(frames: np.ndarray) -> np.ndarray:
    """Mean colour of each frame: float [T, 3]."""
    return frames.reshape(len(frames), -1, 3).mean(axis=1)


def assert_colour_per_second(frames: np.ndarray, seconds: Sequence[int]) -> None:
    expected = np.stack([colour_of_second(s) for s in seconds]).astype(float)
    np.testing.assert_allclose(mean_colours(frames), expected, atol=COLOUR_TOLERANCE)


@pytest.mark.parametrize(("name", "codec"), [("clip.mp4", "libx264"), ("clip.webm", "libvpx-vp9")])
def test_one_frame_per_second_shows_that_seconds_colour(tmp_path: Path, name: str, codec: str) -> None:
    path = write_video(tmp_path / name, n_frames=40, rate=10, codec=codec)  # 4 s

    frames = decode_video(path)

    assert frames.dtype == np.uint8
    assert frames.shape == (4, 224, 398, 3)
    assert_colour_per_second(frames, range(4))


@pytest.mark.parametrize("n_frames", [100, 105, 110])  # 3.34 s, 3.50 s and 3.67 s
def test_ntsc_rate_gives_duration_rounded_to_nearest_second(tmp_path: Path, n_frames: int) -> None:
    rate = Fraction(30000, 1001)  # 29.97 fps: time base 1001/30000
    path = write_video(tmp_path / "ntsc.mp4", n_frames=n_frames, rate=rate)
    duration = n_frames / rate
    expected = math.floor(duration + Fraction(1, 2))  # ffmpeg's fps filter rounds the end to nearest

    frames = decode_video(path, size=SMALL_SIZE)

    assert len(frames) == expected
    assert_colour_per_second(frames, range(expected))


def test_chunks_concatenate_to_the_whole_video(tmp_path: Path) -> None:
    path = write_video(tmp_path / "seven.mp4", n_frames=70, rate=10)  # 7 s

    chunks = list(iter_frame_chunks(path, chunk_frames=3))

    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert all(chunk.shape[1:] == (224, 398, 3) for chunk in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), decode_video(path))


def test_video_longer_than_1024_seconds_decodes_every_second(tmp_path: Path) -> None:
    seconds = 1100
    path = write_video(tmp_path / "long.mp4", n_frames=2 * seconds, rate=2, size=(32, 32))

    frames = decode_video(path, size=SMALL_SIZE)

    assert frames.shape == (seconds, SMALL_SIZE[1], SMALL_SIZE[0], 3)
    assert_colour_per_second(frames, range(seconds))


def test_truncated_file_returns_the_frames_before_the_cut(tmp_path: Path) -> None:
    path = write_video(tmp_path / "full.webm", n_frames=80, rate=10, codec="libvpx-vp9")  # 8 s
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.warns(PartialVideoWarning, match=f"Video {path} ends early"):  # tests/test_partial_videos.py
        frames = decode_video(path, size=SMALL_SIZE)

    assert 0 < len(frames) < 8
    assert_colour_per_second(frames, range(len(frames)))


def test_rotated_video_comes_out_upright(tmp_path: Path) -> None:
    def left_half_white(t: float) -> np.ndarray:
        image = np.zeros((48, 64, 3), dtype=np.uint8)
        image[:, :32] = 255
        return image

    # Stored landscape, to be shown turned 90 degrees counter-clockwise: the left half ends at the bottom.
    path = write_video(tmp_path / "phone.mp4", n_frames=20, image_at=left_half_white, rotation=90)

    frame = decode_video(path, size=(48, 64))[0].mean(axis=-1)  # (64, 48)

    assert frame[:28].mean() < 20
    assert frame[36:].mean() > 235


def _corrupt_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _header_only(tmp_path: Path) -> Path:
    path = write_video(tmp_path / "header_only.mp4", n_frames=30)
    path.write_bytes(path.read_bytes()[:48])
    return path


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("this is a shopping list, not a video\n" * 20)
    return path


def _audio_only(tmp_path: Path) -> Path:
    path = tmp_path / "audio_only.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(16):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "never_downloaded.mp4"


@pytest.mark.parametrize("make_file", [_corrupt_bytes, _header_only, _text_file, _audio_only, _missing])
def test_undecodable_files_raise_an_error_naming_the_file(tmp_path: Path, make_file) -> None:
    path = make_file(tmp_path)

    with pytest.raises(VideoDecodeError) as caught:
        decode_video(path)

    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert caught.value.reason and caught.value.reason in str(caught.value)
