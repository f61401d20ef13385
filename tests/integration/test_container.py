"""The stock NATS image under testcontainers, when (and only when) a Docker engine answers."""

from __future__ import annotations

import socket
import time

import pytest

from shared.bus import Bus
from tests.docker import docker_engine_answers


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_without_a_docker_engine_testcontainers_steps_aside_quickly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DOCKER_HOST that does not answer is detected within the short ping, not 60 s."""
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("BLAZE_TEST_DOCKER", raising=False)
    started = time.monotonic()
    assert docker_engine_answers(timeout=2) is False
    assert time.monotonic() - started < 10
    monkeypatch.setenv("BLAZE_TEST_DOCKER", "0")
    assert docker_engine_answers() is False


@pytest.mark.skipif(not docker_engine_answers(), reason="no Docker engine answers a ping")
async def test_bus_sets_up_its_stream_and_bucket_on_the_stock_nats_image() -> None:
    """R11 on the image operators deploy: the event stream and the placement bucket."""
    from testcontainers.nats import NatsContainer  # noqa: PLC0415 (needs Docker)

    with NatsContainer("nats:2.11-alpine", jetstream=True) as container:
        bus = await Bus.connect(container.nats_uri(), "container-test")
        try:
            await bus.ensure_streams()
            assert await bus.last_event_seq() == 0
            assert await bus.read_state() is None
        finally:
            await bus.close()
