"""`statechange train` and `statechange evaluate` under a real SLURM cluster (munged, slurmctld and slurmd
started by the test on this machine, `srun -n 2`, gloo on the CPU), compared with single-process runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from launchers import LAUNCH_TIMEOUT_S, assert_same_weights, clean_env, statechange_command, train_arguments
from launchers import trained_weights as weights_of
from slurm_cluster import SlurmCluster, missing_requirement

from statechange.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = missing_requirement()
    if reason is not None:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def srun(cluster: SlurmCluster, arguments: list[str]) -> subprocess.CompletedProcess:
    command = ["srun", "--ntasks", "2", "--kill-on-bad-exit=1", *statechange_command(), *arguments]
    completed = subprocess.run(command, env=clean_env() | {"SLURM_CONF": str(cluster.conf)}, capture_output=True,
                               text=True, timeout=LAUNCH_TIMEOUT_S)
    assert completed.returncode == 0, f"{completed.stderr[-4000:]}\n{cluster.logs()}"
    return completed


@pytest.fixture(scope="module")
def srun_training(slurm, tiny_dataset, tmp_path_factory) -> Path:
    """The output folder of `srun -n 2 statechange train` (2 videos per process and step)."""
    output = tmp_path_factory.mktemp("srun") / "run"
    srun(slurm, train_arguments(tiny_dataset, output, local_batch_size=2))
    return output


def read_log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]


def test_srun_training_equals_one_process_with_the_whole_batch(srun_training, tiny_dataset, tmp_path):
    """Two SLURM tasks with 2 videos each take the same steps as one process with 4 videos."""
    single = tmp_path / "single"
    assert main(train_arguments(tiny_dataset, single, local_batch_size=4)) == 0
    assert_same_weights(weights_of(srun_training), weights_of(single), rtol=1e-4, atol=1e-6)
    (distributed_record,), (single_record,) = read_log(srun_training), read_log(single)  # one writer: one line
    for key in ("loss", "state_loss", "action_loss", "grad_norm"):
        assert distributed_record[key] == pytest.approx(single_record[key], rel=1e-4), key
    assert distributed_record["metrics"] == pytest.approx(single_record["metrics"])


def test_srun_evaluation_counts_every_video_once_with_uneven_shards(slurm, srun_training, tiny_dataset, tmp_path,
                                                                     capsys):
    """3 annotated videos on 2 tasks (shards of 2 and 1): the same metrics as one process, every video once."""
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_dataset / "dataset", dataset)
    annotations = sorted((dataset / "annotations").glob("*/*.fps1.csv"))
    annotations[0].unlink()
    arguments = ["evaluate", "--checkpoint", str(srun_training / "last"), "--video-roots",
                 str(tiny_dataset / "videos"), "--dataset-root", str(dataset), "--device", "cpu", "--json",
                 "--no-progress"]
    distributed = json.loads(srun(slurm, arguments).stdout)
    assert main(arguments) == 0
    single = json.loads(capsys.readouterr().out)
    assert sum(c["n_videos"] for c in distributed["per_category"].values()) == len(annotations) - 1 == 3
    assert distributed == single
