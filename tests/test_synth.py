"""The synthetic ChangeIt-format generator: real H.264 / VP9 files, read back through the dataset index
and the 1-fps decoder, whose content matches the annotations it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from statechange.cli import main
from statechange.data.decode import decode_video
from statechange.data.index import build_index, read_annotation
from statechange.data.synth import (
    HARD,
    IRRELEVANT_KINDS,
    CategoryStyle,
    SyntheticDataset,
    SyntheticVideo,
    make_synthetic_dataset,
    render_object,
)
from statechange.errors import StateChangeError
from statechange.labels import (
    ANNOTATION_ACTION,
    ANNOTATION_BACKGROUND,
    ANNOTATION_END_STATE,
    ANNOTATION_INITIAL_STATE,
)

SMALL = {"min_seconds": 11, "max_seconds": 14, "frame_size": (160, 90)}
MAX_SHIFT = 5  # pixels of camera drift, shake and object wobble to search over when matching a look


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    root = tmp_path_factory.mktemp("synth")
    return make_synthetic_dataset(root, n_categories=2, n_train_videos=4, n_test_videos=2, seed=5, **SMALL)


def truth_of(dataset: SyntheticDataset, video: SyntheticVideo) -> np.ndarray:
    """Labels per second as written on disk: the annotation of a test video, the truth of a training one."""
    folder = dataset.dataset_root / "annotations" if video.split == "test" else dataset.truth_root
    return read_annotation(folder / video.category / f"{video.video_id}.fps1.csv")


def look_distance(frame: np.ndarray, sprite: np.ndarray, corner: tuple[int, int]) -> float:
    """Mean absolute difference between a frame and an object look where the look is opaque,
    at the best alignment within MAX_SHIFT pixels of ``corner``. frame uint8 [H, W, 3], sprite [S, S, 4]."""
    size = sprite.shape[0]
    padded = np.pad(frame.astype(np.float32), ((size + MAX_SHIFT,) * 2, (size + MAX_SHIFT,) * 2, (0, 0)))
    alpha = sprite[..., 3]
    best = np.inf
    for dy in range(-MAX_SHIFT, MAX_SHIFT + 1):
        for dx in range(-MAX_SHIFT, MAX_SHIFT + 1):
            y0, x0 = corner[1] + dy + size + MAX_SHIFT, corner[0] + dx + size + MAX_SHIFT
            region = padded[y0 : y0 + size, x0 : x0 + size]
            difference = np.abs(region - sprite[..., :3]).mean(axis=-1)
            best = min(best, float((difference * alpha).sum() / alpha.sum()))
    return best


def test_layout_round_trips_through_the_index(dataset: SyntheticDataset) -> None:
    index = build_index([dataset.video_root], dataset.dataset_root)

    assert index.categories == dataset.categories
    assert index.action_names == {style.name: style.action_name for style in dataset.styles}
    for category in dataset.categories:
        assert sum(v.category == category for v in index.train) == 4
        assert sum(v.category == category for v in index.test) == 2
    assert not index.report.problems() and index.report.n_listed_without_file == 0
    assert not index.report.annotations_without_video

    written = {(v.category, v.video_id): v for v in dataset.videos}
    for entry in index.videos:
        video = written[(entry.category, entry.video_id)]
        assert entry.split == video.split and entry.path == video.path
        assert entry.relevance == pytest.approx(video.relevance)
        assert entry.centering == pytest.approx(dataset.centering[entry.category])
        if entry.split == "test":
            np.testing.assert_array_equal(read_annotation(entry.annotation), video.labels)
        weight = index.weight_of(entry)
        assert weight > 0.99 if video.kind == "relevant" else weight < 0.01, (video.kind, weight)

    for split in (index.train, index.test):
        assert {v.path.suffix for v in split} == {".mp4", ".webm"}
    for video in dataset.train:  # the diagnostics truth of the training videos, never an annotation
        assert not (dataset.dataset_root / "annotations" / video.category / f"{video.video_id}.fps1.csv").exists()
        np.testing.assert_array_equal(truth_of(dataset, video), video.labels)


def test_decoded_frames_show_what_the_annotations_say(dataset: SyntheticDataset) -> None:
    videos = [*dataset.test, *(v for v in dataset.train if v.kind == "relevant")][:4]
    styles = {style.name: style for style in dataset.styles}
    for video in videos:
        labels = truth_of(dataset, video)
        frames = decode_video(video.path, size=dataset.frame_size)  # [T, H, W, 3]
        assert len(frames) == len(labels), video.path

        style = styles[video.category]
        initial = render_object(style, ANNOTATION_INITIAL_STATE, video.object_radius)
        end = render_object(style, ANNOTATION_END_STATE, video.object_radius)
        distances = np.array(
            [[look_distance(frame, look, video.object_corner) for look in (initial, end)] for frame in frames]
        )  # [T, 2]: to the initial look, to the end look
        is_initial, is_end = labels == ANNOTATION_INITIAL_STATE, labels == ANNOTATION_END_STATE
        assert is_initial.any() and is_end.any()
        assert (distances[is_initial, 0] < distances[is_initial, 1]).all(), video.path
        assert (distances[is_end, 1] < distances[is_end, 0]).all(), video.path
        shown = np.concatenate([distances[is_initial, 0], distances[is_end, 1]])
        background = labels == ANNOTATION_BACKGROUND
        assert (distances[background].min(axis=1, initial=np.inf) > shown.max()).all(), video.path

        # during the action the object changes from one second to the next; in a state it stays put
        region = _object_region(frames, video, initial.shape[0]).astype(np.float32)  # [T, S, S, 3]
        object_mask = initial[..., 3:]  # [S, S, 1]
        change = np.array(
            [look_distance(frames[t + 1], np.dstack([region[t], object_mask]), video.object_corner)
             for t in range(len(frames) - 1)]
        )  # [T-1]  # fmt: skip
        within = labels[:-1] == labels[1:]
        acting = within & (labels[:-1] == ANNOTATION_ACTION)
        still = within & (is_initial[:-1] | is_end[:-1])
        assert change[acting].min() > change[still].max(), video.path


def _object_region(frames: np.ndarray, video: SyntheticVideo, size: int) -> np.ndarray:
    """The object's canvas cut from every frame (zero-padded at the borders): [T, S, S, 3]."""
    padded = np.pad(frames, ((0, 0), (size, size), (size, size), (0, 0)))
    x0, y0 = video.object_corner[0] + size, video.object_corner[1] + size
    return padded[:, y0 : y0 + size, x0 : x0 + size]


def test_relevance_scores_separate_videos_with_and_without_a_state_change(tmp_path: Path) -> None:
    dataset = make_synthetic_dataset(
        tmp_path, n_categories=1, n_train_videos=12, n_test_videos=0, seed=3,
        min_seconds=11, max_seconds=11, frame_size=(64, 36),
    )  # fmt: skip
    theta = dataset.centering[dataset.categories[0]]
    index = build_index([dataset.video_root], dataset.dataset_root)
    scores = {v.video_id: (v.relevance, index.weight_of(v)) for v in index.train}
    changes, no_changes = [], []
    for video in dataset.train:
        labels = truth_of(dataset, video)
        has_change = ANNOTATION_ACTION in labels
        assert has_change == (video.kind not in IRRELEVANT_KINDS)
        (changes if has_change else no_changes).append(scores[video.video_id])
    assert 2 <= len(no_changes) <= 4  # about a quarter of the training videos are irrelevant
    assert all(score < theta and weight < 1e-6 for score, weight in no_changes)
    well_scored = [weight for score, weight in changes if score > theta]
    assert len(well_scored) >= len(changes) - 1 and min(well_scored) > 1 - 1e-6
    # label noise: at most one video with a change is scored just below theta_c, far above the irrelevant ones
    missed = [score for score, weight in changes if score <= theta]
    assert all(score > max(s for s, _ in no_changes) for score in missed)


def test_same_seed_same_bytes_any_number_of_workers(tmp_path: Path) -> None:
    settings = {"n_categories": 2, "n_train_videos": 1, "n_test_videos": 1, "min_seconds": 11,
                "max_seconds": 12, "frame_size": (64, 36)}  # fmt: skip
    first = make_synthetic_dataset(tmp_path / "a", seed=7, workers=1, **settings)
    second = make_synthetic_dataset(tmp_path / "b", seed=7, workers=2, **settings)
    other = make_synthetic_dataset(tmp_path / "c", seed=8, workers=1, **settings)

    def files(dataset: SyntheticDataset) -> dict[str, bytes]:
        return {
            str(p.relative_to(dataset.root)): p.read_bytes() for p in sorted(dataset.root.rglob("*")) if p.is_file()
        }

    assert files(first) == files(second)
    assert {v.video_id for v in first.videos}.isdisjoint(v.video_id for v in other.videos)


def test_cli_writes_a_dataset_the_dataset_command_reads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "synthetic"
    arguments = ["synth", "--output", str(output), "--n-categories", "1", "--train-videos", "1", "--test-videos",
                 "1", "--seed", "2", "--min-seconds", "11", "--max-seconds", "11", "--size", "64", "36",
                 "--workers", "1"]  # fmt: skip
    assert main(arguments) == 0
    category = next((output / "videos").iterdir()).name

    assert main(["dataset", "--video-roots", str(output / "videos"), "--dataset-root", str(output / "dataset")]) == 0
    printed = capsys.readouterr().out
    assert f"> {category}" in printed and "train     1" in printed and "test    1" in printed

    assert main(arguments) == 2  # an existing dataset is not overwritten by accident
    assert "--overwrite" in capsys.readouterr().err
    assert main([*arguments, "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("settings", "fix"),
    [
        ({"min_seconds": 5, "max_seconds": 8}, "at least 11 s"),
        ({"n_train_videos": 0, "n_test_videos": 0}, "--train-videos"),
        ({"frame_size": (63, 36)}, "even sizes"),
    ],
)
def test_unusable_settings_are_refused_with_the_fix(tmp_path: Path, settings: dict, fix: str) -> None:
    with pytest.raises(StateChangeError, match=fix):
        make_synthetic_dataset(tmp_path, **{**SMALL, **settings})
    assert not (tmp_path / "videos").exists()


def test_hard_data_shares_objects_narrows_the_change_and_lengthens_backgrounds(tmp_path: Path) -> None:
    demo = make_synthetic_dataset(tmp_path / "demo", n_categories=4, n_train_videos=0, n_test_videos=3, seed=2,
                                  min_seconds=40, max_seconds=50, frame_size=(64, 36))
    hard = make_synthetic_dataset(tmp_path / "hard", n_categories=4, n_train_videos=0, n_test_videos=3, seed=2,
                                  min_seconds=40, max_seconds=50, frame_size=(64, 36), difficulty=HARD)
    assert len({(s.shape, s.initial_colour, s.initial_texture) for s in demo.styles}) == 4
    assert len({(s.shape, s.initial_colour, s.initial_texture) for s in hard.styles}) == 2  # pairs share an object
    assert len({(s.change, s.tool) for s in hard.styles}) == 4  # ... told apart by the change and the tool

    def change(style: CategoryStyle) -> float:
        return float(np.linalg.norm(np.subtract(style.end_colour, style.initial_colour)))

    assert max(change(s) for s in hard.styles) < 0.5 * min(change(s) for s in demo.styles)
    assert all(s.end_texture == s.initial_texture for s in hard.styles)

    def background_share(dataset: SyntheticDataset) -> float:
        labels = np.concatenate([truth_of(dataset, video) for video in dataset.test])
        return float(np.mean(labels == ANNOTATION_BACKGROUND))

    assert background_share(hard) > background_share(demo) + 0.15
