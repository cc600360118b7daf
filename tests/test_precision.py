"""Precision "auto" (bf16 only where the device runs it fast) and channels-last convolutional backbones."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from statechange.config import BF16_PROBABILITY_TOLERANCE, ForwardSettings, ModelConfig
from statechange.inference import load_model, ready_for_inference, resolve_precision, runs_bf16_fast, video_logits
from statechange.model import init_model

CPUINFO = Path("/proc/cpuinfo")


def cpu_has_native_bf16() -> bool:
    """Read independently of the library: does this CPU list AMX-BF16 or AVX-512-BF16?"""
    return CPUINFO.exists() and re.search(r"\b(amx_bf16|avx512_bf16)\b", CPUINFO.read_text()) is not None


@pytest.mark.skipif(not CPUINFO.exists(), reason="needs Linux /proc/cpuinfo to know the CPU's instructions")
def test_auto_runs_bf16_on_this_cpu_exactly_when_it_has_bf16_instructions(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert resolve_precision("auto", "cpu") == expected
    # an explicit choice is kept whatever the hardware
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        resolve_precision("fp16", "cpu")


def test_auto_falls_back_to_fp32_when_onednn_may_not_use_bf16_instructions(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # the user caps oneDNN below its bf16 kernels
    assert not runs_bf16_fast("cpu")
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_a_gpu_is_bf16_when_the_gpu_supports_it():
    expected = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    assert resolve_precision("auto", "cuda") == expected


def test_a_convolutional_backbone_runs_channels_last_with_the_same_outputs(test_device):
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 224, 398, 3), dtype=np.uint8)
    settings = ForwardSettings(str(test_device))
    reference = init_model(ModelConfig(backbone="efficientnet_lite0", hidden_sizes=(8,)), 2, seed=0)
    expected = video_logits(reference.to(test_device).eval(), frames, settings)[0]

    fast = ready_for_inference(init_model(ModelConfig(backbone="efficientnet_lite0", hidden_sizes=(8,)), 2, seed=0),
                               test_device)
    convolutions = [m for m in fast.backbone.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    assert convolutions and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convolutions)
    torch.testing.assert_close(video_logits(fast, frames, settings)[0], expected, rtol=1e-4, atol=1e-4)

    vit = ready_for_inference(init_model(ModelConfig(backbone="tiny", hidden_sizes=(8,)), 2, seed=0), test_device)
    patch_embedding = vit.backbone.patch_embed.proj.weight
    assert patch_embedding.is_contiguous()  # a ViT keeps its layout: one convolution is not worth converting


def test_bf16_predictions_stay_within_the_documented_tolerance_of_fp32(tmp_path):
    from test_prediction_pipeline import tiny_checkpoint, write_video

    checkpoint, video = tiny_checkpoint(tmp_path / "model"), write_video(tmp_path / "clip.mp4", seconds=20)
    fp32 = load_model(checkpoint, device="cpu", precision="fp32").predict(video, "apple")
    bf16 = load_model(checkpoint, device="cpu", precision="bf16").predict(video, "apple")
    largest = max(np.abs(getattr(bf16, name) - getattr(fp32, name)).max()
                  for name in ("initial_state", "action", "end_state"))
    assert 0 < largest <= BF16_PROBABILITY_TOLERANCE  # bf16 really ran (the curves moved), and not far
