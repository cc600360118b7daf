"""Run by tests/test_distributed.py in each of several processes (torchrun or SLURM-style variables):
trains a tiny model for one epoch and saves this rank's parameters and the validation summary."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from statechange.config import ModelConfig, OptimConfig, TrainConfig
from statechange.train import TrainOptions, TrainPaths, train


def main(dataset: Path, output: Path) -> None:
    config = TrainConfig(model=ModelConfig(backbone="tiny", hidden_sizes=(32,)),
                         optim=OptimConfig(n_epochs=1, local_batch_size=2, warmup_epochs=0.0, lr=1e-2))
    paths = TrainPaths(video_roots=(dataset / "videos",), dataset_root=dataset / "dataset", output=output)
    result = train(config, paths, TrainOptions(device="cpu", num_workers=0, progress=False))
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(output / f"rank{rank}.safetensors"))
    (output / f"rank{rank}.json").write_text(json.dumps(result.summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
