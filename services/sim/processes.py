"""Replicated services as real OS processes (``python -m services.sim.run_service``), so
kill tests and benchmarks can SIGKILL a leader."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from shared.config import ClusterConfig

STOP_GRACE_S = 10.0
"""How long a process may take to stop after SIGTERM before it is killed."""
DUMP_WAIT_S = 0.5
"""How long a stubborn process gets to log its tasks (SIGUSR1) before the SIGKILL."""


class ServiceProcesses:
    """Service processes of one cluster, by replica name; logs go to ``root/<replica>.log``."""

    def __init__(self, config: ClusterConfig, nats_url: str, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "cluster.json"
        self.config_path.write_text(config.model_dump_json(by_alias=True))
        self.nats_url = nats_url
        self.root = root
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, kind: str, replica: str | None = None) -> None:
        """Run a replica of ``health``, ``placement`` or ``sync`` (named ``kind`` if unnamed)."""
        replica = replica or kind
        argv = [sys.executable, "-m", "services.sim.run_service", kind]
        with (self.root / f"{replica}.log").open("ab") as log:
            self.running[replica] = subprocess.Popen(
                [*argv, str(self.config_path), self.nats_url, replica],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, replica: str) -> None:
        """SIGKILL a replica and reap it."""
        process = self.running[replica]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> list[str]:
        """SIGTERM every live replica; return those that had to be killed after the grace."""
        stubborn = []
        for replica, process in self.running.items():
            if process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _dump_tasks_of(process)
                process.kill()
                process.wait()
                stubborn.append(replica)
        return stubborn


def _dump_tasks_of(process: subprocess.Popen[bytes]) -> None:
    """Before the SIGKILL: SIGUSR1 makes a stuck service log where each task waits, so
    its log says why it ignored SIGTERM."""
    with contextlib.suppress(OSError):
        process.send_signal(signal.SIGUSR1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(DUMP_WAIT_S)
