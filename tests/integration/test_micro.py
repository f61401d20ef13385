"""Service discovery as the ``nats`` command line does it (R13): ``$SRV.PING``, ``$SRV.INFO``
and ``$SRV.STATS`` sent once by a plain nats-py client, every answer gathered on one inbox
until a short deadline; then each instance's ``status`` endpoint, found in its INFO."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from shared import __version__
from shared.bus import NatsServer
from shared.bus.micro import status_subject
from tests.helpers import eventually
from tests.integration.cluster import TestCluster, all_home, make_config
from tests.integration.conftest import StartCluster

SERVERS = {"rs-1": 2, "rs-2": 2}
CAMS = {"c1": "rs-1", "c2": "rs-2"}
REPLICATED = ("blaze-health", "blaze-placement", "blaze-sync")

GATHER_S = 0.5
"""How long one discovery waits for answers (the nats CLI waits a fixed time too)."""


@pytest.fixture
async def outsider(nats_server: NatsServer) -> AsyncIterator[Any]:
    """A plain nats-py client, as an integrator's tool would be."""
    nc = await nats.connect(nats_server.url, name="outside-observer")
    try:
        yield nc
    finally:
        await nc.close()


async def gather(nc: Any, subject: str, payload: bytes = b"") -> list[dict[str, Any]]:
    """Send one request and collect every reply that arrives within ``GATHER_S``."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, payload, reply=inbox)
        await nc.flush()
        replies = []
        deadline = time.monotonic() + GATHER_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            replies.append(json.loads(msg.data))
        return replies
    finally:
        await sub.unsubscribe()


def instances(replies: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(service name, instance) of each reply."""
    return {(r["name"], r["metadata"].get("instance", "")) for r in replies}


async def request_json(nc: Any, subject: str) -> dict[str, Any]:
    msg = await nc.request(subject, b"", timeout=2)
    assert not (msg.headers or {}).get("Nats-Service-Error"), msg.headers
    answer: dict[str, Any] = json.loads(msg.data)
    return answer


async def started(start_cluster: StartCluster) -> TestCluster:
    cluster = await start_cluster(make_config(SERVERS, CAMS))
    await cluster.wait_status(all_home, 15, "the cluster placed its cameras")
    return cluster


EXPECTED = {
    ("blaze-health", "health"),
    ("blaze-placement", "placement"),
    ("blaze-sync", "sync"),
    ("blaze-agent", "rs-1"),
    ("blaze-agent", "rs-2"),
}


async def test_r13_every_service_answers_ping_info_and_stats_like_nats_micro_ls(
    start_cluster: StartCluster, outsider: Any
) -> None:
    """``nats micro ls``: every service (health, placement, sync, one agent per server)
    answers one ``$SRV.PING``; ``nats micro info``: each has version, description and a
    ``status`` endpoint on its own subject; ``nats micro stats``: per-endpoint counts."""
    await started(start_cluster)

    pings = await eventually(
        lambda: gather(outsider, "$SRV.PING"),
        lambda r: instances(r) >= EXPECTED,
        10,
        "every service answers $SRV.PING",
    )
    for ping in pings:
        assert ping["type"] == "io.nats.micro.v1.ping_response"
        assert ping["version"] == __version__
        assert ping["id"]
    assert len({p["id"] for p in pings}) == len(pings), "service ids are unique"

    infos = await gather(outsider, "$SRV.INFO")
    assert instances(infos) >= EXPECTED
    by_instance = {(i["name"], i["metadata"]["instance"]): i for i in infos}
    for (name, instance), info in by_instance.items():
        if (name, instance) not in EXPECTED:
            continue
        assert info["type"] == "io.nats.micro.v1.info_response"
        assert info["version"] == __version__
        assert info["description"], name
        kind = name.removeprefix("blaze-")
        assert [(e["name"], e["subject"]) for e in info["endpoints"]] == [
            ("status", status_subject(kind, instance))
        ], info["endpoints"]
    assert by_instance[("blaze-agent", "rs-1")]["metadata"]["server"] == "rs-1"
    assert by_instance[("blaze-placement", "placement")]["metadata"]["replica"] == "placement"

    # Only one kind answers $SRV.INFO.<name>.
    agents = await gather(outsider, "$SRV.INFO.blaze-agent")
    assert instances(agents) == {("blaze-agent", "rs-1"), ("blaze-agent", "rs-2")}

    # Three status calls to rs-1's agent show up in its STATS, next to its counters.
    agent_info = by_instance[("blaze-agent", "rs-1")]
    for _ in range(3):
        await request_json(outsider, agent_info["endpoints"][0]["subject"])
    stats = await gather(outsider, f"$SRV.STATS.blaze-agent.{agent_info['id']}")
    assert len(stats) == 1, stats
    assert stats[0]["type"] == "io.nats.micro.v1.stats_response"
    [endpoint] = stats[0]["endpoints"]
    assert endpoint["name"] == "status"
    assert endpoint["num_requests"] == 3
    assert endpoint["num_errors"] == 0
    assert endpoint["data"]["server"] == "rs-1"
    assert endpoint["data"]["counters"]["heartbeats_sent"] > 0

    every = await gather(outsider, "$SRV.STATS")
    assert instances(every) >= EXPECTED
    placement = next(s for s in every if s["name"] == "blaze-placement")
    assert placement["endpoints"][0]["data"]["leading"] is True


async def test_r13_status_endpoints_say_who_leads_and_what_each_instance_counts(
    start_cluster: StartCluster, outsider: Any
) -> None:
    """The placement leader says leading=true with its epoch and a standby replica says
    leading=false; health counts heartbeats and servers by state; each agent names its
    server and hosts what placement put there."""
    cluster = await started(start_cluster)
    await cluster.start_replica("placement", "placement-b")
    await eventually(
        lambda: gather(outsider, "$SRV.PING.blaze-placement"),
        lambda r: instances(r) >= {("blaze-placement", "placement-b")},
        10,
        "the second placement replica announced itself",
    )

    leader = await request_json(outsider, status_subject("placement", "placement"))
    assert leader["name"] == "blaze-placement"
    assert leader["replica"] == "placement"
    assert leader["leading"] is True
    assert isinstance(leader["epoch"], int)
    assert leader["epoch"] > 0
    assert leader["terms"] >= 1
    assert leader["uptime_s"] > 0
    assert leader["counters"]["cameras"]["home"] == len(SERVERS)
    assert leader["counters"]["log_position"] > 0
    standby = await request_json(outsider, status_subject("placement", "placement-b"))
    assert standby["leading"] is False
    assert standby["epoch"] is None
    assert standby["counters"] == {}

    health = await eventually(
        lambda: request_json(outsider, status_subject("health", "health")),
        lambda h: h["counters"]["heartbeats_received"] >= 4,
        10,
        "health counted heartbeats from both servers",
    )
    assert health["leading"] is True
    assert health["counters"]["servers"] == {
        "up": 2,
        "probing": 0,
        "network_failed": 0,
        "storage_failed": 0,
    }

    sync = await request_json(outsider, status_subject("sync", "sync"))
    assert sync["leading"] is True
    assert sync["counters"]["segments_moved"] == 0

    for sid in SERVERS:
        agent = await request_json(outsider, status_subject("agent", sid))
        assert agent["server"] == sid
        assert agent["instance"] == sid
        assert agent["hosting"] == 1
        assert agent["storage_ok"] is True
        assert agent["counters"]["claims"] >= 1
        assert agent["placement_epoch_seen"] == leader["epoch"]


async def test_r13_a_storage_failure_shows_in_health_status_and_the_failed_agents_status(
    start_cluster: StartCluster, outsider: Any
) -> None:
    """The status endpoints follow the cluster: after rs-1's storage fails, health counts
    a storage failover and one storage-failed server, rs-1's agent reports its storage
    failed and hosts nothing, rs-2's hosts both cameras."""
    cluster = await started(start_cluster)
    cluster.fail_storage("rs-1")

    health = await eventually(
        lambda: request_json(outsider, status_subject("health", "health")),
        lambda h: h["counters"]["servers"].get("storage_failed") == 1,
        10,
        "health sees rs-1 storage-failed",
    )
    assert health["counters"]["failovers"] == {"storage": 1}
    failed = await eventually(
        lambda: request_json(outsider, status_subject("agent", "rs-1")),
        lambda a: a["hosting"] == 0,
        10,
        "rs-1's agent let its camera go",
    )
    assert failed["storage_ok"] is False
    assert failed["storage_error"]
    host = await eventually(
        lambda: request_json(outsider, status_subject("agent", "rs-2")),
        lambda a: a["hosting"] == 2,
        10,
        "rs-2 hosts both cameras",
    )
    assert host["counters"]["claims"] >= 2


async def test_r13_an_instance_that_stops_leaves_discovery(
    start_cluster: StartCluster, outsider: Any
) -> None:
    """A stopped agent no longer answers $SRV.PING; the others still do."""
    cluster = await started(start_cluster)
    await eventually(
        lambda: gather(outsider, "$SRV.PING"),
        lambda r: instances(r) >= EXPECTED,
        10,
        "every service answers",
    )
    await cluster.agents["rs-2"].close()
    pings = await eventually(
        lambda: gather(outsider, "$SRV.PING"),
        lambda r: ("blaze-agent", "rs-2") not in instances(r),
        10,
        "rs-2's agent left",
    )
    assert EXPECTED - {("blaze-agent", "rs-2")} <= instances(pings)
