"""Chained fixtures: a real nats-server on a free port with its own store feeds every test.

testcontainers is used only when ``BLAZE_TEST_DOCKER=1`` and a Docker engine
answers a ping within 2 s; otherwise (as on the CI machines) it steps aside and
the ``nats-server`` binary from the venv is used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.bus import Bus, NatsServer, embedded_server


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
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    """A connection to the test's server, with the stream and bucket in place."""
    b = await Bus.connect(nats_server.url, "test")
    await b.ensure_streams()
    try:
        yield b
    finally:
        await b.close()
