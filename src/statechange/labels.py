"""The label layout shared by the heads, the pseudo-labels, the metrics and the annotation files.

With N categories, category c (index into the sorted category names) owns

    state head (2N+1 classes):  2c = initial state of c,  2c+1 = end state of c,  2N = background
    action head (N+1 classes):  c  = action of c,                                  N = background

ChangeIt annotation files (``<video_id>.fps1.csv``, ``second,label``) use the codes below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the label codes are read by torch-free code (extract)
    import torch

ANNOTATION_BACKGROUND = 0
ANNOTATION_INITIAL_STATE = 1
ANNOTATION_ACTION = 2
ANNOTATION_END_STATE = 3


def initial_state_class(category: int) -> int:
    return 2 * category


def end_state_class(category: int) -> int:
    return 2 * category + 1


def state_background_class(n_categories: int) -> int:
    return 2 * n_categories


def action_class(category: int) -> int:
    return category


def action_background_class(n_categories: int) -> int:
    return n_categories


def n_state_classes(n_categories: int) -> int:
    return 2 * n_categories + 1


def n_action_classes(n_categories: int) -> int:
    return n_categories + 1


def category_probabilities(
    state_logits: torch.Tensor, action_logits: torch.Tensor, category: int | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame probabilities of one category's initial state, action and end state.

    ``state_logits`` [..., T, 2N+1] and ``action_logits`` [..., T, N+1]; ``category`` an int, or a
    LongTensor of the leading (video) dimensions. The softmax runs over *all* classes of a head,
    then the category's columns are kept: (2c, 2c+1) of the state head and c of the action head
    (always, also for N = 1, where the release picked the wrong columns).
    Returns (initial [..., T], action [..., T], end [..., T]) in float32.
    """
    import torch

    state = torch.softmax(state_logits.float(), dim=-1)
    action = torch.softmax(action_logits.float(), dim=-1)
    if isinstance(category, int):
        return state[..., 2 * category], action[..., category], state[..., 2 * category + 1]
    index = category.to(state.device).view(*category.shape, *([1] * (state.dim() - category.dim())))
    index = index.expand(*state.shape[:-1], 1)
    initial = state.gather(-1, 2 * index).squeeze(-1)
    end = state.gather(-1, 2 * index + 1).squeeze(-1)
    act = action.gather(-1, index).squeeze(-1)
    return initial, act, end
