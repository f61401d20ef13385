"""A cluster factory on the test's real nats-server; everything is stopped after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from shared.bus import NatsServer
from shared.config import ClusterConfig
from tests.integration.cluster import TestCluster

StartCluster = Callable[..., Awaitable[TestCluster]]


@pytest.fixture
async def start_cluster(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[StartCluster]:
    """``await start_cluster(config, placement_as_process=False)``."""
    started: list[TestCluster] = []

    async def start(config: ClusterConfig, *, placement_as_process: bool = False) -> TestCluster:
        cluster = TestCluster(nats_server, config, tmp_path / "cluster")
        started.append(cluster)
        return await cluster.start(placement_as_process=placement_as_process)

    yield start
    for cluster in started:
        await cluster.close()
