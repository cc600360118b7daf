"""Two CPU processes with gloo, started by torchrun (one node and two) and by SLURM-style variables: after
training they hold the same model, and evaluation counted every test video exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from launchers import (
    LAUNCH_TIMEOUT_S,
    STOP_READY,
    assert_same_weights,
    clean_env,
    free_port,
    train_arguments,
    trained_weights,
    wait_for_line,
)
from safetensors.torch import load_file

from statechange.checkpoint import load_checkpoint
from statechange.distributed import detect_launcher, first_host

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
WORKER = Path(__file__).with_name("distributed_worker.py")


def check_ranks_agree(output: Path, dataset: Path) -> None:
    rank0, rank1 = load_file(str(output / "rank0.safetensors")), load_file(str(output / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    n_annotated = len(list((dataset / "dataset" / "annotations").glob("*/*.fps1.csv")))
    for rank in (0, 1):
        summary = json.loads((output / f"rank{rank}.json").read_text())
        assert sum(c["n_videos"] for c in summary["per_category"].values()) == n_annotated
    assert (output / "last" / "model.safetensors").exists()


def worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_torchrun_two_processes_agree(tiny_dataset, tmp_path):
    output = tmp_path / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(WORKER), str(tiny_dataset), str(output)]
    completed = subprocess.run(command, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    check_ranks_agree(output, tiny_dataset)


def test_slurm_variables_two_processes_agree(tiny_dataset, tmp_path):
    output = tmp_path / "slurm"
    processes = []
    for rank in (0, 1):
        env = worker_env() | {"SLURM_NTASKS": "2", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
                              "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_ID": str(4242 + os.getpid() % 1000)}
        processes.append(subprocess.Popen([sys.executable, str(WORKER), str(tiny_dataset), str(output)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
    check_ranks_agree(output, tiny_dataset)


def read_log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def train_with_torchrun(dataset: Path, output: Path, *extra: str) -> None:
    """`torchrun --standalone --nproc-per-node 2 -m statechange train` of two tiny epochs, one video per
    process and step."""
    command = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "statechange",
               *train_arguments(dataset, output, *extra, n_epochs=2, local_batch_size=1)]
    completed = subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-4000:]


def run_together(commands: list[list[str]], logs: Path) -> None:
    """Start the commands at once; all must succeed (a failing one stops the others, its log in the message)."""
    processes = []
    try:
        for number, command in enumerate(commands):
            with open(logs / f"process{number}.log", "w") as log:
                processes.append(subprocess.Popen(command, env=clean_env(), stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            failed = [n for n, p in enumerate(processes) if p.poll() not in (None, 0)]
            assert not failed, (logs / f"process{failed[0]}.log").read_text()[-4000:]
            time.sleep(0.5)
        for number, process in enumerate(processes):
            assert process.poll() == 0, (logs / f"process{number}.log").read_text()[-4000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def two_process_run(tiny_dataset, tmp_path_factory) -> Path:
    """The output folder of an uninterrupted 2-process run on one node."""
    output = tmp_path_factory.mktemp("reference") / "run"
    train_with_torchrun(tiny_dataset, output)
    return output


def test_two_torchrun_nodes_train_as_one_node_with_two_processes(two_process_run, tiny_dataset, tmp_path):
    """Two agents (`--nnodes 2`, c10d rendezvous on localhost), one process each: the same model, bit for bit."""
    output, endpoint = tmp_path / "two-nodes", f"127.0.0.1:{free_port()}"
    launch = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
              "--rdzv-id", "two-nodes", "-m", "statechange",
              *train_arguments(tiny_dataset, output, n_epochs=2, local_batch_size=1)]
    run_together([[*TORCHRUN, *launch]] * 2, tmp_path)  # the first agent up hosts the rendezvous store
    assert_same_weights(trained_weights(output), trained_weights(two_process_run))
    losses = [[(r["epoch"], r["loss"]) for r in read_log(o)] for o in (output, two_process_run)]
    assert losses[0] == losses[1] and len(losses[0]) == 2  # one writer: one line per epoch


def worker_pid(agent: subprocess.Popen, rank: int) -> int:
    """The PID of the worker of ``rank`` among the children of a torchrun agent."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if parent == agent.pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no worker of rank {rank} under torchrun agent {agent.pid}")


def start_torchrun(dataset: Path, output: Path, log: Path, *extra: str, max_restarts: int = 0) -> subprocess.Popen:
    command = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "--max-restarts", str(max_restarts), "-m",
               "statechange", *train_arguments(dataset, output, *extra, n_epochs=2, local_batch_size=1)]
    with open(log, "w") as file:
        return subprocess.Popen(command, env=clean_env(), stdout=file, stderr=subprocess.STDOUT)


def test_elastic_restart_after_a_killed_worker_ends_like_an_uninterrupted_run(two_process_run, tiny_dataset,
                                                                               tmp_path):
    """`torchrun --max-restarts 1 ... --resume --save-every-steps 1`: rank 1 is SIGKILLed after a step; the
    restarted group resumes from the mid-epoch `last` and ends with the uninterrupted run's model."""
    output, log = tmp_path / "elastic", tmp_path / "torchrun.log"
    agent = start_torchrun(tiny_dataset, output, log, "--resume", "--save-every-steps", "1", max_restarts=1)
    try:
        wait_for_line(log, STOP_READY, agent)
        while not (output / "last").exists():
            assert agent.poll() is None, log.read_text()[-4000:]
            time.sleep(0.05)
        os.kill(worker_pid(agent, 1), signal.SIGKILL)
        assert agent.wait(timeout=LAUNCH_TIMEOUT_S) == 0, log.read_text()[-4000:]
    finally:
        if agent.poll() is None:
            agent.kill()
    text = log.read_text()
    assert "starting from scratch" in text and "resumed from" in text, text[-4000:]
    assert_same_weights(trained_weights(output), trained_weights(two_process_run))


def test_sigterm_to_one_rank_stops_every_rank_and_resume_ends_like_an_uninterrupted_run(two_process_run,
                                                                                      tiny_dataset, tmp_path):
    """SIGTERM to rank 1 alone: both ranks stop after the same step with a resumable `last` (exit status 75),
    and `--resume` ends with the uninterrupted run's model."""
    output = tmp_path / "preempted"
    agent = start_torchrun(tiny_dataset, output, tmp_path / "first.log")
    try:
        wait_for_line(tmp_path / "first.log", STOP_READY, agent)
        os.kill(worker_pid(agent, 1), signal.SIGTERM)
        assert agent.wait(timeout=LAUNCH_TIMEOUT_S) != 0
    finally:
        if agent.poll() is None:
            agent.kill()
    first = (tmp_path / "first.log").read_text()
    assert "rank(s) 1 received SIGTERM" in first, first[-4000:]  # rank 0 says it stopped for rank 1
    assert "exitcode  : 75" in first or "exit code 75" in first, first[-4000:]
    stopped_at = load_checkpoint(output / "last").training_state
    assert stopped_at["epoch"] < 2
    train_with_torchrun(tiny_dataset, output, "--resume")
    assert_same_weights(trained_weights(output), trained_weights(two_process_run))


def test_a_dead_rank_takes_the_other_down_with_a_message(tiny_dataset, tmp_path):
    """Two processes without an agent (SLURM-style variables): SIGKILL rank 1, rank 0 exits naming itself."""
    output, logs, processes = tmp_path / "run", [tmp_path / "rank0.log", tmp_path / "rank1.log"], []
    arguments = [sys.executable, "-m", "statechange", *train_arguments(tiny_dataset, output, n_epochs=2,
                                                                       local_batch_size=1)]
    job_id = str(free_port())  # the rendezvous port derives from it
    for rank in (0, 1):
        env = clean_env() | {"SLURM_NTASKS": "2", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
                             "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_ID": job_id}
        with open(logs[rank], "w") as log:
            processes.append(subprocess.Popen(arguments, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        wait_for_line(logs[0], STOP_READY, processes[0])
        processes[1].kill()
        assert processes[0].wait(timeout=120) == 2
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert "rank 0 of 2 stopped because a collective operation failed" in logs[0].read_text()


def test_launcher_detection():
    assert detect_launcher({}) == ("single", 0, 0, 1)
    assert detect_launcher({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == ("torchrun", 3, 1, 8)
    slurm = {"SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1"}
    assert detect_launcher(slurm) == ("slurm", 9, 1, 16)
    assert detect_launcher({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) == ("single", 0, 0, 1)
    # torchrun inside a SLURM allocation: torchrun's variables win
    assert detect_launcher(slurm | {"RANK": "0", "WORLD_SIZE": "2"})[0] == "torchrun"


def test_first_host_of_slurm_node_lists():
    assert first_host("gpu[003-004,007],cpu1") == "gpu003"
    assert first_host("node17") == "node17"
    assert first_host("a100-[12,14]") == "a100-12"
