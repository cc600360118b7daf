"""Training recipes: ``paper`` (METHOD.md exactly, the default) and ``improved`` (issue 14).

The improved recipe keeps the method (the ordering decode, the 15 pseudo-labelled frames, the loss,
the optimisers and schedule, the backbone) and changes two settings, measured on hard synthetic sets
over 8-10 seeds (benchmarks/recipes.py; docs/benchmarks.md, "Recipes"):

- the heads' SGD learning rate, ``IMPROVED_LR`` (paper: 1e-4). The paper's value was set for
  ChangeIt's ~34,000 videos; on a few dozen videos per category 20 epochs give the heads ~600x fewer
  video updates, and they end under-trained: their state precision is low and decided by the seed.
- an ensemble of ``IMPROVED_ENSEMBLE`` (state head, action head) pairs on the one backbone
  (``ModelConfig.ensemble_size``; paper: 1). Each pair decodes its own predictions and trains on its own
  pseudo-labels, as a single pair would; the model predicts their mean log-probabilities. Which states a
  self-trained pair locks onto depends on its initialisation; independent pairs err on different
  categories, and their mean is steadier than any of them (10 pairs steadier than 5). (Pseudo-labels
  decoded from the ensemble's mean instead made the pairs agree and gained nothing.)

The first improved recipe had two other pieces: pseudo-labels from an exponential-moving-average
"teacher" of the model (Tarvainen & Valpola, "Mean teachers", 2017) and per-second probabilities
smoothed over +-2 s before every ordering decode. Measured over 5 seeds, together they lowered both
precisions, so they were removed (docs/benchmarks.md, "Recipes"; the code is in the history up to
commit 87653ec).
"""

from __future__ import annotations

from dataclasses import replace

from statechange.config import IMPROVED_ENSEMBLE, IMPROVED_LR, RECIPES, OptimConfig, RecipeConfig, TrainConfig
from statechange.errors import StateChangeError


def apply_recipe(config: TrainConfig, name: str) -> TrainConfig:
    """``config`` with the settings of recipe ``name``; "paper" returns it unchanged (its defaults are the paper's)."""
    if name not in RECIPES:
        raise StateChangeError(f"Unknown recipe {name!r}: use one of {', '.join(RECIPES)}.")
    if name == "paper":
        return config
    return replace(config, model=replace(config.model, ensemble_size=IMPROVED_ENSEMBLE),
                   optim=replace(config.optim, lr=IMPROVED_LR), recipe=replace(config.recipe, name="improved"))


def describe_recipe(recipe: RecipeConfig, lr: float | None, ensemble_size: int = 1) -> str:
    """One line naming a model's recipe and how its training differed from the paper's, for train / evaluate /
    predict output; ``lr``: the heads' learning rate it was trained with (None: not recorded);
    ``ensemble_size``: its (state, action) head pairs."""
    differences = []
    if lr is not None and lr != OptimConfig.lr:
        differences.append(f"heads' learning rate {lr:g}, the paper's {OptimConfig.lr:g}")
    if ensemble_size != 1:
        differences.append(f"an ensemble of {ensemble_size} head pairs")
    return f"recipe: {recipe.name}" + (f" ({'; '.join(differences)})" if differences else "")


__all__ = ["apply_recipe", "describe_recipe"]
