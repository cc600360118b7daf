"""A throw-away single-node SLURM cluster on this machine, for tests: munged, slurmctld and slurmd.

Everything lives in one temporary folder (munge key and socket, slurm.conf, state and spool folders,
logs); the daemons run in the foreground as children of the test process on free ports, so stopping
them is terminating three known PIDs. Needs root and Debian's ``slurm-wlm`` and ``munge`` packages
(``.ci/run`` installs them); ``missing_requirement()`` says in one sentence why a cluster cannot start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from launchers import free_port

DAEMONS = ("munged", "slurmctld", "slurmd", "srun", "sinfo")
NODE = "localhost"
NODE_CPUS = 2  # srun -n 2: one CPU per task
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def missing_requirement() -> str | None:
    """Why a cluster cannot be started here (a sentence), or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the SLURM cluster tests start munged, slurmctld and slurmd, which needs root (.ci/run runs as root)"
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return (f"{', '.join(missing)} not found: install Debian's slurm-wlm and munge "
                "(apt-get install slurm-wlm munge; .ci/run does this)")
    return None


def slurm_conf(root: Path, munge_socket: Path, controller_port: int, node_port: int) -> str:
    """A minimal single-node configuration: no cgroups, no accounting, root as SLURM user."""
    return "\n".join([
        "ClusterName=statechange-test",
        f"SlurmctldHost={NODE}(127.0.0.1)",
        f"SlurmctldPort={controller_port}",
        f"SlurmdPort={node_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",  # the node may have fewer cores than NODE_CPUS
        "KillWait=10",
        f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} State=UNKNOWN",
        f"PartitionName=test Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


class SlurmCluster:
    """Start with ``start()``, submit with ``env`` (SLURM_CONF set), stop with ``stop()`` (every daemon, by PID)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: dict[str, subprocess.Popen] = {}
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        key_dir, socket_dir = self.root / "munge-key", self.root / "munge"
        for folder in (key_dir, socket_dir, self.root / "state", self.root / "spool"):
            folder.mkdir(parents=True)
        key_dir.chmod(0o700)
        key = key_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        munge_socket = socket_dir / "munge.socket"
        self.conf.write_text(slurm_conf(self.root, munge_socket, free_port(), free_port()))
        self._spawn("munged", ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={munge_socket}",
                               f"--pid-file={socket_dir / 'munged.pid'}", f"--seed-file={key_dir / 'munged.seed'}",
                               f"--log-file={self.root / 'munged.log'}"])
        self._wait_for(munge_socket.exists, "munged did not create its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", NODE])
        self._wait_for(self._node_idle, "the node did not become idle")

    def stop(self) -> None:
        """Terminate the daemons this cluster started (by PID, slurmd first), killing any that linger."""
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        """The daemons' own output and log files, for a failing test's message."""
        parts = []
        for path in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def _spawn(self, name: str, command: list[str]) -> None:
        with open(self.root / f"{name}.out", "w") as output:  # the daemon keeps its own copy of the descriptor
            self.processes[name] = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=self.env,
                                                    cwd=self.root)

    def _node_idle(self) -> bool:
        state = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=self.env, capture_output=True, text=True)
        return state.returncode == 0 and state.stdout.strip() == "idle"

    def _wait_for(self, condition, failure: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            exited = [name for name, process in self.processes.items() if process.poll() is not None]
            if exited:
                raise RuntimeError(f"{', '.join(exited)} exited while starting the cluster:\n{self.logs()}")
            if condition():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{failure} within {START_TIMEOUT_S:.0f} s:\n{self.logs()}")
