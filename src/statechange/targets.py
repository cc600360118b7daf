"""From a decoded triplet to the frames that get a gradient and their pseudo-labels (METHOD.md step 3).

With the decoded initial state s1, action a and end state s2 of a video of category c (N categories),
n = ``n_frames_per_target`` frames around each (offsets -1, 0, +1 for n = 3) and kappa = 60 s, the
training frames and their targets are, every index clamped to [0, T-1]:

    frames                               state target          action target
    s1-1,       s1,       s1+1           2c     (initial)      N  (background)
    s2-1,       s2,       s2+1           2c+1   (end)          N  (background)
    a-1,        a,        a+1            2N     (background)   c  (action)
    a-1-kappa,  a-kappa,  a+1-kappa      *      (masked out)   N  (background)
    a-1+kappa,  a+kappa,  a+1+kappa      *      (masked out)   N  (background)

That is 5n = 15 frames per video; only they are forwarded with gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from statechange import labels
from statechange.config import PseudoLabelConfig

N_TARGET_GROUPS = 5  # initial state, end state, action, action - kappa, action + kappa


@dataclass(frozen=True)
class PseudoLabels:
    """Training frames of one video and their targets; every tensor has 5n entries."""

    frames: torch.Tensor  # LongTensor [5n]: frame indices into the video
    state_targets: torch.Tensor  # LongTensor [5n]: classes of the state head (2N+1 classes)
    state_mask: torch.Tensor  # FloatTensor [5n]: 1 where the state loss counts, 0 where masked out
    action_targets: torch.Tensor  # LongTensor [5n]: classes of the action head (N+1 classes)


def frame_offsets(n_frames_per_target: int) -> torch.Tensor:
    """Offsets of the n frames around a pseudo-ground-truth frame: -1, 0, +1 for n = 3 (centred, n >= 1)."""
    if n_frames_per_target < 1:
        raise ValueError(f"n_frames_per_target must be at least 1, got {n_frames_per_target}.")
    return torch.arange(n_frames_per_target) - n_frames_per_target // 2


def pseudo_labels(
    triplet: Sequence[int] | torch.Tensor,
    category: int,
    n_categories: int,
    n_frames: int,
    config: PseudoLabelConfig = PseudoLabelConfig(),
) -> PseudoLabels:
    """Frames and targets of one video from its decoded (initial, action, end) frame indices.

    ``triplet`` is a row of ``ordering.best_triplet``: (s1, a, s2) with s1 < a < s2 < n_frames.
    """
    initial, action, end = (int(x) for x in (triplet.tolist() if isinstance(triplet, torch.Tensor) else triplet))
    if not 0 <= initial < action < end < n_frames:
        raise ValueError(f"Triplet {(initial, action, end)} is not ordered inside a video of {n_frames} frames.")
    if not 0 <= category < n_categories:
        raise ValueError(f"Category {category} is outside 0..{n_categories - 1}.")
    offsets = frame_offsets(config.n_frames_per_target)  # [n]
    n = len(offsets)
    centres = torch.tensor(
        [initial, end, action, action - config.kappa, action + config.kappa]
    )  # [5], in the order of the table above
    frames = (centres[:, None] + offsets[None, :]).reshape(-1).clamp(0, n_frames - 1)  # [5n]

    state_background = labels.state_background_class(n_categories)
    action_background = labels.action_background_class(n_categories)
    state_targets = torch.tensor(
        [labels.initial_state_class(category), labels.end_state_class(category), state_background,
         state_background, state_background]
    ).repeat_interleave(n)  # the last two groups are masked out; background is a placeholder
    state_mask = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]).repeat_interleave(n)
    action_targets = torch.tensor(
        [action_background, action_background, labels.action_class(category), action_background, action_background]
    ).repeat_interleave(n)
    return PseudoLabels(
        frames=frames, state_targets=state_targets, state_mask=state_mask, action_targets=action_targets
    )


def concatenate_labels(members: Sequence[PseudoLabels]) -> PseudoLabels:
    """The pseudo-labels of an ensemble's members on one video as one ``PseudoLabels`` of K * 5n entries,
    member k's at rows [k*5n, (k+1)*5n); one member's labels are returned as they are."""
    if len(members) == 1:
        return members[0]
    return PseudoLabels(*(torch.cat(column) for column in zip(
        *((m.frames, m.state_targets, m.state_mask, m.action_targets) for m in members), strict=True)))
