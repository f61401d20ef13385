"""Two sites on loopback: a hub nats-server and a site's leaf node (issue 5: two sites).

Each site has its own JetStream (its own domain) and its own cluster: health, placement,
sync and agents talk only to the site's leaf node. The hub sees what a site publishes
and keeps a sourced copy of its event log, but no decision needs it (R3, R4, R12).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import subjects
from shared.bus import Bus, NatsServer, free_port
from shared.bus.natsserver import embedded_server
from shared.messages import AnyEvent, CameraMoved, CapacityChanged, ServerFailed, parse_event
from shared.messages.events import FailureCause, MoveReason
from tests.helpers import eventually, holds
from tests.integration.cluster import (
    TestCluster,
    all_home,
    assert_failed_over_once,
    cameras_of,
    make_config,
    server,
)

HUB = "hub"
"""The hub's own JetStream domain."""
HUB_COPY = "SITE_NORTH_EVENTS"
"""The hub's copy of site north's event log: a stream with no subjects of its own."""
SERVERS = {"rs-1": 6, "rs-2": 6, "rs-3": 6}
CAMERAS = {f"cam-{s[-1]}-{i}": s for s in SERVERS for i in range(1, 5)}
"""Four cameras at home on each server: rs-1's four fill the 2 + 2 free channels exactly."""


def start_sites(root: Path, sites: tuple[str, ...]) -> tuple[NatsServer, dict[str, NatsServer]]:
    """A hub with one account per site, then one leaf node per site (domain = site)."""
    leafnode_port = free_port()
    hub = embedded_server(root / HUB, domain=HUB, leafnode_port=leafnode_port, hub_sites=sites)
    leaves = {s: embedded_server(root / s, domain=s, leaf_remotes=(leafnode_port,)) for s in sites}
    started: list[NatsServer] = []
    try:
        for node in (hub, *leaves.values()):
            node.start()
            started.append(node)
    except BaseException:
        for node in started:
            node.stop()
        raise
    return hub, leaves


@pytest.fixture
def north(tmp_path: Path) -> Iterator[tuple[NatsServer, NatsServer]]:
    """The hub and site north's leaf node."""
    hub, leaves = start_sites(tmp_path / "nats", ("north",))
    try:
        yield hub, leaves["north"]
    finally:
        for node in (leaves["north"], hub):
            node.stop()


@pytest.fixture
def north_and_south(tmp_path: Path) -> Iterator[tuple[NatsServer, NatsServer, NatsServer]]:
    """The hub and two sites' leaf nodes."""
    hub, leaves = start_sites(tmp_path / "nats", ("north", "south"))
    try:
        yield hub, leaves["north"], leaves["south"]
    finally:
        for node in (*leaves.values(), hub):
            node.stop()


async def links(node: NatsServer) -> list[dict[str, Any]]:
    """The node's leaf-node links up now (read off its monitoring port)."""
    return await asyncio.to_thread(node.leafnode_links)


def carries(subject: str) -> Any:
    """A predicate: some link carries interest in ``subject``."""
    return lambda ls: any(subject in (link.get("subscriptions_list") or []) for link in ls)


async def collect_events(bus: Bus, into: list[AnyEvent]) -> None:
    """A core subscription to every event subject, parsed."""

    async def on_message(msg: Any) -> None:
        into.append(parse_event(msg.data))

    await bus.nc.subscribe(subjects.EVENTS_ALL, cb=on_message)
    await bus.nc.flush()


async def copy_site_log(hub_bus: Bus, site: str, name: str) -> None:
    """On the hub: a stream with no subjects that sources ``site``'s event log through the
    site's JetStream domain (the JetStream API request docs/scaling.md shows)."""
    config = {
        "name": name,
        "storage": "file",
        "sources": [
            {"name": subjects.EVENTS_STREAM, "external": {"api": f"$JS.{site}.API", "deliver": ""}}
        ],
    }
    reply = await hub_bus.nc.request(
        f"$JS.API.STREAM.CREATE.{name}", json.dumps(config).encode(), timeout=5
    )
    answer = json.loads(reply.data)
    assert "error" not in answer, answer


async def hub_copy(hub_bus: Bus) -> int | None:
    """Messages in the hub's copy; None while the hub cannot answer."""
    try:
        info = await hub_bus.js.stream_info(HUB_COPY)
    except Exception:  # a hub coming back: not answering yet
        return None
    count: int = info.state.messages
    return count


async def test_a_site_fails_over_on_its_own_while_the_hub_is_unreachable(
    north: tuple[NatsServer, NatsServer], tmp_path: Path
) -> None:
    """Issue 5: two sites. R3/R4 at site north with the hub SIGKILLed: a storage failure
    is declared and every camera is re-hosted within capacity by the site's own health
    and placement, on the site's own JetStream; the hub is in no site's quorum (R12).
    Before, the hub sees the site's events as they happen and keeps a copy of its log;
    once the hub is back, so are the link and the live events, and its copy survived."""
    hub, leaf = north
    await eventually(lambda: links(leaf), lambda ls: len(ls) == 1, 10, "north linked to the hub")
    hub_bus = await Bus.connect(hub.site_url("north"), "hub-monitor")
    cluster = TestCluster(leaf, make_config(SERVERS, CAMERAS), tmp_path / "cluster")
    try:
        at_hub: list[AnyEvent] = []
        await collect_events(hub_bus, at_hub)
        await eventually(
            lambda: links(leaf), carries(subjects.EVENTS_ALL), 5, "hub's interest at north"
        )
        await cluster.start()
        assert cluster.bus is not None
        await cluster.wait_status(all_home, 20, "every camera recording at home")

        # The link works: the site's own placement events reach the hub as they happen.
        async def started_at_hub() -> set[str]:
            return {e.camera for e in at_hub if isinstance(e, CameraMoved)}

        await eventually(started_at_hub, lambda got: got == set(CAMERAS), 5, "hub saw the start")
        await copy_site_log(hub_bus, "north", HUB_COPY)
        site_last = await cluster.bus.last_event_seq()
        copied_before = await eventually(
            lambda: hub_copy(hub_bus), lambda n: n == site_last, 10, "hub copy"
        )

        hub.kill()
        await eventually(lambda: links(leaf), lambda ls: ls == [], 5, "north's link down")
        seen_before = len(at_hub)
        failed_at = time.monotonic()
        cluster.fail_storage("rs-1")
        doc = await cluster.wait_status(
            lambda s: all(c["state"] == "failed_over" for c in cameras_of(s, "rs-1")),
            15,
            "rs-1's cameras re-hosted at north with the hub down",
        )
        rehosted_s = time.monotonic() - failed_at
        assert not hub.running
        assert await links(leaf) == [], "the hub came back during the failover"
        assert len(at_hub) == seen_before, "the hub heard events while it was down"
        hosts = sorted(c["host"] for c in cameras_of(doc, "rs-1"))
        assert hosts == ["rs-2", "rs-2", "rs-3", "rs-3"], hosts
        assert server(doc, "rs-2")["hosting"] == server(doc, "rs-3")["hosting"] == 6
        await assert_failed_over_once(
            cluster, doc, [c for c, h in CAMERAS.items() if h == "rs-1"], "rs-1"
        )
        log = [e for _, e in await cluster.events()]
        failure = next(e for e in log if isinstance(e, ServerFailed))
        assert (failure.server, failure.cause) == ("rs-1", FailureCause.STORAGE)
        moves = [e for e in log if isinstance(e, CameraMoved) and e.reason == MoveReason.FAILOVER]
        decided_ms = (max(e.time for e in moves) - failure.time).total_seconds() * 1000
        print(  # the figures docs/scaling.md quotes (pytest -s shows them)
            f"\nhub down: storage fault -> all 4 re-hosted {rehosted_s * 1000:.0f} ms; "
            f"server_failed -> last camera_moved {decided_ms:.1f} ms"
        )

        # The hub returns: the link comes back, the site's events reach it live again, and
        # its copy of the site's log is still there (sourcing resumes later, on its own).
        hub.start()
        await eventually(
            lambda: links(leaf), carries(subjects.EVENTS_ALL), 10, "relinked, hub's interest back"
        )
        kept = await eventually(lambda: hub_copy(hub_bus), lambda n: n is not None, 5, "hub up")
        assert kept is not None
        assert copied_before is not None
        assert kept >= copied_before, "the hub's copy lost messages in the restart"
        reply = await cluster.set_capacity("rs-2", 7)
        assert reply.ok, reply.reason

        async def capacity_at_hub() -> list[CapacityChanged]:
            return [e for e in at_hub[seen_before:] if isinstance(e, CapacityChanged)]

        changes = await eventually(capacity_at_hub, bool, 5, "the hub saw north's next event")
        assert [(e.server, e.capacity) for e in changes] == [("rs-2", 7)]
    finally:
        await cluster.close()
        await hub_bus.close()


async def test_one_sites_events_and_heartbeats_never_reach_another_site(
    north_and_south: tuple[NatsServer, NatsServer, NatsServer],
) -> None:
    """Issue 5: two sites. Each site is an account of its own on the hub: north's events
    reach the hub, but neither they nor north's heartbeats reach south, whose stream and
    health subscribe to the same subjects (in one shared account, they would: R4 at one
    site must never act on another's servers)."""
    hub, north_leaf, south_leaf = north_and_south
    await eventually(lambda: links(hub), lambda ls: len(ls) == 2, 10, "both sites linked")
    north = await Bus.connect(north_leaf.url, "north")
    south = await Bus.connect(south_leaf.url, "south")
    hub_bus = await Bus.connect(hub.site_url("north"), "hub-monitor")
    try:
        for bus in (north, south):
            await bus.ensure_streams()
        at_hub: list[AnyEvent] = []
        await collect_events(hub_bus, at_hub)
        heard_at_south: list[str] = []

        async def on_heartbeat(msg: Any) -> None:
            heard_at_south.append(msg.subject)

        await south.nc.subscribe(subjects.HEARTBEAT_ALL, cb=on_heartbeat)
        await south.nc.flush()
        await eventually(
            lambda: links(north_leaf), carries(subjects.EVENTS_ALL), 5, "hub's interest at north"
        )
        await eventually(
            lambda: links(hub), carries(subjects.HEARTBEAT_ALL), 5, "south's interest at the hub"
        )

        failed = ServerFailed(server="rs-1", cause=FailureCause.STORAGE, detail="north's own")
        await north.publish_event(subjects.server_event("rs-1", failed.type), failed, "north-1")
        await north.nc.publish(subjects.heartbeat("rs-1"), b"{}")
        await north.nc.flush()

        async def hub_view() -> list[AnyEvent]:
            return at_hub

        await eventually(hub_view, lambda got: got == [failed], 5, "the hub saw north's event")

        async def south_view() -> tuple[int, list[str]]:
            return await south.last_event_seq(), heard_at_south

        await holds(south_view, lambda v: v == (0, []), 1.0, "south neither stored nor heard it")
        assert await north.last_event_seq() == 1
    finally:
        for bus in (hub_bus, south, north):
            await bus.close()
