"""A cluster factory on the test's real nats-server; everything is stopped after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from shared.bus import NatsCluster, NatsServer
from shared.config import ClusterConfig
from tests.integration.cluster import TestCluster

StartCluster = Callable[..., Awaitable[TestCluster]]


@pytest.fixture
async def start_cluster(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[StartCluster]:
    """``await start_cluster(config, placement_as_process=False, sync_as_process=False)``."""
    started: list[TestCluster] = []

    async def start(config: ClusterConfig, **as_process: bool) -> TestCluster:
        cluster = TestCluster(nats_server, config, tmp_path / "cluster")
        started.append(cluster)
        return await cluster.start(**as_process)

    yield start
    for cluster in started:
        await cluster.close()


@pytest.fixture
async def start_ha_cluster(
    nats_cluster: NatsCluster, tmp_path: Path
) -> AsyncIterator[StartCluster]:
    """``start_cluster`` on a 3-node NATS cluster: R3 stream and buckets (R12)."""
    started: list[TestCluster] = []

    async def start(config: ClusterConfig, **as_process: bool) -> TestCluster:
        cluster = TestCluster(nats_cluster, config, tmp_path / "cluster")
        started.append(cluster)
        return await cluster.start(**as_process)

    yield start
    for cluster in started:
        await cluster.close()
