"""The dataset index: which videos exist, their category, split, relevance and annotations
(the ChangeIt layout of METHOD.md, read as-is)."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from statechange.config import LossConfig
from statechange.errors import StateChangeError, listing
from statechange.labels import (
    ANNOTATION_ACTION,
    ANNOTATION_BACKGROUND,
    ANNOTATION_END_STATE,
    ANNOTATION_INITIAL_STATE,
)

# Containers the decoder is tried on when listing video roots; anything FFmpeg reads works.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv")


@dataclass(frozen=True)
class VideoFile:
    """One video file found under a video root: ``<root>/<category>/<video_id>.<ext>``."""

    category: str
    video_id: str  # the file name without its last extension (``take.v1.mp4`` -> ``take.v1``)
    path: Path

    @property
    def key(self) -> str:
        """``category/video_id``: unique within a dataset, used for caches and logs."""
        return f"{self.category}/{self.video_id}"


def video_id_of(path: Path) -> str:
    """The video id of a file: its name without its last extension (``take.v1.mp4`` -> ``take.v1``)."""
    return Path(path).stem


def find_videos(video_roots: Sequence[str | Path]) -> list[VideoFile]:
    """Every video file under the roots, sorted by (category, video_id); hidden folders (such as the
    downloader's ``.download`` staging folder) are skipped.

    Two files with the same ``category/video_id`` (in two roots, or in two containers such as
    ``a.mp4`` and ``a.webm``) are an error naming both: silently keeping one would drop the other.
    """
    found: list[VideoFile] = []
    for root in map(Path, video_roots):
        for category_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += [VideoFile(category_dir.name, video_id_of(path), path) for path in sorted(category_dir.iterdir())
                      if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS]
    return sorted(unique_by_key(found).values(), key=lambda v: (v.category, v.video_id))


def unique_by_key(videos: Iterable[VideoFile]) -> dict[str, VideoFile]:
    """``category/video_id`` -> video, refusing two different files with one key (one file given twice counts once)."""
    found: dict[str, VideoFile] = {}
    for video in videos:
        other = found.get(video.key)
        if other is not None and other.path.resolve() != video.path.resolve():
            raise StateChangeError(
                f"Video files {other.path} and {video.path} both have the id {video.key}: rename or remove one of "
                "them (a video's id is its file name without the last extension)."
            )
        found.setdefault(video.key, video)
    return found


def expand_videos(paths: Sequence[str | Path]) -> list[Path]:
    """Video files as given; a folder means every video file directly in it (sorted)."""
    videos = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise StateChangeError(f"Folder {path} holds no video file ({', '.join(VIDEO_EXTENSIONS)}).")
            videos += found
        elif path.is_file():
            videos.append(path)
        else:
            raise StateChangeError(f"Video {path} does not exist; check the path.")
    return videos


def expand_video_tree(paths: Sequence[str | Path]) -> list[VideoFile]:
    """Video files as given, each with the name of the folder holding it as its category.

    A folder holding videos means every video directly in it; a folder holding only sub-folders is a
    ``<category>/<video>`` tree (the layout of a video root) and means every video in it.
    """
    videos: list[VideoFile] = []
    for path in map(Path, paths):
        if path.is_dir() and not any(p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS for p in path.iterdir()):
            found = find_videos([path])
            if not found:
                raise StateChangeError(
                    f"Folder {path} holds no video file ({', '.join(VIDEO_EXTENSIONS)}), directly or in "
                    "its <category>/ sub-folders."
                )
            videos += found
        else:
            videos += [VideoFile(video.parent.name, video_id_of(video), video) for video in expand_videos([path])]
    return videos


# --------------------------------------------------------------------------------------------------
# Dataset index: categories, splits, relevance scores, centring parameters, annotations.
# --------------------------------------------------------------------------------------------------

TRAIN = "train"
TEST = "test"
ANNOTATIONS_DIR = "annotations"  # DATASET_ROOT/annotations/<category>/<video_id>.fps1.csv
ANNOTATION_SUFFIX = ".fps1.csv"
RELEVANCE_DIR = "videos"  # DATASET_ROOT/videos/<category>.csv: "video_id,relevance_score" lines
RELEVANCE_SUFFIX = ".csv"
CATEGORIES_FILE = "categories.csv"  # DATASET_ROOT/categories.csv
CATEGORIES_HEADER = ("DIR_NAME", "ACTION_NAME", "CENTERING_PARAM")

_ANNOTATION_LABELS = frozenset(
    (ANNOTATION_BACKGROUND, ANNOTATION_INITIAL_STATE, ANNOTATION_ACTION, ANNOTATION_END_STATE)
)


@dataclass(frozen=True)
class IndexedVideo:
    """One video of the dataset with everything training and evaluation need to know about it."""

    video: VideoFile
    category_index: int  # position of the category in the sorted category names
    split: str  # TRAIN or TEST (annotated videos are the test set)
    relevance: float | None  # r from videos/<category>.csv, None when not listed
    centering: float | None  # theta_c from categories.csv, None when not listed
    annotation: Path | None  # the .fps1.csv file of a test video, None for training videos

    @property
    def category(self) -> str:
        return self.video.category

    @property
    def video_id(self) -> str:
        return self.video.video_id

    @property
    def path(self) -> Path:
        return self.video.path

    @property
    def key(self) -> str:
        return self.video.key


@dataclass(frozen=True)
class CategorySummary:
    """Counts of one category, one line of the dataset printout."""

    name: str
    n_train: int
    n_test: int
    centering: float | None
    n_train_above_threshold: int | None  # training videos with r > theta_c; None without weights
    n_listed_without_file: int  # ids in videos/<category>.csv with no video file
    n_annotations_without_video: int  # annotation files of this category with no video file


@dataclass(frozen=True)
class IndexReport:
    """What the index found missing, so that problems show up before training, not hours into it."""

    dataset_root: Path | None
    ignore_video_weight: bool
    has_categories_file: bool  # DATASET_ROOT/categories.csv exists
    categories: tuple[CategorySummary, ...]
    annotations_without_video: tuple[str, ...]  # "category/video_id" keys
    train_without_relevance: tuple[str, ...]  # training videos with no score in videos/<category>.csv
    categories_without_centering: tuple[str, ...]  # video folders with no line in categories.csv
    dataset_categories_without_videos: tuple[str, ...]  # annotation / videos.csv categories with no folder
    categories_without_files: tuple[str, ...]  # video folders that hold no video file
    misnamed_annotations: tuple[str, ...] = ()  # files under annotations/ not named <category>/<id>.fps1.csv
    has_annotations_folder: bool = True  # DATASET_ROOT/annotations exists (without it nothing is evaluated)
    listed_without_file: tuple[str, ...] = ()  # "category/video_id" listed in videos/<category>.csv, no file

    def missing_videos(self) -> list[str]:
        """``category/video_id`` of every listed or annotated video of the indexed categories that has no
        file (listed order, no repeats): what is left to download."""
        indexed = {c.name for c in self.categories}
        annotated = [key for key in self.annotations_without_video if key.split("/", 1)[0] in indexed]
        return list(dict.fromkeys([*self.listed_without_file, *annotated]))

    @property
    def n_train(self) -> int:
        return sum(c.n_train for c in self.categories)

    @property
    def n_test(self) -> int:
        return sum(c.n_test for c in self.categories)

    @property
    def n_listed_without_file(self) -> int:
        return sum(c.n_listed_without_file for c in self.categories)

    def problems(self) -> list[str]:
        """Sentences describing what prevents training as configured (empty when all is well)."""
        if self.ignore_video_weight:
            return []
        if self.dataset_root is None:
            return [
                "No dataset root was given, so there are no relevance scores for noise-adaptive weighting: "
                "pass --dataset-root DIR (with categories.csv and videos/<category>.csv) "
                "or --ignore-video-weight."
            ]
        found: list[str] = []
        if self.train_without_relevance:
            found.append(
                f"{len(self.train_without_relevance)} training videos have no relevance score in "
                f"{self.dataset_root / 'videos'}/<category>.csv "
                f"({listing(self.train_without_relevance)}): add their 'video_id,relevance_score' lines "
                "or pass --ignore-video-weight to train without noise-adaptive weighting."
            )
        categories_file = self.dataset_root / CATEGORIES_FILE
        if not self.has_categories_file:
            found.append(
                f"{categories_file} does not exist, so there are no centring parameters: write it "
                f"(header {','.join(CATEGORIES_HEADER)}) or pass --ignore-video-weight."
            )
        elif self.categories_without_centering:
            found.append(
                f"{categories_file} has no CENTERING_PARAM for "
                f"{len(self.categories_without_centering)} categories "
                f"({listing(self.categories_without_centering)}): add a line per category "
                "or pass --ignore-video-weight to train without noise-adaptive weighting."
            )
        return found

    def format(self) -> str:
        """A human-readable summary: one line per category, totals, then what is missing."""
        width = max((len(c.name) for c in self.categories), default=0)
        weights_used = self.dataset_root is not None and not self.ignore_video_weight
        lines = [_format_category(c, width, weights_used) for c in self.categories]
        n_above = [c.n_train_above_threshold for c in self.categories if c.n_train_above_threshold is not None]
        above = f" (above threshold: {sum(n_above)})" if n_above else ""
        lines.append(
            f"Total: {len(self.categories)} categories, train {self.n_train}{above}, test {self.n_test}, "
            f"missing {self.n_listed_without_file} listed videos, "
            f"{len(self.annotations_without_video)} annotated videos."
        )
        if self.dataset_root is None:
            lines.append("No dataset root: no annotations (every video is a training video), weights ignored.")
        elif self.ignore_video_weight:
            lines.append("Video weights ignored (--ignore-video-weight): every training video has weight 1.")
        if self.dataset_root is not None and not self.has_annotations_folder:
            lines.append(f"! {self.dataset_root / ANNOTATIONS_DIR} does not exist: no video is annotated, so "
                         "nothing will be evaluated (add <category>/<video_id>.fps1.csv files there).")
        notes = (
            ("annotations with no video file", self.annotations_without_video),
            (f"files under {ANNOTATIONS_DIR}/ ignored because they are not named <category>/<video_id>"
             f"{ANNOTATION_SUFFIX} (rename them)", self.misnamed_annotations),
            ("training videos with no relevance score", () if not weights_used else self.train_without_relevance),
            (f"video folders missing from {CATEGORIES_FILE}",
             () if not weights_used else self.categories_without_centering),
            ("dataset categories with no video folder", self.dataset_categories_without_videos),
            ("video folders with no video file", self.categories_without_files),
        )
        lines += [f"! {what}: {len(items)} ({listing(items)})" for what, items in notes if items]
        return "\n".join(lines)


@dataclass(frozen=True)
class DatasetIndex:
    """Every video of a ChangeIt-format dataset, split and annotated (see ``build_index``)."""

    categories: list[str]  # sorted folder names; category index = position
    videos: list[IndexedVideo]  # sorted by (category, video_id)
    action_names: dict[str, str]  # category -> ACTION_NAME from categories.csv, where listed
    report: IndexReport
    ignore_video_weight: bool

    @property
    def train(self) -> list[IndexedVideo]:
        return [v for v in self.videos if v.split == TRAIN]

    @property
    def test(self) -> list[IndexedVideo]:
        return [v for v in self.videos if v.split == TEST]

    def category_index(self, category: str) -> int:
        """The class index of a category name."""
        try:
            return self.categories.index(category)
        except ValueError:
            raise StateChangeError(
                f"Unknown category {category!r}: use one of the video-root folder names ({listing(self.categories)})."
            ) from None

    def action_name(self, category: str) -> str:
        """The human-readable action of a category (its folder name when categories.csv lacks it)."""
        return self.action_names.get(category, category)

    def weight_of(self, video: IndexedVideo, temperature: float | None = None) -> float:
        """The noise-adaptive weight w of a video: 1 when weights are ignored."""
        if self.ignore_video_weight:
            return 1.0
        if video.relevance is None or video.centering is None:
            raise StateChangeError(
                f"Video {video.key} has no relevance score or centring parameter: add it to the dataset "
                "root's videos/<category>.csv and categories.csv or pass --ignore-video-weight."
            )
        if temperature is None:
            temperature = LossConfig().relevance_temperature
        return video_weight(video.relevance, video.centering, temperature)


def video_weight(relevance: float, centering: float, temperature: float) -> float:
    """w = sigmoid((r - theta_c) / temperature), without overflow for any distance from theta_c."""
    z = (relevance - centering) / temperature
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def read_annotation(path: str | Path) -> np.ndarray:
    """Labels per second (int64 [T]) of a ChangeIt annotation file of ``second,label`` lines.

    Seconds must run 0, 1, ..., T-1 in order and labels be 0 (background), 1 (initial state),
    2 (action) or 3 (end state); blank lines are ignored. Any other content raises
    ``StateChangeError`` naming the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise StateChangeError(f"Cannot read annotation file {path} ({error}): check the path.") from None
    labels: list[int] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        labels.append(_parse_annotation_line(path, line_number, line, expected_second=len(labels)))
    if not labels:
        raise StateChangeError(f"Annotation file {path} is empty: write one 'second,label' line per second.")
    return np.asarray(labels, dtype=np.int64)


def build_index(
    video_roots: Sequence[str | Path],
    dataset_root: str | Path | None,
    ignore_video_weight: bool = False,
    *,
    check: bool = True,
) -> DatasetIndex:
    """Index the videos under ``video_roots`` against the ChangeIt metadata in ``dataset_root``.

    Categories are the sorted folder names of the video roots (hidden folders skipped); a video
    with an annotation file is a test video, every other video a training video. No video is
    opened. With ``check`` (the default), problems that make noise-adaptive weighting impossible
    (missing relevance scores or centring parameters, no dataset root) raise ``StateChangeError``
    unless ``ignore_video_weight``; ``check=False`` returns the index anyway, its report listing them.
    """
    roots = [_existing_dir(root, "Video root", "--video-roots") for root in video_roots]
    if not roots:
        raise StateChangeError("No video root was given: pass --video-roots DIR with one folder per category.")
    dataset = None if dataset_root is None else _existing_dir(dataset_root, "Dataset root", "--dataset-root")
    categories = category_folders(roots)
    videos = [v for v in find_videos(roots) if v.category in categories]
    if not videos:
        raise StateChangeError(
            f"No video files found under {', '.join(map(str, roots))}: "
            "put videos at VIDEO_ROOT/<category>/<video_id>.<ext>."
        )

    annotations = _annotation_files(dataset) if dataset else {}
    centering, action_names = read_categories(dataset / CATEGORIES_FILE) if dataset else ({}, {})
    relevance = {c: read_relevance(relevance_file(dataset, c)) for c in categories} if dataset else {}

    indexed = [
        IndexedVideo(
            video=video,
            category_index=categories.index(video.category),
            split=TEST if video.key in annotations else TRAIN,
            relevance=relevance.get(video.category, {}).get(video.video_id),
            centering=centering.get(video.category),
            annotation=annotations.get(video.key),
        )
        for video in videos
    ]
    for entry in indexed:  # fail now on a malformed annotation, not at the end of the first epoch
        if entry.annotation is not None:
            read_annotation(entry.annotation)

    report = _make_report(dataset, ignore_video_weight, categories, indexed, annotations, centering, relevance)
    if check and report.problems():
        raise StateChangeError(report.problems()[0])
    return DatasetIndex(
        categories=categories,
        videos=indexed,
        action_names=action_names,
        report=report,
        ignore_video_weight=ignore_video_weight or dataset is None,
    )


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _format_category(summary: CategorySummary, width: int, weights_used: bool) -> str:
    if not weights_used:
        weights = "(weights ignored)"
    elif summary.n_train_above_threshold is None or summary.centering is None:
        weights = f"(no centring parameter in {CATEGORIES_FILE})"
    else:
        weights = f"(above threshold {summary.centering:.3f}: {summary.n_train_above_threshold})"
    return (
        f"> {summary.name:<{width}}  train {summary.n_train:>5} {weights}  test {summary.n_test:>4}  "
        f"missing {summary.n_listed_without_file:>5} listed, {summary.n_annotations_without_video} annotated"
    )


def _existing_dir(path: str | Path, what: str, option: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise StateChangeError(f"{what} {path} is not a directory: check the path given to {option}.")
    return path


def category_folders(roots: Sequence[str | Path]) -> list[str]:
    """Sorted, de-duplicated names of the (non-hidden) folders of the video roots; roots that are not
    folders are passed over."""
    return sorted(
        {p.name for root in map(Path, roots) if root.is_dir() for p in root.iterdir()
         if p.is_dir() and not p.name.startswith(".")}
    )


def relevance_file(dataset_root: Path, category: str) -> Path:
    """Where a dataset lists a category's videos and relevance scores: ``DATASET_ROOT/videos/<category>.csv``."""
    return dataset_root / RELEVANCE_DIR / f"{category}{RELEVANCE_SUFFIX}"


def _annotation_files(dataset_root: Path) -> dict[str, Path]:
    """``category/video_id`` -> annotation file, for every annotation of the dataset."""
    return annotation_files(dataset_root / ANNOTATIONS_DIR)


def annotation_files(folder: Path) -> dict[str, Path]:
    """``category/video_id`` -> file, for every ``<folder>/<category>/<video_id>.fps1.csv`` (sorted);
    empty when the folder does not exist."""
    if not folder.is_dir():
        return {}
    return {
        f"{path.parent.name}/{path.name.removesuffix(ANNOTATION_SUFFIX)}": path
        for path in sorted(folder.glob(f"*/*{ANNOTATION_SUFFIX}"))
        if path.is_file()
    }


def find_annotation_files(directory: str | Path) -> dict[str, Path]:
    """Every ``<directory>/<category>/<video_id>.fps1.csv`` as {"category/video_id": path}, sorted;
    a dataset root holding ``annotations/`` is accepted too. No annotation at all is an error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise StateChangeError(f"Annotation folder {directory} does not exist; check the path.")
    if not any(directory.glob(f"*/*{ANNOTATION_SUFFIX}")) and (directory / ANNOTATIONS_DIR).is_dir():
        directory = directory / ANNOTATIONS_DIR
    found = annotation_files(directory)
    if not found:
        raise StateChangeError(
            f"No annotation files (<category>/<video_id>{ANNOTATION_SUFFIX}) found under {directory}; "
            "pass the ChangeIt annotations folder."
        )
    return found


def _parse_annotation_line(path: Path, line_number: int, line: str, expected_second: int) -> int:
    """The label of one ``second,label`` line, checked against the second it must describe."""
    where = f"Annotation file {path} line {line_number} ({line.strip()!r})"
    fields = line.split(",")
    try:
        second, label = int(fields[0]), int(fields[1])
        if len(fields) != 2:
            raise ValueError
    except (ValueError, IndexError):
        raise StateChangeError(f"{where} is not 'second,label' with two integers: fix or remove that line.") from None
    if second != expected_second:
        raise StateChangeError(
            f"{where} gives second {second} where {expected_second} was expected: "
            "write one line per second, in order, starting at 0."
        )
    if label not in _ANNOTATION_LABELS:
        raise StateChangeError(
            f"{where} has label {label}: use 0 (background), 1 (initial state), 2 (action) or 3 (end state)."
        )
    return label


def read_categories(path: Path) -> tuple[dict[str, float], dict[str, str]]:
    """(category -> theta_c, category -> action name) from categories.csv; empty when it is absent."""
    if not path.is_file():
        return {}, {}
    rows = list(csv.reader(io.StringIO(_read_text(path), newline="")))
    header = tuple(field.strip() for field in rows[0]) if rows else ()
    if header[: len(CATEGORIES_HEADER)] != CATEGORIES_HEADER:
        raise StateChangeError(f"{path} must start with the header line {','.join(CATEGORIES_HEADER)}: add or fix it.")
    centering: dict[str, float] = {}
    action_names: dict[str, str] = {}
    for line_number, row in enumerate(rows[1:], start=2):
        if not any(field.strip() for field in row):
            continue
        try:
            name, action, theta = (field.strip() for field in row[:3])
            centering[name] = _finite(theta)
        except ValueError:
            raise StateChangeError(
                f"{path} line {line_number} ({','.join(row)!r}) is not 'DIR_NAME,ACTION_NAME,CENTERING_PARAM' "
                "with a finite number as the last field: fix that line."
            ) from None
        action_names[name] = action
    return centering, action_names


def read_relevance(path: Path) -> dict[str, float]:
    """video_id -> relevance score from videos/<category>.csv; empty when the file is absent."""
    if not path.is_file():
        return {}
    scores: dict[str, float] = {}
    for line_number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        try:
            if len(fields) != 2:
                raise ValueError
            scores[fields[0].strip()] = _finite(fields[1])
        except ValueError:
            raise StateChangeError(
                f"{path} line {line_number} ({line.strip()!r}) is not 'video_id,relevance_score' with a finite "
                "number as the score: fix that line."
            ) from None
    return scores


def _read_text(path: Path) -> str:
    """A metadata file's text, which must be UTF-8 (ASCII included)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise StateChangeError(
            f"{path} is not UTF-8 text (byte {error.start} cannot be decoded): save it as UTF-8 (e.g. iconv -t UTF-8)."
        ) from None


def _finite(text: str) -> float:
    """A finite number from a CSV field; ValueError for text, NaN and infinities (they poison the video weights)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text.strip()!r} is not finite")
    return value


def _make_report(
    dataset_root: Path | None,
    ignore_video_weight: bool,
    categories: list[str],
    videos: list[IndexedVideo],
    annotations: dict[str, Path],
    centering: dict[str, float],
    relevance: dict[str, dict[str, float]],
) -> IndexReport:
    present = {v.key for v in videos}
    annotations_without_video = tuple(key for key in annotations if key not in present)
    by_category: dict[str, list[IndexedVideo]] = defaultdict(list)
    for video in videos:
        by_category[video.category].append(video)
    missing_annotated = defaultdict(int)
    for key in annotations_without_video:
        missing_annotated[key.split("/", 1)[0]] += 1
    weights = dataset_root is not None and not ignore_video_weight

    summaries = []
    listed_without_file: list[str] = []
    for category in categories:
        train = [v for v in by_category[category] if v.split == TRAIN]
        theta = centering.get(category)
        above = None
        if weights and theta is not None:
            above = sum(1 for v in train if v.relevance is not None and v.relevance > theta)
        listed = relevance.get(category, {})
        missing = [f"{category}/{video_id}" for video_id in listed if f"{category}/{video_id}" not in present]
        listed_without_file += missing
        summaries.append(
            CategorySummary(
                name=category,
                n_train=len(train),
                n_test=len(by_category[category]) - len(train),
                centering=theta,
                n_train_above_threshold=above,
                n_listed_without_file=len(missing),
                n_annotations_without_video=missing_annotated[category],
            )
        )

    dataset_categories = {key.split("/", 1)[0] for key in annotations}
    relevance_dir = dataset_root / RELEVANCE_DIR if dataset_root is not None else None
    if relevance_dir is not None and relevance_dir.is_dir():
        suffix = RELEVANCE_SUFFIX
        dataset_categories |= {p.name.removesuffix(suffix) for p in relevance_dir.glob(f"*{suffix}")}
    return IndexReport(
        dataset_root=dataset_root,
        ignore_video_weight=ignore_video_weight,
        has_categories_file=dataset_root is not None and (dataset_root / CATEGORIES_FILE).is_file(),
        categories=tuple(summaries),
        annotations_without_video=annotations_without_video,
        train_without_relevance=tuple(
            v.key for v in videos if dataset_root is not None and v.split == TRAIN and v.relevance is None
        ),
        categories_without_centering=tuple(c for c in categories if dataset_root is not None and c not in centering),
        dataset_categories_without_videos=tuple(sorted(dataset_categories - set(categories))),
        categories_without_files=tuple(s.name for s in summaries if s.n_train + s.n_test == 0),
        misnamed_annotations=_misnamed_annotations(dataset_root / ANNOTATIONS_DIR) if dataset_root else (),
        has_annotations_folder=dataset_root is None or (dataset_root / ANNOTATIONS_DIR).is_dir(),
        listed_without_file=tuple(listed_without_file),
    )


def _misnamed_annotations(folder: Path) -> tuple[str, ...]:
    """Files under ``folder`` that ``annotation_files`` does not read (wrong suffix or depth), relative to it."""
    if not folder.is_dir():
        return ()
    read = set(annotation_files(folder).values())
    return tuple(str(path.relative_to(folder)) for path in sorted(folder.rglob("*"))
                 if path.is_file() and path not in read and not path.name.startswith("."))
