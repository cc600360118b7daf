"""Helpers for tests that run `statechange` under real launchers (torchrun, srun): the command line of a
tiny training run, a clean environment for the processes, and the trained weights of a run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

LAUNCH_TIMEOUT_S = 600
STOP_READY = "on SIGTERM every process stops"  # `train` prints it once every rank handles SIGTERM


def statechange_command() -> list[str]:
    """The installed `statechange` command beside this Python, else `python -m statechange`."""
    script = Path(sys.executable).with_name("statechange")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "statechange"]


def clean_env() -> dict[str, str]:
    """This environment without launcher variables, one thread per process, the tested sources first."""
    launcher = ("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    source = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([source, *filter(None, [env.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    return env


def train_arguments(dataset: Path, output: Path, *extra: str, n_epochs: int = 1,
                    local_batch_size: int = 2) -> list[str]:
    """`statechange train` arguments of a tiny CPU run on a synthetic dataset (frozen tiny backbone)."""
    return ["train", "--video-roots", str(dataset / "videos"), "--dataset-root", str(dataset / "dataset"),
            "--backbone", "tiny", "--hidden-sizes", "32", "--n-epochs", str(n_epochs), "--local-batch-size",
            str(local_batch_size), "--warmup-epochs", "0", "--lr", "0.01", "--device", "cpu", "--workers", "0",
            "--no-progress", "--output", str(output), *extra]


def trained_weights(output: Path, checkpoint: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(output / checkpoint / "model.safetensors"))


def assert_same_weights(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], **tolerance) -> None:
    """Equal weights (bit for bit unless a tolerance is given), key by key."""
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if tolerance:
            torch.testing.assert_close(actual[key], value, **tolerance, msg=lambda m, k=key: f"{k}: {m}")
        else:
            assert torch.equal(actual[key], value), key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_line(log: Path, text: str, process: subprocess.Popen) -> None:
    """Until ``text`` is in the file ``log`` that ``process`` writes (which must keep running meanwhile)."""
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while text not in (log.read_text() if log.exists() else ""):
        assert process.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"no line {text!r} in {log}"
        time.sleep(0.02)
