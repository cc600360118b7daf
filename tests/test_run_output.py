"""A training run's output folder (issue 9): never replaced by accident, and recovered exactly after a kill
inside a checkpoint save, with every epoch logged once (log.jsonl and TensorBoard)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from statechange._io import TEST_PAUSE_VARIABLE, replaced_path
from statechange.checkpoint import load_checkpoint
from statechange.config import ModelConfig, OptimConfig, TrainConfig
from statechange.errors import StateChangeError
from statechange.train import TrainOptions, TrainPaths, train

pytestmark = pytest.mark.slow

OPTIONS = TrainOptions(device="cpu", num_workers=0, progress=False)


def tiny_config(n_epochs: int) -> TrainConfig:
    return TrainConfig(model=ModelConfig(backbone="tiny", hidden_sizes=(32,)),
                       optim=OptimConfig(n_epochs=n_epochs, local_batch_size=2, warmup_epochs=1.0, lr=1e-2))


def paths_for(dataset: Path, output: Path) -> TrainPaths:
    return TrainPaths(video_roots=(dataset / "videos",), dataset_root=dataset / "dataset", output=output)


def logged_epochs(output: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (output / "log.jsonl").read_text().splitlines()]


def tensorboard_steps(output: Path, tag: str = "train/loss") -> list[int]:
    """The steps TensorBoard shows for a tag (it hides the events a resume purged)."""
    events = EventAccumulator(str(output / "tensorboard"))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def test_training_into_a_finished_run_is_refused_and_overwrite_says_what_it_deletes(tiny_dataset, tmp_path, capsys):
    output = tmp_path / "run"
    train(tiny_config(1), paths_for(tiny_dataset, output), OPTIONS)
    model_bytes = (output / "last" / "model.safetensors").read_bytes()
    log_text = (output / "log.jsonl").read_text()
    capsys.readouterr()

    with pytest.raises(StateChangeError, match="use --resume to continue it, or --overwrite") as error:
        train(tiny_config(1), paths_for(tiny_dataset, output), OPTIONS)
    assert "last" in str(error.value) and "log.jsonl" in str(error.value)
    assert (output / "last" / "model.safetensors").read_bytes() == model_bytes  # nothing was touched
    assert (output / "log.jsonl").read_text() == log_text

    train(tiny_config(1), paths_for(tiny_dataset, output), TrainOptions(**{**OPTIONS.__dict__, "overwrite": True}))
    said = capsys.readouterr().err
    assert f"--overwrite: deleting the previous run in {output}" in said and "last" in said and "log.jsonl" in said
    assert logged_epochs(output) == [1]  # a new log, not the old one appended to
    assert tensorboard_steps(output) == [1]


def train_command(dataset: Path, output: Path, n_epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "statechange", "train", "--video-roots", str(dataset / "videos"),
            "--dataset-root", str(dataset / "dataset"), "--output", str(output), "--backbone", "tiny",
            "--hidden-sizes", "32", "--n-epochs", str(n_epochs), "--local-batch-size", "2", "--lr", "1e-2",
            "--warmup-epochs", "1", "--device", "cpu", "--workers", "0", "--no-progress", *extra]


def wait_for(condition, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended (exit {process.returncode}) before the awaited moment"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def test_a_kill_between_the_two_renames_of_a_save_resumes_from_the_previous_checkpoint(tiny_dataset, tmp_path,
                                                                                       capsys):
    """SIGKILL while epoch 2's `last` is held between its renames: only the epoch-1 copy exists on disk."""
    output = tmp_path / "run"
    last, waiting = output / "last", replaced_path(output / "last")
    environment = {**os.environ, TEST_PAUSE_VARIABLE: "5", "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(train_command(tiny_dataset, output, 2), env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: waiting.is_dir() and not last.exists(), process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not last.exists() and waiting.is_dir()

    with pytest.warns(UserWarning, match="save was interrupted"):
        train(tiny_config(2), paths_for(tiny_dataset, output), TrainOptions(**{**OPTIONS.__dict__, "resume": True}))
    assert "after epoch 1" in capsys.readouterr().err
    assert load_checkpoint(last).training_state["epoch"] == 2
    assert not waiting.exists()
    assert logged_epochs(output) == [1, 2]
    assert tensorboard_steps(output) == [1, 2]


@pytest.fixture(scope="module")
def stopped_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Epoch 1 of a 2-epoch run, stopped on purpose (--stop-after-epoch 1)."""
    output = tmp_path_factory.mktemp("stopped") / "run"
    train(tiny_config(2), paths_for(tiny_dataset, output),
          TrainOptions(**{**OPTIONS.__dict__, "stop_after_epoch": 1}))
    return output


@pytest.mark.parametrize(("change", "listed"), [
    ({"lr": 0.1, "seed": 3}, ["optim.lr 0.01 -> 0.1", "seed 0 -> 3"]),
    ({"hidden_sizes": (16,)}, ["model.hidden_sizes [32] -> [16]"]),  # today: a raw size-mismatch traceback
])
def test_resume_with_other_settings_is_refused_listing_them(stopped_run, tiny_dataset, change, listed):
    config = tiny_config(2)
    config = TrainConfig(model=ModelConfig(backbone="tiny", hidden_sizes=change.get("hidden_sizes", (32,))),
                         optim=OptimConfig(**{**config.optim.__dict__, "lr": change.get("lr", 1e-2)}),
                         seed=change.get("seed", 0))
    model_bytes = (stopped_run / "last" / "model.safetensors").read_bytes()
    with pytest.raises(StateChangeError, match="was started with other settings") as error:
        train(config, paths_for(tiny_dataset, stopped_run), TrainOptions(**{**OPTIONS.__dict__, "resume": True}))
    for setting in listed:
        assert setting in str(error.value)
    assert (stopped_run / "last" / "model.safetensors").read_bytes() == model_bytes
