"""Health's heartbeat intake on a real nats-server (issue 8): the agents' repeats take the
fast path, and replayed or forged bytes are still refused as before (R1, R3, issue 7)."""

from __future__ import annotations

from typing import Any

from services.health.app import HealthService
from shared import subjects
from tests.helpers import eventually
from tests.integration.cluster import TestCluster, all_home, make_config
from tests.integration.conftest import StartCluster

THREE = {"rs-1": 3, "rs-2": 3, "rs-3": 3}
CAMS = {"c11": "rs-1", "c12": "rs-1", "c21": "rs-2", "c31": "rs-3"}


async def _ready(start_cluster: StartCluster) -> tuple[TestCluster, HealthService]:
    cluster = await start_cluster(make_config(THREE, CAMS))
    await cluster.wait_status(all_home, 20, "every camera recording at home")
    health = cluster.services["health"].service
    assert isinstance(health, HealthService)
    return cluster, health


async def test_agents_repeats_take_the_fast_path_and_are_still_counted(
    start_cluster: StartCluster,
) -> None:
    _cluster, health = await _ready(start_cluster)
    received = health.heartbeats_received

    async def seen() -> tuple[int, int]:
        return health.heartbeat_parser.repeats, health.heartbeats_received - received

    await eventually(seen, lambda s: s[0] >= 6 and s[1] >= 6, 10, "repeats accepted")
    assert health.heartbeat_parser.remembered == len(THREE)
    assert dict(health.heartbeats_rejected) == {}


async def test_a_replayed_heartbeat_is_refused_as_stale_even_as_a_repeat(
    start_cluster: StartCluster,
) -> None:
    """The exact bytes of an earlier heartbeat of rs-1, and the same with a lower
    sequence: both parse on the fast path, and the detector refuses both."""
    cluster, health = await _ready(start_cluster)
    assert cluster.bus is not None
    heard: list[bytes] = []

    async def keep(msg: Any) -> None:
        heard.append(bytes(msg.data))

    sub = await cluster.bus.nc.subscribe(subjects.heartbeat("rs-1"), cb=keep)

    async def count() -> int:
        return len(heard)

    await eventually(count, lambda n: n >= 2, 5, "two heartbeats of rs-1")
    await sub.unsubscribe()
    old = heard[-1]
    at = old.index(b',"sequence":') + len(b',"sequence":')
    lower = old[:at] + b"0" + old[old.index(b",", at) :]

    async def repeated() -> int:
        return health.heartbeat_parser.repeats

    await eventually(repeated, lambda n: n > 0, 5, "a repeat recognised")
    repeats = health.heartbeat_parser.repeats
    stale = health.heartbeats_rejected["stale"]
    for data in (old, lower):
        await cluster.bus.nc.publish(subjects.heartbeat("rs-1"), data)

    async def refused() -> int:
        return health.heartbeats_rejected["stale"] - stale

    assert await eventually(refused, lambda n: n >= 2, 5, "both replays refused") == 2
    assert health.heartbeat_parser.repeats >= repeats + 2
    assert health.detector.servers["rs-1"].sequence > 0
