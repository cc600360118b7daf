"""A small synthetic dataset in exactly the ChangeIt layout, for tests, the demo and benchmarks.

What the videos show. Each category is one kind of object with a state-modifying action, e.g.
``disc_slicing``: a striped orange disc on a plate (initial state) is sawn by a hand-held knife while
another hand steadies it and crumbs fly (action), and ends as four pale, ringed quarters lying apart
(end state). Per category the object's shape, colours and surface texture, the way the end state
differs (sliced into pieces, cooked dark and crinkled, squashed flat, peeled down to a smaller core
with scraps beside it) and the tool with its motion (knife sawing, spatula pressing, whisk stirring,
masher sweeping) are distinct. So every outcome a model must tell apart has visual evidence an
ImageNet-pretrained backbone picks up (colour, texture, shape, a hand-held tool moving), and the end
state changes colour, texture *and* shape, never a slight recolouring of the initial state.

A relevant video runs: background, the initial state for several seconds, the action (the tool works
while the object turns, column by column, from its initial into its end look), the end state for
several seconds, background. Lengths, positions, object scale, frame rate (4-6 fps), table,
plate, camera drift and shake, lighting flicker and sensor noise vary per video or per frame.
Segment boundaries fall on whole seconds, so every frame of second s shows what row s of the
annotation says, whichever instant of that second a 1-fps decoder samples.

Why the background looks the way it does. The method's pseudo-labels come from the ordering
initial < action < end alone, and its state head only ever sees action frames as "background". A
background look that is the same in many videos and always precedes (or follows) the object is
then as good a candidate for "initial state" (or "end state") as the object itself, and with few
videos a model can even memorise each video's background. So: a background stretch is there before
the change in most videos but not all, likewise after it; it shows either the bare table or a
cutaway (another surface with random things, often a presenter), like the intros and talk of web
videos; and tables and cutaways come from small pools shared by all categories, so none of them
belongs to a category. The only look consistent within a category is the object's.

Like ChangeIt's noisy web videos, about a quarter of the training videos are irrelevant (only
background, or only one state, never a change) and get relevance scores well below the category's
centring parameter theta_c; relevant ones score well above it, so that
w = sigmoid((r - theta_c) / 0.001) is ~1 for relevant and ~0 for irrelevant videos. With enough
training videos, one relevant video per category is scored just below theta_c (label noise: a good
video the scorer missed). Test videos are all relevant and annotated.

Written layout (``output``):
    videos/<category>/<video_id>.mp4 | .webm     H.264 in MP4 and VP9 in WebM, alternating
    dataset/annotations/<category>/<video_id>.fps1.csv   test videos, "second,label"
    dataset/categories.csv                        DIR_NAME,ACTION_NAME,CENTERING_PARAM
    dataset/videos/<category>.csv                 video_id,relevance_score (all videos)
    truth/<category>/<video_id>.fps1.csv          label per second of the training videos
                                                  (diagnostics only; never read by training)
Everything is a deterministic function of the seed (byte-identical files, any number of workers).
"""

from __future__ import annotations

import colorsys
import math
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from statechange._io import atomic_path
from statechange.config import LossConfig, SynthConfig
from statechange.data.index import (
    ANNOTATION_SUFFIX,
    ANNOTATIONS_DIR,
    CATEGORIES_FILE,
    CATEGORIES_HEADER,
    RELEVANCE_DIR,
    TEST,
    TRAIN,
    relevance_file,
)
from statechange.errors import StateChangeError
from statechange.labels import (
    ANNOTATION_ACTION,
    ANNOTATION_BACKGROUND,
    ANNOTATION_END_STATE,
    ANNOTATION_INITIAL_STATE,
)

# --------------------------------------------------------------------------------------------------
# Generator settings (not constants of the method: they only shape the synthetic data)
# --------------------------------------------------------------------------------------------------

VIDEO_DIR, DATASET_DIR, TRUTH_DIR = "videos", "dataset", "truth"  # the folders of ``output`` (see above)
_SIZES = SynthConfig()  # the defaults of make_synthetic_dataset (and of `statechange synth`)
FRAME_RATES = (4, 5, 6)  # frames per second, drawn per video (the decoder resamples to 1 fps)
MIN_STATE_SECONDS = 3  # initial state, action and end state each last at least this long
MIN_BACKGROUND_SECONDS = 1  # background before the initial state and after the end state
IRRELEVANT_FRACTION = 0.25  # share of training videos that show no state change
MIN_RELEVANT_FOR_NOISE = 6  # a category needs this many relevant training videos to get a noisy one
CENTERING_RANGE = (0.30, 0.40)  # theta_c per category, like ChangeIt's 0.30..0.41
RELEVANT_MARGIN = (0.05, 0.35)  # relevant videos: r - theta_c in this range
IRRELEVANT_MARGIN = (0.05, 0.30)  # irrelevant videos: theta_c - r in this range
NOISY_MARGIN = (0.01, 0.03)  # label noise: a relevant video with theta_c - r in this range
# Every margin is at least ten temperatures of the noise-adaptive weight, so w < 5e-5 or w > 1 - 5e-5.
assert min(RELEVANT_MARGIN[0], IRRELEVANT_MARGIN[0], NOISY_MARGIN[0]) >= 10 * LossConfig().relevance_temperature
MIN_RELEVANCE = 0.02
OBJECT_RADIUS = (0.20, 0.28)  # object radius, fraction of the frame height, drawn per video
OBJECT_CENTRE_X = (0.42, 0.58)  # fraction of the width: inside the 224x224 evaluation centre crop
OBJECT_CENTRE_Y = (0.42, 0.60)  # fraction of the height
SPRITE_EXTENT = 1.75  # half-size of an object's drawing canvas, in object radii
CAMERA_MARGIN = 6  # pixels of background beyond the frame for camera drift and shake
NOISE_SIGMA = (1.0, 3.0)  # sensor noise standard deviation (uint8 units), drawn per video
NOISE_BANK = 6  # noise images drawn per video and picked from per frame
TOOL_SPEED = (0.3, 0.7)  # tool motion cycles per second: a 1-fps decoder sees a new pose every second
N_BITS = 12  # crumbs drawn per action frame
HOLDING_HAND_ANGLE = 0.35  # radians; the hand steadying the object comes from the side opposite the tool

# Shots of a video: the plate on the table (where the object is), the bare table, cutaways.
KITCHEN, TABLE, FIRST_CUTAWAY = 0, 1, 2
N_CUTAWAYS = 2  # cutaways per video (for the stretch before the change and the one after)
BACKGROUND_STRETCH_P = 0.6  # probability of background before (and, separately, after) the change
TABLE_BACKGROUND_P = 0.4  # probability that a background stretch shows the bare table, not a cutaway
# Tables and cutaways come from pools shared by all categories, so that no background look (nor the
# table, seen with the object too) belongs to one category or one video.
N_SHARED_TABLES = 6
N_SHARED_CUTAWAYS = 6
VIDEO_STREAM, TABLE_STREAM, CUTAWAY_STREAM = 0, 1, 2  # independent random streams under one seed
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
ID_LENGTH = 11  # like YouTube ids


@dataclass(frozen=True)
class Difficulty:
    """How hard the synthetic data looks; ``DEMO`` (the defaults) is what the demo and the tests use.

    ``HARD`` (benchmarks/recipes.py, with longer videos and more irrelevant ones) moves toward
    ChangeIt's difficulties: end states that differ from the initial state subtly (the colour moves a
    third of the way, the surface texture stays; the change of shape remains), categories that share
    one object (pairs like ChangeIt's apple peeling and apple cutting, told apart only by the change
    and the tool) and long background stretches in nearly every video.
    """

    state_contrast: float = 1.0  # share of the way the end colour moves from the initial colour
    same_texture: bool = False  # the end state keeps the initial surface texture
    shared_objects: bool = False  # categories 2k and 2k+1 show the same object (shape, colour, texture)
    background_p: float = BACKGROUND_STRETCH_P
    background_weight: float = 1.0  # Dirichlet weight of a background stretch's length (each state's: 2)


DEMO = Difficulty()
HARD = Difficulty(state_contrast=0.35, same_texture=True, shared_objects=True, background_p=0.9, background_weight=4.0)
DIFFICULTIES = {"demo": DEMO, "hard": HARD}

# Video kinds: what a video shows.
RELEVANT = "relevant"  # background, initial state, action, end state, background
NOISY = "noisy"  # relevant content, but a relevance score below theta_c
ONLY_BACKGROUND = "only_background"  # irrelevant: no object at all
ONLY_INITIAL = "only_initial"  # irrelevant: the object, never changed
ONLY_END = "only_end"  # irrelevant: the already changed object
IRRELEVANT_KINDS = (ONLY_BACKGROUND, ONLY_INITIAL, ONLY_END)

# H.264 in MP4 and VP9 in WebM, tuned for encoding speed; bitexact keeps files byte-identical.
CONTAINERS = (".mp4", ".webm")
ENCODERS = {
    ".mp4": ("mp4", "libx264", {"preset": "ultrafast", "crf": "23"}),
    ".webm": (
        "webm",
        "libvpx-vp9",
        {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "lag-in-frames": "0", "crf": "30", "b": "0"},
    ),
}

SHAPES = ("disc", "square", "triangle", "hexagon", "diamond", "oval")
CHANGES = ("slicing", "cooking", "squashing", "peeling")  # how the end state differs
TEXTURES = ("stripes", "dots", "checker", "rings")
TOOLS = ("knife", "spatula", "whisk", "masher")
MOTIONS = ("saw", "press", "stir", "sweep")
SKIN_TONES = ((232, 190, 150), (205, 150, 105), (150, 98, 60), (100, 66, 42))
GOLDEN_RATIO_CONJUGATE = 0.618033988749895  # hue step that keeps any number of categories apart

# Tool parts in the tool's own frame (tip at the origin, handle along +x), in object radii:
# (x0, y0, x1, y1, half-width, colour role); "head" is drawn in the category's tool colour.
TOOL_PARTS: dict[str, tuple[tuple[float, float, float, float, float, str], ...]] = {
    "knife": ((0.0, 0.0, 1.0, 0.0, 0.14, "head"), (1.0, 0.0, 1.5, 0.0, 0.16, "shaft")),
    "spatula": ((-0.05, -0.32, -0.05, 0.32, 0.2, "head"), (0.0, 0.0, 1.5, 0.0, 0.11, "shaft")),
    "whisk": ((0.0, 0.0, 0.0, 0.0, 0.3, "head"), (0.0, 0.0, 1.5, 0.0, 0.11, "shaft")),
    "masher": ((0.0, -0.45, 0.0, 0.45, 0.14, "head"), (0.0, 0.0, 1.5, 0.0, 0.12, "shaft")),
}
HAND_PARTS = (  # fingers around the shaft's end (x = 1.5), the palm, and the forearm leaving the frame
    (1.35, -0.3, 1.35, 0.3, 0.08, "skin"),
    (1.5, -0.32, 1.5, 0.32, 0.08, "skin"),
    (1.65, -0.3, 1.65, 0.3, 0.08, "skin"),
    (1.8, 0.0, 1.8, 0.0, 0.32, "skin"),
    (1.9, 0.0, 4.5, 0.0, 0.28, "skin"),
)


# --------------------------------------------------------------------------------------------------
# Public data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryStyle:
    """How one synthetic category looks: its object, the state change and the action's tool."""

    name: str  # folder name, e.g. "disc_slicing"
    action_name: str  # e.g. "Disc Slicing"
    shape: str  # one of SHAPES
    change: str  # one of CHANGES: how the end state differs from the initial state
    initial_colour: tuple[float, float, float]  # RGB 0..255
    end_colour: tuple[float, float, float]
    initial_texture: str  # one of TEXTURES
    end_texture: str
    tool: str  # one of TOOLS
    tool_colour: tuple[float, float, float]
    motion: str  # one of MOTIONS


@dataclass(frozen=True)
class SyntheticVideo:
    """One written video and its truth."""

    category: str
    video_id: str
    path: Path
    split: str  # "train" or "test"
    kind: str  # RELEVANT, NOISY or one of IRRELEVANT_KINDS
    relevance: float  # its score in dataset/videos/<category>.csv
    labels: tuple[int, ...]  # annotation code per second (0 background, 1 initial, 2 action, 3 end)
    fps: int
    object_radius: float  # pixels
    object_corner: tuple[int, int]  # (x, y) of the object canvas (``render_object``) before camera shake


@dataclass(frozen=True)
class SyntheticDataset:
    """What ``make_synthetic_dataset`` wrote."""

    root: Path
    video_root: Path  # root/videos: pass to --video-roots
    dataset_root: Path  # root/dataset: pass to --dataset-root
    truth_root: Path  # root/truth: per-second labels of training videos
    styles: tuple[CategoryStyle, ...]  # sorted by name, i.e. by class index
    centering: dict[str, float]  # theta_c per category
    videos: tuple[SyntheticVideo, ...]
    frame_size: tuple[int, int]  # (width, height)

    @property
    def categories(self) -> list[str]:
        return [style.name for style in self.styles]

    @property
    def train(self) -> list[SyntheticVideo]:
        return [v for v in self.videos if v.split == TRAIN]

    @property
    def test(self) -> list[SyntheticVideo]:
        return [v for v in self.videos if v.split == TEST]


# --------------------------------------------------------------------------------------------------
# Categories and objects
# --------------------------------------------------------------------------------------------------


def category_style(index: int, difficulty: Difficulty = DEMO) -> CategoryStyle:
    """The look of synthetic category number ``index`` (0, 1, ...); names are unique for any index."""
    thing = index // 2 if difficulty.shared_objects else index  # the object's look: shared by pairs
    shape, change = SHAPES[thing % len(SHAPES)], CHANGES[index % len(CHANGES)]
    combos = len(SHAPES) * len(CHANGES) // math.gcd(len(SHAPES), len(CHANGES))
    suffix = "" if index < combos else str(index // combos + 1)
    hue = (0.08 + thing * GOLDEN_RATIO_CONJUGATE) % 1.0
    end_hue = (hue + 0.5) % 1.0
    end_saturation, end_value = {  # each change moves colour its own way, always far from the start
        "slicing": (0.30, 0.98),  # pale inner flesh
        "cooking": (0.85, 0.42),  # dark, browned
        "squashing": (0.90, 0.80),
        "peeling": (0.45, 0.88),
    }[change]
    tool = TOOLS[index % len(TOOLS)]
    initial_colour = _hsv(hue, 0.80, 0.90)
    end_colour = _hsv(end_hue, end_saturation, end_value)
    if difficulty.state_contrast != 1.0:
        end_colour = tuple(a + difficulty.state_contrast * (b - a)
                           for a, b in zip(initial_colour, end_colour, strict=True))
    initial_texture = TEXTURES[thing % len(TEXTURES)]
    return CategoryStyle(
        name=f"{shape}_{change}{suffix}",
        action_name=f"{shape.capitalize()} {change.capitalize()}{suffix}",
        shape=shape,
        change=change,
        initial_colour=initial_colour,
        end_colour=end_colour,
        initial_texture=initial_texture,
        end_texture=initial_texture if difficulty.same_texture else TEXTURES[(index + 2) % len(TEXTURES)],
        tool=tool,
        tool_colour=_hsv((0.08 + index * GOLDEN_RATIO_CONJUGATE + 0.27) % 1.0, 0.85, 0.95),
        motion=MOTIONS[(index + index // len(MOTIONS)) % len(MOTIONS)],
    )


def render_object(style: CategoryStyle, state: int, radius: float) -> np.ndarray:
    """The object of a category in its initial or end state, float32 RGBA [S, S, 4] (RGB 0..255,
    alpha 0..1), S = 2 * ceil(SPRITE_EXTENT * radius); the object's centre is the canvas centre."""
    size = 2 * math.ceil(SPRITE_EXTENT * radius)
    coordinates = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) / radius
    u, v = coordinates[None, :], coordinates[:, None]  # [1, S] and [S, 1], in object radii
    pixel = 1.0 / radius  # one pixel in object radii, the width of the anti-aliased edge
    if state == ANNOTATION_INITIAL_STATE:
        level = _shape_level(style.shape, u, v)
        return _paint(level, u, v, pixel, style.initial_colour, style.initial_texture)
    if state != ANNOTATION_END_STATE:
        raise ValueError(f"render_object draws states {ANNOTATION_INITIAL_STATE} and {ANNOTATION_END_STATE}.")
    if style.change == "slicing":  # four quarters pushed apart
        gap = 0.12
        level = _shape_level(style.shape, u - np.sign(u) * gap, v - np.sign(v) * gap)
        level = np.maximum(level, 1.0 + gap - np.minimum(np.abs(u), np.abs(v)))
    elif style.change == "cooking":  # shrunk, with a crinkled outline
        angle = np.arctan2(v, u)
        level = _shape_level(style.shape, u / 0.9, v / 0.9) * (1.0 + 0.07 * np.sin(9.0 * angle))
    elif style.change == "squashing":  # wide and flat, pressed down
        level = _shape_level(style.shape, u / 1.45, (v - 0.2) / 0.65)
    else:  # peeling: a smaller core, the peel lying in scraps around it
        level = _shape_level(style.shape, u / 0.72, v / 0.72)
        peel = _paint(_peel_level(u, v), u, v, pixel, style.initial_colour, style.initial_texture)
        core = _paint(level, u, v, pixel, style.end_colour, style.end_texture)
        return _over(core, peel)
    return _paint(level, u, v, pixel, style.end_colour, style.end_texture)


def _hsv(hue: float, saturation: float, value: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return (255.0 * r, 255.0 * g, 255.0 * b)


def _shape_level(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A field that is 1 on the shape's outline, below 1 inside, growing about like a distance."""
    au, av_ = np.abs(u), np.abs(v)
    if shape == "disc":
        return np.hypot(u, v)
    if shape == "square":
        return np.maximum(au, av_) / 0.82
    if shape == "triangle":  # pointing up, centred on its centroid
        return np.maximum(v, 0.866 * au - 0.5 * v) / 0.55
    if shape == "hexagon":
        return np.maximum(av_, 0.866 * au + 0.5 * av_) / 0.92
    if shape == "diamond":
        return (au + av_) / 1.15
    if shape == "oval":
        return np.hypot(u / 1.2, v / 0.72)
    raise ValueError(f"Unknown shape {shape!r}.")


def _peel_level(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Four small curled scraps of peel around a peeled object."""
    level = np.full(np.broadcast_shapes(u.shape, v.shape), np.inf, dtype=np.float32)
    for angle in (0.5, 2.0, 3.6, 5.1):
        cu, cv = 1.3 * math.cos(angle), 1.3 * math.sin(angle)
        level = np.minimum(level, np.hypot((u - cu) / 0.24, (v - cv) / 0.11))
    return level


def _texture(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A brightness factor (about 0.6 to 1.25) that patterns an object's surface."""
    if texture == "stripes":
        return 1.0 + 0.22 * np.tanh(3.0 * np.sin(7.0 * (0.8 * u + 0.6 * v)))
    if texture == "dots":
        du, dv = (u * 2.6) % 1.0 - 0.5, (v * 2.6) % 1.0 - 0.5
        return np.where(du * du + dv * dv < 0.05, 0.6, 1.05)
    if texture == "checker":
        return np.where((np.floor(u * 3.2) + np.floor(v * 3.2)) % 2 == 0, 1.15, 0.85)
    if texture == "rings":
        return 1.0 + 0.2 * np.sin(11.0 * np.hypot(u, v))
    raise ValueError(f"Unknown texture {texture!r}.")


def _paint(
    level: np.ndarray, u: np.ndarray, v: np.ndarray, pixel: float, colour: Sequence[float], texture: str
) -> np.ndarray:
    """RGBA [S, S, 4] of a textured, shaded, outlined region {level < 1} with anti-aliased edges."""
    alpha = np.clip((1.0 - level) / pixel + 0.5, 0.0, 1.0)
    light = np.clip(1.12 - 0.14 * np.hypot(u + 0.4, v + 0.4), 0.75, 1.15)  # lit from the top left
    outline = 1.0 - 0.35 * np.clip((level - 0.88) / 0.12, 0.0, 1.0)
    shade = _texture(texture, u, v) * light * outline  # [S, S]
    rgb = np.clip(shade[..., None] * np.asarray(colour, dtype=np.float32), 0.0, 255.0)
    return np.concatenate([rgb, alpha[..., None]], axis=-1).astype(np.float32)


def _over(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """RGBA ``top`` composited over RGBA ``bottom`` (same size)."""
    a_top, a_bottom = top[..., 3:], bottom[..., 3:]
    alpha = a_top + a_bottom * (1.0 - a_top)
    rgb = (top[..., :3] * a_top + bottom[..., :3] * a_bottom * (1.0 - a_top)) / np.maximum(alpha, 1e-6)
    return np.concatenate([rgb, alpha], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Scenes: background, timeline, tool motion
# --------------------------------------------------------------------------------------------------


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a coarse [h, w, C] grid to [height, width, C]."""
    ys = np.linspace(0.0, grid.shape[0] - 1.0, height, dtype=np.float32)
    xs = np.linspace(0.0, grid.shape[1] - 1.0, width, dtype=np.float32)
    y0 = np.minimum(ys.astype(np.int64), grid.shape[0] - 2)
    x0 = np.minimum(xs.astype(np.int64), grid.shape[1] - 2)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1.0 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1.0 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1.0 - fy) + bottom * fy).astype(np.float32)


def _random_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    return np.asarray(_hsv(rng.random(), rng.uniform(*saturation), rng.uniform(*value)), dtype=np.float32)


def _surface(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random textured surface [height, width, 3] (float32 0..255): wood, tiles, cloth or a gradient."""
    first = _random_colour(rng, (0.1, 0.6), (0.35, 0.9))
    second = np.clip(first * rng.uniform(0.55, 0.85) + rng.normal(0.0, 20.0, 3), 0, 255).astype(np.float32)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    warp = _upsample(rng.normal(0.0, 1.0, (4, 6, 1)).astype(np.float32), height, width)[..., 0]
    kind = rng.integers(4)
    if kind == 0:  # wood grain
        angle = rng.uniform(0.0, math.pi)
        grain = np.sin((x * math.cos(angle) + y * math.sin(angle)) / rng.uniform(3.0, 8.0) + 2.5 * warp)
        mix = (0.5 + 0.5 * grain)[..., None]
    elif kind == 1:  # tiles with grout
        tile = rng.uniform(14.0, 40.0)
        mix = ((x // tile + y // tile) % 2)[..., None]
        grout = ((x % tile < 1.5) | (y % tile < 1.5))[..., None]
        mix = np.where(grout, 1.6, mix)
    elif kind == 2:  # cloth: soft colour blotches
        blotches = _upsample(rng.random((5, 8, 1)).astype(np.float32), height, width)
        mix = np.clip(blotches + 0.1 * np.sin(x / 2.0)[..., None] * np.sin(y / 2.0)[..., None], 0.0, 1.0)
    else:  # a gradient with fine grain
        mix = (x / width * 0.7 + 0.3 * (0.5 + 0.5 * warp))[..., None]
    return (first * (1.0 - mix) + second * mix).astype(np.float32)


def _blob(
    image: np.ndarray, shape: str, centre: tuple[float, float], size: tuple[float, float], colour: np.ndarray
) -> np.ndarray:
    """``image`` [H, W, 3] with a flat, anti-aliased shape of half-size ``size`` (x, y) drawn at ``centre``
    (in place; returned for convenience)."""
    reach = 1.3  # every shape of SHAPES lies within 1.3 half-sizes of its centre
    x0, x1 = max(int(centre[0] - reach * size[0]), 0), min(int(centre[0] + reach * size[0]) + 2, image.shape[1])
    y0, y1 = max(int(centre[1] - reach * size[1]), 0), min(int(centre[1] + reach * size[1]) + 2, image.shape[0])
    if x0 >= x1 or y0 >= y1:
        return image
    x = (np.arange(x0, x1, dtype=np.float32)[None, :] - centre[0]) / size[0]
    y = (np.arange(y0, y1, dtype=np.float32)[:, None] - centre[1]) / size[1]
    alpha = np.clip((1.0 - _shape_level(shape, x, y)) * min(size) + 0.5, 0.0, 1.0)[..., None]
    region = image[y0:y1, x0:x1]
    region *= 1.0 - alpha
    region += alpha * colour
    return image


def _kitchen(rng: np.random.Generator, table: np.ndarray, centre: tuple[float, float], radius: float) -> np.ndarray:
    """The scene of the state change [height, width, 3]: the table with a plate (or pan) set under the
    object and a few muted things beside it."""
    image, height = table.copy(), table.shape[0]
    for _ in range(rng.integers(0, 3)):
        side = rng.choice([-1.0, 1.0])
        where = (centre[0] + side * rng.uniform(2.2, 3.2) * radius, rng.uniform(0.2, 0.8) * height)
        colour = _random_colour(rng, (0.0, 0.25), (0.2, 0.95))
        image = _blob(image, str(rng.choice(SHAPES)), where, (0.45 * radius, 0.45 * radius), colour)
    plate_radius = radius * rng.uniform(1.3, 1.6)
    plate_centre = (centre[0], centre[1] + 0.2 * radius)
    plate = _random_colour(rng, (0.0, 0.15), (0.15, 0.97))  # white or grey plate, or a dark pan
    image = _blob(image, "disc", plate_centre, (1.1 * plate_radius, plate_radius), plate * 0.75)
    image = _blob(image, "disc", plate_centre, (0.95 * plate_radius, 0.86 * plate_radius), plate)
    return image.astype(np.float32)


def _cutaway(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A background shot [height, width, 3] (one of the dataset's shared pool): another surface with
    random things on it, and often a presenter (head and shoulders), like the intros and talk of web videos."""
    image = _surface(rng, height, width)
    for _ in range(rng.integers(1, 5)):
        where = (rng.uniform(0.0, width), rng.uniform(0.0, height))
        size = (rng.uniform(0.08, 0.3) * height, rng.uniform(0.08, 0.3) * height)
        image = _blob(image, str(rng.choice(SHAPES)), where, size, _random_colour(rng, (0.0, 0.9), (0.2, 0.95)))
    if rng.random() < 0.6:
        x = rng.uniform(0.25, 0.75) * width
        shirt = _random_colour(rng, (0.2, 0.9), (0.2, 0.9))
        skin = np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))], dtype=np.float32)
        image = _blob(image, "oval", (x, 1.05 * height), (0.32 * height, 0.45 * height), shirt)
        image = _blob(image, "oval", (x, 0.45 * height), (0.16 * height, 0.27 * height), skin)
    return image.astype(np.float32)


def _segments(rng: np.random.Generator, kind: str, n_seconds: int,
              difficulty: Difficulty = DEMO) -> list[tuple[int, int]]:
    """The timeline as (annotation code, length in seconds) pairs summing to ``n_seconds``."""
    if kind == ONLY_BACKGROUND:
        return [(ANNOTATION_BACKGROUND, n_seconds)]
    if kind in (ONLY_INITIAL, ONLY_END):
        state = ANNOTATION_INITIAL_STATE if kind == ONLY_INITIAL else ANNOTATION_END_STATE
        shown = int(rng.integers(max(1, n_seconds // 2), n_seconds + 1))
        before = int(rng.integers(0, n_seconds - shown + 1))
        parts = [(ANNOTATION_BACKGROUND, before), (state, shown), (ANNOTATION_BACKGROUND, n_seconds - shown - before)]
        return [part for part in parts if part[1] > 0]
    # background before and after the change are each there in most videos, not all (some videos
    # open on the object or close on the result), so no background look is tied to one state
    before, after = (bool(rng.random() < difficulty.background_p) for _ in range(2))
    codes = [ANNOTATION_BACKGROUND] * before + [ANNOTATION_INITIAL_STATE, ANNOTATION_ACTION, ANNOTATION_END_STATE]
    codes += [ANNOTATION_BACKGROUND] * after
    minimum = np.array([MIN_BACKGROUND_SECONDS if c == ANNOTATION_BACKGROUND else MIN_STATE_SECONDS for c in codes])
    share = rng.dirichlet([difficulty.background_weight if c == ANNOTATION_BACKGROUND else 2.0 for c in codes])
    extra = rng.multinomial(n_seconds - int(minimum.sum()), share)
    return list(zip(codes, (minimum + extra).tolist(), strict=True))


def _tool_pose(
    motion: str, time: float, phase: float, speed: float, centre: tuple[float, float], radius: float
) -> tuple[float, float, float]:
    """(tip x, tip y, handle angle) of the tool at ``time`` seconds into the action."""
    cx, cy = centre
    turn = 2.0 * math.pi * speed * time + phase
    if motion == "saw":  # back and forth across the object, the handle up and right
        return cx - 0.3 * radius + 0.6 * radius * math.sin(turn), cy, -0.5
    if motion == "press":  # up and down from straight above
        return cx + 0.15 * radius * math.sin(0.4 * turn), cy - radius * (0.1 + 0.55 * abs(math.sin(turn))), -math.pi / 2
    if motion == "stir":  # circles over the object
        return cx + 0.45 * radius * math.cos(turn), cy + 0.35 * radius * math.sin(turn), -1.1
    if motion == "sweep":  # swinging side to side
        return cx + 0.5 * radius * math.sin(turn), cy - 0.1 * radius, -math.pi / 2 + 0.6 * math.sin(turn)
    raise ValueError(f"Unknown motion {motion!r}.")


def _draw_capsule(
    frame: np.ndarray, start: tuple[float, float], end: tuple[float, float], half_width: float, colour: np.ndarray
) -> None:
    """Paint (in place) the anti-aliased segment ``start``-``end`` with round caps into [H, W, 3]."""
    height, width = frame.shape[:2]
    x0 = max(int(min(start[0], end[0]) - half_width - 1), 0)
    x1 = min(int(max(start[0], end[0]) + half_width + 2), width)
    y0 = max(int(min(start[1], end[1]) - half_width - 1), 0)
    y1 = min(int(max(start[1], end[1]) + half_width + 2), height)
    if x0 >= x1 or y0 >= y1:
        return
    x = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    y = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    dx, dy = end[0] - start[0], end[1] - start[1]
    t = np.clip(((x - start[0]) * dx + (y - start[1]) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    distance = np.hypot(x - start[0] - t * dx, y - start[1] - t * dy)
    alpha = np.clip(half_width - distance + 0.5, 0.0, 1.0)[..., None]
    region = frame[y0:y1, x0:x1]
    region *= 1.0 - alpha
    region += alpha * colour


def _draw_parts(
    frame: np.ndarray,
    parts: Sequence[tuple[float, float, float, float, float, str]],
    pose: tuple[float, float, float],
    radius: float,
    colours: dict[str, np.ndarray],
) -> None:
    """Capsules given in a local frame (units of ``radius``) placed at pose (x, y, angle), into [H, W, 3]."""
    tip_x, tip_y, angle = pose
    cos, sin = math.cos(angle), math.sin(angle)

    def place(px: float, py: float) -> tuple[float, float]:
        return tip_x + radius * (px * cos - py * sin), tip_y + radius * (px * sin + py * cos)

    for x0, y0, x1, y1, half_width, role in parts:
        _draw_capsule(frame, place(x0, y0), place(x1, y1), half_width * radius, colours[role])


def _draw_bits(
    frame: np.ndarray, rng: np.random.Generator, centre: tuple[float, float], radius: float, colour: np.ndarray
) -> None:
    """Crumbs flying off the object where the tool works, new ones every frame."""
    for _ in range(N_BITS):
        x, y = centre[0] + rng.normal(0.0, 0.45 * radius), centre[1] + rng.normal(0.0, 0.45 * radius)
        _draw_capsule(frame, (x, y), (x, y), rng.uniform(0.04, 0.08) * radius, colour)


def _changing(initial: np.ndarray, end: np.ndarray, progress: float, from_right: bool) -> np.ndarray:
    """The object part-way through the action: a ``progress`` share of its columns already changed."""
    size = initial.shape[1]
    n_changed = int(progress * size)
    if from_right:
        return np.concatenate([initial[:, : size - n_changed], end[:, size - n_changed :]], axis=1)
    return np.concatenate([end[:, :n_changed], initial[:, n_changed:]], axis=1)


def _paste(frame: np.ndarray, rgba: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-composite RGBA [h, w, 4] onto [H, W, 3] with its top-left corner at (x0, y0), in place."""
    height, width = frame.shape[:2]
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + rgba.shape[1], width), min(y0 + rgba.shape[0], height)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    sprite = rgba[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    alpha = sprite[..., 3:]
    region = frame[fy0:fy1, fx0:fx1]
    region *= 1.0 - alpha
    region += alpha * sprite[..., :3]


# --------------------------------------------------------------------------------------------------
# One video
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VideoJob:
    """Everything needed to render and write one video (picklable, for worker processes)."""

    style: CategoryStyle
    video_id: str
    path: Path
    split: str
    kind: str
    relevance: float
    seed: tuple[int, ...]  # entropy of the video's own random generator
    table_seed: tuple[int, ...]  # entropy of its table, one of a pool shared by all categories
    cutaway_seeds: tuple[tuple[int, ...], ...]  # entropy of its N_CUTAWAYS cutaways, from a shared pool
    frame_size: tuple[int, int]
    seconds: tuple[int, int]  # (min, max) length
    difficulty: Difficulty = DEMO


@dataclass(frozen=True)
class _Scene:
    """Everything drawn in one video, fixed before its first frame."""

    style: CategoryStyle
    labels: np.ndarray  # int64 [T], annotation code per second
    fps: int
    action_start: int  # second the action begins (0 when there is none)
    action_length: int  # its length in seconds (1 when there is none)
    shots: np.ndarray  # float32 [2 + N_CUTAWAYS, H + 2m, W + 2m, 3], m = CAMERA_MARGIN: KITCHEN, TABLE, cutaways
    shot_of_second: np.ndarray  # int64 [T]: the shot each second shows
    initial: np.ndarray  # float32 RGBA [S, S, 4]
    end: np.ndarray  # float32 RGBA [S, S, 4]
    radius: float  # object radius, pixels
    centre: tuple[float, float]  # object centre on the kitchen canvas
    change_from_right: bool  # the action turns the object's columns from the right
    tool_mirrored: bool  # the tool comes from the left instead of the right
    tool_phase: float
    tool_speed: float  # motion cycles per second
    colours: dict[str, np.ndarray]  # "head", "shaft" (tool), "skin", "bits" (crumbs): RGB float32
    noise: np.ndarray  # float32 [NOISE_BANK, H, W, 3]
    drift: np.ndarray  # camera drift over the whole video, pixels (x, y)
    wobble_phase: float

    @property
    def corner(self) -> tuple[int, int]:
        """Top-left corner of the object canvas on the kitchen canvas."""
        size = self.initial.shape[0]
        return round(self.centre[0] - size / 2), round(self.centre[1] - size / 2)


def _make_scene(job: _VideoJob, rng: np.random.Generator) -> _Scene:
    """Draw the timeline, the shots, the object looks and the motion parameters of one video."""
    width, height = job.frame_size
    n_seconds = int(rng.integers(job.seconds[0], job.seconds[1] + 1))
    fps = int(rng.choice(FRAME_RATES))
    segments = _segments(rng, job.kind, n_seconds, job.difficulty)
    labels = np.repeat([code for code, _ in segments], [length for _, length in segments])  # [T]
    codes = [code for code, _ in segments]
    action = codes.index(ANNOTATION_ACTION) if ANNOTATION_ACTION in codes else None
    radius = float(rng.uniform(*OBJECT_RADIUS) * height)
    margin = CAMERA_MARGIN
    centre = (rng.uniform(*OBJECT_CENTRE_X) * width + margin, rng.uniform(*OBJECT_CENTRE_Y) * height + margin)
    tool_colour = np.asarray(job.style.tool_colour, dtype=np.float32)
    canvas = (height + 2 * margin, width + 2 * margin)
    table = _surface(np.random.default_rng(job.table_seed), *canvas)
    cutaways = [_cutaway(np.random.default_rng(seed), *canvas) for seed in job.cutaway_seeds]
    # a background stretch shows the bare table or, more often, one of the video's cutaways
    stretch = np.cumsum([code == ANNOTATION_BACKGROUND for code in codes]) - 1
    shot_of_segment = [
        KITCHEN if code != ANNOTATION_BACKGROUND
        else TABLE if rng.random() < TABLE_BACKGROUND_P
        else FIRST_CUTAWAY + int(stretch[i] % N_CUTAWAYS)
        for i, code in enumerate(codes)
    ]  # fmt: skip
    return _Scene(
        style=job.style,
        labels=labels,
        fps=fps,
        action_start=sum(length for _, length in segments[:action]) if action is not None else 0,
        action_length=segments[action][1] if action is not None else 1,
        shots=np.stack([_kitchen(rng, table, centre, radius), table, *cutaways]),
        shot_of_second=np.repeat(shot_of_segment, [length for _, length in segments]),
        initial=render_object(job.style, ANNOTATION_INITIAL_STATE, radius),
        end=render_object(job.style, ANNOTATION_END_STATE, radius),
        radius=radius,
        centre=centre,
        change_from_right=bool(rng.random() < 0.5),
        tool_mirrored=bool(rng.random() < 0.5),
        tool_phase=float(rng.uniform(0.0, 2.0 * math.pi)),
        tool_speed=float(rng.uniform(*TOOL_SPEED)),
        colours={
            "head": tool_colour,
            "shaft": tool_colour * 0.45,
            "skin": np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))], dtype=np.float32),
            "bits": np.asarray(job.style.end_colour, dtype=np.float32),
        },
        noise=rng.normal(0.0, rng.uniform(*NOISE_SIGMA), (NOISE_BANK, height, width, 3)).astype(np.float32),
        drift=rng.uniform(-margin / 2, margin / 2, 2),
        wobble_phase=float(rng.uniform(0.0, 2.0 * math.pi)),
    )


def _draw_frame(scene: _Scene, index: int, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of the video, uint8 [H, W, 3]; it shows what the label of its second says."""
    time = index / scene.fps
    code = int(scene.labels[index // scene.fps])
    # camera: a slow drift across the video plus a one-pixel shake per frame
    pan = 2.0 * time / len(scene.labels) - 1.0
    ox = min(max(round(CAMERA_MARGIN + scene.drift[0] * pan + rng.integers(-1, 2)), 0), 2 * CAMERA_MARGIN)
    oy = min(max(round(CAMERA_MARGIN + scene.drift[1] * pan + rng.integers(-1, 2)), 0), 2 * CAMERA_MARGIN)
    shot = scene.shots[scene.shot_of_second[index // scene.fps]]
    frame = shot[oy : oy + height, ox : ox + width].copy()  # [H, W, 3]
    wobble = round(1.5 * math.sin(0.8 * time + scene.wobble_phase))
    x0, y0 = scene.corner[0] - ox + wobble, scene.corner[1] - oy
    if code == ANNOTATION_INITIAL_STATE:
        _paste(frame, scene.initial, x0, y0)
    elif code == ANNOTATION_END_STATE:
        _paste(frame, scene.end, x0, y0)
    elif code == ANNOTATION_ACTION:
        since = time - scene.action_start
        changing = _changing(scene.initial, scene.end, since / scene.action_length, scene.change_from_right)
        _paste(frame, changing, x0, y0)
        centre = (scene.centre[0] - ox + wobble, scene.centre[1] - oy)
        tip_x, tip_y, angle = _tool_pose(
            scene.style.motion, since, scene.tool_phase, scene.tool_speed, centre, scene.radius
        )
        holding = (centre[0], centre[1] + 0.1 * scene.radius, math.pi - HOLDING_HAND_ANGLE)  # the other hand
        if scene.tool_mirrored:
            tip_x, angle = 2.0 * centre[0] - tip_x, math.pi - angle
            holding = (holding[0], holding[1], HOLDING_HAND_ANGLE)
        _draw_parts(frame, HAND_PARTS, holding, scene.radius, scene.colours)
        _draw_bits(frame, rng, (tip_x, tip_y), scene.radius, scene.colours["bits"])
        tool = (*TOOL_PARTS[scene.style.tool], *HAND_PARTS)
        _draw_parts(frame, tool, (tip_x, tip_y, angle), scene.radius, scene.colours)
    frame *= 1.0 + rng.normal(0.0, 0.02)  # lighting flicker
    frame += scene.noise[rng.integers(NOISE_BANK)]
    return np.clip(frame, 0.0, 255.0).astype(np.uint8)


def _render_video(job: _VideoJob) -> SyntheticVideo:
    """Draw and encode one video (written under a temporary name, then renamed); returns its truth."""
    rng = np.random.default_rng(job.seed)
    width, height = job.frame_size
    scene = _make_scene(job, rng)
    container_format, codec, options = ENCODERS[job.path.suffix]
    with (
        atomic_path(job.path) as partial,
        av.open(str(partial), "w", format=container_format, options={"fflags": "+bitexact"}) as container,
    ):
        stream = container.add_stream(codec, rate=scene.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(len(scene.labels) * scene.fps):
            image = av.VideoFrame.from_ndarray(_draw_frame(scene, index, rng, width, height), format="rgb24")
            image.pts = index
            container.mux(stream.encode(image))
        container.mux(stream.encode(None))
    return SyntheticVideo(
        category=job.style.name,
        video_id=job.video_id,
        path=job.path,
        split=job.split,
        kind=job.kind,
        relevance=job.relevance,
        labels=tuple(int(label) for label in scene.labels),
        fps=scene.fps,
        object_radius=scene.radius,
        object_corner=(scene.corner[0] - CAMERA_MARGIN, scene.corner[1] - CAMERA_MARGIN),
    )


# --------------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------------


def make_synthetic_dataset(
    output: str | Path,
    n_categories: int = _SIZES.n_categories,
    n_train_videos: int = _SIZES.n_train_videos,
    n_test_videos: int = _SIZES.n_test_videos,
    seed: int = 0,
    *,
    min_seconds: int = _SIZES.min_seconds,
    max_seconds: int = _SIZES.max_seconds,
    frame_size: tuple[int, int] = _SIZES.frame_size,
    irrelevant_fraction: float = IRRELEVANT_FRACTION,
    difficulty: Difficulty = DEMO,
    workers: int = 1,
    overwrite: bool = False,
) -> SyntheticDataset:
    """Write a synthetic ChangeIt-format dataset under ``output`` (see the module docstring).

    ``n_train_videos`` and ``n_test_videos`` are per category. ``workers`` > 1 renders videos in
    that many processes (the files do not depend on it). An ``output`` that already holds
    videos/, dataset/ or truth/ is refused unless ``overwrite``, which deletes those three folders.
    """
    _check_arguments(n_categories, n_train_videos, n_test_videos, min_seconds, max_seconds, frame_size,
                     irrelevant_fraction, workers)  # fmt: skip
    root = Path(output)
    video_root, dataset_root, truth_root = root / VIDEO_DIR, root / DATASET_DIR, root / TRUTH_DIR
    _prepare_output(root, (video_root, dataset_root, truth_root), overwrite)

    styles = [category_style(index, difficulty) for index in range(n_categories)]
    plan_rng = np.random.default_rng([seed, n_categories, n_train_videos, n_test_videos])
    ids = _video_ids(plan_rng, n_categories * (n_train_videos + n_test_videos))
    centering: dict[str, float] = {}
    jobs: list[_VideoJob] = []
    for index, style in enumerate(styles):
        theta = round(float(plan_rng.uniform(*CENTERING_RANGE)), 3)
        centering[style.name] = theta
        kinds = _training_kinds(plan_rng, n_train_videos, irrelevant_fraction) + [RELEVANT] * n_test_videos
        (video_root / style.name).mkdir(parents=True)
        for number, kind in enumerate(kinds):
            video_id = ids.pop()
            split = TRAIN if number < n_train_videos else TEST
            jobs.append(
                _VideoJob(
                    style=style,
                    video_id=video_id,
                    path=video_root / style.name / f"{video_id}{CONTAINERS[number % len(CONTAINERS)]}",
                    split=split,
                    kind=kind,
                    relevance=_relevance(plan_rng, kind, theta),
                    seed=(seed, VIDEO_STREAM, index, number),
                    table_seed=(seed, TABLE_STREAM, int(plan_rng.integers(N_SHARED_TABLES))),
                    cutaway_seeds=tuple(
                        (seed, CUTAWAY_STREAM, int(c))
                        for c in plan_rng.choice(N_SHARED_CUTAWAYS, N_CUTAWAYS, replace=False)
                    ),
                    frame_size=frame_size,
                    seconds=(min_seconds, max_seconds),
                    difficulty=difficulty,
                )
            )

    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            videos = list(pool.map(_render_video, jobs))
    else:
        videos = [_render_video(job) for job in jobs]

    _write_metadata(dataset_root, truth_root, styles, centering, videos)
    return SyntheticDataset(
        root=root,
        video_root=video_root,
        dataset_root=dataset_root,
        truth_root=truth_root,
        styles=tuple(sorted(styles, key=lambda s: s.name)),
        centering=centering,
        videos=tuple(sorted(videos, key=lambda v: (v.category, v.video_id))),
        frame_size=frame_size,
    )


def _check_arguments(
    n_categories: int,
    n_train_videos: int,
    n_test_videos: int,
    min_seconds: int,
    max_seconds: int,
    frame_size: tuple[int, int],
    irrelevant_fraction: float,
    workers: int,
) -> None:
    shortest = 2 * MIN_BACKGROUND_SECONDS + 3 * MIN_STATE_SECONDS
    if n_categories < 1 or n_train_videos < 0 or n_test_videos < 0 or n_train_videos + n_test_videos < 1:
        raise StateChangeError(
            "A synthetic dataset needs at least one category and one video per category: "
            "raise --categories, --train-videos or --test-videos."
        )
    if not shortest <= min_seconds <= max_seconds:
        raise StateChangeError(
            f"Video lengths {min_seconds}..{max_seconds} s cannot hold a state change: "
            f"use at least {shortest} s and a maximum no smaller than the minimum."
        )
    if frame_size[0] % 2 or frame_size[1] % 2 or min(frame_size) < 32:
        raise StateChangeError(f"Frame size {frame_size} is not usable: use even sizes of at least 32 pixels.")
    if not 0.0 <= irrelevant_fraction < 1.0:
        raise StateChangeError(f"Irrelevant fraction {irrelevant_fraction} is not in [0, 1): use e.g. 0.25.")
    if workers < 1:
        raise StateChangeError(f"{workers} workers cannot render anything: use 1 or more.")


def _prepare_output(root: Path, folders: Sequence[Path], overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise StateChangeError(f"Output {root} is a file: choose a directory path for the synthetic dataset.")
    existing = [folder for folder in folders if folder.exists()]
    if existing and not overwrite:
        raise StateChangeError(
            f"Output {root} already holds {existing[0].name}/: choose a new directory or pass --overwrite "
            "to replace the synthetic dataset there."
        )
    for folder in existing:
        shutil.rmtree(folder)
    root.mkdir(parents=True, exist_ok=True)


def _video_ids(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct YouTube-like ids (letters, digits, '_' and '-', never starting with '-')."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        letters = rng.integers(len(ID_ALPHABET), size=ID_LENGTH)
        video_id = "".join(ID_ALPHABET[i] for i in letters)
        if video_id[0] != "-" and video_id not in seen:
            seen.add(video_id)
            ids.append(video_id)
    return ids


def _training_kinds(rng: np.random.Generator, n_videos: int, irrelevant_fraction: float) -> list[str]:
    """Shuffled kinds of a category's training videos: irrelevant ones, maybe one noisy, the rest relevant."""
    n_irrelevant = round(n_videos * irrelevant_fraction)
    kinds = [IRRELEVANT_KINDS[i % len(IRRELEVANT_KINDS)] for i in range(n_irrelevant)]
    n_noisy = 1 if n_videos - n_irrelevant - 1 >= MIN_RELEVANT_FOR_NOISE else 0
    kinds += [NOISY] * n_noisy + [RELEVANT] * (n_videos - n_irrelevant - n_noisy)
    return [kinds[i] for i in rng.permutation(len(kinds))]


def _relevance(rng: np.random.Generator, kind: str, centering: float) -> float:
    """A relevance score far enough from theta_c that w is ~1 (relevant) or ~0 (the others)."""
    if kind == RELEVANT:
        score = centering + rng.uniform(*RELEVANT_MARGIN)
    elif kind == NOISY:
        score = centering - rng.uniform(*NOISY_MARGIN)
    else:
        score = max(centering - rng.uniform(*IRRELEVANT_MARGIN), MIN_RELEVANCE)
    return round(float(score), 3)


def _write_labels(path: Path, labels: Sequence[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{second},{label}\n" for second, label in enumerate(labels)))


def _write_metadata(
    dataset_root: Path,
    truth_root: Path,
    styles: Sequence[CategoryStyle],
    centering: dict[str, float],
    videos: Sequence[SyntheticVideo],
) -> None:
    """categories.csv, videos/<category>.csv, test annotations and training truth."""
    (dataset_root / RELEVANCE_DIR).mkdir(parents=True)
    lines = [",".join(CATEGORIES_HEADER)]
    lines += [f'{s.name},"{s.action_name}",{centering[s.name]:.3f}' for s in sorted(styles, key=lambda s: s.name)]
    (dataset_root / CATEGORIES_FILE).write_text("\n".join(lines) + "\n")
    for style in styles:
        members = sorted((v for v in videos if v.category == style.name), key=lambda v: (-v.relevance, v.video_id))
        text = "".join(f"{v.video_id},{v.relevance:.3f}\n" for v in members)
        relevance_file(dataset_root, style.name).write_text(text)
    for video in videos:
        folder = dataset_root / ANNOTATIONS_DIR if video.split == TEST else truth_root
        _write_labels(folder / video.category / f"{video.video_id}{ANNOTATION_SUFFIX}", video.labels)
