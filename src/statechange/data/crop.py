"""The square crop fed to the backbone: evaluation and prediction take the centre columns, training
without augmentation too (the release does), and the training augmentation its own random offset.

Small on purpose: inference imports this, never the training augmentation (``data/augment.py``).
"""

from __future__ import annotations

import torch

from statechange.config import FrameConfig

DEFAULT_CROP: int = FrameConfig().crop  # 224


def center_crop_offset(width: int, crop: int = DEFAULT_CROP) -> int:
    """First column of the centre crop: (398 - 224) // 2 = 87."""
    return (width - crop) // 2


def center_crop(frames: torch.Tensor, crop: int = DEFAULT_CROP) -> torch.Tensor:
    """[N, 3, H, W] -> [N, 3, H, crop]: columns (W - crop) // 2 onwards (87..310 for 398 -> 224)."""
    return crop_frames(frames, center_crop_offset(frames.shape[-1], crop), crop)


def crop_frames(frames: torch.Tensor, offset: int, crop: int = DEFAULT_CROP) -> torch.Tensor:
    """[N, 3, H, W] -> [N, 3, H, crop]: columns offset..offset+crop-1 (a view of ``frames``)."""
    width = frames.shape[-1]
    if not (0 <= offset and offset + crop <= width):
        raise ValueError(f"Columns {offset}..{offset + crop - 1} are outside {width}-pixel-wide frames.")
    return frames[..., offset : offset + crop]
