"""Training augmentation: one random transform per video, identical on all its frames (METHOD.md,
"Optimisation"), then the random 224-column crop; evaluation uses the centre crop only (``data/crop.py``).

The policy is the release's imgaug pipeline, redone in batched torch so it runs on the frames' own
device. ``sample_augmentation`` draws every parameter of one video into a ``VideoAugmentation``;
``augment_frames`` applies it to any chunk or subset of that video's frames, so a frame gives the
same pixels whether it is augmented alone, in a chunk of 64 or with the whole video.

    five groups, in random order:  horizontal flip (p 0.5), vertical flip (p 0.1),
                                   crop-and-pad (p 0.5), affine (p 0.5),
                                   photometric: 0 to 4 of, in random order:
                                     blur (Gaussian | box | median), sharpen, brightness, hue-saturation
    crop:                          columns [offset, offset + 224), offset uniform in 0..width-crop-1

How it is computed (the release's transforms with its parameters; where the arithmetic differs
from imgaug's, it says so here):
- The geometric steps are all maps from output pixel to source pixel. Consecutive ones are chained
  into one sampling grid and the frames are interpolated once per run (imgaug interpolated after
  each step): bilinearly when a step is bilinear (crop-and-pad's resize always is), else nearest.
  A run is broken where the photometric group sits between geometric steps (the release's
  top-level ``Sequential(random_order=True)`` shuffles all five groups) and by a crop-and-pad whose
  fill is computed from the picture's values; the frames are then transformed whole up to the
  break. The last run computes only the columns that survive the final crop, plus the margin the
  photometric filters read when they come last.
- Out-of-frame pixels follow each step's fill mode. The coordinate modes: ``edge`` (repeat the
  border pixel), ``reflect`` (mirror about the border pixel), ``symmetric`` (mirror about the
  border), ``wrap`` (tile) or ``constant`` (a random colour, blended at the border as bilinear
  sampling would). Crop-and-pad draws from imgaug's whole set of pad modes (``ia.ALL``), which adds
  the value modes of ``numpy.pad``: ``mean``, ``median``, ``minimum``, ``maximum`` (per column for
  the top and bottom padding, then per row of that for the left and right, rounded) and
  ``linear_ramp`` (from the border pixel to the fill value). Crop-and-pad fills with one random grey
  level (imgaug draws one value per image for it), the affine with a random RGB colour (its modes
  are imgaug's ``Affine`` set, the coordinate ones).
- Remaining differences with imgaug, measured by benchmarks/augment_parity.py on natural-looking
  frames (docs/benchmarks.md): crop-and-pad resizes back bilinearly where imgaug resizes with cubic
  interpolation (mean 1.1, 99th percentile 8 grey levels; up to ~100 at single pixels of sharp
  edges); chained geometric steps are sampled once instead of resampled and rounded to uint8 after
  each step (mean 0.3, 99th percentile 5; up to ~100 where nearest sampling picks the neighbouring
  pixel of an edge); values also stay float between photometric steps (imgaug rounds after each:
  at most half a grey level per step).
- Pixel values stay float in [0, 255] between steps, clamped after each photometric step as uint8
  saturation would, and are rounded to uint8 at the end (and before a median, which only picks).
- Hue and saturation: imgaug's ``AddToHueAndSaturation`` adds the sampled integer v to OpenCV's
  8-bit HSV, where the hue is in half-degrees and v is first projected with int(v / 255 * 180). Here
  the hue turns by 2 * int(v * 180 / 255) degrees (v = 20 -> 28 degrees) and the saturation, in
  [0, 1], moves by v / 255; the value channel (the RGB maximum) is kept.
- The 5x5 median is the separable median (the median over 5 rows of each row's 5-median). The
  exact one selects from 25 values per pixel: about 10 s for a 300-frame video on one CPU core
  with torch's unfold + kthvalue, against 0.2 s; the separable one keeps its look (specks removed,
  straight edges kept). The 3x3 median is exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from statechange.config import AugmentConfig, FrameConfig
from statechange.data.crop import DEFAULT_CROP, center_crop

_FRAMES = FrameConfig()
DEFAULT_FRAME_SIZE: tuple[int, int] = (_FRAMES.width, _FRAMES.height)  # (width, height)

FILL_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")  # the affine's modes (imgaug's Affine ALL)
VALUE_PAD_MODES = ("linear_ramp", "maximum", "mean", "median", "minimum")  # numpy.pad fills computed from values
PAD_MODES = (*FILL_MODES, *VALUE_PAD_MODES)  # crop-and-pad's modes: imgaug's pad ALL, drawn uniformly
AFFINE_INTERPOLATIONS = ("nearest", "bilinear")  # imgaug's order=[0, 1]
BLUR_KINDS = ("gaussian", "box", "median")  # imgaug's OneOf: one of them, uniformly

_UINT8_MAX = 255
_GAUSSIAN_TRUNCATE = 3.0  # kernel radius in sigmas, as OpenCV sizes 8-bit Gaussian kernels
_NEGLIGIBLE_SIGMA = 0.01  # below this the Gaussian kernel is the identity at 8-bit precision
_FULL_TURN_DEGREES = 360.0
_OPENCV_HUE_RANGE = 180  # OpenCV's 8-bit hue: half-degrees, 0..179
_EPSILON = 1e-6  # guards divisions by a zero chroma or value (greys, black)
_CPU_CHUNK_FRAMES = 8  # frames per pass on the CPU: ~5 MB of float window, so intermediates stay in cache
_N_GROUPS = 5  # flips (2), crop-and-pad, affine, the photometric group: shuffled together
_PHOTOMETRIC_GROUP = 4  # its index among the groups


# ----------------------------------------------------------------------------------------------
# geometric steps: each maps output pixel centres (x, y) to the pixel centres it is read from


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror left-right."""

    def source_coordinates(
        self, x: torch.Tensor, y: torch.Tensor, width: int, height: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (width - 1) - x, y

    def describe(self) -> str:
        return "h-flip"


@dataclass(frozen=True)
class VerticalFlip:
    """Mirror top-bottom."""

    def source_coordinates(
        self, x: torch.Tensor, y: torch.Tensor, width: int, height: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, (height - 1) - y

    def describe(self) -> str:
        return "v-flip"


@dataclass(frozen=True)
class CropAndPad:
    """Crop (positive) or pad (negative) each side by a fraction of its length, then resize back."""

    top: float
    right: float
    bottom: float
    left: float
    mode: str  # one of PAD_MODES, for the padded border
    fill: tuple[int, int, int]  # the padding colour of mode "constant", the ramps' end of "linear_ramp" (a grey)

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(top, right, bottom, left) in whole pixels, as imgaug rounds them."""
        return (round(self.top * height), round(self.right * width), round(self.bottom * height),
                round(self.left * width))  # fmt: skip

    def source_coordinates(
        self, x: torch.Tensor, y: torch.Tensor, width: int, height: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        top, right, bottom, left = self.pixels(width, height)
        x_scale = (width - left - right) / width  # cropped-and-padded width -> resized back to width
        y_scale = (height - top - bottom) / height
        # the resize reads no further than the outermost pixels of the cropped-and-padded picture
        x = (left + (x + 0.5) * x_scale - 0.5).clamp(left, width - right - 1)
        y = (top + (y + 0.5) * y_scale - 0.5).clamp(top, height - bottom - 1)
        return x, y

    def source_extent(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((first column, columns), (first row, rows)) of the part that is kept: imgaug crops
        first, then pads the cropped picture, so the fill modes extend that part."""
        top, right, bottom, left = (max(side, 0) for side in self.pixels(width, height))
        return (left, width - left - right), (top, height - top - bottom)

    def describe(self) -> str:
        sides = (self.top, self.right, self.bottom, self.left)
        return "crop/pad " + ",".join(f"{100 * s:+.0f}" for s in sides) + f"% {self.mode}"


@dataclass(frozen=True)
class Affine:
    """Scale, shear, rotate about the frame centre, then translate (fractions of the frame size)."""

    scale: tuple[float, float]  # (x, y)
    translate: tuple[float, float]  # (x, y), fractions of (width, height)
    rotate: float  # degrees, clockwise on screen
    shear: float  # degrees, along x
    interpolation: str  # one of AFFINE_INTERPOLATIONS
    mode: str  # one of FILL_MODES, for pixels mapped from outside the frame
    fill: tuple[int, int, int]  # the colour of mode "constant"

    def source_coordinates(
        self, x: torch.Tensor, y: torch.Tensor, width: int, height: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # forward: out = centre + translation + R @ Shear @ Scale @ (in - centre); invert it here.
        cos, sin = math.cos(math.radians(self.rotate)), math.sin(math.radians(self.rotate))
        tan = math.tan(math.radians(self.shear))
        sx, sy = self.scale
        a, b = cos * sx, (cos * tan - sin) * sy  # the forward 2x2 matrix [[a, b], [c, d]]
        c, d = sin * sx, (sin * tan + cos) * sy
        det = a * d - b * c
        cx, cy = (width - 1) / 2, (height - 1) / 2
        u = x - cx - self.translate[0] * width
        v = y - cy - self.translate[1] * height
        return cx + (d * u - b * v) / det, cy + (a * v - c * u) / det

    def source_extent(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((first column, columns), (first row, rows)) of the picture the fill modes extend."""
        return (0, width), (0, height)

    def describe(self) -> str:
        sx, sy = self.scale
        tx, ty = self.translate
        return (f"affine x{sx:.2f},{sy:.2f} shift {100 * tx:+.0f},{100 * ty:+.0f}% rot {self.rotate:+.0f} "
                f"shear {self.shear:+.0f} {self.interpolation} {self.mode}")


GeometricStep = HorizontalFlip | VerticalFlip | CropAndPad | Affine


# ----------------------------------------------------------------------------------------------
# photometric steps: float [N, 3, H, W] in [0, 255] -> same; `radius` = columns read each side


@dataclass(frozen=True)
class GaussianBlur:
    sigma: float

    @property
    def radius(self) -> int:
        return 0 if self.sigma < _NEGLIGIBLE_SIGMA else math.ceil(_GAUSSIAN_TRUNCATE * self.sigma)

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        if self.radius == 0:
            return frames
        offsets = torch.arange(-self.radius, self.radius + 1, dtype=torch.float64)
        taps = torch.exp(-(offsets**2) / (2 * self.sigma**2))
        return _separable_filter(frames, taps / taps.sum(), self.radius, "reflect")

    def describe(self) -> str:
        return f"gaussian blur s={self.sigma:.1f}"


@dataclass(frozen=True)
class BoxBlur:
    size: int  # 2 or 3; an even box covers [i - 1, i] like OpenCV's centred anchor

    @property
    def radius(self) -> int:
        return self.size // 2

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        taps = torch.full((self.size,), 1.0 / self.size, dtype=torch.float64)
        return _separable_filter(frames, taps, self.size // 2, "reflect")

    def describe(self) -> str:
        return f"box blur {self.size}"


@dataclass(frozen=True)
class MedianBlur:
    size: int  # 3 (exact) or 5 (separable)

    @property
    def radius(self) -> int:
        return self.size // 2

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        # A median only picks values, so it runs on 8-bit levels (a quarter of the memory traffic).
        levels = frames.round().clamp_(0, _UINT8_MAX).to(torch.uint8)
        if self.size == 3:
            return _median3x3(levels).float()
        if self.size == 5:
            return _median5_along(_median5_along(levels, -1), -2).float()
        raise ValueError(f"Median blur sizes are 3 or 5, got {self.size}.")

    def describe(self) -> str:
        return f"median {self.size}"


@dataclass(frozen=True)
class Sharpen:
    """imgaug's Sharpen: blend of the identity and [[-1,-1,-1],[-1,8+L,-1],[-1,-1,-1]] by alpha."""

    alpha: float
    lightness: float

    @property
    def radius(self) -> int:
        return 1

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        # kernel = (1 - a) * identity + a * ((9 + L) * identity - ones(3, 3))
        box_sum = _separable_filter(frames, torch.ones(3, dtype=torch.float64), 1, "reflect")
        centre_weight = 1 + self.alpha * (8 + self.lightness)
        return (frames * centre_weight).sub_(box_sum, alpha=self.alpha).clamp_(0, _UINT8_MAX)

    def describe(self) -> str:
        return f"sharpen a={self.alpha:.2f} L={self.lightness:.2f}"


@dataclass(frozen=True)
class Brightness:
    shift: tuple[int, int, int]  # added to (R, G, B); three equal values unless drawn per channel

    @property
    def radius(self) -> int:
        return 0

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        shift = torch.tensor(self.shift, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
        return (frames + shift).clamp_(0, _UINT8_MAX)

    def describe(self) -> str:
        return "brightness " + ",".join(f"{s:+d}" for s in self.shift)


@dataclass(frozen=True)
class HueSaturation:
    shift: int  # imgaug's value, added to hue and saturation (mapping in the module docstring)

    @property
    def radius(self) -> int:
        return 0

    @property
    def hue_degrees(self) -> float:
        half_degrees = math.trunc(self.shift / _UINT8_MAX * _OPENCV_HUE_RANGE)
        return 2.0 * half_degrees

    @property
    def saturation_shift(self) -> float:
        return self.shift / _UINT8_MAX

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        return _shift_hue_saturation(frames, self.hue_degrees / _FULL_TURN_DEGREES, self.saturation_shift)

    def describe(self) -> str:
        return f"hue {self.hue_degrees:+.0f}deg sat {self.shift:+d}"


PhotometricStep = GaussianBlur | BoxBlur | MedianBlur | Sharpen | Brightness | HueSaturation


@dataclass(frozen=True)
class VideoAugmentation:
    """Every sampled parameter of one video's transform; apply it with ``augment_frames``."""

    frame_size: tuple[int, int]  # (width, height) of the frames it was drawn for
    crop: int  # width (and height) of the square crop
    crop_offset: int  # first column of the crop, in 0..width-crop-1
    geometric: tuple[GeometricStep, ...] = ()  # applied in this order
    photometric: tuple[PhotometricStep, ...] = ()  # applied in this order, as one group
    photometric_position: int | None = None  # geometric steps applied before the photometric group (None: all)

    @property
    def n_geometric_before_photometric(self) -> int:
        if self.photometric_position is None:
            return len(self.geometric)
        return self.photometric_position

    def steps(self) -> tuple[GeometricStep | PhotometricStep, ...]:
        """Every step in the order it is applied."""
        split = self.n_geometric_before_photometric
        return (*self.geometric[:split], *self.photometric, *self.geometric[split:])

    def describe(self) -> str:
        """One line naming the steps in order, e.g. for figure labels and logs."""
        return " | ".join([*(step.describe() for step in self.steps()), f"crop @{self.crop_offset}"])


# ----------------------------------------------------------------------------------------------
# sampling


def sample_augmentation(
    config: AugmentConfig,
    generator: torch.Generator,
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
    crop: int = DEFAULT_CROP,
) -> VideoAugmentation:
    """Draw one video's transform; all randomness comes from ``generator`` (seed it to reproduce).

    The parameters are plain numbers, so a transform drawn once gives the same frames on the CPU and
    on a GPU; seed a CPU generator to get the same draws everywhere.
    """
    width, height = frame_size
    if not 0 < crop <= min(width, height):
        raise ValueError(f"A {crop}-pixel crop does not fit {width}x{height} frames.")
    draw = _Draws(generator)
    order = draw.permutation(_N_GROUPS)  # the release's top-level Sequential(random_order=True)
    groups: list[GeometricStep | None] = [
        HorizontalFlip() if draw.chance(config.horizontal_flip_p) else None,
        VerticalFlip() if draw.chance(config.vertical_flip_p) else None,
        _draw_crop_and_pad(config, draw) if draw.chance(config.crop_pad_p) else None,
        _draw_affine(config, draw) if draw.chance(config.affine_p) else None,
    ]
    photometric = _draw_photometric(config, draw)
    crop_offset = draw.integer(0, max(width - crop - 1, 0))  # METHOD.md: 0..173 for 398 -> 224
    before = order[: order.index(_PHOTOMETRIC_GROUP)]
    geometric = tuple(groups[i] for i in order if i != _PHOTOMETRIC_GROUP and groups[i] is not None)
    position = sum(groups[i] is not None for i in before)
    return VideoAugmentation(frame_size, crop, crop_offset, geometric, photometric, position)


class _Draws:
    """Scalar random draws from one torch generator, in a fixed order."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def _unit(self) -> float:
        return torch.rand((), generator=self.generator, device=self.generator.device).item()

    def chance(self, p: float) -> bool:
        return self._unit() < p

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._unit()

    def integer(self, low: int, high: int) -> int:
        """Uniform over low..high inclusive."""
        value = torch.randint(low, high + 1, (), generator=self.generator, device=self.generator.device)
        return int(value.item())

    def choice(self, options: Sequence[str]) -> str:
        return options[self.integer(0, len(options) - 1)]

    def permutation(self, n: int) -> list[int]:
        return torch.randperm(n, generator=self.generator, device=self.generator.device).tolist()


def _draw_crop_and_pad(config: AugmentConfig, draw: _Draws) -> CropAndPad:
    top, right, bottom, left = (draw.uniform(*config.crop_pad_range) for _ in range(4))
    mode = draw.choice(PAD_MODES)
    grey = draw.integer(0, _UINT8_MAX)
    return CropAndPad(top, right, bottom, left, mode, (grey, grey, grey))


def _draw_affine(config: AugmentConfig, draw: _Draws) -> Affine:
    scale = (draw.uniform(*config.affine_scale), draw.uniform(*config.affine_scale))
    translate = tuple(draw.uniform(-config.affine_translate, config.affine_translate) for _ in range(2))
    rotate = draw.uniform(-config.affine_rotate, config.affine_rotate)
    shear = draw.uniform(-config.affine_shear, config.affine_shear)
    interpolation = draw.choice(AFFINE_INTERPOLATIONS)
    mode = draw.choice(FILL_MODES)
    fill = tuple(draw.integer(0, _UINT8_MAX) for _ in range(3))
    return Affine(scale, translate, rotate, shear, interpolation, mode, fill)  # type: ignore[arg-type]


def _draw_photometric(config: AugmentConfig, draw: _Draws) -> tuple[PhotometricStep, ...]:
    """imgaug's SomeOf((0, 4), [blur, sharpen, add, hue-saturation], random_order=True)."""
    families = (_draw_blur, _draw_sharpen, _draw_brightness, _draw_hue_saturation)
    count = draw.integer(0, min(config.max_photometric, len(families)))
    chosen = draw.permutation(len(families))[:count]
    return tuple(families[i](config, draw) for i in chosen)


def _draw_blur(config: AugmentConfig, draw: _Draws) -> PhotometricStep:
    kind = draw.choice(BLUR_KINDS)
    if kind == "gaussian":
        return GaussianBlur(draw.uniform(*config.blur_gaussian_sigma))
    if kind == "box":
        return BoxBlur(draw.integer(*config.blur_box_size))
    size = draw.integer(*config.blur_median_size)
    return MedianBlur(size + 1 if size % 2 == 0 else size)  # imgaug raises an even size by one


def _draw_sharpen(config: AugmentConfig, draw: _Draws) -> Sharpen:
    return Sharpen(draw.uniform(*config.sharpen_alpha), draw.uniform(*config.sharpen_lightness))


def _draw_brightness(config: AugmentConfig, draw: _Draws) -> Brightness:
    if draw.chance(config.brightness_per_channel_p):
        return Brightness(tuple(draw.integer(*config.brightness_shift) for _ in range(3)))  # type: ignore[arg-type]
    shift = draw.integer(*config.brightness_shift)
    return Brightness((shift, shift, shift))


def _draw_hue_saturation(config: AugmentConfig, draw: _Draws) -> HueSaturation:
    return HueSaturation(draw.integer(*config.hue_saturation_shift))


# ----------------------------------------------------------------------------------------------
# applying


def augment_frames(frames: torch.Tensor, augmentation: VideoAugmentation) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8 [N, 3, H, crop]: the video's transform, then its crop.

    Runs batched on the frames' device (on the CPU in chunks of a few frames, so that the
    intermediates stay in cache). Frames are independent: any chunk or subset of a video's frames
    gives the same pixels for each frame as the whole video does.
    """
    _check_frames(frames, augmentation)
    width, height = frames.shape[-1], frames.shape[-2]
    passes = _passes(augmentation)
    if passes is None:
        plan = _plan(augmentation, width, height, frames.device)
    else:
        plans = _pass_plans(passes, augmentation, width, height, frames.device)

    def augment_chunk(chunk: torch.Tensor) -> torch.Tensor:
        if passes is None:
            return _augment_chunk(chunk, augmentation, plan)
        return _augment_chunk_in_passes(chunk, passes, plans, augmentation)

    n_frames = frames.shape[0]
    chunk = _CPU_CHUNK_FRAMES if frames.device.type == "cpu" else max(n_frames, 1)
    output = torch.empty((n_frames, 3, height, augmentation.crop), dtype=torch.uint8, device=frames.device)
    for start in range(0, n_frames, chunk):
        output[start : start + chunk] = augment_chunk(frames[start : start + chunk])
    return output


def training_view(
    frames: torch.Tensor, augmentation: VideoAugmentation | None, crop: int = DEFAULT_CROP
) -> torch.Tensor:
    """The frames a training step sees: augmented and randomly cropped, or with no augmentation
    the centre crop (the release trains on the centre crop without ``--augment``)."""
    if augmentation is None:
        return center_crop(frames, crop)
    if augmentation.crop != crop:
        raise ValueError(f"The augmentation was drawn for a {augmentation.crop}-pixel crop, not {crop}.")
    return augment_frames(frames, augmentation)


def _check_frames(frames: torch.Tensor, augmentation: VideoAugmentation) -> None:
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"Expected uint8 frames [N, 3, H, W], got {frames.dtype} {tuple(frames.shape)}.")
    size = (frames.shape[-1], frames.shape[-2])
    if size != tuple(augmentation.frame_size):
        raise ValueError(f"The augmentation was drawn for {augmentation.frame_size[0]}x"
                         f"{augmentation.frame_size[1]} frames, got {size[0]}x{size[1]}.")


@dataclass(frozen=True)
class _Plan:
    """What every chunk of one video shares: the columns to compute and the sampling grid."""

    start: int  # first column of the geometric output that is computed
    stop: int  # one past the last
    grid: torch.Tensor | None  # [1, H, stop - start, 2] in grid_sample's [-1, 1]; None for flips only
    interpolation: str
    coverage: torch.Tensor | None  # [H, stop - start] weight of the frame where constant fills apply
    fill: torch.Tensor | None  # [3, H, stop - start] the fill colours, already weighted


def _plan(augmentation: VideoAugmentation, width: int, height: int, device: torch.device) -> _Plan:
    margin = sum(step.radius for step in augmentation.photometric)  # columns the filters read
    start = max(augmentation.crop_offset - margin, 0)
    stop = min(augmentation.crop_offset + augmentation.crop + margin, width)
    return _columns_plan(augmentation.geometric, width, height, start, stop, device)


def _columns_plan(
    steps: Sequence[GeometricStep], width: int, height: int, start: int, stop: int, device: torch.device
) -> _Plan:
    """Output columns start..stop-1 of the geometric ``steps`` chained into one sampling."""
    if all(isinstance(step, (HorizontalFlip, VerticalFlip)) for step in steps):
        return _Plan(start, stop, None, "nearest", None, None)
    bilinear = any(isinstance(s, CropAndPad) or (isinstance(s, Affine) and s.interpolation == "bilinear")
                   for s in steps)
    x, y, coverage, fill = _chain_coordinates(steps, width, height, start, stop, device, bilinear)
    grid = torch.stack(((2 * x + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)  # [H, w, 2]
    return _Plan(start, stop, grid.unsqueeze(0), "bilinear" if bilinear else "nearest", coverage, fill)


@dataclass(frozen=True)
class _Pass:
    """Geometric steps sampled in one go, then what breaks the chain: the photometric group or a
    crop-and-pad filled from the picture's values (None for the last pass)."""

    geometric: tuple[GeometricStep, ...]
    barrier: tuple[PhotometricStep, ...] | CropAndPad | None


def _passes(augmentation: VideoAugmentation) -> list[_Pass] | None:
    """The passes of a transform that needs more than one; None when one sampling grid followed by the
    photometric steps does it (every step is a coordinate map and the photometric group comes last)."""
    split = augmentation.n_geometric_before_photometric
    value_filled = [i for i, step in enumerate(augmentation.geometric) if _is_value_filled(step)]
    if not value_filled and (split == len(augmentation.geometric) or not augmentation.photometric):
        return None
    passes: list[_Pass] = []
    run: list[GeometricStep] = []
    for index, step in enumerate(augmentation.geometric):
        if index == split and augmentation.photometric:
            passes.append(_Pass(tuple(run), augmentation.photometric))
            run = []
        if index in value_filled:
            passes.append(_Pass(tuple(run), step))  # type: ignore[arg-type]
            run = []
        else:
            run.append(step)
    photometric_last = split == len(augmentation.geometric) and augmentation.photometric
    passes.append(_Pass(tuple(run), augmentation.photometric if photometric_last else None))
    return passes


def _is_value_filled(step: GeometricStep) -> bool:
    return isinstance(step, CropAndPad) and step.mode in VALUE_PAD_MODES


def _pass_plans(
    passes: list[_Pass], augmentation: VideoAugmentation, width: int, height: int, device: torch.device
) -> list[_Plan]:
    """Whole frames for every pass but the last, which computes the crop's columns (and the margin
    of photometric steps that end the transform)."""
    plans = [_columns_plan(p.geometric, width, height, 0, width, device) for p in passes[:-1]]
    last = passes[-1]
    margin = sum(step.radius for step in last.barrier) if isinstance(last.barrier, tuple) else 0
    start = max(augmentation.crop_offset - margin, 0)
    stop = min(augmentation.crop_offset + augmentation.crop + margin, width)
    return [*plans, _columns_plan(last.geometric, width, height, start, stop, device)]


def _augment_chunk_in_passes(
    frames: torch.Tensor, passes: list[_Pass], plans: list[_Plan], augmentation: VideoAugmentation
) -> torch.Tensor:
    """uint8 [n, 3, H, W] -> uint8 [n, 3, H, crop], one sampling per pass."""
    picture = frames
    for step_pass, plan in zip(passes, plans, strict=True):
        picture = _geometric_window(picture, step_pass.geometric, plan)
        if isinstance(step_pass.barrier, CropAndPad):
            picture = _crop_and_pad_with_values(picture.float(), step_pass.barrier)
        elif step_pass.barrier:
            picture = picture.float()
            for step in step_pass.barrier:
                picture = step.apply(picture)
    offset = augmentation.crop_offset - plans[-1].start
    cropped = picture[..., offset : offset + augmentation.crop]
    if cropped.dtype == torch.uint8:
        return cropped
    return cropped.round().clamp_(0, _UINT8_MAX).to(torch.uint8)


def _augment_chunk(frames: torch.Tensor, augmentation: VideoAugmentation, plan: _Plan) -> torch.Tensor:
    """uint8 [n, 3, H, W] -> uint8 [n, 3, H, crop]."""
    window = _geometric_window(frames, augmentation.geometric, plan)  # [n, 3, H, stop - start]
    if augmentation.photometric:
        window = window.float()
        for step in augmentation.photometric:
            window = step.apply(window)
    offset = augmentation.crop_offset - plan.start
    cropped = window[..., offset : offset + augmentation.crop]
    if cropped.dtype == torch.uint8:
        return cropped
    return cropped.round().clamp_(0, _UINT8_MAX).to(torch.uint8)


def _geometric_window(frames: torch.Tensor, steps: Sequence[GeometricStep], plan: _Plan) -> torch.Tensor:
    """Columns plan.start..plan.stop-1 of the geometrically transformed frames: uint8 when only flips
    (exact copies), else float [n, 3, H, stop - start] sampled once through the chained steps."""
    if plan.grid is None:
        width = frames.shape[-1]
        flip_h = any(isinstance(step, HorizontalFlip) for step in steps)
        flip_v = any(isinstance(step, VerticalFlip) for step in steps)
        if flip_h:
            window = frames[..., width - plan.stop : width - plan.start].flip(-1)
        else:
            window = frames[..., plan.start : plan.stop]
        return window.flip(-2) if flip_v else window
    grid = plan.grid.expand(frames.shape[0], -1, -1, -1)
    sampled = F.grid_sample(frames.float(), grid, mode=plan.interpolation, padding_mode="border",
                            align_corners=False)  # [n, 3, H, w]
    if plan.coverage is None:
        return sampled
    return sampled.mul_(plan.coverage).add_(plan.fill)


def _chain_coordinates(
    steps: Sequence[GeometricStep], width: int, height: int, start: int, stop: int, device: torch.device,
    bilinear: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Source pixel centres (x, y) [H, w] of output columns start..stop-1 through all steps, and
    for constant fills the weight of the frame [H, w] and the fill colour already weighted [3, H, w]."""
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                          torch.arange(start, stop, device=device, dtype=torch.float32), indexing="ij")
    coverage: torch.Tensor | None = None
    fill: torch.Tensor | None = None
    for step in reversed(steps):  # from the output back to the input frame
        x, y = step.source_coordinates(x, y, width, height)
        if not isinstance(step, (CropAndPad, Affine)):
            continue  # flips stay inside the frame
        (x_low, x_length), (y_low, y_length) = step.source_extent(width, height)
        x, y = x - x_low, y - y_low  # relative to the picture the step extends
        if step.mode == "constant":
            inside = _inside_weight(x, x_length, bilinear) * _inside_weight(y, y_length, bilinear)
            remaining = torch.ones_like(inside) if coverage is None else coverage
            colour = torch.tensor(step.fill, device=device, dtype=torch.float32).view(3, 1, 1)
            added = remaining * (1 - inside) * colour  # [3, H, w]
            fill = added if fill is None else fill + added
            coverage = remaining * inside
        x, y = x_low + _fold(x, x_length, step.mode), y_low + _fold(y, y_length, step.mode)
    return x, y, coverage, fill


def _inside_weight(coordinate: torch.Tensor, length: int, bilinear: bool) -> torch.Tensor:
    """How much of a sample at ``coordinate`` comes from inside [0, length) rather than the fill."""
    if bilinear:  # the weight bilinear sampling gives the in-frame neighbour near the border
        return torch.minimum(coordinate + 1, length - coordinate).clamp_(0, 1)
    return ((coordinate >= -0.5) & (coordinate < length - 0.5)).float()


def _fold(coordinate: torch.Tensor, length: int, mode: str) -> torch.Tensor:
    """Bring a coordinate that left [0, length - 1] back in, the way ``mode`` extends the frame."""
    last = length - 1
    if mode in ("constant", "edge"):
        return coordinate.clamp(0, last)
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... last | last-1 ...
        period = 2 * max(last, 1)
        folded = torch.remainder(coordinate, period)
        return torch.where(folded > last, period - folded, folded)
    if mode == "symmetric":  # ... 1 0 | 0 1 2 ... last | last ...
        folded = torch.remainder(coordinate + 0.5, 2 * length)
        return torch.where(folded > length, 2 * length - folded, folded) - 0.5
    if mode == "wrap":
        return torch.remainder(coordinate + 0.5, length) - 0.5
    raise ValueError(f"Unknown fill mode {mode!r}; expected one of {FILL_MODES}.")


def _crop_and_pad_with_values(frames: torch.Tensor, step: CropAndPad) -> torch.Tensor:
    """float [n, 3, H, W] -> same: crop, pad with one of ``VALUE_PAD_MODES`` as numpy.pad does, resize back."""
    height, width = frames.shape[-2:]
    top, right, bottom, left = step.pixels(width, height)
    kept = frames[..., max(top, 0) : height - max(bottom, 0), max(left, 0) : width - max(right, 0)]
    end_value = float(step.fill[0])
    padded = _pad_with_values(kept, -2, max(-top, 0), max(-bottom, 0), step.mode, end_value)  # rows first,
    padded = _pad_with_values(padded, -1, max(-left, 0), max(-right, 0), step.mode, end_value)  # as numpy
    # the resize back reads no further than the outermost pixels, as the coordinate steps do
    return F.interpolate(padded, size=(height, width), mode="bilinear", align_corners=False)


def _pad_with_values(
    picture: torch.Tensor, dim: int, before: int, after: int, mode: str, end_value: float
) -> torch.Tensor:
    """Pad ``picture`` along ``dim`` like ``numpy.pad`` on uint8: a statistic of each line along
    ``dim`` (rounded), or a ramp from the border pixel to ``end_value`` (truncated)."""
    if before == 0 and after == 0:
        return picture
    length = picture.shape[dim]
    if mode == "linear_ramp":
        sides = (_linear_ramp(picture.narrow(dim, 0, 1), end_value, before, dim),
                 _linear_ramp(picture.narrow(dim, length - 1, 1), end_value, after, dim).flip(dim))
    else:
        statistic = _line_statistic(picture, dim, mode)
        sides = (_repeat_along(statistic, dim, before), _repeat_along(statistic, dim, after))
    return torch.cat([sides[0], picture, sides[1]], dim=dim)


def _repeat_along(line: torch.Tensor, dim: int, count: int) -> torch.Tensor:
    """A size-1 ``dim`` of ``line`` repeated ``count`` times (a view)."""
    shape = list(line.shape)
    shape[dim] = count
    return line.expand(shape)


def _linear_ramp(edge: torch.Tensor, end_value: float, count: int, dim: int) -> torch.Tensor:
    """numpy.linspace(end_value, edge, count, endpoint=False) along ``dim``, truncated to integers."""
    shape = [1] * edge.dim()
    shape[dim] = count
    fractions = torch.arange(count, dtype=edge.dtype, device=edge.device).view(shape) / max(count, 1)
    return (end_value + (edge - end_value) * fractions).floor_()


def _line_statistic(picture: torch.Tensor, dim: int, mode: str) -> torch.Tensor:
    """The mean, median, minimum or maximum of each line along ``dim`` (kept as a dim of 1), rounded
    half to even where it is not a pixel value (numpy rounds for integer images)."""
    if mode == "minimum":
        return picture.amin(dim, keepdim=True)
    if mode == "maximum":
        return picture.amax(dim, keepdim=True)
    if mode == "mean":
        return picture.mean(dim, keepdim=True).round_()
    if mode == "median":  # numpy averages the two middle values of an even count
        ordered = picture.sort(dim).values
        length = picture.shape[dim]
        middle = ordered.narrow(dim, (length - 1) // 2, 1) + ordered.narrow(dim, length // 2, 1)
        return middle.div_(2).round_()
    raise ValueError(f"Unknown value pad mode {mode!r}; expected one of {VALUE_PAD_MODES}.")


# ----------------------------------------------------------------------------------------------
# filters


def _separable_filter(frames: torch.Tensor, taps: torch.Tensor, left: int, border: str) -> torch.Tensor:
    """The same 1-d filter along rows, then columns; output i reads inputs i - left + t for the taps t.

    Shifted additions over a padded copy: a short kernel costs a few passes over data that stays in
    cache (the CPU path works in small chunks of frames); a one-channel convolution is far slower.
    """
    weights = taps.tolist()
    right = len(weights) - 1 - left
    for dim, padding in ((-1, (left, right, 0, 0)), (-2, (0, 0, left, right))):
        length = frames.shape[dim]
        padded = F.pad(frames, padding, mode=border)
        filtered = padded.narrow(dim, 0, length) * weights[0]
        for t in range(1, len(weights)):
            filtered.add_(padded.narrow(dim, t, length), alpha=weights[t])
        frames = filtered
    return frames


def _median3x3(frames: torch.Tensor) -> torch.Tensor:
    """Exact 3x3 median (replicated border): the median of (max of row minima, median of row
    medians, min of row maxima) over the 3 rows of each window."""
    height, width = frames.shape[-2:]
    padded = _replicate(_replicate(frames, -1, 1), -2, 1)  # [n, 3, H + 2, W + 2]
    low, mid, high = _sort3(padded[..., :width], padded[..., 1 : width + 1], padded[..., 2:])  # rows of 3
    rows = [slice(i, i + height) for i in range(3)]
    largest_low = torch.maximum(torch.maximum(low[..., rows[0], :], low[..., rows[1], :]), low[..., rows[2], :])
    smallest_high = torch.minimum(torch.minimum(high[..., rows[0], :], high[..., rows[1], :]),
                                  high[..., rows[2], :])
    middle_mid = _median3(mid[..., rows[0], :], mid[..., rows[1], :], mid[..., rows[2], :])
    return _median3(largest_low, middle_mid, smallest_high)


def _median5_along(frames: torch.Tensor, dim: int) -> torch.Tensor:
    """Median of 5 neighbours along ``dim`` (-1 or -2), replicated border."""
    length = frames.shape[dim]
    padded = _replicate(frames, dim, 2)
    a, b, c, d, e = (padded.narrow(dim, i, length) for i in range(5))
    # median of 5 = median of (e, larger of the pair minima, smaller of the pair maxima)
    larger_min = torch.maximum(torch.minimum(a, b), torch.minimum(c, d))
    smaller_max = torch.minimum(torch.maximum(a, b), torch.maximum(c, d))
    return _median3(e, larger_min, smaller_max)


def _replicate(frames: torch.Tensor, dim: int, border: int) -> torch.Tensor:
    """Repeat the first and last entries along ``dim`` ``border`` times; any dtype on any device
    (not every padding kernel takes uint8)."""
    length = frames.shape[dim]
    index = torch.arange(-border, length + border, device=frames.device).clamp_(0, length - 1)
    return frames.index_select(dim, index)


def _sort3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    return torch.minimum(low, c), torch.maximum(low, torch.minimum(high, c)), torch.maximum(high, c)


def _median3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def _shift_hue_saturation(frames: torch.Tensor, hue_turns: float, saturation_shift: float) -> torch.Tensor:
    """Turn the HSV hue by ``hue_turns`` of a circle and add ``saturation_shift`` to S in [0, 1].

    Branch-free (masks as 0/1 floats): ``torch.where`` and ``remainder`` are several times slower
    than plain arithmetic on the CPU, so each is used at most once per pixel.
    """
    red, green, blue = frames.unbind(1)  # each [n, H, W]
    value = torch.maximum(torch.maximum(red, green), blue)
    chroma = value - torch.minimum(torch.minimum(red, green), blue)
    # the channel holding the maximum (red wins ties, then green; greys get hue 0, as in OpenCV)
    red_max = (value == red).to(frames.dtype)
    green_max = (value == green).to(frames.dtype).mul_(1 - red_max)
    blue_max = 1 - red_max - green_max
    # hexagonal hue in sextants: (G - B) / C, (B - R) / C + 2 or (R - G) / C + 4
    hue = (green - blue).mul_(red_max).add_((blue - red).mul_(green_max)).add_((red - green).mul_(blue_max))
    hue.div_(chroma.clamp(min=_EPSILON)).add_(green_max, alpha=2).add_(blue_max, alpha=4)
    hue.add_(6 * hue_turns).remainder_(6)  # in [0, 6)
    saturation = chroma.div_(value.clamp(min=_EPSILON)).add_(saturation_shift).clamp_(0, 1)
    new_chroma = saturation.mul_(value)
    shifted = torch.empty_like(frames)
    for channel, n in enumerate((5, 3, 1)):  # R, G, B = V - C' * clamp(min(k, 4 - k), 0, 1)
        k = hue + n
        k.sub_((k >= 6).to(k.dtype), alpha=6)  # k = (hue + n) mod 6
        ramp = torch.minimum(k, 4 - k).clamp_(0, 1)
        torch.sub(value, ramp.mul_(new_chroma), out=shifted[:, channel])
    return shifted
