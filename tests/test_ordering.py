"""The causal-ordering decode against brute force: values, tie rule, windows, padding, long videos."""

from __future__ import annotations

import itertools
import os

import pytest
import torch

from statechange.ordering import best_pair, best_triplet

DEVICE = torch.device(os.environ.get("STATECHANGE_TEST_DEVICE", "cpu"))


def brute_force_triplet(initial, action, end, max_distance=None):
    """First maximum of (initial[i] * end[j]) * action[k] in (i, k, j) order, i < k < j, within D."""
    n = len(initial)
    best, best_value = (-1, -1, -1), -1.0
    for i, k, j in itertools.combinations(range(n), 3):
        if max_distance is not None and (k - i > max_distance or j - k > max_distance):
            continue
        value = float((initial[i] * end[j]) * action[k])
        if value > best_value:
            best, best_value = (i, k, j), value
    return best


def brute_force_pair(initial, end):
    n = len(initial)
    best, best_value = (-1, -1), -1.0
    for i, j in itertools.combinations(range(n), 2):
        value = float(initial[i] * end[j])
        if value > best_value:
            best, best_value = (i, j), value
    return best


def random_probabilities(generator, batch, n_frames, levels=None, dtype=torch.float64):
    if levels is None:
        return torch.rand(batch, n_frames, generator=generator, dtype=dtype)
    # few distinct dyadic values: many exact ties, and every product is exact
    return torch.randint(0, levels + 1, (batch, n_frames), generator=generator).to(dtype) / levels


@pytest.mark.parametrize("levels", [None, 2, 4])
@pytest.mark.parametrize("max_distance", [None, 1, 2, 3, 7, 40])
def test_triplet_equals_brute_force(levels, max_distance):
    generator = torch.Generator().manual_seed(hash((levels, max_distance)) % 2**31)
    for n_frames in (3, 4, 5, 9, 17, 30):
        initial, action, end = (random_probabilities(generator, 6, n_frames, levels) for _ in range(3))
        got = best_triplet(initial.to(DEVICE), action.to(DEVICE), end.to(DEVICE), max_distance=max_distance)
        for b in range(6):
            expected = brute_force_triplet(initial[b], action[b], end[b], max_distance)
            assert tuple(got[b].tolist()) == expected, (n_frames, b)


@pytest.mark.parametrize("levels", [None, 1, 3])
def test_pair_equals_brute_force(levels):
    generator = torch.Generator().manual_seed(7)
    for n_frames in (2, 3, 6, 25):
        initial, end = (random_probabilities(generator, 8, n_frames, levels) for _ in range(2))
        got = best_pair(initial.to(DEVICE), end.to(DEVICE))
        for b in range(8):
            assert tuple(got[b].tolist()) == brute_force_pair(initial[b], end[b])


def test_all_equal_probabilities_pick_the_first_frames():
    ones = torch.ones(10, device=DEVICE)
    assert best_triplet(ones, ones, ones).tolist() == [0, 1, 2]
    assert best_pair(ones, ones).tolist() == [0, 1]
    zeros = torch.zeros(10, device=DEVICE)
    assert best_triplet(zeros, zeros, zeros).tolist() == [0, 1, 2]


def test_order_constraint_overrides_unconstrained_argmax():
    # the end state peaks before the initial state: the decode must still return i < k < j
    initial = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.9, 0.1])
    action = torch.tensor([0.1, 0.1, 0.8, 0.1, 0.1, 0.1])
    end = torch.tensor([0.9, 0.2, 0.1, 0.1, 0.1, 0.3])
    i, k, j = best_triplet(initial, action, end).tolist()
    assert i < k < j
    assert (i, k, j) == brute_force_triplet(initial, action, end)


def test_max_distance_limits_gaps():
    n_frames = 50
    initial = torch.zeros(n_frames)
    action = torch.zeros(n_frames)
    end = torch.zeros(n_frames)
    initial[0], action[25], end[49] = 1.0, 1.0, 1.0  # perfect but 25 frames apart
    initial[20], action[30], end[35] = 0.5, 0.5, 0.5
    assert best_triplet(initial, action, end, max_distance=None).tolist() == [0, 25, 49]
    i, k, j = best_triplet(initial, action, end, max_distance=10).tolist()
    assert k - i <= 10 and j - k <= 10
    assert (i, k, j) == brute_force_triplet(initial, action, end, max_distance=10)


def test_lengths_mask_padding():
    generator = torch.Generator().manual_seed(3)
    batch, n_frames = 7, 24
    initial, action, end = (random_probabilities(generator, batch, n_frames) for _ in range(3))
    lengths = torch.tensor([24, 23, 10, 3, 2, 1, 0])
    # padding that would win if it were not masked
    for tensor in (initial, action, end):
        for b, length in enumerate(lengths.tolist()):
            tensor[b, length:] = 1.0
    triplets = best_triplet(initial, action, end, lengths=lengths, max_distance=5)
    pairs = best_pair(initial, end, lengths=lengths)
    for b, length in enumerate(lengths.tolist()):
        if length >= 3:
            expected = brute_force_triplet(initial[b, :length], action[b, :length], end[b, :length], 5)
            assert tuple(triplets[b].tolist()) == expected
        else:
            assert triplets[b].tolist() == [-1, -1, -1]
        if length >= 2:
            assert tuple(pairs[b].tolist()) == brute_force_pair(initial[b, :length], end[b, :length])
        else:
            assert pairs[b].tolist() == [-1, -1]


def test_short_videos_return_minus_one():
    assert best_triplet(torch.rand(2), torch.rand(2), torch.rand(2)).tolist() == [-1, -1, -1]
    assert best_pair(torch.rand(1), torch.rand(1)).tolist() == [-1, -1]
    assert best_triplet(torch.rand(0), torch.rand(0), torch.rand(0)).tolist() == [-1, -1, -1]
    assert best_triplet(torch.rand(3), torch.rand(3), torch.rand(3)).tolist() == [0, 1, 2]


def candidate_maximum(initial, action, end, max_distance):
    """Brute-force maximum value in O(T * D) memory-light loops, for long videos."""
    best = -1.0
    n = len(initial)
    for k in range(1, n - 1):
        lo, hi = max(0, k - max_distance), min(n - 1, k + max_distance)
        best = max(best, float(initial[lo:k].max() * action[k] * end[k + 1 : hi + 1].max()))
    return best


@pytest.mark.parametrize("n_frames", [1025, 5000])
def test_long_videos_reach_the_maximum(n_frames):
    """The release's kernel failed silently above 1024 frames; here any T works."""
    generator = torch.Generator().manual_seed(n_frames)
    initial, action, end = (random_probabilities(generator, 2, n_frames) for _ in range(3))
    for max_distance in (500, None):
        triplets = best_triplet(initial.to(DEVICE), action.to(DEVICE), end.to(DEVICE), max_distance=max_distance)
        for b in range(2):
            i, k, j = triplets[b].tolist()
            assert 0 <= i < k < j < n_frames
            limit = n_frames if max_distance is None else max_distance
            assert k - i <= limit and j - k <= limit
            value = float(initial[b, i] * end[b, j] * action[b, k])
            assert value == pytest.approx(candidate_maximum(initial[b], action[b], end[b], limit), rel=1e-12)


def test_plants_a_known_triplet_in_a_long_video():
    n_frames = 5000
    initial = torch.full((n_frames,), 0.01)
    action = torch.full((n_frames,), 0.01)
    end = torch.full((n_frames,), 0.01)
    initial[3100], action[3400], end[3890] = 0.9, 0.9, 0.9
    assert best_triplet(initial, action, end, max_distance=500).tolist() == [3100, 3400, 3890]
    # 491 frames apart is allowed with D = 500, not with D = 400
    i, k, j = best_triplet(initial, action, end, max_distance=400).tolist()
    assert j - k <= 400 and (i, k) == (3100, 3400)


def test_float32_inputs_are_decoded_in_float32_with_the_evaluation_product_order():
    generator = torch.Generator().manual_seed(11)
    initial, action, end = (torch.softmax(torch.randn(4, 40, generator=generator) * 3, -1) for _ in range(3))
    triplets = best_triplet(initial, action, end, max_distance=None)
    for b in range(4):
        assert tuple(triplets[b].tolist()) == brute_force_triplet(initial[b], action[b], end[b])


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ((torch.tensor([0.1, float("nan"), 0.2]),) * 3, "NaN"),
        ((torch.tensor([0.1, -0.5, 0.2]),) * 3, "negative"),
        ((torch.rand(5), torch.rand(6), torch.rand(5)), "same shape"),
        ((torch.rand(2, 3, 4),) * 3, "shape"),
        ((torch.tensor([1, 2, 3]),) * 3, "floating-point"),
    ],
)
def test_bad_input_raises_clear_value_error(tensors, message):
    with pytest.raises(ValueError, match=message):
        best_triplet(*tensors)


def test_bad_lengths_and_distance_raise():
    x = torch.rand(2, 5)
    with pytest.raises(ValueError, match="lengths"):
        best_triplet(x, x, x, lengths=torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="lengths"):
        best_pair(x, x, lengths=torch.tensor([5]))
    with pytest.raises(ValueError, match="max_distance"):
        best_triplet(x, x, x, max_distance=0)


def test_pair_takes_the_first_end_frame_whose_rounded_product_ties():
    # 0.63489336 < 0.6348934 (adjacent float32 values), yet both products round to the same float32:
    # the release's loop sees a tie and keeps the earlier end frame
    initial = torch.tensor([0.81848085, 0.0, 0.0, 0.0], dtype=torch.float32)
    end = torch.tensor([0.0, 0.63489336, 0.6348934, 0.0], dtype=torch.float32)
    assert end[1] < end[2] and initial[0] * end[1] == initial[0] * end[2]
    assert best_pair(initial, end).tolist() == list(brute_force_pair(initial, end)) == [0, 1]
