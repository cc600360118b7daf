"""Offline weight loading: OpenAI TorchScript / state dicts, timm, Hugging Face CLIP, strictness.

A tiny CLIP image tower with OpenAI's structure and parameter names is built here, saved in each
format, loaded into the project's ``tiny`` backbone (a timm ViT with CLIP's QuickGELU settings), and
its features compared with an independent OpenAI-style forward pass written below.
"""

from __future__ import annotations

import json
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from statechange.config import CLIP_MEAN, CLIP_STD, ModelConfig
from statechange.factory import build_model
from statechange.model import TINY_BACKBONE
from statechange.weights import (
    WeightFileError,
    efficientnet_lite0_weights_file,
    load_efficientnet_lite0_weights,
    read_state_dict_file,
    read_torchscript_tensors,
)

WIDTH, LAYERS, HEADS, PATCH, RESOLUTION, EMBED_DIM = 64, 2, 2, 32, 224, 16  # the "tiny" backbone's shape
TINY = ModelConfig(backbone=TINY_BACKBONE, hidden_sizes=(8,))
N_CATEGORIES = 2


# ---- a tiny CLIP with OpenAI's module structure and names -------------------------------------


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)  # fused in_proj_weight / in_proj_bias
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (L, N, D)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class VisionTower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        scale = WIDTH**-0.5
        self.conv1 = nn.Conv2d(3, WIDTH, kernel_size=PATCH, stride=PATCH, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(WIDTH))
        self.positional_embedding = nn.Parameter(scale * torch.randn((RESOLUTION // PATCH) ** 2 + 1, WIDTH))
        self.ln_pre = nn.LayerNorm(WIDTH)
        self.transformer = Transformer(WIDTH, LAYERS, HEADS)
        self.ln_post = nn.LayerNorm(WIDTH)
        self.proj = nn.Parameter(scale * torch.randn(WIDTH, EMBED_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (N, P, D)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x[:, 0]) @ self.proj


class TinyOpenAIClip(nn.Module):
    """The image tower under ``visual`` plus stand-ins for the text tower, as in OpenAI's files."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = VisionTower()
        self.positional_embedding = nn.Parameter(torch.randn(7, WIDTH))  # the text tower's, not the image's
        self.token_embedding = nn.Embedding(11, WIDTH)
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image) * self.logit_scale.exp()


@pytest.fixture(scope="module")
def clip() -> TinyOpenAIClip:
    torch.manual_seed(0)
    model = TinyOpenAIClip().eval()
    with torch.no_grad():  # non-trivial layer norms, so a swapped ln_pre / ln_post shows
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Three smooth colour images with edges, uint8 [3, 3, 224, 224]."""
    y, x = torch.meshgrid(torch.linspace(0, 1, RESOLUTION), torch.linspace(0, 1, RESOLUTION), indexing="ij")
    images = []
    for k in range(3):
        red = 0.5 + 0.5 * torch.sin(6.0 * x + k)
        green = ((x - 0.3 * k) ** 2 + (y - 0.5) ** 2 < 0.1).float()
        blue = y * (k + 1) / 3
        images.append(torch.stack([red, green, blue]))
    return (torch.stack(images) * 255).round().to(torch.uint8)


def reference_features(visual: VisionTower, frames: torch.Tensor) -> torch.Tensor:
    """OpenAI's image-tower forward written out by hand: ln_post(class token), before the projection."""
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    pixels = (frames.float() / 255 - mean) / std
    n = pixels.shape[0]
    x = F.conv2d(pixels, visual.conv1.weight, stride=PATCH).flatten(2).transpose(1, 2)  # (N, P, D)
    x = torch.cat([visual.class_embedding.expand(n, 1, WIDTH), x], dim=1) + visual.positional_embedding
    x = F.layer_norm(x, (WIDTH,), visual.ln_pre.weight, visual.ln_pre.bias, 1e-5)
    head_dim = WIDTH // HEADS
    for block in visual.transformer.resblocks:
        h = F.layer_norm(x, (WIDTH,), block.ln_1.weight, block.ln_1.bias, 1e-5)
        qkv = h @ block.attn.in_proj_weight.T + block.attn.in_proj_bias  # (N, L, 3D)
        q, k, v = (t.reshape(n, -1, HEADS, head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))  # (N, H, L, d)
        attention = torch.softmax(q @ k.transpose(-1, -2) / head_dim**0.5, dim=-1)
        out = (attention @ v).transpose(1, 2).reshape(n, -1, WIDTH)
        x = x + out @ block.attn.out_proj.weight.T + block.attn.out_proj.bias
        h = F.layer_norm(x, (WIDTH,), block.ln_2.weight, block.ln_2.bias, 1e-5)
        h = h @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias
    return F.layer_norm(x[:, 0], (WIDTH,), visual.ln_post.weight, visual.ln_post.bias, 1e-5)


def features_with(weights: Path, frames: torch.Tensor) -> torch.Tensor:
    model = build_model(TINY, N_CATEGORIES, weights=weights, seed=1).eval()
    with torch.no_grad():
        return model.features(frames)


def save_torchscript(model: nn.Module, path: Path, how: str) -> Path:
    with warnings.catch_warnings():  # torch.jit is deprecated and tracing warns; OpenAI's file is one anyway
        warnings.simplefilter("ignore")
        if how == "trace":
            scripted = torch.jit.trace(model, torch.zeros(1, 3, RESOLUTION, RESOLUTION))
        else:
            scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(path))
    return path


def hf_state_dict(clip: TinyOpenAIClip) -> dict[str, torch.Tensor]:
    """The tiny tower under Hugging Face CLIPVisionModel key names (separate q/k/v projections)."""
    visual = clip.visual
    state = {
        "vision_model.embeddings.class_embedding": visual.class_embedding,
        "vision_model.embeddings.patch_embedding.weight": visual.conv1.weight,
        "vision_model.embeddings.position_embedding.weight": visual.positional_embedding,
        "vision_model.embeddings.position_ids": torch.arange(visual.positional_embedding.shape[0]).unsqueeze(0),
        "vision_model.pre_layrnorm.weight": visual.ln_pre.weight,
        "vision_model.pre_layrnorm.bias": visual.ln_pre.bias,
        "vision_model.post_layernorm.weight": visual.ln_post.weight,
        "vision_model.post_layernorm.bias": visual.ln_post.bias,
    }
    for i, block in enumerate(visual.transformer.resblocks):
        prefix = f"vision_model.encoder.layers.{i}"
        for name, weight, bias in zip(
            ("q_proj", "k_proj", "v_proj"),
            block.attn.in_proj_weight.chunk(3),
            block.attn.in_proj_bias.chunk(3),
            strict=True,
        ):
            state[f"{prefix}.self_attn.{name}.weight"] = weight
            state[f"{prefix}.self_attn.{name}.bias"] = bias
        state[f"{prefix}.self_attn.out_proj.weight"] = block.attn.out_proj.weight
        state[f"{prefix}.self_attn.out_proj.bias"] = block.attn.out_proj.bias
        state[f"{prefix}.layer_norm1.weight"] = block.ln_1.weight
        state[f"{prefix}.layer_norm1.bias"] = block.ln_1.bias
        state[f"{prefix}.layer_norm2.weight"] = block.ln_2.weight
        state[f"{prefix}.layer_norm2.bias"] = block.ln_2.bias
        state[f"{prefix}.mlp.fc1.weight"] = block.mlp.c_fc.weight
        state[f"{prefix}.mlp.fc1.bias"] = block.mlp.c_fc.bias
        state[f"{prefix}.mlp.fc2.weight"] = block.mlp.c_proj.weight
        state[f"{prefix}.mlp.fc2.bias"] = block.mlp.c_proj.bias
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def write_hf_directory(directory: Path, clip: TinyOpenAIClip, hidden_act: str = "quick_gelu") -> Path:
    directory.mkdir()
    config = {
        "architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model", "hidden_act": hidden_act,
        "hidden_size": WIDTH, "intermediate_size": 4 * WIDTH, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "patch_size": PATCH, "image_size": RESOLUTION, "layer_norm_eps": 1e-5,
    }
    (directory / "config.json").write_text(json.dumps(config))
    save_file(hf_state_dict(clip), str(directory / "model.safetensors"))
    return directory


def openai_state_dict(clip: TinyOpenAIClip) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in clip.state_dict().items()}


# ---- loading each format gives OpenAI's features ----------------------------------------------


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_archive_gives_openai_features(clip, frames, tmp_path, how):
    archive = save_torchscript(clip, tmp_path / "ViT-T-32.pt", how)
    expected = reference_features(clip.visual, frames)
    assert torch.allclose(features_with(archive, frames), expected, atol=1e-5)

    # The restricted reader sees exactly what torch.jit.load sees.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jit_state = torch.jit.load(str(archive), map_location="cpu").state_dict()
    read = read_torchscript_tensors(archive)
    assert read.keys() == jit_state.keys()
    assert all(torch.equal(read[k], jit_state[k]) for k in jit_state)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_openai_state_dict_in_half_precision_gives_openai_features(clip, frames, tmp_path, suffix):
    half = {k: v.half() for k, v in openai_state_dict(clip).items()}  # OpenAI ships fp16 weights
    path = tmp_path / f"openai{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in half.items()}}, path)  # as open_clip trains
    else:
        save_file(half, str(path))
    rounded = TinyOpenAIClip()
    rounded.load_state_dict({k: v.float() for k, v in half.items()})
    assert torch.allclose(features_with(path, frames), reference_features(rounded.visual, frames), atol=1e-5)


def test_hugging_face_directory_gives_openai_features(clip, frames, tmp_path):
    directory = write_hf_directory(tmp_path / "clip-vit-tiny", clip)
    assert torch.allclose(features_with(directory, frames), reference_features(clip.visual, frames), atol=1e-5)


def test_timm_file_with_projection_head_loads(clip, frames, tmp_path):
    model = build_model(TINY, N_CATEGORIES, weights=save_torchscript(clip, tmp_path / "a.pt", "trace"))
    timm_state = dict(model.backbone.state_dict())
    timm_state["head.weight"] = torch.randn(EMBED_DIM, WIDTH)  # timm's CLIP files keep the projection as head
    timm_state["head.bias"] = torch.zeros(EMBED_DIM)
    save_file(timm_state, str(tmp_path / "timm.safetensors"))
    features = features_with(tmp_path / "timm.safetensors", frames)
    assert torch.allclose(features, reference_features(clip.visual, frames), atol=1e-5)


# ---- files that do not fit ----------------------------------------------------------------------


def test_missing_and_unexpected_keys_are_named(clip, tmp_path):
    state = openai_state_dict(clip)
    del state["visual.ln_post.bias"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(WeightFileError) as missing:
        build_model(TINY, N_CATEGORIES, weights=tmp_path / "missing.pt")
    message = str(missing.value)
    assert "missing.pt" in message and "OpenAI/open_clip state dict" in message
    assert "1 missing key: norm.bias" in message

    state = openai_state_dict(clip)
    state["visual.transformer.resblocks.1.attn.extra_scale"] = torch.ones(1)
    save_file(state, str(tmp_path / "extra.safetensors"))
    expected = r"1 unexpected key: visual\.transformer\.resblocks\.1\.attn\.extra_scale"
    with pytest.raises(WeightFileError, match=expected):
        build_model(TINY, N_CATEGORIES, weights=tmp_path / "extra.safetensors")


def test_wrong_architecture_reports_shapes(tmp_path):
    state = openai_state_dict(TinyOpenAIClip())
    state["visual.positional_embedding"] = torch.zeros(17, WIDTH)  # a 128-px model's position table
    torch.save(state, tmp_path / "small.pt")
    expected = r"1 misshapen key: visual\.positional_embedding \(1, 17, 64\) vs \(1, 50, 64\)"
    with pytest.raises(WeightFileError, match=expected):
        build_model(TINY, N_CATEGORIES, weights=tmp_path / "small.pt")


def test_sha256_of_a_file_named_vit_l_14_is_checked(clip, tmp_path):
    archive = save_torchscript(clip, tmp_path / "ViT-L-14.pt", "trace")
    with pytest.raises(WeightFileError, match=r"ViT-L-14\.pt .*SHA-256 .*download it again"):
        build_model(TINY, N_CATEGORIES, weights=archive)


def test_hugging_face_activation_must_match(clip, tmp_path):
    directory = write_hf_directory(tmp_path / "gelu-clip", clip, hidden_act="gelu")
    with pytest.raises(WeightFileError, match=r"trained with gelu but backbone tiny uses quick_gelu"):
        build_model(TINY, N_CATEGORIES, weights=directory)


def test_hugging_face_directory_without_q_projection_names_it(clip, tmp_path):
    directory = write_hf_directory(tmp_path / "broken", clip)
    state = hf_state_dict(clip)
    del state["vision_model.encoder.layers.0.self_attn.q_proj.weight"]
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(WeightFileError) as error:
        build_model(TINY, N_CATEGORIES, weights=directory)
    assert "1 missing key: blocks.0.attn.qkv.weight" in str(error.value)
    assert "vision_model.encoder.layers.0.self_attn.k_proj.weight" in str(error.value)


def test_paths_that_are_not_weights(tmp_path):
    with pytest.raises(WeightFileError, match="does not exist"):
        build_model(TINY, N_CATEGORIES, weights=tmp_path / "nowhere.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightFileError, match="neither a Hugging Face CLIP model"):
        build_model(TINY, N_CATEGORIES, weights=tmp_path / "empty")
    (tmp_path / "notes.pt").write_text("not a tensor file")
    with pytest.raises(WeightFileError, match="weights_only=True"):
        build_model(TINY, N_CATEGORIES, weights=tmp_path / "notes.pt")


def test_efficientnet_file_out_of_order_is_refused(tmp_path):
    import timm

    state = read_state_dict_file(efficientnet_lite0_weights_file())
    keys = list(state)
    keys[1], keys[6] = keys[6], keys[1]  # the stem's BN weight swapped with the first depthwise conv
    torch.save({k: state[k] for k in keys}, tmp_path / "shuffled.pth")
    backbone = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    with pytest.raises(WeightFileError, match=r"does not line up.*_blocks\.0\._depthwise_conv\.weight"):
        load_efficientnet_lite0_weights(backbone, tmp_path / "shuffled.pth")
