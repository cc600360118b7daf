"""Training recipes: ``paper`` (METHOD.md exactly, the default) and ``improved`` (issue 14).

The improved recipe keeps the method (the ordering decode, the 15 pseudo-labelled frames, the loss,
the optimisers, the model's architecture) and adds two pieces, each a setting that is off in the paper
recipe (benchmarks/recipes.py measures them; docs/benchmarks.md says what was measured):

- pseudo-labels from a *teacher*, an exponential moving average of the model's weights
  (``RecipeConfig.teacher_decay``; Tarvainen & Valpola, "Mean teachers", 2017): a decode that
  changes its mind from one step to the next no longer pulls the heads back and forth, and an early
  mistake is averaged away instead of being trained in at once;
- the per-second probabilities smoothed over a few seconds before every ordering decode, in training
  (the teacher's decode), evaluation and prediction (``ModelConfig.smoothing_seconds``): states last
  seconds, so a one-second spike should not decide where a state is.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from statechange.config import (
    IMPROVED_SMOOTHING_SECONDS,
    IMPROVED_TEACHER_DECAY,
    RECIPES,
    RecipeConfig,
    TrainConfig,
)
from statechange.errors import StateChangeError
from statechange.model import StateChangeModel


def apply_recipe(config: TrainConfig, name: str) -> TrainConfig:
    """``config`` with the settings of recipe ``name``; "paper" returns it unchanged (its defaults are the paper's)."""
    if name not in RECIPES:
        raise StateChangeError(f"Unknown recipe {name!r}: use one of {', '.join(RECIPES)}.")
    if name == "paper":
        return config
    return replace(
        config,
        model=replace(config.model, smoothing_seconds=IMPROVED_SMOOTHING_SECONDS),
        recipe=RecipeConfig(name="improved", teacher_decay=IMPROVED_TEACHER_DECAY),
    )


def describe_recipe(recipe: RecipeConfig, model: StateChangeModel) -> str:
    """One line naming a model's recipe and what it changes, for train / evaluate / predict output."""
    parts = []
    if recipe.teacher_decay > 0:
        parts.append(f"EMA teacher {recipe.teacher_decay:g}")
    if model.config.smoothing_seconds > 0:
        parts.append(f"probabilities smoothed over +-{model.config.smoothing_seconds} s")
    return f"recipe: {recipe.name}" + (f" ({', '.join(parts)})" if parts else "")


class EmaTeacher:
    """A copy of the model whose trained weights follow the model's as an exponential moving average.

    After every optimiser step: teacher <- decay * teacher + (1 - decay) * model, for every weight the
    model trains; a frozen backbone is shared, not copied (it never changes). Buffers are copied.
    """

    def __init__(self, model: StateChangeModel, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"The teacher's decay must lie in (0, 1), got {decay}.")
        self.decay = decay
        self.shares_backbone = not any(p.requires_grad for p in model.backbone.parameters())
        shared = {id(model.backbone): model.backbone} if self.shares_backbone else {}
        self.model: StateChangeModel = copy.deepcopy(model, memo=shared).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: StateChangeModel) -> None:
        for teacher, student in zip(self.model.parameters(), model.parameters(), strict=True):
            if teacher is not student:
                teacher.lerp_(student.detach(), 1.0 - self.decay)
        for teacher, student in zip(self.model.buffers(), model.buffers(), strict=True):
            if teacher is not student:
                teacher.copy_(student)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The teacher's own weights (a shared backbone is the model's, saved with it)."""
        return {key: value.detach().cpu().clone() for key, value in self.model.state_dict().items()
                if not (self.shares_backbone and key.startswith("backbone."))}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected or any(not (self.shares_backbone and key.startswith("backbone.")) for key in missing):
            raise ValueError(f"The teacher's saved weights do not fit it (missing {missing}, unexpected {unexpected}).")


__all__ = ["EmaTeacher", "apply_recipe", "describe_recipe"]
