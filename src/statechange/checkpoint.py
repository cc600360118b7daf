"""Model checkpoints: a directory (e.g. ``<output>/last``) that rebuilds the model with no other file.

    <directory>/
        model.safetensors   every model weight; the header metadata repeats config.json
        config.json         format name and version, ModelConfig, categories, backbone, feature_dim,
                            the caller's metadata (training config, epoch, metrics...), and the checksums
                            of the two other files (``checksums.ALGORITHM``), checked when they are loaded
        training_state.pt   optional: optimiser / scheduler / RNG / epoch, plain data only
                            (torch.save; loads with torch.load(weights_only=True))

Saving is atomic (``_io.atomic_directory``). Everything is written into a hidden sibling
(``staging_path``) and synced to disk; then the old checkpoint is renamed to ``replaced_path``, the
new one renamed into place, and the old one deleted. A crash at any moment leaves a complete
checkpoint: the old, the new, or (if it struck between the two renames) the old under
``replaced_path``, which ``load_checkpoint`` finds and loads. Model objects are never pickled.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from statechange import __version__
from statechange._io import atomic_directory, interrupted_directory, replaced_path, staging_path
from statechange.checksums import ALGORITHM, file_checksum, verified_while_loading
from statechange.config import ModelConfig, from_dict, to_dict
from statechange.errors import StateChangeError, first_line
from statechange.model import StateChangeModel, init_model

CHECKPOINT_FORMAT = "statechange-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINING_STATE_FILE = "training_state.pt"
CHECKSUMS_KEY = ALGORITHM  # config.json only: file name -> checksum of model.safetensors and training_state.pt
HEADER_KEY = "statechange"  # safetensors header metadata key holding config.json's content
INIT_SEED = 0  # when a random init precedes loading (rare, see model_from_weights); fixed: leaves the RNG alone


class CheckpointError(StateChangeError):
    """A path that is not a (readable) statechange checkpoint."""


@dataclass
class LoadedCheckpoint:
    """What ``load_checkpoint`` returns: the model (eval mode) and everything saved with it."""

    model: StateChangeModel
    categories: list[str]
    metadata: dict[str, Any]
    training_state: dict[str, Any] | None
    path: Path  # the checkpoint directory (or model file) actually read
    config: dict[str, Any]  # the full content of config.json


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | Path,
    model: StateChangeModel,
    categories: list[str],
    metadata: dict[str, Any],
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and optionally ``training_state``) to the checkpoint ``directory`` atomically."""
    directory = Path(directory)
    if len(categories) != model.n_categories:
        raise ValueError(f"{len(categories)} category names given for a model of {model.n_categories} categories.")
    if training_state is not None:
        check_plain_data(training_state, "training_state")
    config = checkpoint_config(model, categories, metadata)
    config_text = json.dumps(config, indent=2)  # fails here, before any file is touched, on unserialisable metadata

    with atomic_directory(directory) as staging:
        _write_model_file(staging / MODEL_FILE, model, config_text)
        if training_state is not None:
            torch.save(training_state, staging / TRAINING_STATE_FILE)
        checksums = {file.name: file_checksum(file) for file in (staging / MODEL_FILE, staging / TRAINING_STATE_FILE)
                     if file.exists()}
        (staging / CONFIG_FILE).write_bytes(json.dumps({**config, CHECKSUMS_KEY: checksums}, indent=2).encode())
    return directory


def checkpoint_config(model: StateChangeModel, categories: list[str], metadata: dict[str, Any]) -> dict[str, Any]:
    """The content of config.json (also embedded in the model file's header)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "statechange_version": __version__,
        "model": to_dict(model.config),
        "backbone": model.config.backbone,
        "feature_dim": model.feature_dim,
        "categories": list(categories),
        "metadata": metadata,
    }


def check_plain_data(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` is dicts/lists/tuples of tensors, numbers, strings, None."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool | None):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; use str or int keys.")
            check_plain_data(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_plain_data(item, f"{where}[{index}]")
    elif not isinstance(value, torch.Tensor | str | int | float | bool | None):
        raise TypeError(
            f"{where} is a {type(value).__name__}, which torch.load(weights_only=True) cannot read; "
            "store tensors, numbers, strings, lists or dicts (e.g. numpy arrays as tensors)."
        )


def _write_model_file(path: Path, model: StateChangeModel, config_text: str) -> None:
    """All weights to safetensors, config.json's content in the header."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen and tensor.numel() > 0:  # safetensors refuses tensors that share memory
            tensor = tensor.clone()
        seen.add(pointer)
        tensors[key] = tensor
    save_file(tensors, str(path), metadata={HEADER_KEY: config_text})


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_checkpoint(
    path: str | Path, device: str | torch.device | None = None, *, load_training_state: bool = True
) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint (directory or its model.safetensors) on ``device``, in eval mode."""
    model_file = _model_file(Path(path))
    config = read_checkpoint_config(model_file)
    model_config = _model_config(model_file, config)
    categories = list(config["categories"])
    with verified_while_loading(model_file, _recorded_checksum(model_file), _damaged):  # hashed as the model is built
        model = model_from_weights(model_file, model_config, len(categories), load_file(str(model_file)))
    if model.feature_dim != config["feature_dim"]:
        raise CheckpointError(f"{model_file} says feature_dim {config['feature_dim']} but its backbone gives "
                              f"{model.feature_dim}; the checkpoint was written by an incompatible version.")
    training_state = None
    training_file = model_file.parent / TRAINING_STATE_FILE
    if load_training_state and model_file.name == MODEL_FILE and training_file.exists():
        training_state = _load_training_state(training_file)
    model.to(device if device is not None else "cpu").eval()
    return LoadedCheckpoint(
        model=model,
        categories=categories,
        metadata=dict(config.get("metadata") or {}),
        training_state=training_state,
        path=model_file.parent if model_file.name == MODEL_FILE else model_file,
        config=config,
    )


def model_from_weights(
    model_file: Path, config: ModelConfig, n_categories: int, state: dict[str, torch.Tensor]
) -> StateChangeModel:
    """The architecture with the saved weights, built without a random initialisation first."""
    with torch.device("meta"):  # every weight is assigned below; skips seconds of ViT-L initialisation
        model = init_model(config, n_categories)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{model_file} does not match the model its config describes ({first_line(error)}); the file is damaged."
        ) from error
    model.reset_normalisation()
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # A backbone with computed, unsaved buffers: those need a real construction.
        model = init_model(config, n_categories, seed=INIT_SEED)
        model.load_state_dict(state, strict=True)
    return model


def is_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a statechange checkpoint directory or model file (by its header)."""
    path = Path(path)
    model_file = path / MODEL_FILE if path.is_dir() else path
    if not model_file.is_file() or model_file.suffix != ".safetensors":
        return False
    try:
        return _header_config(model_file) is not None
    except CheckpointError:
        return False


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The checkpoint's config (config.json's content, read from the model file's header)."""
    model_file = _model_file(Path(path))
    config = _header_config(model_file)
    if config is None:
        raise CheckpointError(
            f"{model_file} is a safetensors file but not a statechange checkpoint (its header has no statechange "
            "metadata); to use it as pretrained backbone weights pass it with --clip-weights instead."
        )
    if config.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{model_file} is not a statechange checkpoint (format {config.get('format')!r}).")
    version = config.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{model_file} has checkpoint format version {version!r} but this statechange {__version__} reads "
            f"version {CHECKPOINT_FORMAT_VERSION}; use the statechange version that wrote it."
        )
    return config


def read_checkpoint_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All weights of a checkpoint (keys ``backbone.*``, ``state_head.*``, ``action_head.*``) on the CPU."""
    model_file = _model_file(Path(path))
    read_checkpoint_config(model_file)
    with verified_while_loading(model_file, _recorded_checksum(model_file), _damaged):
        return load_file(str(model_file))


def _load_training_state(path: Path) -> dict[str, Any]:
    """A checkpoint's training state (plain data only), checked against its recorded checksum."""
    with verified_while_loading(path, _recorded_checksum(path), _damaged):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch.load raises many types for a file that is not its own
            raise CheckpointError(
                f"{path} is not a statechange training state ({first_line(error)}); remove it or resume from a "
                "checkpoint written by statechange train."
            ) from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"{path} is not a statechange training state (it holds no epoch); remove it or "
                              "resume from a checkpoint written by statechange train.")
    return state


def _damaged(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} is damaged: its checksum differs from the one {path.parent / CONFIG_FILE} recorded when it was "
        "saved; use another checkpoint (e.g. best or last) or train again."
    )


def _recorded_checksum(path: Path) -> str | None:
    """The checksum config.json recorded for a file of its checkpoint; None for checkpoints from before checksums
    and lone model files (they are not checked)."""
    try:
        content = json.loads((path.parent / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    checksums = content.get(CHECKSUMS_KEY) if isinstance(content, dict) else None
    recorded = checksums.get(path.name) if isinstance(checksums, dict) else None
    return recorded if isinstance(recorded, str) else None


def find_checkpoint(path: str | Path) -> Path | None:
    """Where the checkpoint ``path`` is: itself, or, when a save was cut off between its two renames, the previous
    checkpoint waiting under ``replaced_path`` (with a warning); None when neither exists. The one recovery
    routine: loading and ``train --resume`` both find checkpoints through it."""
    path = Path(path)
    if path.exists():
        return path
    replaced = interrupted_directory(path)
    if replaced is not None and path.suffix != ".safetensors" and (replaced / MODEL_FILE).is_file():
        warnings.warn(
            f"Checkpoint {path} is missing because a save was interrupted; using the previous one, {replaced}.",
            UserWarning,
            stacklevel=3,
        )
        return replaced
    return None


def _model_file(path: Path) -> Path:
    """The model.safetensors of a checkpoint path, recovering from a save interrupted between renames."""
    found = find_checkpoint(path)
    if found is None:
        raise CheckpointError(f"Checkpoint {path} does not exist; pass a checkpoint directory such as <output>/last.")
    if found != path:
        return found / MODEL_FILE
    if path.is_dir():
        model_file = path / MODEL_FILE
        if not model_file.is_file():
            raise CheckpointError(
                f"{path} is not a statechange checkpoint (it has no {MODEL_FILE}); pass a directory written by "
                "statechange train, such as <output>/last or <output>/best."
            )
        _check_config_file(path / CONFIG_FILE)
        return model_file
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path} is not a statechange checkpoint; pass its directory or its {MODEL_FILE}.")
    return path


def _check_config_file(config_file: Path) -> None:
    """A config.json of another program (e.g. a Hugging Face model) means a foreign directory."""
    if not config_file.is_file():
        return
    try:
        content = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_file} is not valid JSON ({error}); the checkpoint is damaged.") from error
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{config_file.parent} is not a statechange checkpoint (its {CONFIG_FILE} belongs to another program); "
            "pass a directory written by statechange train."
        )


def _header_config(model_file: Path) -> dict[str, Any] | None:
    """The statechange config in a safetensors header, or None when the header has none."""
    try:
        with safe_open(str(model_file), framework="pt") as file:
            header = file.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{model_file} is not a readable safetensors file ({error}); it is damaged.") from error
    if HEADER_KEY not in header:
        return None
    try:
        config = json.loads(header[HEADER_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{model_file} has unreadable statechange metadata ({error}); it is damaged.") from error
    return config if isinstance(config, dict) else None


def _model_config(model_file: Path, config: dict[str, Any]) -> ModelConfig:
    try:
        return from_dict(ModelConfig, config["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{model_file} has model settings this statechange {__version__} does not know ({error}); "
            "use the statechange version that wrote it."
        ) from error


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "CheckpointError",
    "LoadedCheckpoint",
    "check_plain_data",
    "find_checkpoint",
    "is_checkpoint",
    "load_checkpoint",
    "model_from_weights",
    "read_checkpoint_config",
    "read_checkpoint_tensors",
    "replaced_path",
    "save_checkpoint",
    "staging_path",
]
