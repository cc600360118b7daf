"""Speed of the per-video augmentation (statechange.data.augment) on 300-frame 398x224 videos.

Draws `--draws` random transforms with the paper's policy and times `augment_frames` on a 300-frame
video on the CPU (and CUDA when present). Prints mean / median / p90 / max and saves
benchmarks/results/augment.json.

    python benchmarks/augment.py [--draws 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from statechange.config import AugmentConfig
from statechange.data.augment import augment_frames, sample_augmentation

N_FRAMES, HEIGHT, WIDTH = 300, 224, 398


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "augment.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = torch.randint(0, 256, (N_FRAMES, 3, HEIGHT, WIDTH), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = {}
    for device in devices:
        video = frames.to(device)
        times = []
        for draw in range(args.draws):
            augmentation = sample_augmentation(AugmentConfig(enabled=True), torch.Generator().manual_seed(draw))
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            augment_frames(video, augmentation)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        times.sort()
        results[device.type] = {
            "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
            "threads": torch.get_num_threads(), "frames": N_FRAMES, "draws": args.draws,
            "mean_s": round(statistics.mean(times), 4), "median_s": round(statistics.median(times), 4),
            "p90_s": round(times[int(0.9 * (len(times) - 1))], 4), "max_s": round(times[-1], 4),
        }
        row = results[device.type]
        print(f"{device.type}: 300 frames per video, mean {row['mean_s']:.3f} s, median {row['median_s']:.3f} s, "
              f"p90 {row['p90_s']:.3f} s, max {row['max_s']:.3f} s ({row['threads']} threads)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"torch": torch.__version__, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
