"""Decoding videos to frames at 1 fps, 398x224 RGB (METHOD.md, "Frames").

The frames are the ones the release's ``ffmpeg -i X -vf fps=1,scale=398:224 -pix_fmt rgb24``
gives, because they come out of FFmpeg's own filters, fed the way the ``ffmpeg`` tool feeds them:

    decoder -> buffer -> [transpose / flips, for rotated videos] -> fps -> scale -> format=rgb24 -> sink

- timestamps are shifted by the file's start time (the tool's default ``ts_offset``), so the fps
  filter's rounding starts from the same origin;
- every frame carries a duration, so closing the graph at end of stream puts the end at
  "last frame + its duration" and the fps filter emits the same last frames as the tool;
- ``scale`` uses bicubic interpolation, the tool's default;
- the output is written the way the tool writes ``-f rawvideo``: at a constant rate whose timeline
  starts at the file's start (``-fps_mode cfr``, its default for that format). When the video
  stream starts after the file's start (audio first, video a second later), the first frame is
  repeated to fill the gap: a video starting at 1.7 s gives its first frame 3 times (slots 0, 1, 2).

Memory is bounded by the 1-fps output: packets are decoded one at a time and filtered frames are
pulled as soon as the filters release them. Like ``ffmpeg``, a damaged packet is skipped and a
truncated file gives the frames before the damage; a file that gives no frame at all raises
``VideoDecodeError``. A file whose frames end well before the duration its header declares (a
download cut off: a faststart mp4 or a webm keeps its header) still gives its frames, and decoding
it to the end says so: a ``PartialVideoWarning`` naming the file, or a filled ``DecodeReport``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from statechange.config import FrameConfig
from statechange.errors import StateChangeError

_FRAMES = FrameConfig()
DEFAULT_FPS: float = _FRAMES.fps
DEFAULT_SIZE: tuple[int, int] = (_FRAMES.width, _FRAMES.height)  # (width, height)

_AV_TIME_BASE = Fraction(1, 1_000_000)  # FFmpeg's internal time unit (container start times)
_SCALE_FLAGS = "bicubic"  # the ffmpeg tool's default for its scalers
_DECODE_CHUNK_FRAMES = 256  # frames per chunk when decode_video assembles a whole video
_NO_FRAMES_REASON = "no video frame could be decoded"
PARTIAL_MIN_SECONDS = 2.0  # a video ends early when its frames stop more than this short of the declared end
PARTIAL_MIN_FRACTION = 0.05  # ... and more than this fraction of the declared duration short of it


class VideoDecodeError(StateChangeError):
    """A video file FFmpeg cannot turn into any frame (missing, corrupt, empty, not a video)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"Cannot decode video {self.path}: {reason}; re-download the file or remove it from the video root."
        )


class PartialVideoWarning(UserWarning):
    """A video whose frames end well before the duration its header declares (its frames are still used)."""


@dataclass
class DecodeReport:
    """How far a video decoded, filled once its last frame has been read (seconds from the file's start)."""

    decoded_seconds: float | None = None  # where the last decoded frame ends
    declared_seconds: float | None = None  # the video stream's end as the header declares it; None if unknown

    @property
    def ends_early(self) -> bool:
        """Whether the frames stop short of the declared end by more than ``PARTIAL_MIN_SECONDS`` and
        ``PARTIAL_MIN_FRACTION`` of it."""
        if self.decoded_seconds is None or self.declared_seconds is None:
            return False
        missing = self.declared_seconds - self.decoded_seconds
        return missing > PARTIAL_MIN_SECONDS and missing > PARTIAL_MIN_FRACTION * self.declared_seconds


def partial_video_message(path: str | Path, decoded_seconds: float, declared_seconds: float) -> str:
    """The one sentence that reports a video decoded only partly."""
    return (f"Video {path} ends early: only {decoded_seconds:.1f} s of its {declared_seconds:.1f} s could be "
            "decoded (the file is probably cut off), so only those frames are used; download it again.")


def warn_partial_video(path: str | Path, decoded_seconds: float, declared_seconds: float, stacklevel: int = 1) -> None:
    """Warn (``PartialVideoWarning``) that a video ends early, attributed ``stacklevel`` frames above the caller."""
    warnings.warn(partial_video_message(path, decoded_seconds, declared_seconds), PartialVideoWarning,
                  stacklevel=stacklevel + 1)


def decode_video(path: str | Path, fps: float = DEFAULT_FPS, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """All frames of a video at ``fps``, resized to ``size`` = (width, height): uint8 [T, H, W, 3] RGB.

    Warns (``PartialVideoWarning``) when the video ends early.
    """
    chunks = list(iter_frame_chunks(path, _DECODE_CHUNK_FRAMES, fps=fps, size=size))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def iter_frame_chunks(
    path: str | Path,
    chunk_frames: int,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    report: DecodeReport | None = None,
) -> Iterator[np.ndarray]:
    """The frames of ``decode_video``, streamed in chunks uint8 [<=chunk_frames, H, W, 3].

    Only one chunk is held at a time, so two-hour videos stream in bounded memory. Once the last
    chunk is out, ``report`` (when given) holds how far the video decoded; without one, a video that
    ends early gives a ``PartialVideoWarning``.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}.")
    width, height = size
    chunk = np.empty((chunk_frames, height, width, 3), dtype=np.uint8)  # (chunk, H, W, 3)
    n_in_chunk = 0
    own_report = report if report is not None else DecodeReport()
    for frame in _iter_rgb_frames(Path(path), fps, size, own_report):
        chunk[n_in_chunk] = frame
        n_in_chunk += 1
        if n_in_chunk == chunk_frames:
            yield chunk
            chunk = np.empty_like(chunk)  # the consumer keeps the chunk it was given
            n_in_chunk = 0
    if n_in_chunk:
        yield chunk[:n_in_chunk].copy()  # a copy, so the unused rest of the buffer is freed
    if report is None and own_report.ends_early:
        warn_partial_video(path, own_report.decoded_seconds, own_report.declared_seconds, stacklevel=2)


def _iter_rgb_frames(path: Path, fps: float, size: tuple[int, int], report: DecodeReport) -> Iterator[np.ndarray]:
    """Filtered frames one by one, uint8 [H, W, 3]; raises VideoDecodeError if there is none. At the end
    ``report`` holds where the decoded frames end and where the header says they should."""
    container = _open_container(path)
    n_frames = 0
    with container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        offset = _start_offset(container, stream)
        errors: list[str] = []
        graph = None
        previous: av.VideoFrame | None = None
        timeline = _ConstantRateOutput()
        for frame in _decoded_frames(container, stream, errors):
            _retime(frame, previous, offset, stream)
            if graph is None:
                graph = _build_graph(frame, stream, fps, size)
            graph.push(frame)
            for rgb in timeline.write(_pull_ready(graph)):
                n_frames += 1
                yield rgb
            previous = frame
        if previous is not None:
            report.decoded_seconds = float((previous.pts + previous.duration) * stream.time_base)
            report.declared_seconds = _declared_end(container, stream, offset)
        if graph is not None:
            graph.push(None)  # end of stream at last pts + duration: the fps filter emits its last frames
            for rgb in timeline.write(_pull_ready(graph)):
                n_frames += 1
                yield rgb
    if n_frames == 0:
        raise VideoDecodeError(path, errors[-1] if errors else _NO_FRAMES_REASON)


def video_header_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a usable video file (empty, unreadable, no video stream), or None when FFmpeg
    opens it and finds a video stream. Reads only the header: how downloads tell a complete file."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return "the file is missing or empty"
    try:
        with _open_container(path) as container:
            _video_stream(container, path)
    except VideoDecodeError as error:
        return error.reason
    return None


def _open_container(path: Path) -> av.container.InputContainer:
    """Open a media file for reading, turning FFmpeg's refusal into a VideoDecodeError."""
    if not path.is_file():
        raise VideoDecodeError(path, "no such file")
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as error:
        raise VideoDecodeError(path, _reason(error)) from error


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first video stream of the file (the one ``ffmpeg`` picks for a single-stream output)."""
    if not container.streams.video:
        raise VideoDecodeError(path, "the file has no video stream")
    return container.streams.video[0]


def _decoded_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, errors: list[str]
) -> Iterator[av.VideoFrame]:
    """Decoded frames, packet by packet; damaged packets are skipped and a read error ends the stream."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as error:  # truncated or damaged file: like ffmpeg, stop reading here
            errors.append(_reason(error))
            packet = None
        try:
            yield from stream.codec_context.decode(packet)
        except av.FFmpegError as error:
            errors.append(_reason(error))
        if packet is None:
            return


def _declared_end(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  offset: int) -> float | None:
    """Where the header says the video stream ends, in seconds from the file's start: the stream's own
    duration (mp4), else the file's (webm declares only that); None when neither is known."""
    if stream.duration:
        start = stream.start_time if stream.start_time is not None else offset
        return float((start - offset + stream.duration) * stream.time_base)
    if container.duration:
        return float(container.duration * _AV_TIME_BASE)
    return None


def _start_offset(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """The file's start time in stream time-base units; ffmpeg subtracts it from every timestamp."""
    if container.start_time is None:
        return 0
    return _round_half_away(container.start_time * _AV_TIME_BASE / stream.time_base)


def _retime(
    frame: av.VideoFrame,
    previous: av.VideoFrame | None,
    offset: int,
    stream: av.video.stream.VideoStream,
) -> None:
    """Give a decoded frame the timestamp and duration the ffmpeg tool would give it."""
    if frame.pts is not None:
        frame.pts -= offset
    elif frame.dts is not None:
        frame.pts = frame.dts - offset
    elif previous is not None:  # no timestamp at all: continue from the previous frame
        frame.pts = previous.pts + previous.duration
    else:
        frame.pts = 0
    frame.duration = _duration_estimate(frame, previous, stream)


def _duration_estimate(
    frame: av.VideoFrame, previous: av.VideoFrame | None, stream: av.video.stream.VideoStream
) -> int:
    """A frame's duration in stream time-base units: its own, else the gap to the previous frame,
    else one period of the stream's frame rate, else the previous duration, else 1."""
    gap = frame.pts - previous.pts if previous is not None else -1
    # Demuxers invent a duration of 1 tick when the container has none; do not trust it then.
    if frame.duration > 0 and not (frame.duration == 1 and gap > 2):
        return frame.duration
    if gap > 0:
        return gap
    rate = stream.average_rate or stream.guessed_rate
    if rate:
        period = _round_half_away(1 / (Fraction(rate) * stream.time_base))
        if period > 0:
            return period
    return max(previous.duration if previous is not None else 0, 1)


def _build_graph(
    first: av.VideoFrame, stream: av.video.stream.VideoStream, fps: float, size: tuple[int, int]
) -> av.filter.Graph:
    """buffer -> [rotation] -> fps -> scale -> format=rgb24 -> buffersink, set up from the first frame."""
    width, height = size
    graph = av.filter.Graph()
    nodes = [
        graph.add(
            "buffer",
            video_size=f"{first.width}x{first.height}",
            pix_fmt=str(int(av.VideoFormat(first.format.name))),
            time_base=str(stream.time_base),
            pixel_aspect="1/1",
            colorspace=str(int(first.colorspace)),
            range=str(int(first.color_range)),
        )
    ]
    for name, args in _rotation_filters(first.rotation):
        nodes.append(graph.add(name, args))
    nodes.append(graph.add("fps", f"fps={fps!r}"))
    nodes.append(graph.add("scale", f"{width}:{height}:flags={_SCALE_FLAGS}"))
    nodes.append(graph.add("format", "rgb24"))
    nodes.append(graph.add("buffersink"))
    graph.link_nodes(*nodes).configure()
    return graph


def _rotation_filters(rotation: float) -> list[tuple[str, str | None]]:
    """The filters ``ffmpeg`` inserts to show a rotated video upright (its default autorotation).

    ``rotation`` is the display matrix's counter-clockwise angle in degrees (PyAV's convention).
    """
    clockwise = round(-rotation) % 360
    if clockwise == 90:
        return [("transpose", "clock")]
    if clockwise == 180:
        return [("hflip", None), ("vflip", None)]
    if clockwise == 270:
        return [("transpose", "cclock")]
    return []


def _pull_ready(graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
    """Every frame the graph can output now (rgb24, timestamps in output frame periods)."""
    while True:
        try:
            yield graph.vpull()
        except (av.BlockingIOError, av.EOFError):
            return


class _ConstantRateOutput:
    """The ffmpeg tool's constant-rate writer (``-fps_mode cfr``), fed the fps filter's frames.

    The output timeline has one slot per output period from the file's start (slot 0). A frame
    whose timestamp is ahead of the next free slot fills the slots up to and including its own;
    one more than a slot behind is dropped. Frames out of the fps filter are one period apart, so
    only the first frame can be repeated: when the video starts after the file's start.
    """

    _DRIFT_LIMIT = 1.1  # periods; the tool's threshold for duplicating or dropping

    def __init__(self) -> None:
        self.next_slot = 0

    def write(self, frames: Iterable[av.VideoFrame]) -> Iterator[np.ndarray]:
        """Each frame as uint8 [H, W, 3] RGB, as many times as the tool writes it (0, 1 or more)."""
        for frame in frames:
            copies = self._copies(frame.pts)
            self.next_slot += copies
            if copies:
                rgb = frame.to_ndarray()
                for _ in range(copies):
                    yield rgb

    def _copies(self, slot: int) -> int:
        drift = slot - self.next_slot + 1  # periods from the next free slot to this frame's end
        if drift < -self._DRIFT_LIMIT:
            return 0
        if drift > self._DRIFT_LIMIT:
            return drift
        return 1


def _round_half_away(value: Fraction) -> int:
    """Round to the nearest integer, halves away from zero (FFmpeg's AV_ROUND_NEAR_INF)."""
    magnitude = int(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def _reason(error: av.FFmpegError) -> str:
    """FFmpeg's own description of an error, without the file name PyAV appends."""
    return error.strerror or str(error)
