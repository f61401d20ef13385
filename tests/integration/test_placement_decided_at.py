"""Every notice of placement says which prefix of the log it was decided on (``decided_at``,
issue 10, seed 10), the same after a SIGKILL and a replay (R11), on a real nats-server."""

from __future__ import annotations

import asyncio

from shared import subjects
from shared.messages import CameraMoved, CameraMovePlanned, ClaimsConfirmed, ServerFailed
from shared.messages.events import AnyEvent, PlacementNotice
from tests.integration.cluster import (
    Status,
    TestCluster,
    all_home,
    assert_failed_over_once,
    cameras_of,
    make_config,
)
from tests.integration.conftest import StartCluster

SERVERS = {"rs-1": 8, "rs-2": 8, "rs-3": 8}
CAMERAS = {f"cam-1-{i}": "rs-1" for i in range(6)} | {"cam-2-0": "rs-2", "cam-3-0": "rs-3"}
ON_RS_1 = [c for c, home in CAMERAS.items() if home == "rs-1"]


def _failed_over(doc: Status) -> bool:
    return all(c["state"] == "failed_over" for c in cameras_of(doc, "rs-1"))


async def _fail_rs_1(cluster: TestCluster) -> list[tuple[int, AnyEvent]]:
    cluster.fail_storage("rs-1")
    await cluster.wait_status(_failed_over, 20, "the cameras of rs-1 failed over")
    return await cluster.events()


def _failure_seq(log: list[tuple[int, AnyEvent]]) -> int:
    [failed] = [s for s, e in log if isinstance(e, ServerFailed) and e.server == "rs-1"]
    return failed


async def test_every_notice_carries_the_seq_of_the_event_whose_fold_decided_it(
    start_cluster: StartCluster,
) -> None:
    cluster = await start_cluster(make_config(SERVERS, CAMERAS))
    await cluster.wait_status(all_home, 20, "every camera recording at home")
    log = await _fail_rs_1(cluster)
    failed = _failure_seq(log)

    notices = [(seq, e) for seq, e in log if isinstance(e, PlacementNotice)]
    assert notices
    for seq, notice in notices:
        assert notice.decided_at is not None, (seq, notice)
        assert 0 <= notice.decided_at < seq, (seq, notice)
    # A fresh cluster's start: decided before any event was folded.
    plans = [e for _, e in notices if isinstance(e, CameraMovePlanned)]
    assert {e.decided_at for e in plans if e.reason == "start"} == {0}
    # The failover: every plan decided at the fold of the failure itself.
    failovers = [e for e in plans if e.reason == "failover"]
    assert sorted(e.camera for e in failovers) == sorted(ON_RS_1)
    assert {e.decided_at for e in failovers} == {failed}
    # Every move: decided at the fold of the new host's confirmation of that claim.
    confirmed = {
        (a.camera, a.epoch, e.server): seq
        for seq, e in log
        if isinstance(e, ClaimsConfirmed)
        for a in e.cameras
    }
    moved = [e for _, e in notices if isinstance(e, CameraMoved)]
    assert len(moved) == len(CAMERAS) + len(ON_RS_1)
    for e in moved:
        assert e.decided_at == confirmed[(e.camera, e.epoch, e.to)], e


async def test_r11_a_replay_after_a_kill_decides_at_the_same_log_position(
    start_cluster: StartCluster,
) -> None:
    """R11: SIGKILL placement at its first failover plan; the restarted process replays
    the failure and publishes the same decisions with the same ``decided_at`` (the ones
    already stored are dropped by Msg-Id; a core subscriber sees both copies)."""
    cluster = await start_cluster(make_config(SERVERS, CAMERAS), placement_as_process=True)
    await cluster.wait_status(all_home, 30, "every camera recording at home")
    assert cluster.bus is not None
    seen: list[CameraMovePlanned] = []
    first = asyncio.Event()

    async def kill_at_first(_subject: str, plan: CameraMovePlanned) -> None:
        seen.append(plan)
        if plan.reason == "failover" and not first.is_set():
            first.set()
            cluster.kill_placement_process()

    sub = await cluster.bus.subscribe(
        subjects.all_cameras_event("camera_move_planned"), CameraMovePlanned, kill_at_first
    )
    try:
        cluster.fail_storage("rs-1")
        await asyncio.wait_for(first.wait(), 20)
        cluster.start_placement_process()
        doc = await cluster.wait_status(_failed_over, 30, "failed over after the kill")
    finally:
        await sub.unsubscribe()

    log = await cluster.events()
    failed = _failure_seq(log)
    stored = [e for _, e in log if isinstance(e, CameraMovePlanned) and e.reason == "failover"]
    assert sorted(e.camera for e in stored) == sorted(ON_RS_1)
    assert {e.decided_at for e in stored} == {failed}
    published: dict[tuple[str, int], int | None] = {}
    for plan in seen:
        if plan.reason == "failover":
            key = (plan.camera, plan.epoch)
            published.setdefault(key, plan.decided_at)
            assert published[key] == plan.decided_at, plan
    await assert_failed_over_once(cluster, doc, ON_RS_1, "rs-1")
