"""Gradient accumulation reproduces a larger batch: processes x local batch x K videos per optimiser step give
the same model whatever the split (the paper's 64 videos on fewer GPUs), and a step without any usable video
changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from statechange.config import ModelConfig, OptimConfig, TrainConfig
from statechange.factory import build_model
from statechange.train import TrainOptions, TrainPaths, train

WORKER = Path(__file__).with_name("accumulation_worker.py")


def run_group(dataset: Path, output: Path, n_processes: int, accumulate_steps: int) -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env["OMP_NUM_THREADS"] = "1"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n_processes)]
    models = {}
    for name in ("frozen", "finetuned-ensemble"):
        command = [*(launcher if n_processes > 1 else [sys.executable]), str(WORKER), str(dataset), str(output),
                   str(accumulate_steps), name]
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, completed.stderr[-3000:]
        models[name] = load_file(str(output / f"{name}.safetensors"))
    return models


def assert_same_model(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
@pytest.mark.distributed
def test_four_videos_per_step_give_one_model_however_they_are_split(tiny_dataset, tmp_path):
    # 8 training videos, 4 per optimiser step: 4 processes x 1, 2 processes x 1 x K=2, 1 process x 1 x K=4
    four_processes = run_group(tiny_dataset, tmp_path / "4x1", n_processes=4, accumulate_steps=1)
    # fine-tuned with an ensemble of two head pairs, which also takes one forward/backward per member
    two_processes = run_group(tiny_dataset, tmp_path / "2x2", n_processes=2, accumulate_steps=2)
    one_process = run_group(tiny_dataset, tmp_path / "1x4", n_processes=1, accumulate_steps=4)
    for name in ("frozen", "finetuned-ensemble"):
        assert_same_model(two_processes[name], four_processes[name])
        assert_same_model(one_process[name], four_processes[name])
    # and the runs did learn something: a step of 2 videos (no accumulation) gives another model
    initial = build_model(ModelConfig(backbone="tiny", hidden_sizes=(16,)), 2, seed=5).state_dict()
    moved = four_processes["frozen"]["state_head.0.weight"] - initial["state_head.0.weight"]
    assert moved.abs().max() > 1e-4


def test_a_step_whose_videos_were_all_skipped_changes_nothing(tiny_dataset, tmp_path):
    videos = tmp_path / "videos"
    for source in (tiny_dataset / "videos").glob("*/*"):
        target = videos / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        annotated = (tiny_dataset / "dataset" / "annotations" / source.parent.name /
                     f"{source.name.split('.')[0]}.fps1.csv").exists()
        target.write_bytes(source.read_bytes() if annotated else b"not a video" * 100)  # every training video broken
    model_config = ModelConfig(backbone="tiny", hidden_sizes=(16,))
    config = TrainConfig(model=model_config, optim=OptimConfig(n_epochs=1, local_batch_size=2, warmup_epochs=0.0))
    paths = TrainPaths(video_roots=(videos,), dataset_root=tiny_dataset / "dataset", output=tmp_path / "run")
    result = train(config, paths, TrainOptions(device="cpu", num_workers=0, progress=False))
    initial = build_model(model_config, 2, seed=config.seed).state_dict()
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, initial[key]), f"{key} changed although no video was used"
