"""The original release's trained checkpoints (``torch.save`` of a dict), usable wherever a checkpoint is.

A release file holds ``{"state_dict": ..., "args": ..., "n_classes": N, "hidden_mlp_layers": [4096]}``:

    state_dict  keys with DDP's ``module.`` prefix:
                backbone.<OpenAI CLIP visual keys, without proj>   -> our backbone.* (weights.openai_clip_to_timm)
                heads.state.l<i>.{weight,bias}, heads.action.l<i>.*  hidden Linear layers (ReLU after each)
                heads.state_layer.* [2N+1, .], heads.action_layer.* [N+1, .]  -> state_head.* / action_head.*
    args        {input_resolution, patch_size, width, layers, heads, output_dim}: the OpenAI ViT (QuickGELU)

It stores no category names: the release numbered categories by the sorted names of the category
folders, so N = 44 means ChangeIt's 44 names sorted; any other N needs the names from the user.
The file is read with ``torch.load(weights_only=True)``; every key must fit the model exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from statechange.checkpoint import (
    LoadedCheckpoint,
    is_checkpoint,
    load_checkpoint,
    model_from_weights,
    save_checkpoint,
)
from statechange.config import FrameConfig, ModelConfig, to_dict
from statechange.errors import StateChangeError, first_line
from statechange.model import TINY_BACKBONE, StateChangeModel, init_model
from statechange.weights import LoadedWeights, check_fits, openai_clip_to_timm

FORMAT_RELEASE = "release checkpoint"
RELEASE_KEYS = ("state_dict", "args", "n_classes")  # what every release file holds
RELEASE_ARGS = ("input_resolution", "patch_size", "width", "layers", "heads")  # output_dim: CLIP's proj, unused
_PREFIX = "module."  # DDP's wrapper, on every key

# ChangeIt's 44 category folder names, sorted (the release's class numbering). Generated from the
# DIR_NAME column of ChangeIt's categories.csv (github.com/soCzech/ChangeIt, /work/shared/changeit).
CHANGEIT_CATEGORIES = (
    "apple", "avocado", "bacon", "ball", "beer", "boil_milk", "box", "butter", "cake", "candle", "champagne",
    "cherries", "chocolate", "coffee", "corn", "cream", "cube", "dough", "dragon_fruit", "drill", "eggs", "fish",
    "garlic", "grill", "juice", "milk", "onion", "outlet", "pan", "pancake", "pineapple", "plane", "potatoes",
    "ribbon", "rope", "shoes", "t-shirt", "tea", "tie", "tile", "tortilla", "tree", "weed", "whisk_eggs",
)

# OpenAI ViT shapes (patch_size, width, layers, heads) -> the backbone that builds them (input size is separate).
_BACKBONES = {
    (14, 1024, 24, 16): "vit_large_patch14_clip_quickgelu_224",  # the paper's ViT-L/14
    (16, 768, 12, 12): "vit_base_patch16_clip_quickgelu_224",
    (32, 768, 12, 12): "vit_base_patch32_clip_quickgelu_224",
    (14, 1280, 32, 16): "vit_huge_patch14_clip_quickgelu_224",
    (32, 64, 2, 2): TINY_BACKBONE,
}


class ReleaseCheckpointError(StateChangeError):
    """A file that is not a usable release checkpoint."""


@dataclass
class ReleaseCheckpoint:
    """A release file read and renamed to this project's model: its architecture and weights."""

    path: Path
    config: ModelConfig
    categories: list[str]
    tensors: dict[str, torch.Tensor]  # our key names (backbone.*, state_head.*, action_head.*)
    origin: dict[str, str]  # our key -> key in the file
    args: dict[str, int]


def is_release_checkpoint(path: str | Path) -> bool:
    """True for a file that is not a statechange checkpoint: only a ``torch.save`` file can be a release one
    (its content is checked when it is read)."""
    path = Path(path)
    return path.is_file() and path.suffix != ".safetensors" and not is_checkpoint(path)


def read_release_checkpoint(path: str | Path, categories: list[str] | None = None) -> ReleaseCheckpoint:
    """Read a release file; ``categories`` are required unless it has ChangeIt's 44."""
    path = Path(path)
    content = _load_plain(path)
    state = {k.removeprefix(_PREFIX): v for k, v in content["state_dict"].items()}
    n_classes = int(content["n_classes"])
    hidden = tuple(int(h) for h in content.get("hidden_mlp_layers", _hidden_sizes_of(state)))
    config = ModelConfig(backbone=_backbone_of(path, content["args"]), hidden_sizes=hidden,
                         image_size=int(content["args"]["input_resolution"]))
    tensors, origin = _rename_release(state)
    if any(k.startswith(_PREFIX) for k in content["state_dict"]):  # name keys as the file spells them
        origin = {k: _PREFIX + v for k, v in origin.items()}
    return ReleaseCheckpoint(path, config, release_categories(path, n_classes, categories), tensors, origin,
                             {k: int(v) for k, v in content["args"].items()})


def load_release_checkpoint(path: str | Path, categories: list[str] | None = None,
                            device: str | torch.device | None = None) -> LoadedCheckpoint:
    """A release file as a ``LoadedCheckpoint`` (model in eval mode on ``device``)."""
    release = read_release_checkpoint(path, categories)
    model = release_model(release)
    model.to(device if device is not None else "cpu").eval()
    metadata = release_metadata(release)
    return LoadedCheckpoint(model=model, categories=release.categories, metadata=metadata, training_state=None,
                            path=release.path, config={"model": to_dict(release.config), "metadata": metadata})


def convert_release_checkpoint(path: str | Path, output: str | Path,
                               categories: list[str] | None = None) -> ReleaseCheckpoint:
    """Write a release file as a statechange checkpoint directory (atomically); returns what was read."""
    release = read_release_checkpoint(path, categories)
    save_checkpoint(output, release_model(release), release.categories, release_metadata(release))
    return release


def load_any_checkpoint(path: str | Path, device: str | torch.device | None = None,
                        categories: list[str] | None = None) -> LoadedCheckpoint:
    """A statechange checkpoint (directory or model.safetensors) or a release ``.pth`` file, without
    training state; ``categories`` only name a release file's classes."""
    if is_release_checkpoint(path):
        return load_release_checkpoint(path, categories, device)
    return load_checkpoint(path, device=device, load_training_state=False)


def initial_weights(path: str | Path, config: ModelConfig, categories: list[str]) -> dict[str, torch.Tensor]:
    """``train --init-from``: the weights of a release file or statechange checkpoint for a run that builds
    ``config`` for ``categories`` (a release file's classes are taken to be these, in this order)."""
    release = is_release_checkpoint(path)
    loaded = load_any_checkpoint(path, categories=categories if release else None)
    if loaded.model.config != config:
        own = loaded.model.config
        raise StateChangeError(
            f"--init-from {path} holds a {own.backbone} model with hidden sizes {list(own.hidden_sizes)} at "
            f"{own.image_size} px and {own.ensemble_size} head pair(s), but this run builds {config.backbone} with "
            f"{list(config.hidden_sizes)} at {config.image_size} px and {config.ensemble_size}; pass --backbone "
            f"{own.backbone} --hidden-sizes {' '.join(map(str, own.hidden_sizes))} --ensemble-size "
            f"{own.ensemble_size}."
        )
    if loaded.categories != list(categories):
        raise StateChangeError(
            f"--init-from {path} was trained on the categories {', '.join(loaded.categories)} but this run has "
            f"{', '.join(categories)}; train on the same categories or start without --init-from."
        )
    return loaded.model.state_dict()


def release_model(release: ReleaseCheckpoint) -> StateChangeModel:
    """The model of a release file with its weights; any missing, unexpected or misshapen key is an error."""
    with torch.device("meta"):  # shapes only: no seconds of random ViT-L initialisation
        expected = init_model(release.config, len(release.categories)).state_dict()
    weights = LoadedWeights(release.path, FORMAT_RELEASE, release.tensors, release.origin)
    check_fits(expected, weights, f"a {release.config.backbone} model of {len(release.categories)} categories")
    state = {k: v.to(expected[k].dtype) for k, v in release.tensors.items()}
    return model_from_weights(release.path, release.config, len(release.categories), state)


def release_metadata(release: ReleaseCheckpoint) -> dict[str, Any]:
    """What a converted checkpoint records: where it came from, and the crop its backbone takes."""
    frames = FrameConfig(crop=release.config.image_size)
    return {"release": {"file": str(release.path), "args": release.args},
            "train_config": {"frames": to_dict(frames)}}


def release_categories(path: Path, n_classes: int, categories: list[str] | None) -> list[str]:
    """The category names of a release file of ``n_classes`` categories (ChangeIt's when it has 44)."""
    if categories is None:
        if n_classes == len(CHANGEIT_CATEGORIES):
            return list(CHANGEIT_CATEGORIES)
        raise ReleaseCheckpointError(
            f"{path} has {n_classes} categories and stores no names: pass them with --categories (names separated "
            "by commas, or a file of one name per line), sorted as the category folders it was trained on."
        )
    if len(categories) != n_classes:
        raise ReleaseCheckpointError(
            f"{len(categories)} category names were given but {path} has {n_classes} categories; pass exactly "
            f"{n_classes} names with --categories."
        )
    return list(categories)


def _load_plain(path: Path) -> dict[str, Any]:
    """The release dict, read without running pickled code; a clear error for anything else."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ReleaseCheckpointError(
            f"{path} could not be read as a release checkpoint with torch.load(weights_only=True) "
            f"({first_line(error)}); pass the .pth file the release's training saved (plain tensors and numbers)."
        ) from error
    if not isinstance(content, dict) or any(k not in content for k in RELEASE_KEYS):
        found = ", ".join(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise ReleaseCheckpointError(
            f"{path} is not a release checkpoint: it needs the entries {', '.join(RELEASE_KEYS)} but holds {found}; "
            "pass the .pth file the release's training saved, or a statechange checkpoint directory."
        )
    state = content["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ReleaseCheckpointError(f"{path}: its state_dict is not a plain dict of tensors; the file is damaged.")
    args = content["args"]
    if not isinstance(args, dict) or any(k not in args for k in RELEASE_ARGS):
        raise ReleaseCheckpointError(
            f"{path}: its args must hold {', '.join(RELEASE_ARGS)} (the ViT's shape), got {args!r}."
        )
    return content


def _backbone_of(path: Path, args: dict[str, Any]) -> str:
    shape = (int(args["patch_size"]), int(args["width"]), int(args["layers"]), int(args["heads"]))
    if shape not in _BACKBONES:
        known = "; ".join(f"patch {p}, width {w}, {n} layers, {h} heads" for p, w, n, h in _BACKBONES)
        raise ReleaseCheckpointError(
            f"{path} holds a ViT of patch {shape[0]}, width {shape[1]}, {shape[2]} layers, {shape[3]} heads, which "
            f"no backbone here builds ({known})."
        )
    return _BACKBONES[shape]


def _hidden_sizes_of(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """Hidden layer widths from ``heads.state.l<i>.weight`` [out, in], when the file does not list them."""
    sizes, i = [], 0
    while f"heads.state.l{i}.weight" in state:
        sizes.append(int(state[f"heads.state.l{i}.weight"].shape[0]))
        i += 1
    return tuple(sizes)


def _rename_release(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Release keys (without ``module.``) -> our keys; keys it does not know keep their name (then unexpected)."""
    visual = {"visual." + k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    backbone, backbone_origin = openai_clip_to_timm(visual)
    tensors = {f"backbone.{k}": v for k, v in backbone.items()}
    origin = {f"backbone.{k}": "backbone." + v.removeprefix("visual.") for k, v in backbone_origin.items()}
    if "visual.proj" in visual:  # CLIP's projection: not part of the feature, and not in release files
        tensors["backbone.proj"], origin["backbone.proj"] = visual["visual.proj"], "backbone.proj"
    for key, value in state.items():
        if key.startswith("backbone."):
            continue
        name = _head_key(key, state)
        tensors[name], origin[name] = value, key
    return tensors, origin


def _head_key(key: str, state: dict[str, torch.Tensor]) -> str:
    """``heads.state.l1.weight`` -> ``state_head.2.weight`` (Linear, ReLU, Linear... in an nn.Sequential);
    ``heads.state_layer.bias`` -> ``state_head.<2 x hidden layers>.bias``; other keys unchanged."""
    parts = key.split(".")
    if len(parts) == 4 and parts[0] == "heads" and parts[1] in ("state", "action") and parts[2].startswith("l") \
            and parts[2][1:].isdigit():
        return f"{parts[1]}_head.{2 * int(parts[2][1:])}.{parts[3]}"
    if len(parts) == 3 and parts[0] == "heads" and parts[1] in ("state_layer", "action_layer"):
        head = parts[1].removesuffix("_layer")
        n_hidden = sum(1 for k in state if k.startswith(f"heads.{head}.l") and k.endswith(".weight"))
        return f"{head}_head.{2 * n_hidden}.{parts[2]}"
    return key


__all__ = [
    "CHANGEIT_CATEGORIES",
    "FORMAT_RELEASE",
    "ReleaseCheckpoint",
    "ReleaseCheckpointError",
    "convert_release_checkpoint",
    "initial_weights",
    "is_release_checkpoint",
    "load_any_checkpoint",
    "load_release_checkpoint",
    "read_release_checkpoint",
    "release_categories",
    "release_metadata",
    "release_model",
]
