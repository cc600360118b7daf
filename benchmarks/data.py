"""Benchmark of the data path: direct 1-fps decoding vs the frame cache.

Generates a realistic source video with PyAV (default 300 s, 640x360, 30 fps H.264: textured
scenes with natural-image statistics, a panning camera, a moving object and a scene cut every
20 s), then measures

- direct decoding to 1-fps 398x224 frames (``decode_video``),
- writing the cache entry (``FrameCache.put``: JPEG encoding + atomic write),
- reading it back (``load_frames`` from the cache),
- bytes per cached frame, and the pixel error of the cache against direct decoding.

Prints a table and saves benchmarks/results/data.json with the device.

    python benchmarks/data.py               # 300 s source
    python benchmarks/data.py --seconds 30  # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import torch

from statechange.data.cache import JPEG_QUALITY, FrameCache, load_frames
from statechange.data.decode import DEFAULT_FPS, DEFAULT_SIZE, decode_video
from statechange.data.index import VideoFile

RESULTS = Path(__file__).parent / "results" / "data.json"
SCENE_SECONDS = 20  # a scene cut this often
N_OBJECTS = 12  # textured objects per scene
T = TypeVar("T")


def spectral_field(height: int, width: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance noise with amplitude spectrum ~ 1/f^slope: float [H, W]."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(height, width)) ** slope
    phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
    field = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(height, width))
    return (field - field.mean()) / field.std()


def make_scene(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A scene of textured objects with sharp outlines on a smooth, shaded background: uint8 [H, W, 3].

    Natural-image statistics: the background is low-frequency (slope 2), the objects carry
    1/f texture (slope 1.2) and a fine luminance grain covers everything.
    """
    shading = spectral_field(height, width, 2.0, rng)[..., None]  # (H, W, 1)
    image = rng.uniform(70, 180, 3) + 35 * shading + 8 * spectral_field(height, width, 1.5, rng)[..., None]
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(N_OBJECTS):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.05, 0.25) * height, rng.uniform(0.05, 0.2) * width
        if rng.random() < 0.5:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        else:
            inside = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
        texture = rng.uniform(40, 220, 3) + 25 * spectral_field(height, width, 1.2, rng)[..., None]
        image[inside] = texture[inside]
    image += 5 * spectral_field(height, width, 1.0, rng)[..., None]  # surface grain
    return np.clip(image, 0, 255).astype(np.uint8)


def textured_disc(radius: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A moving object: a textured disc (uint8 [2r, 2r, 3]) and its mask (bool [2r, 2r])."""
    yy, xx = np.mgrid[-radius:radius, -radius:radius]
    texture = rng.uniform(40, 220, 3) + 25 * spectral_field(2 * radius, 2 * radius, 1.2, rng)[..., None]
    return np.clip(texture, 0, 255).astype(np.uint8), (yy**2 + xx**2) < radius**2


def make_source_video(
    path: Path, seconds: float, width: int = 640, height: int = 360, rate: int = 30, seed: int = 0
) -> None:
    """Encode the benchmark's source video (H.264, CRF 23, yuv420p)."""
    rng = np.random.default_rng(seed)
    n_frames = round(seconds * rate)
    margin_y, margin_x = height // 2, width // 2  # room for the camera to pan
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": "23", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        scene = disc = mask = None
        for i in range(n_frames):
            t = i / rate
            if i % (SCENE_SECONDS * rate) == 0:
                scene = make_scene(height + margin_y, width + margin_x, rng)
                disc, mask = textured_disc(height // 6, rng)
            y0 = int(margin_y / 2 * (1 + np.sin(0.21 * t)))
            x0 = int(margin_x / 2 * (1 + np.sin(0.13 * t + 1.0)))
            image = scene[y0 : y0 + height, x0 : x0 + width].copy()  # (H, W, 3)
            size = disc.shape[0]
            oy = int((height - size) / 2 * (1 + np.sin(0.7 * t)))
            ox = int((width - size) / 2 * (1 + np.cos(0.45 * t)))
            image[oy : oy + size, ox : ox + size][mask] = disc[mask]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def timed(function: Callable[[], T], repeats: int = 1) -> tuple[T, float]:
    """The result of ``function`` and its best wall time over ``repeats`` runs, in seconds."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best  # type: ignore[return-value]


def device_info() -> dict[str, Any]:
    """The machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "device": f"{os.cpu_count()}-core CPU",
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work sharing the CPU during the run
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyav": av.__version__,
        "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
    }


def run(seconds: float, work_dir: Path) -> dict[str, Any]:
    """Make the source, measure, and return the results."""
    source = work_dir / "bench" / "source.mp4"
    source.parent.mkdir(parents=True, exist_ok=True)
    _, encode_s = timed(lambda: make_source_video(source, seconds))
    video = VideoFile("bench", "source", source)
    cache = FrameCache(work_dir / "cache")

    frames, decode_s = timed(lambda: decode_video(source), repeats=2)
    entry, write_s = timed(lambda: cache.put(video, frames), repeats=2)
    cached, read_s = timed(lambda: load_frames(video, cache), repeats=3)
    assert cached.shape == frames.shape, "the cache returned a different number of frames"

    error = np.abs(cached.astype(np.int16) - frames.astype(np.int16))
    mse = float(np.mean(error.astype(np.float64) ** 2))
    n_frames = len(frames)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device_info": device_info(),
        "source": {
            "seconds": seconds,
            "size": [640, 360],
            "fps": 30,
            "codec": "h264 (libx264 crf 23 veryfast, yuv420p)",
            "bytes": source.stat().st_size,
            "kbit_per_s": round(source.stat().st_size * 8 / seconds / 1000, 1),
            "encode_s": round(encode_s, 2),
        },
        "frames": {"n": n_frames, "fps": DEFAULT_FPS, "size": list(DEFAULT_SIZE)},
        "decode_direct_s": round(decode_s, 3),
        "cache_write_s": round(write_s, 3),
        "cache_read_s": round(read_s, 4),
        "read_speedup": round(decode_s / read_s, 1),
        "jpeg_quality": JPEG_QUALITY,
        "bytes_per_frame": round(entry.stat().st_size / n_frames),
        "mean_abs_error": round(float(error.mean()), 3),
        "max_abs_error": int(error.max()),
        "psnr_db": round(10 * np.log10(255.0**2 / mse), 2) if mse > 0 else float("inf"),
    }


def print_table(results: dict[str, Any]) -> None:
    source, frames = results["source"], results["frames"]
    rows = [
        ("source", f"{source['seconds']:g} s, 640x360 30 fps H.264, {source['kbit_per_s']} kbit/s"),
        ("frames", f"{frames['n']} at {frames['fps']:g} fps, {frames['size'][0]}x{frames['size'][1]}"),
        ("direct decode", f"{results['decode_direct_s']:.2f} s"),
        ("cache write", f"{results['cache_write_s']:.2f} s"),
        ("cache read (load_frames)", f"{results['cache_read_s']:.3f} s ({results['read_speedup']}x faster)"),
        ("bytes per cached frame", f"{results['bytes_per_frame'] / 1000:.1f} KB (JPEG q{results['jpeg_quality']})"),
        (
            "cache error vs direct",
            f"mean {results['mean_abs_error']:.2f}, max {results['max_abs_error']}, PSNR {results['psnr_db']:.1f} dB",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the source video")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to save the JSON results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        results = run(args.seconds, Path(work_dir))
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
