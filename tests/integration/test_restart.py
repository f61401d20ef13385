"""Kill -9 the placement process in the middle of a failover; nothing is lost, repeated or
contradicted (R11); agents refuse stale epochs, even after their own restart."""

from __future__ import annotations

import asyncio

from services.placement.state import Placement
from shared import subjects
from shared.messages import (
    Action,
    Assignment,
    CameraMoved,
    CameraMovePlanned,
    Command,
    CommandResult,
    Message,
)
from tests.helpers import eventually
from tests.integration.cluster import (
    TestCluster,
    all_home,
    assert_failed_over_once,
    cameras_of,
    make_config,
    server,
)
from tests.integration.conftest import StartCluster

BIG = {"rs-1": 64, "rs-2": 24, "rs-3": 24, "rs-4": 24}
SIXTY_FOUR = {f"cam-{i:02d}": "rs-1" for i in range(64)}


async def _kill_placement_at_first(
    cluster: TestCluster, subject: str, model: type[CameraMovePlanned | CameraMoved]
) -> None:
    """SIGKILL the placement process the moment the first event on ``subject`` is seen."""
    assert cluster.bus is not None
    seen = asyncio.Event()

    async def kill(_subject: str, _event: Message) -> None:
        if not seen.is_set():
            cluster.kill_placement_process()
            seen.set()

    sub = await cluster.bus.subscribe(subject, model, kill)
    try:
        await asyncio.wait_for(seen.wait(), 20)
    finally:
        await sub.unsubscribe()


async def test_r11_placement_killed_twice_mid_failover_resumes_without_repeats(
    start_cluster: StartCluster,
) -> None:
    """R11: SIGKILL placement after its first failover decision and again after the first
    confirmed move; the restarted process finishes the failover, and the log shows exactly
    one move per camera, epochs rising, every move starting where the last one ended."""
    cluster = await start_cluster(make_config(BIG, SIXTY_FOUR), placement_as_process=True)
    await cluster.wait_status(all_home, 30, "64 cameras recording at home")

    cluster.fail_storage("rs-1")
    await _kill_placement_at_first(
        cluster, subjects.all_cameras_event("camera_move_planned"), CameraMovePlanned
    )
    cluster.start_placement_process()
    await _kill_placement_at_first(cluster, subjects.all_cameras_event("camera_moved"), CameraMoved)
    cluster.start_placement_process()

    doc = await cluster.wait_status(
        lambda s: all(c["state"] == "failed_over" for c in cameras_of(s, "rs-1")),
        30,
        "all 64 cameras failed over after two kills",
    )
    assert {server(doc, s)["hosting"] for s in ("rs-2", "rs-3", "rs-4")} <= {21, 22}
    await assert_failed_over_once(cluster, doc, SIXTY_FOUR, "rs-1")


async def test_agent_refuses_a_command_older_than_an_epoch_it_has_seen_even_after_restart(
    start_cluster: StartCluster,
) -> None:
    """Fencing: a stale claim (from a deposed decider, or delayed) takes nothing back."""
    cluster = await start_cluster(make_config({"rs-1": 2, "rs-2": 2}, {"c1": "rs-1"}))
    await cluster.wait_status(all_home, 20, "c1 home")
    assert cluster.bus is not None
    epoch = cluster.recorders()["rs-1"]["c1"]
    snapshot = await cluster.bus.read_state(latest=True)
    assert snapshot is not None
    ours = Placement.model_validate_json(snapshot[0]).cluster_id
    stale = Command(  # a leader fence above the real one: only the camera epoch is stale
        server="rs-2",
        action=Action.CLAIM,
        cameras=(Assignment(camera="c1", epoch=epoch),),
        fence=10_000,
        cluster=ours,
    )
    newer = stale.model_copy(update={"cameras": (Assignment(camera="c1", epoch=epoch + 100),)})
    rs2 = subjects.command("rs-2")
    first = await cluster.bus.request(rs2, newer, CommandResult, timeout=5)
    assert [a.epoch for a in first.done] == [epoch + 100]
    release = newer.model_copy(update={"action": Action.RELEASE})
    await cluster.bus.request(rs2, release, CommandResult, timeout=5)

    await cluster.agents["rs-2"].close()
    cluster.start_agent("rs-2")
    answer = await eventually(
        lambda: _try_request(cluster, rs2, stale),
        lambda r: r is not None,
        10,
        "restarted rs-2 answers",
    )
    assert answer is not None
    assert not answer.done
    assert [(r.camera, r.seen_epoch) for r in answer.refused] == [("c1", epoch + 100)]
    assert "c1" not in cluster.recorders()["rs-2"]


async def _try_request(
    cluster: TestCluster, subject: str, command: Command
) -> CommandResult | None:
    assert cluster.bus is not None
    try:
        return await cluster.bus.request(subject, command, CommandResult, timeout=1)
    except Exception:
        return None


async def test_r11_a_nats_server_restart_does_not_stop_detection_or_placement(
    start_cluster: StartCluster,
) -> None:
    """R11: the nats-server is restarted (same store); every service reconnects, placement's
    event consumer is rebuilt, and a storage failure afterwards still fails over."""
    cluster = await start_cluster(make_config({"rs-1": 2, "rs-2": 2}, {"c1": "rs-1"}))
    await cluster.wait_status(all_home, 20, "c1 home")
    cluster.nats.stop()
    cluster.nats.start()

    async def jetstream_back() -> bool:
        try:
            await cluster.status()
        except Exception:  # not answering yet is what we wait out
            return False
        return True

    await eventually(jetstream_back, bool, 30, "JetStream answers again")
    cluster.fail_storage("rs-1")
    doc = await cluster.wait_status(
        lambda s: (
            server(s, "rs-1")["state"] == "storage_failed"
            and cameras_of(s, "rs-1")[0]["state"] == "failed_over"
        ),
        30,
        "rs-1 storage_failed and c1 failed over after the restart",
    )
    assert cameras_of(doc, "rs-1")[0]["host"] == "rs-2"


async def test_r12_agent_keeps_the_fence_across_a_restart_and_starts_afresh_for_a_new_cluster(
    start_cluster: StartCluster,
) -> None:
    """R12: an agent remembers the newest placement leader epoch in SQLite; after its own
    restart it still refuses a whole command from an older leader, saying which epoch it
    has seen. Commands from another cluster (a NATS store started afresh: epochs start at
    1 again) make it start its ledger afresh instead of refusing them for ever."""
    cluster = await start_cluster(make_config({"rs-1": 2, "rs-2": 2}, {"c1": "rs-1"}))
    await cluster.wait_status(all_home, 20, "c1 home")
    assert cluster.bus is not None
    snapshot = await cluster.bus.read_state(latest=True)
    assert snapshot is not None
    ours = Placement.model_validate_json(snapshot[0]).cluster_id
    assert ours

    async def fence_of_rs2() -> int:
        return cluster.agent("rs-2").placement_fence

    # rs-2 hosts nothing, yet the leader's announcement told it the epoch.
    await eventually(fence_of_rs2, lambda f: f > 0, 10, "rs-2 knows the leader's epoch")
    rs2 = subjects.command("rs-2")
    newest = Command(server="rs-2", action=Action.CLAIM, cameras=(), fence=10_000, cluster=ours)
    assert not (await cluster.bus.request(rs2, newest, CommandResult, timeout=5)).refused

    await cluster.agents["rs-2"].close()
    cluster.start_agent("rs-2")
    older = newest.model_copy(
        update={"fence": 9_999, "cameras": (Assignment(camera="c1", epoch=1_000_000),)}
    )
    answer = await eventually(
        lambda: _try_request(cluster, rs2, older), lambda r: r is not None, 10, "rs-2 answers"
    )
    assert answer is not None
    assert answer.fence_seen == 10_000
    assert not answer.done
    assert "deposed placement leader" in answer.refused[0].reason
    assert "c1" not in cluster.recorders()["rs-2"]

    fresh = older.model_copy(update={"fence": 1, "cluster": "a-cluster-started-afresh"})
    answer = await cluster.bus.request(rs2, fresh, CommandResult, timeout=5)
    assert [a.camera for a in answer.done] == ["c1"]
    assert answer.fence_seen == 0
