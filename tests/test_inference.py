"""The shared forward path: frames stay on the CPU and reach the model one chunk at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from statechange.config import ForwardSettings, ModelConfig
from statechange.factory import build_model
from statechange.inference import autocast, video_features, video_logits


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(ModelConfig(backbone="tiny", hidden_sizes=(16,)), n_categories=3, seed=0).eval()


def test_a_5000_frame_video_is_forwarded_in_bounded_chunks(tiny_model, test_device):
    n_frames, chunk_size = 5000, 256
    frames = np.zeros((n_frames, 224, 398, 3), dtype=np.uint8)  # 1.3 GB of uint8 frames on the CPU
    frames[:, :, :, 0] = (np.arange(n_frames) % 251)[:, None, None]  # every frame different
    seen: list[tuple[int, torch.device]] = []
    hook = tiny_model.backbone.register_forward_hook(lambda _m, inputs, _o: seen.append(
        (inputs[0].shape[0], inputs[0].device)))
    try:
        state, action = video_logits(tiny_model.to(test_device), frames,
                                     ForwardSettings(str(test_device), chunk_size=chunk_size))
    finally:
        hook.remove()
    assert state.shape == (n_frames, 7) and action.shape == (n_frames, 4)
    assert max(size for size, _ in seen) <= chunk_size and sum(size for size, _ in seen) == n_frames
    assert all(device.type == test_device.type for _, device in seen)
    # chunking does not change the numbers
    head = video_logits(tiny_model, frames[:300], ForwardSettings(str(test_device), chunk_size=300))[1]
    torch.testing.assert_close(action[:300], head, rtol=1e-5, atol=1e-5)


def test_centre_crop_is_what_the_model_sees(tiny_model, test_device):
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 224, 398, 3), dtype=np.uint8)
    features = video_features(tiny_model.to(test_device), frames, ForwardSettings(str(test_device)))
    direct = tiny_model.features(torch.from_numpy(frames[:, :, 87:311]).permute(0, 3, 1, 2).to(test_device))
    torch.testing.assert_close(features, direct.float())


def test_bf16_autocast_stays_close_to_fp32(tiny_model, test_device):
    frames = np.random.default_rng(1).integers(0, 256, size=(8, 224, 398, 3), dtype=np.uint8)
    fp32 = video_logits(tiny_model.to(test_device), frames, ForwardSettings(str(test_device), "fp32"))[0]
    bf16 = video_logits(tiny_model, frames, ForwardSettings(str(test_device), "bf16"))[0]
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="precision"):
        autocast(test_device, "fp16")
    with pytest.raises(ValueError, match="precision"):
        ForwardSettings(str(test_device), "fp16")
