"""Running a model over a video's frames: the one forward path of training, evaluation and prediction.

Frames stay on the CPU as uint8 [T, H, W, 3] until their chunk is processed; each chunk is moved to
the device, cropped (centre crop, or the training view of a sampled augmentation) and forwarded.
Only training passes an augmentation, so prediction never imports the augmentation module.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from statechange.checkpoint import LoadedCheckpoint
from statechange.config import (
    AUTO_PRECISION,
    NO_CHANGE_THRESHOLD,
    PRECISION_CHOICES,
    PRECISIONS,
    ForwardSettings,
    FrameConfig,
    RecipeConfig,
    from_dict,
)
from statechange.data.cache import SpooledFrames
from statechange.data.crop import center_crop
from statechange.data.decode import iter_frame_chunks
from statechange.data.prefetch import prefetched
from statechange.errors import StateChangeError
from statechange.labels import category_probabilities
from statechange.model import StateChangeModel
from statechange.ordering import best_triplet
from statechange.progress import progress as progress_bar
from statechange.recipes import describe_recipe
from statechange.release import load_any_checkpoint
from statechange.runtime import available_cpus, checked_device

if TYPE_CHECKING:  # the training augmentation is imported only when training passes one
    from statechange.data.augment import VideoAugmentation

Frames = np.ndarray | torch.Tensor  # uint8 [T, H, W, 3] (decoded at 1 fps, 398x224)

PICTURE_JPEG_QUALITY = 85  # the seconds kept for a prediction's picture: about 10-20 KB each at 398x224

# x86 CPU features (Linux /proc/cpuinfo names) with native bf16 matrix / dot-product instructions;
# without them bf16 is emulated and autocast is slower than fp32.
CPU_BF16_FEATURES = frozenset({"amx_bf16", "avx512_bf16"})
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below which it never issues bf16 instructions.
ONEDNN_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                      "AVX512_CORE_VNNI"})


def cpu_features() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def runs_bf16_fast(device: str | torch.device) -> bool:
    """Whether bf16 autocast is faster than fp32 on ``device``: a CUDA GPU with native bf16, or a CPU
    with AMX-BF16 / AVX-512-BF16 that oneDNN is allowed to use (``ONEDNN_MAX_CPU_ISA`` may forbid it)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ONEDNN_ISAS_WITHOUT_BF16:
        return False
    return bool(cpu_features() & CPU_BF16_FEATURES)


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The precision a forward pass on ``device`` runs in: "auto" -> "bf16" where the device runs it fast
    (``runs_bf16_fast``), else "fp32"; "fp32" and "bf16" are kept as asked."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}.")
    if precision != AUTO_PRECISION:
        return precision
    return "bf16" if runs_bf16_fast(device) else "fp32"


def use_allowed_cores() -> int:
    """Give torch's intra-op pool every core the process is allowed; returns the count.

    Decoding gets no core of its own: its background thread needs a few percent of one core
    (about 1 s of decoding per 1,000 s of video), so reserving a core would slow the model far
    more than the decoder's time slices do. torch's own default counts the machine's cores,
    not the ones a container or ``taskset`` allows.
    """
    threads = available_cpus()
    torch.set_num_threads(threads)
    return threads


def is_convolutional(module: torch.nn.Module) -> bool:
    """Whether ``module`` is a convolutional network: more 2-D convolutions than a ViT's one patch embedding."""
    return sum(isinstance(m, torch.nn.Conv2d) for m in module.modules()) > 1


def ready_for_inference(model: StateChangeModel, device: str | torch.device) -> StateChangeModel:
    """The model on ``device`` in eval mode; a convolutional backbone in channels-last memory format
    (faster convolutions on CPUs and GPUs; frames [n, H, W, 3] already arrive in that layout)."""
    model = model.to(device).eval()
    if is_convolutional(model.backbone):
        model.backbone.to(memory_format=torch.channels_last)
    return model


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
    members: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """State logits [T, 2N+1] and action logits [T, N+1] (float32, on the device) of every frame; with
    ``members``, each ensemble member's: [T, K, 2N+1] and [T, K, N+1] (``StateChangeModel.member_heads``)."""
    if len(frames) == 0:
        raise ValueError("The video has no frames.")
    state, action = _map_chunks(model.member_logits if members else model, frames, settings, augmentation)
    return state, action


def video_features(model: StateChangeModel, frames: Frames, settings: ForwardSettings) -> torch.Tensor:
    """Backbone features [T, F] (float32, on the device) of every frame, centre-cropped."""
    if len(frames) == 0:
        raise ValueError("The video has no frames.")
    (features,) = _map_chunks(model.features, frames, settings, None)
    return features


K = TypeVar("K")


def batched_features(model: StateChangeModel, videos: Iterable[tuple[K, Frames]],
                     settings: ForwardSettings) -> Iterator[tuple[K, torch.Tensor]]:
    """Backbone features [T, F] (float32, on the device) of each (key, frames [T, H, W, 3]), in order.

    Short videos share forward passes: frames are batched across video boundaries so the model always
    sees full chunks of ``settings.chunk_size`` (only the last may be smaller). A video is yielded as
    soon as all its frames went through; videos without frames are skipped.

        videos:  |--- a (5) ---|-- b (3) --|------ c (9) ------|
        chunks:  |------ 8 ------------------|------ 8 ------|1|   (chunk_size 8)
    """
    waiting: deque[tuple[K, int, list[torch.Tensor]]] = deque()  # (key, frames, feature pieces so far)
    pieces: deque[torch.Tensor] = deque()  # frames not yet forwarded, uint8 [n, H, W, 3]
    n_pending = 0
    for key, frames in videos:
        if len(frames) == 0:
            continue
        waiting.append((key, len(frames), []))
        pieces.append(torch.from_numpy(frames) if isinstance(frames, np.ndarray) else frames)
        n_pending += len(frames)
        while n_pending >= settings.chunk_size:
            n_pending -= settings.chunk_size
            yield from _forward_and_share(model, _take(pieces, settings.chunk_size), waiting, settings)
    if n_pending:
        yield from _forward_and_share(model, _take(pieces, n_pending), waiting, settings)


def _take(pieces: deque[torch.Tensor], n_frames: int) -> torch.Tensor:
    """The first ``n_frames`` frames of ``pieces`` (removed from it), uint8 [n_frames, H, W, 3]."""
    taken = []
    while n_frames:
        piece = pieces.popleft()
        if len(piece) > n_frames:
            pieces.appendleft(piece[n_frames:])
            piece = piece[:n_frames]
        taken.append(piece)
        n_frames -= len(piece)
    return taken[0] if len(taken) == 1 else torch.cat(taken)


def _forward_and_share(model: StateChangeModel, chunk: torch.Tensor, waiting: deque,
                       settings: ForwardSettings) -> Iterator[tuple[K, torch.Tensor]]:
    """Forward one chunk, hand its rows to the waiting videos in order, yield the completed ones."""
    (features,) = _map_chunks(model.features, chunk, replace(settings, chunk_size=len(chunk)), None)  # [n, F]
    start = 0
    while start < len(features):
        key, n_frames, parts = waiting[0]
        needed = n_frames - sum(len(p) for p in parts)
        parts.append(features[start : start + needed])
        start += len(parts[-1])
        if sum(len(p) for p in parts) == n_frames:
            waiting.popleft()
            yield key, parts[0] if len(parts) == 1 else torch.cat(parts)


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
    triplet_frames: list[np.ndarray] | None = None  # uint8 [H, W, 3] frames at the triplet's seconds (the picture)
    triplet_score: float | None = None  # geometric mean of the triplet's three probabilities
    category_ranking: list[tuple[str, float]] | None = None  # (category, triplet score), best first; auto only
    no_change_threshold: float = NO_CHANGE_THRESHOLD

    @classmethod
    def from_curves(cls, video: str, category: str, initial: torch.Tensor, action: torch.Tensor, end: torch.Tensor,
                    frames: Frames | None = None, no_change_threshold: float = NO_CHANGE_THRESHOLD) -> Prediction:
        """The prediction made of one category's curves [T] (e.g. those of evaluation): the triplet decoded
        as ``predict`` does (no distance limit) and its score; ``frames`` uint8 [T, H, W, 3] give the picture's."""
        curves = [torch.as_tensor(c, dtype=torch.float32).cpu()[None] for c in (initial, action, end)]  # [1, T] each
        triplets = best_triplet(*curves, max_distance=None)  # [1, 3]
        found = bool(triplets[0, 0] >= 0)
        triplet = tuple(int(s) for s in triplets[0]) if found else None
        return cls(video=video, category=category, initial_state=curves[0][0].numpy(), action=curves[1][0].numpy(),
                   end_state=curves[2][0].numpy(), triplet=triplet,  # type: ignore[arg-type]
                   triplet_frames=None if triplet is None or frames is None else [
                       np.asarray(frames[s]) for s in triplet],
                   triplet_score=float(triplet_scores(*curves, triplets)[0]) if found else None,
                   no_change_threshold=no_change_threshold)

    @property
    def no_clear_change(self) -> bool:
        """True when the triplet score is below the threshold (or the video is too short for a triplet)."""
        return self.triplet_score is None or self.triplet_score < self.no_change_threshold

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
        ranking = None if self.category_ranking is None else [
            {"category": name, "score": round(score, 6)} for name, score in self.category_ranking
        ]
        return {
            "video": self.video,
            "category": self.category,
            **({} if ranking is None else {"category_ranking": ranking}),
            "duration_seconds": self.duration,
            "triplet_score": None if self.triplet_score is None else round(self.triplet_score, 6),
            "no_clear_change": self.no_clear_change,
            "no_change_threshold": self.no_change_threshold,
            "constrained": None if self.triplet is None else {
                name: point(name, second) for name, second in zip(names, self.triplet, strict=True)
            },
            "unconstrained": {name: point(name, second) for name, second in zip(names, self.unconstrained,
                                                                                 strict=True)},
        }


class StateChangePredictor:
    """A trained model ready to predict videos: ``load_model(path).predict(video, category)``."""

    def __init__(self, model: StateChangeModel, categories: list[str], settings: ForwardSettings,
                 frames: FrameConfig = FrameConfig(), recipe: str = "recipe: paper") -> None:
        self.model = ready_for_inference(model, settings.device)
        self.categories = list(categories)
        self.settings, self.frames = settings, frames
        self.recipe = recipe  # the line naming the training recipe (recipe_line), for display

    def category_index(self, category: str) -> int:
        if category not in self.categories:
            raise StateChangeError(
                f"Unknown category {category!r}: this model knows {', '.join(self.categories)}; pass one of them."
            )
        return self.categories.index(category)

    @torch.no_grad()
    def predict(self, video: str | Path | Frames, category: str | None = None, max_distance: int | None = None,
                no_change_threshold: float = NO_CHANGE_THRESHOLD, progress: bool = False) -> Prediction:
        """Predict a video file or uint8 frames [T, H, W, 3].

        ``category`` None (or "auto") ranks every category of the model by its best triplet score,
        from the same forward pass, and keeps the best.
        A file is decoded once, at 1 fps, in chunks that a background thread decodes while the model
        runs on the previous one; every second is kept as a JPEG in a temporary file so that the
        picture's frames need no second decode. ``max_distance`` limits the seconds between state
        and action in the triplet (None: no limit, as evaluation does). ``progress`` reports the
        seconds of video done (on stderr; a bar on a terminal, lines in a log).
        """
        auto = category is None or category == AUTO_CATEGORY
        if not auto:
            self.category_index(category)
        if isinstance(video, str | Path):
            path = Path(video)
            if not path.is_file():
                raise StateChangeError(f"Video {path} does not exist; check the path.")
            name, kept = str(path), SpooledFrames(PICTURE_JPEG_QUALITY)
            chunks = prefetched(_kept_while_decoded(
                iter_frame_chunks(path, self.settings.chunk_size, fps=self.frames.fps, size=self.frames.size), kept))
        else:
            name, kept, chunks = "<array>", None, iter([video])
        try:
            logits = []
            with progress_bar(desc=Path(name).name, unit="s of video", enabled=progress, leave=False) as bar:
                for chunk in chunks:
                    logits.append(video_logits(self.model, chunk, self.settings))
                    bar.update(len(chunk) / self.frames.fps)  # seconds of video
            if not logits:
                raise StateChangeError(f"Video {name} has no frames.")
            state = torch.cat([s for s, _ in logits])  # [T, 2N+1]
            action = torch.cat([a for _, a in logits])  # [T, N+1]
            candidates = list(range(len(self.categories))) if auto else [self.category_index(category)]
            ranked, initial, act, end, triplets, scores = rank_categories(
                state, action, candidates, max_distance)
            best = 0  # ranked best first
            ranking = [(self.categories[c], float(s)) for c, s in zip(ranked, scores.tolist(), strict=True)]
            triplet = triplets[best].tolist()
            triplet = None if triplet[0] < 0 else tuple(triplet)
            pictures = None if triplet is None else [
                np.asarray(kept[second] if kept is not None else video[second]) for second in triplet]
        finally:
            if kept is not None:
                chunks.close()  # stops the decoding thread before its file goes
                kept.close()
        return Prediction(
            video=name, category=ranking[best][0], initial_state=initial[best].cpu().numpy(),
            action=act[best].cpu().numpy(), end_state=end[best].cpu().numpy(), triplet=triplet,
            triplet_frames=pictures, triplet_score=None if triplet is None else ranking[best][1],
            category_ranking=ranking if auto else None, no_change_threshold=no_change_threshold,
        )


def _kept_while_decoded(chunks: Iterator[np.ndarray], kept: SpooledFrames) -> Iterator[np.ndarray]:
    """The chunks unchanged; each frame is also appended to ``kept`` (in the decoding thread)."""
    for chunk in chunks:
        kept.extend(chunk)
        yield chunk


AUTO_CATEGORY = "auto"  # the category name that asks predict to choose the category


def triplet_scores(initial: torch.Tensor, action: torch.Tensor, end: torch.Tensor,
                   triplets: torch.Tensor) -> torch.Tensor:
    """Geometric mean of the three probabilities at each triplet: [B, T] x3 and [B, 3] -> [B] in [0, 1].

    0 where a video is too short for a triplet (a row of -1).
    """
    index = triplets.clamp(min=0)
    chosen = torch.stack([curve.gather(1, index[:, column : column + 1]).squeeze(1)
                          for column, curve in enumerate((initial, action, end))], dim=1)  # [B, 3]
    score = chosen.clamp(min=0).prod(dim=1).pow(1.0 / 3.0)
    return torch.where(triplets[:, 0] >= 0, score, torch.zeros_like(score))


def rank_categories(
    state: torch.Tensor, action: torch.Tensor, candidates: list[int], max_distance: int | None,
) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every candidate category's curves and best triplet from one video's logits, best score first.

    state [T, 2N+1] and action [T, N+1] logits; candidates: category indices. Returns the candidates
    sorted by score (stable: ties keep the given order) with, in that order, initial, action, end [C, T],
    triplets [C, 3] and scores [C].
    """
    index = torch.tensor(candidates, device=state.device)
    initial, act, end = category_probabilities(state.expand(len(candidates), -1, -1),
                                               action.expand(len(candidates), -1, -1), index)  # [C, T] each
    triplets = best_triplet(initial, act, end, max_distance=max_distance)  # [C, 3], one batched decode
    scores = triplet_scores(initial, act, end, triplets)  # [C]
    order = torch.sort(scores, descending=True, stable=True).indices
    ranked = [candidates[i] for i in order.tolist()]
    return ranked, initial[order], act[order], end[order], triplets[order], scores[order]


def load_model(path: str | Path, device: str | torch.device | None = None, precision: str = AUTO_PRECISION,
               chunk_size: int = ForwardSettings.chunk_size,
               categories: list[str] | None = None) -> StateChangePredictor:
    """Load a checkpoint made by ``statechange train`` (its directory or its model.safetensors) or a
    release ``.pth`` file (``categories``: its category names, needed unless it has ChangeIt's 44).

    ``precision`` "auto" runs bf16 where the device runs it fast (``resolve_precision``), else fp32.
    """
    device = checked_device(device)
    checkpoint = load_any_checkpoint(path, device=device, categories=categories)
    frames = frames_config_of(checkpoint)
    settings = ForwardSettings(device=str(device), precision=resolve_precision(precision, device),
                               chunk_size=chunk_size, crop=frames.crop)
    return StateChangePredictor(checkpoint.model, checkpoint.categories, settings, frames, recipe_line(checkpoint))


def recipe_line(checkpoint: LoadedCheckpoint) -> str:
    """``recipes.describe_recipe`` of a checkpoint's training recipe, heads' learning rate and ensemble size
    ("paper" for checkpoints made before recipes existed; no rate where none is recorded: release models)."""
    train_config = checkpoint.metadata.get("train_config") or {}
    recipe = from_dict(RecipeConfig, train_config["recipe"]) if "recipe" in train_config else RecipeConfig()
    return describe_recipe(recipe, (train_config.get("optim") or {}).get("lr"), checkpoint.model.config.ensemble_size)


def frames_config_of(checkpoint: LoadedCheckpoint) -> FrameConfig:
    """The frame settings a checkpoint was trained with (the defaults for checkpoints that lack them)."""
    train_config = checkpoint.metadata.get("train_config") or {}
    return from_dict(FrameConfig, train_config["frames"]) if "frames" in train_config else FrameConfig()
