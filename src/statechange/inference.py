"""Running a model over a video's frames: the one forward path of training, evaluation and prediction.

Frames stay on the CPU as uint8 [T, H, W, 3] until their chunk is processed; each chunk is moved to
the device, cropped (centre crop, or the training view of a sampled augmentation) and forwarded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from statechange.data.augment import VideoAugmentation, training_view
from statechange.labels import category_probabilities
from statechange.model import StateChangeModel

Frames = np.ndarray | torch.Tensor  # uint8 [T, H, W, 3] (decoded at 1 fps, 398x224)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when precision is "bf16"; a no-op for "fp32"."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}.")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def to_channels_first(frames: Frames) -> torch.Tensor:
    """uint8 [T, H, W, 3] (numpy or torch) -> uint8 [T, 3, H, W] view, without copying."""
    tensor = torch.from_numpy(frames) if isinstance(frames, np.ndarray) else frames
    if tensor.dtype != torch.uint8 or tensor.dim() != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"Expected uint8 frames [T, H, W, 3], got {tensor.dtype} {tuple(tensor.shape)}.")
    return tensor.permute(0, 3, 1, 2)


def prepare_frames(
    frames: Frames, device: torch.device, augmentation: VideoAugmentation | None, crop: int
) -> torch.Tensor:
    """CPU uint8 [n, H, W, 3] -> the model's input on ``device``: uint8 [n, 3, crop, crop]."""
    chunk = to_channels_first(frames).to(device, non_blocking=True)
    return training_view(chunk, augmentation, crop=crop)


def iter_chunks(n_frames: int, chunk_size: int) -> Iterator[slice]:
    for start in range(0, n_frames, chunk_size):
        yield slice(start, min(start + chunk_size, n_frames))


@torch.no_grad()
def _map_chunks(
    function: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]],
    frames: Frames,
    device: torch.device,
    chunk_size: int,
    precision: str,
    augmentation: VideoAugmentation | None,
    crop: int,
) -> list[torch.Tensor]:
    outputs: list[list[torch.Tensor]] = []
    for part in iter_chunks(len(frames), chunk_size):
        inputs = prepare_frames(frames[part], device, augmentation, crop)
        with autocast(device, precision):
            result = function(inputs)
        outputs.append([r.float() for r in (result if isinstance(result, tuple) else (result,))])
    return [torch.cat(column, dim=0) for column in zip(*outputs, strict=True)]


def video_logits(
    model: StateChangeModel,
    frames: Frames,
    device: torch.device,
    chunk_size: int = 64,
    precision: str = "fp32",
    augmentation: VideoAugmentation | None = None,
    crop: int = 224,
) -> tuple[torch.Tensor, torch.Tensor]:
    """State logits [T, 2N+1] and action logits [T, N+1] (float32, on ``device``) of every frame."""
    if len(frames) == 0:
        raise ValueError("The video has no frames.")
    state, action = _map_chunks(model, frames, device, chunk_size, precision, augmentation, crop)
    return state, action


def video_features(
    model: StateChangeModel,
    frames: Frames,
    device: torch.device,
    chunk_size: int = 64,
    precision: str = "fp32",
    crop: int = 224,
) -> torch.Tensor:
    """Backbone features [T, F] (float32, on ``device``) of every frame, centre-cropped."""
    if len(frames) == 0:
        raise ValueError("The video has no frames.")
    (features,) = _map_chunks(model.features, frames, device, chunk_size, precision, None, crop)
    return features


def video_probabilities(
    model: StateChangeModel,
    frames: Frames,
    category: int,
    device: torch.device,
    chunk_size: int = 64,
    precision: str = "fp32",
    crop: int = 224,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-second P(initial state), P(action), P(end state) [T] of ``category`` (float32, on ``device``)."""
    state, action = video_logits(model, frames, device, chunk_size, precision, None, crop)
    return category_probabilities(state, action, category)
