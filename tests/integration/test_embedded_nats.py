"""The embedded nats-server survives the race between picking a free port and binding it
(another process may take the port in between; a CI run lost a test to it)."""

from __future__ import annotations

import socket
from pathlib import Path

from shared.bus.natsserver import NatsServer, NatsServerConfig, free_port


def test_a_monitoring_port_taken_before_the_bind_is_picked_afresh(tmp_path: Path) -> None:
    """R11 groundwork: the server starts on another monitoring port and says where."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        config = NatsServerConfig(store_dir=tmp_path / "js", port=free_port(), monitor_port=taken)
        server = NatsServer(config, tmp_path / "nats.conf", tmp_path / "nats.log")
        try:
            server.start()
            assert server.running
            assert server.config.monitor_port != taken
            assert server.monitor_url.endswith(f":{server.config.monitor_port}")
            with socket.create_connection(("127.0.0.1", server.config.port), timeout=2):
                pass
        finally:
            server.stop()
    assert "address already in use" in (tmp_path / "nats.log").read_text()
