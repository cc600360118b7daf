"""decode_video against the release's decoder, the ffmpeg command line, bit for bit.

The release runs ``ffmpeg -i FILE -filter_complex "[0]fps=fps=1[s0];[s0]scale=398:224[s1]" -map "[s1]"
-f rawvideo -pix_fmt rgb24 pipe:`` (what ffmpeg-python builds). Each file here is made in the test with
PyAV to show one way files differ in the wild; the ffmpeg binary is imageio-ffmpeg's (the ``dev`` extra).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from statechange.config import FrameConfig
from statechange.data import decode_video

FRAMES = FrameConfig()
AUDIO_RATE = 48000
AUDIO_FRAME_SAMPLES = 960  # 20 ms, a size every audio encoder used here accepts


@dataclass(frozen=True)
class Clip:
    """How to encode one small test file."""

    container: str = "mp4"
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    size: tuple[int, int] = (64, 48)  # stored (width, height)
    rate: Fraction = Fraction(10)
    seconds: float = 3.0
    video_start: float = 0.0  # seconds after the file's start (audio, when present, starts at 0)
    audio_codec: str | None = None
    audio_first: bool = False  # write every audio packet before the first video packet
    rotation: int | None = None  # display matrix, degrees counter-clockwise
    sample_aspect: Fraction | None = None
    frame_times: tuple[float, ...] | None = None  # variable frame rate: each frame's time in seconds


def textured_image(index: int, width: int, height: int) -> np.ndarray:
    """A frame with flat areas, sharp edges and noise, different for every index: uint8 [H, W, 3]."""
    rng = np.random.default_rng(index)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = rng.integers(0, 256, 3)
    image[: height // 2, : width // 3] = 255 - image[0, 0]
    image[height // 3 :, width // 2 :] = rng.integers(0, 256, (height - height // 3, width - width // 2, 3))
    return image


def write_clip(path: Path, clip: Clip) -> Path:
    """Encode ``clip`` to ``path`` with PyAV."""
    width, height = clip.size
    n_frames = len(clip.frame_times) if clip.frame_times else round(clip.seconds * clip.rate)
    time_base = Fraction(1, 1000) if clip.frame_times else 1 / clip.rate
    with av.open(str(path), mode="w") as container:
        video = container.add_stream(clip.codec, rate=clip.rate)
        video.width, video.height, video.pix_fmt = width, height, clip.pix_fmt
        if clip.frame_times:
            video.time_base = time_base
        if clip.sample_aspect is not None:
            video.codec_context.sample_aspect_ratio = clip.sample_aspect
        if clip.rotation is not None:
            video.set_display_rotation(clip.rotation)
        video_packets = []
        for i in range(n_frames):
            seconds = clip.frame_times[i] if clip.frame_times else i / clip.rate
            frame = av.VideoFrame.from_ndarray(textured_image(i, width, height), format="rgb24")
            frame.time_base = time_base
            frame.pts = round((seconds + clip.video_start) / time_base)
            video_packets += video.encode(frame)
        video_packets += video.encode(None)
        audio_packets = []
        if clip.audio_codec is not None:
            audio = container.add_stream(clip.audio_codec, rate=AUDIO_RATE)
            n_audio_frames = int((clip.video_start + clip.seconds) * AUDIO_RATE / AUDIO_FRAME_SAMPLES)
            for j in range(n_audio_frames):
                samples = np.zeros((1, AUDIO_FRAME_SAMPLES), np.float32)
                frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, j * AUDIO_FRAME_SAMPLES
                audio_packets += audio.encode(frame)
            audio_packets += audio.encode(None)
        packets = audio_packets + video_packets if clip.audio_first else video_packets + audio_packets
        if not clip.audio_first:  # interleave by time, as muxers of downloaded videos do
            packets.sort(key=lambda packet: float(packet.dts * packet.time_base) if packet.dts is not None else 0.0)
        for packet in packets:
            container.mux(packet)
    return path


def release_decode(ffmpeg: str, path: Path) -> np.ndarray:
    """The release's frames: its ffmpeg command line, uint8 [T, 224, 398, 3]."""
    filters = f"[0]fps=fps={FRAMES.fps:g}[s0];[s0]scale={FRAMES.width}:{FRAMES.height}[s1]"
    command = [ffmpeg, "-v", "error", "-i", str(path), "-filter_complex", filters, "-map", "[s1]",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    result = subprocess.run(command, capture_output=True, check=True)
    return np.frombuffer(result.stdout, dtype=np.uint8).reshape(-1, FRAMES.height, FRAMES.width, 3)


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip(
        "imageio_ffmpeg", reason="the ffmpeg binary comes from imageio-ffmpeg: pip install -e '.[dev]'"
    )
    return imageio_ffmpeg.get_ffmpeg_exe()


VFR_TIMES = (0.0, 0.04, 0.3, 0.35, 0.9, 1.0, 1.1, 1.6, 2.45, 2.5, 2.55, 2.6, 3.3)
CASES = {
    "single_stream": Clip(),
    "video_starts_0.6s_after_audio": Clip(container="mkv", video_start=0.6, audio_codec="aac"),
    "video_starts_1.7s_after_audio": Clip(video_start=1.7, audio_codec="aac"),
    "webm_vp9_opus_video_0.8s_late": Clip(container="webm", codec="libvpx-vp9", video_start=0.8,
                                          audio_codec="libopus"),
    "audio_first_interleaving": Clip(container="mkv", video_start=0.6, audio_codec="aac", audio_first=True),
    "rotated_90": Clip(rotation=90),
    "rotated_180": Clip(rotation=180),
    "rotated_270": Clip(rotation=-90),
    "variable_frame_rate": Clip(container="mkv", frame_times=VFR_TIMES),
    "variable_frame_rate_late_video": Clip(container="mkv", frame_times=VFR_TIMES, video_start=1.2,
                                           audio_codec="aac"),
    "29.97_fps": Clip(rate=Fraction(30000, 1001), seconds=3.4),
    "23.976_fps": Clip(rate=Fraction(24000, 1001), seconds=3.6),
    "60_fps": Clip(rate=Fraction(60), seconds=2.5),
    "odd_size_vp9": Clip(container="webm", codec="libvpx-vp9", size=(67, 37)),
    "odd_size_rotated": Clip(container="webm", codec="libvpx-vp9", size=(67, 37), rotation=90),
    "non_square_pixels": Clip(sample_aspect=Fraction(16, 11)),
    "29.97_fps_late_video_non_square": Clip(rate=Fraction(30000, 1001), video_start=0.9, audio_codec="aac",
                                            sample_aspect=Fraction(4, 3)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_frames_are_those_of_the_release_command_line(tmp_path: Path, ffmpeg: str, name: str) -> None:
    clip = CASES[name]
    path = write_clip(tmp_path / f"{name}.{clip.container}", clip)

    expected = release_decode(ffmpeg, path)
    frames = decode_video(path)

    assert frames.shape == expected.shape
    assert np.array_equal(frames, expected), f"{np.count_nonzero(frames != expected)} values differ"


@pytest.mark.parametrize(("video_start", "repeats"), [(0.4, 1), (0.6, 2), (1.7, 3), (2.5, 4)])
def test_late_video_repeats_its_first_frame_from_the_file_start(
    tmp_path: Path, video_start: float, repeats: int
) -> None:
    # The command line's output starts at the file's start: slots before the first frame repeat it.
    clip = Clip(container="mkv", video_start=video_start, audio_codec="aac")
    path = write_clip(tmp_path / "late.mkv", clip)
    alone = write_clip(tmp_path / "alone.mkv", Clip(container="mkv"))

    frames = decode_video(path, size=(32, 18))
    without_delay = decode_video(alone, size=(32, 18))

    assert len(frames) == len(without_delay) - 1 + repeats
    assert all(np.array_equal(frames[i], frames[0]) for i in range(repeats))
    assert not np.array_equal(frames[repeats], frames[0])
