"""Failure detection on a real nats-server, with real faults (R1, R2, R3, R6, R7)."""

from __future__ import annotations

import time

import pytest

from shared import subjects
from shared.messages import FailoversHeld, Heartbeat, ServerFailed, ServerSilent
from tests.helpers import eventually, holds
from tests.integration.cluster import (
    TestCluster,
    all_home,
    cameras_of,
    failed_over,
    make_config,
    server,
)
from tests.integration.conftest import StartCluster

THREE = {"rs-1": 3, "rs-2": 3, "rs-3": 3}
CAMS = {"c11": "rs-1", "c12": "rs-1", "c21": "rs-2", "c31": "rs-3"}


async def _ready(start_cluster: StartCluster, **timing: float) -> TestCluster:
    cluster = await start_cluster(make_config(THREE, CAMS, **timing))
    await cluster.wait_status(all_home, 20, "every camera recording at home")
    return cluster


async def test_r1_heartbeat_carries_identity_sequence_capacity_cameras_and_storage(
    start_cluster: StartCluster,
) -> None:
    cluster = await _ready(start_cluster)
    assert cluster.bus is not None
    seen: list[Heartbeat] = []

    async def collect(_subject: str, hb: Heartbeat) -> None:
        seen.append(hb)

    sub = await cluster.bus.subscribe(subjects.heartbeat("rs-1"), Heartbeat, collect)

    async def count() -> int:
        return len(seen)

    await eventually(count, lambda n: n >= 3, 5, "three heartbeats of rs-1")
    await sub.unsubscribe()
    first, last = seen[0], seen[-1]
    assert last.server == "rs-1"
    assert last.boot_id == first.boot_id
    assert last.sequence > first.sequence
    assert last.capacity == 3
    assert last.storage_ok
    assert set(last.hosted) == {"c11", "c12"}


async def test_r2_network_cut_fails_over_only_after_the_timeout_and_a_failed_probe(
    start_cluster: StartCluster,
) -> None:
    cluster = await _ready(start_cluster, network_timeout=3.0)
    cut_at = time.monotonic()
    cluster.relays["rs-1"].cut()
    await holds(
        cluster.status,
        lambda s: server(s, "rs-1")["state"] == "online",
        2.0,
        "rs-1 online during the silence window",
    )
    doc = await cluster.wait_status(
        failed_over("rs-1", "network_failed"),
        15,
        "rs-1 network_failed and its cameras re-hosted",
    )
    assert time.monotonic() - cut_at >= 3.0 - 0.2  # the last heartbeat came up to 0.2 s earlier
    assert all(c["host"] in ("rs-2", "rs-3") for c in cameras_of(doc, "rs-1"))
    failures = [e for _, e in await cluster.events() if isinstance(e, ServerFailed)]
    assert [(f.server, f.cause) for f in failures] == [("rs-1", "network")]
    assert "probe failed" in failures[0].detail


async def test_r2_silence_with_a_live_connection_is_not_a_failure(
    start_cluster: StartCluster,
) -> None:
    cluster = await _ready(start_cluster, network_timeout=1.5)
    cluster.agent("rs-2").heartbeats_paused = True

    async def silent_events() -> list[ServerSilent]:
        return [e for _, e in await cluster.events() if isinstance(e, ServerSilent)]

    await eventually(
        silent_events,
        lambda found: len(found) >= 1,
        10,
        "a server_silent event for rs-2 (probe answered)",
    )
    await holds(
        cluster.status,
        lambda s: server(s, "rs-2")["state"] == "online",
        3.0,
        "rs-2 stays online while its probe answers",
    )
    assert not [e for _, e in await cluster.events() if isinstance(e, ServerFailed)]


@pytest.mark.slow
async def test_r2_default_ten_second_window_holds_then_fails_over(
    start_cluster: StartCluster,
) -> None:
    cluster = await _ready(start_cluster, heartbeat_interval=1.0, network_timeout=10.0)
    cut_at = time.monotonic()
    cluster.relays["rs-3"].cut()
    await holds(
        cluster.status,
        lambda s: server(s, "rs-3")["state"] == "online",
        8.5,
        "rs-3 online for most of the default 10 s window",
    )
    await cluster.wait_status(
        failed_over("rs-3", "network_failed"),
        12,
        "rs-3 failed over after the default window",
    )
    assert time.monotonic() - cut_at >= 10.0 - 1.0  # the last heartbeat came up to 1 s earlier


async def test_r3_storage_failure_fails_over_without_waiting_for_the_timeout(
    start_cluster: StartCluster,
) -> None:
    cluster = await _ready(start_cluster, network_timeout=30.0)
    failed_at = time.monotonic()
    cluster.fail_storage("rs-1")
    doc = await cluster.wait_status(
        failed_over("rs-1", "storage_failed"),
        10,
        "rs-1 storage_failed, cameras moved",
    )
    assert time.monotonic() - failed_at < 30.0, "must not wait for the network timeout"
    assert server(doc, "rs-1")["storage"] == "failed"
    failure = next(e for _, e in await cluster.events() if isinstance(e, ServerFailed))
    assert (failure.server, failure.cause) == ("rs-1", "storage")


async def test_r6_network_failback_is_automatic_once_the_connection_returns(
    start_cluster: StartCluster,
) -> None:
    cluster = await _ready(start_cluster, network_timeout=1.5)
    cluster.relays["rs-2"].cut()
    await cluster.wait_status(
        lambda s: server(s, "rs-2")["state"] == "network_failed", 15, "rs-2 network_failed"
    )
    cluster.relays["rs-2"].restore()
    await cluster.wait_status(all_home, 20, "rs-2's camera home again without any command")
    types = [e.type for _, e in await cluster.events()]
    assert "failback_confirmed" not in types
    assert types.index("server_recovered") < types.index("failback_completed")


async def test_r7_storage_failback_waits_for_a_confirmation_and_refuses_one_too_early(
    start_cluster: StartCluster,
) -> None:
    cluster = await _ready(start_cluster)
    cluster.fail_storage("rs-1")
    await cluster.wait_status(
        lambda s: server(s, "rs-1")["state"] == "storage_failed", 10, "rs-1 storage_failed"
    )
    too_early = await cluster.confirm_failback("rs-1")
    assert not too_early.ok
    assert "still reports failed storage" in too_early.reason
    healthy = await cluster.confirm_failback("rs-2")
    assert not healthy.ok
    assert "not storage-failed" in healthy.reason

    cluster.repair_storage("rs-1")
    await cluster.wait_status(
        lambda s: server(s, "rs-1")["storage"] == "ok", 10, "rs-1 reports storage ok again"
    )
    await holds(
        cluster.status,
        lambda s: (
            server(s, "rs-1")["state"] == "storage_failed"
            and all(c["host"] != "rs-1" for c in cameras_of(s, "rs-1"))
        ),
        2.0,
        "no failback without a confirmation",
    )
    confirmed = await cluster.confirm_failback("rs-1")
    assert confirmed.ok, confirmed.reason
    await cluster.wait_status(all_home, 15, "rs-1's cameras home after the confirmation")


async def test_r2_half_the_fleet_silent_at_once_holds_failovers_and_raises_an_alert(
    start_cluster: StartCluster,
) -> None:
    """R2 guard: two of three servers cut at once look like the observer's own network:
    no failover, one ``failovers_held`` alert; once one returns, the other fails over."""
    config = make_config(THREE, CAMS, network_timeout=1.5)
    config = config.model_copy(
        update={"detection": config.detection.model_copy(update={"mass_silence_share": 0.5})}
    )
    cluster = await start_cluster(config)
    await cluster.wait_status(all_home, 20, "every camera recording at home")
    cluster.relays["rs-1"].cut()
    cluster.relays["rs-2"].cut()

    async def held() -> list[FailoversHeld]:
        return [e for _, e in await cluster.events() if isinstance(e, FailoversHeld)]

    alerts = await eventually(held, bool, 15, "a failovers_held alert")
    assert set(alerts[0].servers) == {"rs-1", "rs-2"}
    await holds(
        cluster.status,
        lambda s: all(server(s, sid)["state"] == "online" for sid in ("rs-1", "rs-2")),
        2.0,
        "no network failover while two of three are silent",
    )
    cluster.relays["rs-2"].restore()
    await cluster.wait_status(
        failed_over("rs-1", "network_failed"),
        15,
        "rs-1 fails over once only it is silent",
    )
    assert len(await held()) == 1
