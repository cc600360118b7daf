"""The ChangeIt metrics: per-video scores against the release's O(T^3) evaluation loops, hand-made
cases for every rule, the category averaging, rank merging, and oracles on the real annotations."""

from __future__ import annotations

import json
import math
import os
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from statechange.errors import StateChangeError
from statechange.labels import (
    ANNOTATION_ACTION,
    ANNOTATION_BACKGROUND,
    ANNOTATION_END_STATE,
    ANNOTATION_INITIAL_STATE,
)
from statechange.metrics import (
    METRIC_NAMES,
    LengthMismatchWarning,
    MetricsAccumulator,
    VideoRecord,
    score_video,
)

BG, INITIAL, ACTION, END = ANNOTATION_BACKGROUND, ANNOTATION_INITIAL_STATE, ANNOTATION_ACTION, ANNOTATION_END_STATE
CHANGEIT = Path(os.environ.get("STATECHANGE_CHANGEIT", "/work/shared/changeit"))


# ----------------------------------------------------------------------------------------------
# the release's evaluation, written out as its loops (float32, strict '>', starts at index 0, max -1)


def release_video_scores(initial, action, end, labels) -> dict[str, float | None]:
    initial, action, end = (np.asarray(x, dtype=np.float32) for x in (initial, action, end))
    n = len(labels)
    action_index = int(np.argmax(action))

    best_value, pair = -1.0, (0, 0)
    for i in range(n):
        for j in range(i + 1, n):
            value = initial[i] * end[j]  # float32
            if value > best_value:
                best_value, pair = value, (i, j)

    best_value, triplet = -1.0, (0, 0, 0)
    for i in range(n):
        for j in range(i + 2, n):
            k = i + 1 + int(np.argmax(action[i + 1 : j]))
            value = (initial[i] * end[j]) * action[k]  # float32, the release's product order
            if value > best_value:
                best_value, triplet = value, (i, k, j)

    is_state = (labels == INITIAL) | (labels == END)
    predicted_state = np.where(np.argmax(np.stack([initial, end], axis=1), axis=1) == 0, INITIAL, END)
    return {
        "state_precision": 0.5 * (labels[pair[0]] == INITIAL) + 0.5 * (labels[pair[1]] == END),
        "action_precision": float(labels[action_index] == ACTION),
        "joint_state_precision": 0.5 * (labels[triplet[0]] == INITIAL) + 0.5 * (labels[triplet[2]] == END),
        "joint_action_precision": float(labels[triplet[1]] == ACTION),
        "state_accuracy": float(np.mean(predicted_state[is_state] == labels[is_state])) if is_state.any() else None,
    }


def release_summary(videos: list[tuple[str, dict]]) -> dict[str, float | None]:
    """Mean over each category's videos, then over categories, x100 (None-valued videos skipped)."""
    categories = sorted({c for c, _ in videos})
    summary = {}
    for name in METRIC_NAMES:
        means = []
        for category in categories:
            values = [s[name] for c, s in videos if c == category and s[name] is not None]
            if values:
                means.append(100 * sum(values) / len(values))
        summary[name] = sum(means) / len(means) if means else None
    return summary


def softmax_columns(rng: np.random.Generator, n: int, n_categories: int = 3, scale: float = 3.0):
    """(initial, action, end) of category 0 as the model makes them: softmax over all classes."""
    state = rng.normal(size=(n, 2 * n_categories + 1)) * scale
    state = np.exp(state - state.max(1, keepdims=True))
    state = (state / state.sum(1, keepdims=True)).astype(np.float32)
    action = rng.normal(size=(n, n_categories + 1)) * scale
    action = np.exp(action - action.max(1, keepdims=True))
    action = (action / action.sum(1, keepdims=True)).astype(np.float32)
    return state[:, 0], action[:, 0], state[:, 1]


def tied_values(rng: np.random.Generator, n: int):
    """Values from a small set: many exact ties in every curve and product."""
    levels = np.array([0.0, 0.1, 0.25, 0.5, 1.0], dtype=np.float32)
    return tuple(rng.choice(levels, size=n) for _ in range(3))


def random_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 4, size=n).astype(np.int64)


@pytest.mark.parametrize("n_frames", [1, 2, 3, 5, 50])
@pytest.mark.parametrize("kind", ["softmax", "ties"])
def test_score_video_equals_release_loops(n_frames, kind):
    rng = np.random.default_rng(n_frames * 10 + (kind == "ties"))
    videos = []
    accumulator = MetricsAccumulator()
    for video in range(40 if n_frames < 50 else 12):
        curves = softmax_columns(rng, n_frames) if kind == "softmax" else tied_values(rng, n_frames)
        labels = random_labels(rng, n_frames)
        category = f"category{video % 3}"
        record = accumulator.add_video(*curves, labels, category=category, key=f"{category}/v{video}")
        expected = release_video_scores(*curves, labels)
        assert {name: getattr(record, name) for name in METRIC_NAMES} == expected, video
        videos.append((category, expected))
    summary = accumulator.summary()
    for name, value in release_summary(videos).items():
        assert summary[name] == pytest.approx(value, abs=1e-9) if value is not None else summary[name] is None


def test_torch_and_numpy_inputs_score_the_same():
    rng = np.random.default_rng(3)
    initial, action, end = softmax_columns(rng, 30)
    labels = random_labels(rng, 30)
    from_numpy = score_video(initial, action, end, labels, "apple")
    from_torch = score_video(*(torch.from_numpy(x) for x in (initial, action, end)), torch.from_numpy(labels), "apple")
    assert from_numpy == from_torch


# ----------------------------------------------------------------------------------------------
# hand-made annotations, one rule at a time


def f32(*values):
    return np.array(values, dtype=np.float32)


def test_action_precision_takes_the_first_maximum():
    labels = np.array([BG, BG, ACTION, ACTION, BG])
    flat = f32(0.2, 0.2, 0.2, 0.2, 0.2)
    assert score_video(flat, f32(0, 0.1, 0.2, 0.9, 0.3), flat, labels, "c").action_precision == 1.0
    assert score_video(flat, f32(0, 0.9, 0.2, 0.3, 0.3), flat, labels, "c").action_precision == 0.0
    # tie between seconds 1 (background) and 3 (action): the first one counts
    assert score_video(flat, f32(0, 0.9, 0.2, 0.9, 0.3), flat, labels, "c").action_precision == 0.0


@pytest.mark.parametrize(
    ("initial_peak", "end_peak", "expected"),
    [(0, 3, 1.0), (0, 4, 0.5), (2, 3, 0.5), (1, 4, 0.0)],
)
def test_state_precision_gives_half_a_point_per_state(initial_peak, end_peak, expected):
    labels = np.array([INITIAL, BG, BG, END, BG])
    initial = np.full(5, 0.1, dtype=np.float32)
    end = np.full(5, 0.1, dtype=np.float32)
    initial[initial_peak], end[end_peak] = 0.9, 0.9
    record = score_video(initial, np.full(5, 0.2, dtype=np.float32), end, labels, "c")
    assert record.state_precision == expected


def test_state_precision_requires_initial_before_end():
    # the separate maxima are end at 0 and initial at 3, but the pair must have i < j: (0, 3) wins
    labels = np.array([INITIAL, BG, BG, END, BG])
    record = score_video(f32(0.1, 0, 0, 0.9, 0), f32(0.2, 0.2, 0.2, 0.2, 0.2), f32(0.9, 0, 0, 0.1, 0), labels, "c")
    assert record.state_precision == 1.0


def test_joint_precision_puts_the_action_between_the_states():
    labels = np.array([INITIAL, ACTION, END, BG, BG])
    initial, end = f32(0.9, 0.1, 0.1, 0.1, 0.1), f32(0.1, 0.1, 0.9, 0.1, 0.1)
    action = f32(0.1, 0.5, 0.1, 0.1, 0.9)  # the unconstrained maximum (second 4) is background
    record = score_video(initial, action, end, labels, "c")
    assert record.action_precision == 0.0
    assert record.joint_action_precision == 1.0
    assert record.joint_state_precision == 1.0


def test_joint_state_precision_can_differ_from_state_precision():
    # the best pair is (0, 1), but no action fits between them: the triplet moves the end state to 4
    labels = np.array([INITIAL, END, ACTION, BG, BG])
    initial, end = f32(0.9, 0.1, 0.1, 0.1, 0.1), f32(0.1, 0.9, 0.1, 0.1, 0.5)
    action = f32(0.1, 0.1, 0.1, 0.9, 0.1)
    record = score_video(initial, action, end, labels, "c")
    assert record.state_precision == 1.0
    assert record.joint_state_precision == 0.5
    assert record.joint_action_precision == 0.0


def test_state_accuracy_counts_only_state_frames_and_initial_wins_ties():
    labels = np.array([BG, INITIAL, END, ACTION, END, BG])
    initial = f32(0.9, 0.6, 0.3, 0.9, 0.1, 0.9)
    end = f32(0.1, 0.4, 0.3, 0.1, 0.8, 0.1)
    # second 1 right, second 2 a tie -> "initial" -> wrong, second 4 right; 0, 3, 5 do not count
    record = score_video(initial, f32(0, 0, 0, 1, 0, 0), end, labels, "c")
    assert record.state_accuracy == pytest.approx(2 / 3)


def test_videos_without_state_frames_do_not_count_for_state_accuracy():
    accumulator = MetricsAccumulator()
    curves = (f32(0.9, 0.1, 0.1, 0.1), f32(0.1, 0.1, 0.9, 0.1), f32(0.1, 0.1, 0.1, 0.9))
    with_states = accumulator.add_video(*curves, np.array([INITIAL, END, ACTION, BG]), "c", "c/a")
    without = accumulator.add_video(*curves, np.array([BG, ACTION, BG, BG]), "c", "c/b")
    assert with_states.state_accuracy == 0.5  # second 0 right, second 1 a tie -> "initial" -> wrong
    assert without.state_accuracy is None
    summary = accumulator.summary()
    assert summary["state_accuracy"] == pytest.approx(50.0)  # not (50 + 0) / 2
    assert summary["action_precision"] == pytest.approx(50.0)  # both videos count for the others


def test_state_accuracy_is_none_when_no_video_has_state_frames():
    accumulator = MetricsAccumulator()
    accumulator.add_video(f32(0.5, 0.5, 0.5), f32(0.1, 0.9, 0.1), f32(0.5, 0.5, 0.5), np.array([BG, ACTION, BG]), "c")
    summary = accumulator.summary()
    assert summary["state_accuracy"] is None
    assert summary["per_category"]["c"]["state_accuracy"] is None
    assert summary["action_precision"] == pytest.approx(100.0)
    assert accumulator.format_table().splitlines()[-1].split()[-1] == "-"


# ----------------------------------------------------------------------------------------------
# degenerate videos: the release's start indices (0, 0) and (0, 0, 0)


def test_one_second_video_is_scored_on_its_first_label():
    one = f32(0.7)
    assert score_video(one, one, one, np.array([ACTION]), "c") == VideoRecord("c", "", 0.0, 1.0, 0.0, 1.0, None)
    assert score_video(one, one, one, np.array([INITIAL]), "c") == VideoRecord("c", "", 0.5, 0.0, 0.5, 0.0, 1.0)
    assert score_video(one, one, one, np.array([END]), "c") == VideoRecord("c", "", 0.5, 0.0, 0.5, 0.0, 0.0)


def test_two_second_video_has_a_pair_but_no_triplet():
    record = score_video(f32(0.9, 0.1), f32(0.1, 0.9), f32(0.1, 0.9), np.array([INITIAL, END]), "c")
    assert record.state_precision == 1.0  # the pair (0, 1)
    assert record.joint_state_precision == 0.5  # the triplet (0, 0, 0): label 0 is the initial state
    assert record.joint_action_precision == 0.0


def test_empty_video_is_an_error_naming_it():
    with pytest.raises(StateChangeError, match="apple/xyz"):
        score_video(f32(), f32(), f32(), np.array([], dtype=np.int64), "apple", "apple/xyz")


def test_length_mismatch_scores_the_shorter_length_and_warns():
    rng = np.random.default_rng(5)
    curves = softmax_columns(rng, 12)
    labels = random_labels(rng, 9)
    with pytest.warns(LengthMismatchWarning, match=r"bacon/abc.*12.*9"):
        longer_predictions = score_video(*curves, labels, "bacon", "bacon/abc")
    with pytest.warns(LengthMismatchWarning, match=r"bacon/abc.*9.*12"):
        longer_labels = score_video(*(c[:9] for c in curves), np.concatenate([labels, [END, END, END]]), "bacon",
                                    "bacon/abc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        truncated = score_video(*(c[:9] for c in curves), labels, "bacon", "bacon/abc")
    assert longer_predictions == truncated
    assert longer_labels == truncated


# ----------------------------------------------------------------------------------------------
# aggregation, merging, plain-data state


def random_accumulator(seed: int, n_videos: int) -> MetricsAccumulator:
    rng = np.random.default_rng(seed)
    accumulator = MetricsAccumulator()
    for video in range(n_videos):
        n = int(rng.integers(3, 30))
        category = ["apple", "bacon", "cake"][int(rng.integers(0, 3))]
        accumulator.add_video(*softmax_columns(rng, n), random_labels(rng, n), category, f"{category}/{seed}-{video}")
    return accumulator


def test_summary_averages_categories_not_videos():
    accumulator = MetricsAccumulator()
    hit = (f32(0.1, 0.1, 0.1), f32(0.1, 0.9, 0.1), f32(0.1, 0.1, 0.1))
    labels_hit, labels_miss = np.array([BG, ACTION, BG]), np.array([BG, BG, BG])
    accumulator.add_video(*hit, labels_hit, "apple", "apple/1")
    for video in range(3):
        accumulator.add_video(*hit, labels_miss, "bacon", f"bacon/{video}")
    summary = accumulator.summary()
    assert summary["action_precision"] == pytest.approx(50.0)  # (100 + 0) / 2, not 100 / 4
    # apple: all state products tie -> pair (0, 1) and triplet (0, 1, 2), both on background
    assert summary["per_category"]["apple"] == {
        "n_videos": 1, "state_precision": 0.0, "action_precision": 100.0, "joint_state_precision": 0.0,
        "joint_action_precision": 100.0, "state_accuracy": None,
    }
    assert summary["per_category"]["bacon"]["n_videos"] == 3
    assert summary["n_categories"] == 2 and summary["n_videos"] == 4


def test_merged_ranks_equal_one_accumulator_and_padding_counts_once():
    full = random_accumulator(seed=1, n_videos=30)
    records = full.records
    rank0, rank1 = MetricsAccumulator(records[::2]), MetricsAccumulator(records[1::2])
    rank1.add(records[0])  # a DistributedSampler pads the last rank by repeating a video
    states = [json.loads(json.dumps(rank.to_state())) for rank in (rank0, rank1)]  # plain data only
    merged = MetricsAccumulator.from_states(states)
    assert len(merged) == 30
    assert merged.summary() == full.summary()
    assert MetricsAccumulator().merge(rank0).merge(rank1).summary() == full.summary()


def test_format_table_shows_every_category_and_the_overall_line():
    accumulator = random_accumulator(seed=2, n_videos=20)
    summary = accumulator.summary()
    lines = accumulator.format_table().splitlines()
    assert len(lines) == 1 + len(summary["per_category"]) + 1
    for line, (category, row) in zip(lines[1:], summary["per_category"].items(), strict=False):
        cells = line.split()
        assert cells[0] == category and int(cells[1]) == row["n_videos"]
        assert [float(c) for c in cells[2:]] == [round(row[name], 1) for name in METRIC_NAMES]
    overall = lines[-1].split()
    assert overall[0] == "overall" and int(overall[3]) == 20
    assert [float(c) for c in overall[4:]] == [round(summary[name], 1) for name in METRIC_NAMES]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gather_worker(rank: int, world_size: int, port: int, result_path: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        local = MetricsAccumulator(random_accumulator(seed=4, n_videos=24).records[rank::world_size])
        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, local.to_state())
        if rank == 0:
            Path(result_path).write_text(json.dumps(MetricsAccumulator.from_states(gathered).summary()))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_all_gather_object_between_two_ranks(tmp_path):
    result = tmp_path / "summary.json"  # only the test reads the result back through a file
    mp.start_processes(_gather_worker, args=(2, _free_port(), str(result)), nprocs=2, start_method="spawn")
    expected = json.loads(json.dumps(random_accumulator(seed=4, n_videos=24).summary()))
    assert json.loads(result.read_text()) == expected


# ----------------------------------------------------------------------------------------------
# oracles on the real ChangeIt test annotations


@pytest.fixture(scope="module")
def real_annotations() -> dict[str, np.ndarray]:
    directory = CHANGEIT / "annotations"
    if not directory.is_dir():
        pytest.skip(f"ChangeIt annotations not found at {directory}; set STATECHANGE_CHANGEIT to the dataset root")
    from statechange.data.index import read_annotation

    files = sorted(directory.glob("*/*.fps1.csv"))
    return {f"{path.parent.name}/{path.name.split('.')[0]}": read_annotation(path) for path in files}


def oracle_summary(annotations: dict[str, np.ndarray], make_curves) -> MetricsAccumulator:
    accumulator = MetricsAccumulator()
    for key, labels in annotations.items():
        accumulator.add_video(*make_curves(labels), labels, key.split("/")[0], key)
    return accumulator


def ordered_pair_exists(labels: np.ndarray) -> bool:
    initial, end = np.flatnonzero(labels == INITIAL), np.flatnonzero(labels == END)
    return len(initial) > 0 and len(end) > 0 and initial[0] < end[-1]


def ordered_triplet_exists(labels: np.ndarray) -> bool:
    initial, end = np.flatnonzero(labels == INITIAL), np.flatnonzero(labels == END)
    if len(initial) == 0 or len(end) == 0:
        return False
    between = labels[initial[0] + 1 : end[-1]]
    return bool((between == ACTION).any())


def expected_summary(annotations, per_video) -> dict[str, float | None]:
    return release_summary([(key.split("/")[0], per_video(labels)) for key, labels in annotations.items()])


def test_one_hot_oracle_on_real_annotations(real_annotations):
    def curves(labels):
        return ((labels == INITIAL).astype(np.float32), (labels == ACTION).astype(np.float32),
                (labels == END).astype(np.float32))

    def expected(labels):
        # without an ordered pair / triplet every product is 0: the first pair (0, 1) / triplet (0, 1, 2)
        pair_ok, triplet_ok = ordered_pair_exists(labels), ordered_triplet_exists(labels)
        has_states = bool(((labels == INITIAL) | (labels == END)).any())
        return {
            "state_precision": 1.0 if pair_ok else 0.5 * (labels[0] == INITIAL) + 0.5 * (labels[1] == END),
            "action_precision": float((labels == ACTION).any()),
            "joint_state_precision": 1.0 if triplet_ok else 0.5 * (labels[0] == INITIAL) + 0.5 * (labels[2] == END),
            "joint_action_precision": 1.0 if triplet_ok else float(labels[1] == ACTION),
            "state_accuracy": 1.0 if has_states else None,
        }

    summary = oracle_summary(real_annotations, curves).summary()
    reference = expected_summary(real_annotations, expected)
    for name in METRIC_NAMES:
        assert summary[name] == pytest.approx(reference[name], abs=1e-9), name
    assert summary["n_videos"] == len(real_annotations)
    assert summary["state_accuracy"] == pytest.approx(100.0)
    # the ceiling is below 100 exactly when some video lacks an action / an ordered triplet
    all_have_action = all((labels == ACTION).any() for labels in real_annotations.values())
    assert (summary["action_precision"] == pytest.approx(100.0)) == all_have_action
    all_ordered = all(ordered_triplet_exists(labels) for labels in real_annotations.values())
    assert (summary["joint_action_precision"] < 100.0) == (not all_ordered)
    assert summary["joint_state_precision"] <= summary["state_precision"] + 1e-9


def test_noisy_oracle_on_real_annotations(real_annotations):
    rng = np.random.default_rng(0)

    def curves(labels):
        noise = rng.uniform(0.0, 0.05, size=(3, len(labels))).astype(np.float32)
        return tuple(0.4 + 0.5 * (labels == code).astype(np.float32) + noise[row]
                     for row, code in enumerate((INITIAL, ACTION, END)))

    accumulator = oracle_summary(real_annotations, curves)
    for record in accumulator.records:
        labels = real_annotations[record.key]
        assert record.action_precision == float((labels == ACTION).any())
        if ordered_pair_exists(labels):
            assert record.state_precision == 1.0, record.key
        if ordered_triplet_exists(labels):
            assert (record.joint_state_precision, record.joint_action_precision) == (1.0, 1.0), record.key
        assert record.state_accuracy in (None, 1.0)


def test_flat_oracle_exercises_every_tie_rule_on_real_annotations(real_annotations):
    def curves(labels):
        flat = np.full(len(labels), 0.5, dtype=np.float32)
        return flat, flat, flat

    def expected(labels):
        # every pair / triplet ties: (0, 1) and (0, 1, 2); the action's first maximum is second 0;
        # initial wins every state tie, so the accuracy is the share of initial-state seconds
        states = labels[(labels == INITIAL) | (labels == END)]
        return {
            "state_precision": 0.5 * (labels[0] == INITIAL) + 0.5 * (labels[1] == END),
            "action_precision": float(labels[0] == ACTION),
            "joint_state_precision": 0.5 * (labels[0] == INITIAL) + 0.5 * (labels[2] == END),
            "joint_action_precision": float(labels[1] == ACTION),
            "state_accuracy": float(np.mean(states == INITIAL)) if len(states) else None,
        }

    summary = oracle_summary(real_annotations, curves).summary()
    reference = expected_summary(real_annotations, expected)
    for name in METRIC_NAMES:
        assert summary[name] == pytest.approx(reference[name], abs=1e-9), name
    assert math.isfinite(summary["state_accuracy"]) and 0 < summary["state_accuracy"] < 100
