"""Placement on a real nats-server: capacity, Pending, failback, cascades (R4, R5, R8, R10)."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.config import Priority
from shared.messages import (
    CameraMoved,
    CameraPending,
    ClaimsConfirmed,
    FailbackCompleted,
    ReleasesConfirmed,
    ServerRecovered,
)
from tests.helpers import eventually, holds
from tests.integration.cluster import (
    TestCluster,
    all_home,
    camera,
    cameras_of,
    make_config,
    recorded_twice,
    server,
    settled,
)
from tests.integration.conftest import StartCluster

HIGH, MEDIUM, LOW, NEVER = Priority.HIGH, Priority.MEDIUM, Priority.LOW, Priority.NEVER


async def _start(start_cluster: StartCluster, servers: dict[str, int], cams: Any) -> TestCluster:
    cluster = await start_cluster(make_config(servers, cams, network_timeout=1.5))
    await cluster.wait_status(all_home, 20, "every camera recording at home")
    return cluster


async def test_r4_failed_servers_cameras_spread_over_free_capacity_never_above_it(
    start_cluster: StartCluster,
) -> None:
    """R4: every camera of the failed server moves; nobody exceeds its channel capacity."""
    cams = {f"c1{i}": "rs-1" for i in range(4)} | {"c21": "rs-2", "c22": "rs-2", "c31": "rs-3"}
    cluster = await _start(start_cluster, {"rs-1": 4, "rs-2": 4, "rs-3": 4}, cams)
    cluster.fail_storage("rs-1")
    doc = await cluster.wait_status(
        lambda s: all(c["state"] == "failed_over" for c in cameras_of(s, "rs-1")),
        10,
        "all four cameras of rs-1 failed over",
    )
    hosts = [c["host"] for c in cameras_of(doc, "rs-1")]
    assert hosts.count("rs-2") == 2, hosts  # 2 free there; rs-3 had 3 free: spread, not piled
    assert hosts.count("rs-3") == 2, hosts
    assert server(doc, "rs-2")["hosting"] == 4
    # The storage-failed server is told to let go at its next heartbeat (stray release).
    recorders = await eventually(
        cluster.recording_now, lambda r: not recorded_twice(r), 5, "nothing recorded twice"
    )
    assert recorders["rs-1"] == {}

    async def stray_releases() -> set[str]:
        log = await cluster.events()
        return {
            a.camera
            for _, e in log
            if isinstance(e, ReleasesConfirmed) and e.server == "rs-1"
            for a in e.cameras
        }

    # R11: that repair is on the log too, not only in placement's own log file.
    failed_over = {c for c, h in cams.items() if h == "rs-1"}
    await eventually(stray_releases, lambda got: got >= failed_over, 5, "stray releases logged")
    assert set(recorders["rs-2"]) == {"c21", "c22"} | {
        c["id"] for c in cameras_of(doc, "rs-1") if c["host"] == "rs-2"
    }
    moved = [e for _, e in await cluster.events() if isinstance(e, CameraMoved)]
    assert sorted(e.camera for e in moved if e.from_host == "rs-1") == sorted(
        c for c, h in cams.items() if h == "rs-1"
    )


async def test_r5_pending_in_priority_order_and_placed_when_capacity_is_raised(
    start_cluster: StartCluster,
) -> None:
    """R5 + priorities: high moves first, the rest wait Pending until capacity appears."""
    cams = {"hi": ("rs-1", HIGH), "md": ("rs-1", MEDIUM), "lo": ("rs-1", LOW), "c21": "rs-2"}
    cluster = await _start(start_cluster, {"rs-1": 3, "rs-2": 2}, cams)
    cluster.fail_storage("rs-1")
    doc = await cluster.wait_status(
        lambda s: camera(s, "hi")["state"] == "failed_over" and settled(s, "rs-1"),
        10,
        "hi failed over, the others settled",
    )
    assert camera(doc, "md")["state"] == "pending"
    assert camera(doc, "lo")["state"] == "pending"
    pending = {e.camera for _, e in await cluster.events() if isinstance(e, CameraPending)}
    assert pending == {"md", "lo"}

    reply = await cluster.set_capacity("rs-2", 3)
    assert reply.ok, reply.reason
    doc = await cluster.wait_status(
        lambda s: camera(s, "md")["state"] == "failed_over", 10, "md placed on the new channel"
    )
    assert camera(doc, "lo")["state"] == "pending", "one channel: the higher priority wins"
    await cluster.set_capacity("rs-2", 4)
    await cluster.wait_status(
        lambda s: camera(s, "lo")["host"] == "rs-2", 10, "lo placed once a channel appears"
    )


async def test_r5_lowering_capacity_below_load_moves_nothing_and_places_nothing_there(
    start_cluster: StartCluster,
) -> None:
    """A license change down: cameras stay where they record; nothing new goes there."""
    cams = {"c11": "rs-1", "c12": "rs-1", "c21": "rs-2", "c22": "rs-2"}
    cluster = await _start(start_cluster, {"rs-1": 2, "rs-2": 3}, cams)
    reply = await cluster.set_capacity("rs-2", 1)
    assert reply.ok, reply.reason
    await cluster.wait_status(
        lambda s: server(s, "rs-2")["capacity"] == 1, 10, "rs-2 capacity lowered to 1"
    )
    cluster.fail_storage("rs-1")
    await cluster.wait_status(
        lambda s: all(c["state"] == "pending" for c in cameras_of(s, "rs-1")),
        10,
        "rs-1's cameras Pending: rs-2 is over its new capacity",
    )
    await holds(
        cluster.status,
        lambda s: {c["host"] for c in cameras_of(s, "rs-2")} == {"rs-2"},
        1.0,
        "rs-2 keeps recording its own two cameras",
    )
    unknown = await cluster.set_capacity("rs-9", 4)
    assert not unknown.ok
    assert "unknown server" in unknown.reason


async def test_r5_never_priority_waits_for_its_home_server(start_cluster: StartCluster) -> None:
    """priority 'never' is never moved by failover, and goes home on failback."""
    cams = {"fixed": ("rs-1", NEVER), "c12": "rs-1"}
    cluster = await _start(start_cluster, {"rs-1": 2, "rs-2": 4}, cams)
    cluster.relays["rs-1"].cut()
    doc = await cluster.wait_status(
        lambda s: camera(s, "c12")["state"] == "failed_over", 15, "c12 failed over"
    )
    assert camera(doc, "fixed")["state"] == "pending"
    cluster.relays["rs-1"].restore()
    await cluster.wait_status(all_home, 20, "both cameras home after failback")


async def test_r8_failback_releases_before_home_claims_and_pending_go_straight_home(
    start_cluster: StartCluster,
) -> None:
    """R8: ready -> every host releases -> home claims; no instant with a camera on two servers."""
    cams = {"c11": ("rs-1", HIGH), "c12": ("rs-1", HIGH), "c13": ("rs-1", LOW), "c21": "rs-2"}
    cluster = await _start(start_cluster, {"rs-1": 3, "rs-2": 2, "rs-3": 1}, cams)
    cluster.relays["rs-1"].cut()
    doc = await cluster.wait_status(
        lambda s: server(s, "rs-1")["state"] == "network_failed" and settled(s, "rs-1"),
        15,
        "rs-1 failed, its cameras settled",
    )
    assert camera(doc, "c13")["state"] == "pending"  # two free channels for three cameras

    # Cut off, rs-1 kept recording under its old epochs (it could not know better; that
    # footage is kept). R8 forbids rs-1 claiming a camera anew while its host still records it.
    stale = cluster.recorders()["rs-1"]
    early_claims: list[dict[str, list[str]]] = []
    watching = asyncio.Event()

    async def watch_recorders() -> None:
        while not watching.is_set():
            now = cluster.recorders()
            fresh_at_home = {c for c, e in now["rs-1"].items() if stale.get(c) != e}
            doubles = recorded_twice(now)
            if early := {c: doubles[c] for c in fresh_at_home & set(doubles)}:
                early_claims.append(early)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch_recorders())
    cluster.relays["rs-1"].restore()
    await cluster.wait_status(all_home, 20, "every camera home after failback")
    watching.set()
    await watcher
    assert not early_claims, f"claimed at home before the host released: {early_claims[:3]}"
    assert not recorded_twice(cluster.recorders())

    log = await cluster.events()
    ready = next(seq for seq, e in log if isinstance(e, ServerRecovered) and e.server == "rs-1")
    for cam in ("c11", "c12"):
        released = _last(log, ReleasesConfirmed, cam, lambda srv: srv != "rs-1")
        claimed = _last(log, ClaimsConfirmed, cam, lambda srv: srv == "rs-1")
        assert ready < released < claimed, (cam, ready, released, claimed)
    # The Pending camera went straight home: no release anywhere, one move from nowhere.
    assert not _all(log, ReleasesConfirmed, "c13")
    last_move = [e for _, e in log if isinstance(e, CameraMoved) and e.camera == "c13"][-1]
    assert (last_move.from_host, last_move.to) == (None, "rs-1")
    done = [e for _, e in log if isinstance(e, FailbackCompleted)]
    assert [(e.server, e.cameras) for e in done] == [("rs-1", 3)]


async def test_r10_cascade_moves_cameras_again_and_they_keep_their_home(
    start_cluster: StartCluster,
) -> None:
    """R10: the temporary host fails too; the camera moves on, then returns to its first home."""
    cams = {"c11": "rs-1", "c21": "rs-2", "c31": "rs-3"}
    cluster = await _start(start_cluster, {"rs-1": 1, "rs-2": 3, "rs-3": 4}, cams)
    cluster.fail_storage("rs-1")
    doc = await cluster.wait_status(
        lambda s: camera(s, "c11")["state"] == "failed_over", 10, "c11 failed over"
    )
    first_host = camera(doc, "c11")["host"]
    assert first_host == "rs-3"  # most free channels
    cluster.relays[first_host].cut()
    doc = await cluster.wait_status(
        lambda s: camera(s, "c11")["state"] == "failed_over" and camera(s, "c11")["host"] == "rs-2",
        15,
        "c11 moved on to rs-2 when rs-3 failed",
    )
    assert camera(doc, "c11")["home"] == "rs-1"
    cluster.repair_storage("rs-1")
    await cluster.wait_status(lambda s: server(s, "rs-1")["storage"] == "ok", 10, "rs-1 storage ok")
    assert (await cluster.confirm_failback("rs-1")).ok
    cluster.relays[first_host].restore()
    await cluster.wait_status(all_home, 20, "every camera home again")
    moves = [e for _, e in await cluster.events() if isinstance(e, CameraMoved)]
    path = [(e.from_host, e.to) for e in moves if e.camera == "c11"]
    assert path[-3:] == [("rs-1", "rs-3"), ("rs-3", "rs-2"), ("rs-2", "rs-1")], path


def _all(
    log: list[tuple[int, Any]], kind: type[ClaimsConfirmed | ReleasesConfirmed], cam: str
) -> list[tuple[int, str]]:
    return [
        (seq, e.server)
        for seq, e in log
        if isinstance(e, kind) and any(a.camera == cam for a in e.cameras)
    ]


def _last(
    log: list[tuple[int, Any]],
    kind: type[ClaimsConfirmed | ReleasesConfirmed],
    cam: str,
    on: Any,
) -> int:
    """Sequence of the last confirmation of ``kind`` for ``cam`` by a server matching ``on``."""
    found = [seq for seq, srv in _all(log, kind, cam) if on(srv)]
    assert found, f"no {kind.__name__} for {cam}"
    return found[-1]
