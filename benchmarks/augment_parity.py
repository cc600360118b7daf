"""How far the batched augmentation (statechange.data.augment) is from imgaug's step-by-step arithmetic.

Measures the two remaining differences on natural-looking 398x224 frames (benchmarks/data.py's
scenes), over transforms drawn with the paper's policy:

- crop-and-pad resizes back bilinearly; imgaug resizes with cubic interpolation (OpenCV's
  INTER_CUBIC, here torch's bicubic with the same a = -0.75 kernel, rounded to uint8);
- chained geometric steps are sampled once; imgaug resamples and rounds to uint8 after each step.

Prints mean / 99th percentile / max absolute differences in grey levels and saves
benchmarks/results/augment_parity.json.

    python benchmarks/augment_parity.py [--draws 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from data import device_info, make_scene

from statechange.config import AugmentConfig
from statechange.data.augment import (
    CropAndPad,
    VideoAugmentation,
    _columns_plan,
    _crop_and_pad_with_values,
    _geometric_window,
    _is_value_filled,
    sample_augmentation,
)

HEIGHT, WIDTH, CROP = 224, 398, 224
RESULTS = Path(__file__).parent / "results" / "augment_parity.json"


def scenes(n: int) -> torch.Tensor:
    """uint8 [n, 3, H, W] natural-looking frames."""
    rng = np.random.default_rng(0)
    return torch.from_numpy(np.stack([make_scene(HEIGHT, WIDTH, rng) for _ in range(n)])).permute(0, 3, 1, 2)


def whole(frames: torch.Tensor, steps: tuple) -> torch.Tensor:
    """Every column of ``frames`` through ``steps`` sampled once: float [n, 3, H, W]."""
    picture = frames
    for step in steps:
        if _is_value_filled(step):
            picture = _crop_and_pad_with_values(picture.float(), step)
        else:
            plan = _columns_plan((step,), WIDTH, HEIGHT, 0, WIDTH, picture.device)
            picture = _geometric_window(picture, (step,), plan)
    return picture.float()


def resampled_once(frames: torch.Tensor, steps: tuple) -> torch.Tensor:
    """The chain the way augment samples it (value-filled crop-and-pads break it)."""
    picture, run = frames, []
    for step in (*steps, None):
        if step is None or _is_value_filled(step):
            plan = _columns_plan(tuple(run), WIDTH, HEIGHT, 0, WIDTH, frames.device)
            picture = _geometric_window(picture, tuple(run), plan)
            if step is not None:
                picture = _crop_and_pad_with_values(picture.float(), step)
            run = []
        else:
            run.append(step)
    return picture.float()


def as_uint8(picture: torch.Tensor) -> torch.Tensor:
    return picture.round().clamp(0, 255).to(torch.uint8)


def cubic_crop_and_pad(frames: torch.Tensor, step: CropAndPad) -> torch.Tensor:
    """imgaug's crop-and-pad: crop, numpy.pad, cubic resize back, uint8."""
    top, right, bottom, left = step.pixels(WIDTH, HEIGHT)
    kept = frames[..., max(top, 0) : HEIGHT - max(bottom, 0), max(left, 0) : WIDTH - max(right, 0)]
    array = kept.permute(0, 2, 3, 1).numpy()
    padding = ((0, 0), (max(-top, 0), max(-bottom, 0)), (max(-left, 0), max(-right, 0)), (0, 0))
    options = {"constant": {"constant_values": step.fill[0]}, "linear_ramp": {"end_values": step.fill[0]}}
    padded = np.pad(array, padding, mode=step.mode, **options.get(step.mode, {}))
    picture = torch.from_numpy(padded).permute(0, 3, 1, 2).float()
    return as_uint8(F.interpolate(picture, size=(HEIGHT, WIDTH), mode="bicubic", align_corners=False))


def summary(differences: list[torch.Tensor]) -> dict[str, float]:
    values = torch.cat([d.flatten().float() for d in differences])
    return {"mean": round(float(values.mean()), 3), "p99": float(torch.quantile(values[::7], 0.99)),
            "max": float(values.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames = scenes(4)
    only_crop_pad = dataclasses.replace(AugmentConfig(), horizontal_flip_p=0.0, vertical_flip_p=0.0, crop_pad_p=1.0,
                                        affine_p=0.0, max_photometric=0)
    resize = []
    for seed in range(args.draws):
        augmentation = sample_augmentation(only_crop_pad, torch.Generator().manual_seed(seed))
        (step,) = augmentation.geometric
        ours = as_uint8(resampled_once(frames, (step,)))
        resize.append((ours.int() - cubic_crop_and_pad(frames, step).int()).abs())
    chained = []
    geometric_only = dataclasses.replace(AugmentConfig(), max_photometric=0)
    for seed in range(args.draws):
        augmentation: VideoAugmentation = sample_augmentation(geometric_only, torch.Generator().manual_seed(seed))
        if len(augmentation.geometric) < 2:
            continue
        step_by_step = frames
        for step in augmentation.geometric:
            step_by_step = as_uint8(whole(step_by_step, (step,)))
        once = as_uint8(resampled_once(frames, augmentation.geometric))
        chained.append((once.int() - step_by_step.int()).abs())
    results = {
        "device_info": device_info(),
        "draws": args.draws,
        "crop_and_pad_bilinear_vs_cubic_resize": summary(resize),
        "chain_sampled_once_vs_step_by_step": {**summary(chained), "transforms": len(chained)},
    }
    for name in ("crop_and_pad_bilinear_vs_cubic_resize", "chain_sampled_once_vs_step_by_step"):
        row = results[name]
        print(f"{name}: mean {row['mean']:.2f}, p99 {row['p99']:.0f}, max {row['max']:.0f} grey levels")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
