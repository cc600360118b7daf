"""Every constant of the method, with the value of the paper / release as its default.

The dataclasses are plain data: they serialise to JSON (``asdict``) inside checkpoints and are
rebuilt from it with ``from_dict``, so a checkpoint always carries the exact settings it was made
with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from statechange.errors import StateChangeError

T = TypeVar("T")

# The frame cache (statechange extract): not the method's, but shown by the command line's help.
JPEG_QUALITY = 90  # about 23 KB per 398x224 frame of textured content
LOSSLESS = "lossless"  # the cache quality that stores frames as PNG: bit-identical to direct decoding
DEFAULT_CACHE_QUALITY: int | str = JPEG_QUALITY  # training videos' entries (docs/benchmarks.md, "Frame cache quality")

# CLIP's input normalisation (OpenAI's preprocessing), used for every CLIP backbone.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# SHA-256 of OpenAI's ViT-L/14 TorchScript archive, the file the release loads.
OPENAI_VIT_L14_SHA256 = "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"


# Distributed runs: not the method's; the longest wait of a process in one collective operation before it fails
# (longer than any validation pass or feature computation between two collectives).
COLLECTIVE_TIMEOUT_MINUTES = 30.0


@dataclass(frozen=True)
class FrameConfig:
    """How videos become frames (METHOD.md, "Frames")."""

    fps: float = 1.0  # one frame per second; frame i <-> annotation row i
    width: int = 398  # decoded width (aspect ratio not kept)
    height: int = 224  # decoded height
    crop: int = 224  # square crop fed to the backbone; eval: centre, train: random offset

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order FFmpeg's scale filter and the decoder take."""
        return (self.width, self.height)


@dataclass(frozen=True)
class ModelConfig:
    """Backbone and the two heads (METHOD.md, "Model")."""

    backbone: str = "vit_large_patch14_clip_quickgelu_224"  # OpenAI CLIP ViT-L/14 image tower
    hidden_sizes: tuple[int, ...] = (4096,)  # hidden layers of each head MLP (ReLU)
    image_size: int = 224
    # Independent (state head, action head) pairs, each trained on the pseudo-labels its own predictions
    # decode; the model predicts their mean log-probabilities. The paper: 1 (the improved recipe: IMPROVED_ENSEMBLE).
    ensemble_size: int = 1


@dataclass(frozen=True)
class PseudoLabelConfig:
    """The causal ordering constraint and the frames it labels (METHOD.md, "Pseudo-labels")."""

    max_distance: int = 500  # D: max frames between initial state and action, and action and end state
    n_frames_per_target: int = 3  # n: frames per pseudo-ground-truth, offsets -1, 0, +1
    kappa: int = 60  # seconds before/after the action used as action-background frames


@dataclass(frozen=True)
class LossConfig:
    """Loss weighting (METHOD.md, "Loss")."""

    action_loss_weight: float = 0.2  # batch loss = state + 0.2 * action
    relevance_temperature: float = 0.001  # w = sigmoid((r - theta_c) / 0.001)
    ignore_video_weight: bool = False  # w = 1 for datasets without relevance scores


@dataclass(frozen=True)
class OptimConfig:
    """Optimisers and schedule (METHOD.md, "Optimisation"; release defaults)."""

    n_epochs: int = 20
    local_batch_size: int = 2  # videos per process per micro-batch; the paper used 32 GPUs x 2 -> batch 64
    accumulate_steps: int = 1  # K micro-batches summed per optimiser step: GPUs x local batch x K = 64 (paper)
    lr: float = 1e-4  # heads, SGD
    momentum: float = 0.9  # heads, SGD
    weight_decay: float = 1e-3  # heads, SGD
    lr_backbone: float = 1e-5  # backbone, AdamW, only with train_backbone
    weight_decay_backbone: float = 0.0  # backbone, AdamW
    warmup_epochs: float = 5.0  # linear warm-up length, in epochs' worth of steps
    train_backbone: bool = False  # fine-tune the backbone end to end (the paper's main setting)


@dataclass(frozen=True)
class AugmentConfig:
    """One random transform per video, identical on all its frames (METHOD.md, "Optimisation")."""

    enabled: bool = False
    horizontal_flip_p: float = 0.5
    vertical_flip_p: float = 0.1
    crop_pad_p: float = 0.5
    crop_pad_range: tuple[float, float] = (-0.05, 0.10)  # per side, fraction of the side length
    affine_p: float = 0.5
    affine_scale: tuple[float, float] = (0.8, 1.2)  # per axis
    affine_translate: float = 0.2  # +- fraction of the side length
    affine_rotate: float = 15.0  # +- degrees
    affine_shear: float = 16.0  # +- degrees
    max_photometric: int = 4  # 0..4 of blur / sharpen / brightness / hue-saturation, random order
    blur_gaussian_sigma: tuple[float, float] = (0.0, 3.0)
    blur_box_size: tuple[int, int] = (2, 3)
    blur_median_size: tuple[int, int] = (3, 5)
    sharpen_alpha: tuple[float, float] = (0.0, 1.0)
    sharpen_lightness: tuple[float, float] = (0.75, 1.5)
    brightness_shift: tuple[int, int] = (-10, 10)  # added to uint8 values
    brightness_per_channel_p: float = 0.5
    hue_saturation_shift: tuple[int, int] = (-20, 20)


RECIPES = ("paper", "improved")


@dataclass(frozen=True)
class RecipeConfig:
    """The training recipe: "paper" (METHOD.md exactly, the defaults) or "improved" (issue 14).

    ``statechange.recipes.apply_recipe`` sets everything a recipe changes (the improved recipe: the
    heads' learning rate ``IMPROVED_LR`` and the ensemble of ``IMPROVED_ENSEMBLE`` head pairs).
    """

    name: str = "paper"


# The improved recipe, chosen by measurement (benchmarks/recipes.py; docs/benchmarks.md, "Recipes"): the
# heads' SGD learning rate. The paper's 1e-4 was set for ChangeIt, where 20 epochs are ~10,000 steps of 64
# videos; on a dataset of a few dozen videos per category the heads see ~600x fewer video updates and end
# under-trained, their state precision decided by the seed. Everything else stays the paper's.
IMPROVED_LR = 1e-3  # 10x the paper's; 1e-2 made the state heads collapse (docs/benchmarks.md)
# ... and an ensemble of head pairs, each self-training on its own pseudo-labels (ModelConfig.ensemble_size):
# which states a single pair locks onto is decided by its initialisation; averaging independent pairs cut
# the spread of state precision over seeds to 0.25-0.44x the paper's range on 20 test videos per category
# (docs/benchmarks.md, "Recipes"). 10 pairs were steadier than 5; labels decoded from the ensemble's mean
# instead made the pairs agree and gave nothing.
IMPROVED_ENSEMBLE = 10


@dataclass(frozen=True)
class SynthConfig:
    """Sizes of a synthetic dataset (``statechange synth``): not the method's, they only shape test data."""

    n_categories: int = 3
    n_train_videos: int = 12  # per category
    n_test_videos: int = 4  # annotated, per category
    min_seconds: int = 20  # video length, drawn per video between these two
    max_seconds: int = 60
    frame_size: tuple[int, int] = (320, 180)  # width, height of the written videos (even: yuv420p)


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``statechange train`` needs besides paths."""

    frames: FrameConfig = field(default_factory=FrameConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pseudo_labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    seed: int = 0
    precision: str = "fp32"  # "fp32" or "bf16" (autocast on the forward passes)


PRECISIONS = ("fp32", "bf16")  # what a forward pass runs in
AUTO_PRECISION = "auto"  # a request: bf16 where the device runs it fast, else fp32 (inference.resolve_precision)
PRECISION_CHOICES = (AUTO_PRECISION, *PRECISIONS)  # what users may ask for
# The tests' bound on |P_bf16 - P_fp32| of any per-second probability of the tiny backbone; a trained
# EfficientNet-Lite0 moved by up to 0.08 on the hard synthetic test set (docs/benchmarks.md, "bf16 deviation").
BF16_PROBABILITY_TOLERANCE = 0.05

# Prediction only (not a paper setting): a triplet score (geometric mean of the chosen seconds'
# initial-state, action and end-state probabilities) below this flags "no clear state change".
# Calibrated by benchmarks/category_auto.py on the hard synthetic set (76 videos, 24 without a change):
# the best balanced accuracy falls at 0.223 (paper recipe, 0.94), 0.459 (heads' learning rate 1e-3 alone,
# 0.98), 0.370 (improved recipe with 5 head pairs, 0.99) and 0.368 (with 10, 0.99); 0.2 still flags about
# 90 % of the videos without a change and under 10 % of those with one for the last three;
# docs/benchmarks.md, "Predicting without the category". A model trained elsewhere may score on another
# scale: --no-change-threshold adjusts it.
NO_CHANGE_THRESHOLD = 0.2


@dataclass(frozen=True)
class ForwardSettings:
    """How frames go through a model: a run's speed and memory settings, not the method's hyperparameters.

    One object for the forward path of training, evaluation and prediction (``inference.video_logits``).
    """

    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast); "auto" is resolved before, by inference.resolve_precision
    chunk_size: int = 64  # frames per forward pass: bounds memory, never changes a result
    crop: int = FrameConfig.crop  # square centre crop fed to the backbone (the checkpoint's FrameConfig.crop)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.chunk_size < 1:
            raise StateChangeError(f"--chunk-size must be at least 1 frame, got {self.chunk_size}: pass e.g. 64.")

# Settings that older checkpoints carry but that are no longer part of a config (ignored on load).
RETIRED_SETTINGS: dict[str, frozenset[str]] = {
    "PseudoLabelConfig": frozenset({"chunk_size"}),  # moved to ForwardSettings (a memory knob, not the method's)
    # The first improved recipe's EMA teacher and test-time smoothing, withdrawn (docs/benchmarks.md, "Recipes"):
    "RecipeConfig": frozenset({"teacher_decay"}),
    "ModelConfig": frozenset({"smoothing_seconds"}),
}


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) config dataclass from ``to_dict`` output; unknown keys are an error."""
    kwargs: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    retired = RETIRED_SETTINGS.get(cls.__name__, frozenset())
    data = {key: value for key, value in data.items() if key not in retired}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} settings: {sorted(unknown)}.")
    for name, value in data.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value)
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
