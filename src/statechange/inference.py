"""Running a model over a video's frames: the one forward path of training, evaluation and prediction.

Frames stay on the CPU as uint8 [T, H, W, 3] until their chunk is processed; each chunk is moved to
the device, cropped (centre crop, or the training view of a sampled augmentation) and forwarded.
Only training passes an augmentation, so prediction never imports the augmentation module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from statechange.checkpoint import LoadedCheckpoint, load_checkpoint
from statechange.config import PRECISIONS, ForwardSettings, FrameConfig, from_dict
from statechange.data.crop import center_crop
from statechange.data.decode import iter_frame_chunks
from statechange.errors import StateChangeError
from statechange.labels import category_probabilities
from statechange.model import StateChangeModel
from statechange.ordering import best_triplet
from statechange.runtime import default_device

if TYPE_CHECKING:  # the training augmentation is imported only when training passes one
    from statechange.data.augment import VideoAugmentation

Frames = np.ndarray | torch.Tensor  # uint8 [T, H, W, 3] (decoded at 1 fps, 398x224)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when precision is "bf16"; a no-op for "fp32"."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
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
    if augmentation is None:
        return center_crop(chunk, crop)
    from statechange.data.augment import training_view

    return training_view(chunk, augmentation, crop=crop)


def iter_chunks(n_frames: int, chunk_size: int) -> Iterator[slice]:
    for start in range(0, n_frames, chunk_size):
        yield slice(start, min(start + chunk_size, n_frames))


@torch.no_grad()
def _map_chunks(
    function: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]],
    frames: Frames,
    settings: ForwardSettings,
    augmentation: VideoAugmentation | None,
) -> list[torch.Tensor]:
    device = torch.device(settings.device)
    outputs: list[list[torch.Tensor]] = []
    for part in iter_chunks(len(frames), settings.chunk_size):
        inputs = prepare_frames(frames[part], device, augmentation, settings.crop)
        with autocast(device, settings.precision):
            result = function(inputs)
        outputs.append([r.float() for r in (result if isinstance(result, tuple) else (result,))])
    return [torch.cat(column, dim=0) for column in zip(*outputs, strict=True)]


def video_logits(
    model: StateChangeModel,
    frames: Frames,
    settings: ForwardSettings,
    augmentation: VideoAugmentation | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """State logits [T, 2N+1] and action logits [T, N+1] (float32, on the device) of every frame."""
    if len(frames) == 0:
        raise ValueError("The video has no frames.")
    state, action = _map_chunks(model, frames, settings, augmentation)
    return state, action


def video_features(model: StateChangeModel, frames: Frames, settings: ForwardSettings) -> torch.Tensor:
    """Backbone features [T, F] (float32, on the device) of every frame, centre-cropped."""
    if len(frames) == 0:
        raise ValueError("The video has no frames.")
    (features,) = _map_chunks(model.features, frames, settings, None)
    return features


# ----------------------------------------------------------------------------------------------
# The public API: load a trained model, predict a video


@dataclass
class Prediction:
    """Per-second probabilities of one category in one video, and where the change happens."""

    video: str  # the path, or "<array>" for frames given directly
    category: str
    initial_state: np.ndarray  # float32 [T]: P(initial state) per second
    action: np.ndarray  # float32 [T]: P(action) per second
    end_state: np.ndarray  # float32 [T]: P(end state) per second
    triplet: tuple[int, int, int] | None  # constrained best (initial, action, end) seconds; None if T < 3

    @property
    def duration(self) -> int:
        """Seconds of video, i.e. frames at 1 fps."""
        return len(self.action)

    @property
    def unconstrained(self) -> tuple[int, int, int]:
        """The argmax second of each curve on its own (no ordering constraint)."""
        return (int(self.initial_state.argmax()), int(self.action.argmax()), int(self.end_state.argmax()))

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: duration, the constrained triplet with its probabilities, the argmaxes."""
        curves = {"initial_state": self.initial_state, "action": self.action, "end_state": self.end_state}

        def point(name: str, second: int) -> dict[str, float | int]:
            return {"second": second, "probability": round(float(curves[name][second]), 6)}

        names = tuple(curves)
        return {
            "video": self.video,
            "category": self.category,
            "duration_seconds": self.duration,
            "constrained": None if self.triplet is None else {
                name: point(name, second) for name, second in zip(names, self.triplet, strict=True)
            },
            "unconstrained": {name: point(name, second) for name, second in zip(names, self.unconstrained,
                                                                                 strict=True)},
        }


class StateChangePredictor:
    """A trained model ready to predict videos: ``load_model(path).predict(video, category)``."""

    def __init__(self, model: StateChangeModel, categories: list[str], settings: ForwardSettings,
                 frames: FrameConfig = FrameConfig()) -> None:
        self.model = model.to(settings.device).eval()
        self.categories = list(categories)
        self.settings, self.frames = settings, frames

    def category_index(self, category: str) -> int:
        if category not in self.categories:
            raise StateChangeError(
                f"Unknown category {category!r}: this model knows {', '.join(self.categories)}; pass one of them."
            )
        return self.categories.index(category)

    @torch.no_grad()
    def predict(self, video: str | Path | Frames, category: str, max_distance: int | None = None) -> Prediction:
        """Predict a video file (decoded at 1 fps, streamed in chunks) or uint8 frames [T, H, W, 3].

        ``max_distance`` limits the seconds between state and action in the triplet (None: no limit,
        as evaluation does).
        """
        index = self.category_index(category)
        if isinstance(video, str | Path):
            path = Path(video)
            if not path.is_file():
                raise StateChangeError(f"Video {path} does not exist; check the path.")
            chunks = iter_frame_chunks(path, self.settings.chunk_size, fps=self.frames.fps, size=self.frames.size)
            name = str(path)
        else:
            chunks, name = iter([video]), "<array>"
        logits = [video_logits(self.model, chunk, self.settings) for chunk in chunks]
        if not logits:
            raise StateChangeError(f"Video {name} has no frames.")
        state = torch.cat([s for s, _ in logits])  # [T, 2N+1]
        action = torch.cat([a for _, a in logits])  # [T, N+1]
        initial, act, end = category_probabilities(state, action, index)
        triplet = best_triplet(initial, act, end, max_distance=max_distance).tolist()
        return Prediction(
            video=name, category=category, initial_state=initial.cpu().numpy(), action=act.cpu().numpy(),
            end_state=end.cpu().numpy(), triplet=None if triplet[0] < 0 else tuple(triplet),
        )


def load_model(path: str | Path, device: str | torch.device | None = None, precision: str = "fp32",
               chunk_size: int = 64) -> StateChangePredictor:
    """Load a checkpoint made by ``statechange train`` (its directory or its model.safetensors)."""
    device = torch.device(device if device is not None else default_device())
    checkpoint = load_checkpoint(path, device=device, load_training_state=False)
    frames = frames_config_of(checkpoint)
    settings = ForwardSettings(device=str(device), precision=precision, chunk_size=chunk_size, crop=frames.crop)
    return StateChangePredictor(checkpoint.model, checkpoint.categories, settings, frames)


def frames_config_of(checkpoint: LoadedCheckpoint) -> FrameConfig:
    """The frame settings a checkpoint was trained with (the defaults for checkpoints that lack them)."""
    train_config = checkpoint.metadata.get("train_config") or {}
    return from_dict(FrameConfig, train_config["frames"]) if "frames" in train_config else FrameConfig()
