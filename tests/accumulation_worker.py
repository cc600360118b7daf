"""Run by tests/test_accumulation.py in each process of a gloo group (or alone): trains a tiny model with
gradient accumulation, frozen, or fine-tuned with an ensemble of two head pairs (the fine-tuned path, plus
one forward/backward per member), and saves rank 0's parameters."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from safetensors.torch import save_file

from statechange.config import ModelConfig, OptimConfig, TrainConfig
from statechange.train import TrainOptions, TrainPaths, train


def main(dataset: Path, output: Path, accumulate_steps: int, name: str) -> None:
    # AdamW normalises each gradient by its running size, so the backbone's sub-ulp differences between
    # summation orders (4 ranks vs 2 x 2 vs 1 x 4) can move a near-zero-gradient weight by up to lr per step:
    # a backbone learning rate of 1e-8 keeps that below the comparison's tolerance. The heads (SGD) carry the
    # test: their update is proportional to the gradient, so a wrong loss scale would show there.
    optim = OptimConfig(n_epochs=2, local_batch_size=1, accumulate_steps=accumulate_steps, warmup_epochs=0.0,
                        lr=0.05, lr_backbone=1e-8)
    # one mode per launch: a process group is set up once per process
    config = TrainConfig(model=ModelConfig(backbone="tiny", hidden_sizes=(16,),
                                           ensemble_size=2 if name == "finetuned-ensemble" else 1),
                         optim=replace(optim, train_backbone=name.startswith("finetuned")), seed=5)
    paths = TrainPaths(video_roots=(dataset / "videos",), dataset_root=dataset / "dataset", output=output / name)
    result = train(config, paths, TrainOptions(device="cpu", num_workers=0, progress=False))
    if int(os.environ.get("RANK", "0")) == 0:
        state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
        save_file(state, str(output / f"{name}.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
