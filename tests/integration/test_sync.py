"""Footage comes home after failback, verified, resumably, on a real nats-server (R9)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path
from typing import Any, TypeVar

import pytest

from services.cli.footage import timeline_document
from shared import subjects
from shared.messages import (
    CameraMoved,
    Message,
    SyncCompleted,
    SyncFailed,
    SyncProgress,
    SyncStarted,
)
from tests.helpers import eventually, metric
from tests.integration.cluster import (
    TestCluster,
    all_home,
    camera,
    cameras_of,
    make_config,
    server,
    with_sync,
)
from tests.integration.conftest import StartCluster

SERVERS = {"rs-1": 2, "rs-2": 3, "rs-3": 3}
CAMS = {"c11": "rs-1", "c12": "rs-1", "c21": "rs-2", "c31": "rs-3"}
AWAY = ("c11", "c12")
FAST_SEGMENTS = {"segment_seconds": 0.05, "network_timeout": 1.5}

E = TypeVar("E", bound=Message)
T = TypeVar("T")
Footage = dict[str, dict[str, str]]  # camera -> {segment name: sha256}


def away_footage(cluster: TestCluster, hosts: dict[str, str]) -> Footage:
    """Every segment the hosts hold of the failed-over cameras (their epochs only)."""
    found: Footage = {}
    for cam, host in hosts.items():
        directory = cluster.recording_dir(host) / cam
        found[cam] = {}
        for path in sorted(directory.glob("*.seg")):
            with contextlib.suppress(FileNotFoundError):  # sync deleted it meanwhile
                found[cam][path.name] = _sha(path)
    return found


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _outage(cluster: TestCluster, segments: int) -> dict[str, str]:
    """Storage-fail rs-1, let its cameras record ``segments`` segments elsewhere, repair."""
    await cluster.wait_status(all_home, 20, "every camera home")
    cluster.fail_storage("rs-1")
    doc = await cluster.wait_status(
        lambda s: all(c["state"] == "failed_over" for c in cameras_of(s, "rs-1")),
        10,
        "rs-1's cameras failed over",
    )
    hosts = {c["id"]: c["host"] for c in cameras_of(doc, "rs-1")}

    async def least() -> int:
        return min(len(v) for v in away_footage(cluster, hosts).values())

    await eventually(least, lambda n: n >= segments, 20, f"{segments} segments per camera away")
    cluster.repair_storage("rs-1")
    await cluster.wait_status(lambda s: server(s, "rs-1")["storage"] == "ok", 10, "storage ok")
    return hosts


async def _sync_events(cluster: TestCluster, kind: type[E]) -> list[E]:
    return [e for _, e in await cluster.events() if isinstance(e, kind)]


async def _wait_synced(cluster: TestCluster, within: float) -> list[SyncCompleted]:
    """Every job that started has completed, and both away cameras had one."""

    async def completed() -> tuple[set[tuple[str, str, int]], list[SyncCompleted]]:
        started = {(e.camera, e.source, e.epoch) for e in await _sync_events(cluster, SyncStarted)}
        return started, await _sync_events(cluster, SyncCompleted)

    def all_done(seen: tuple[set[tuple[str, str, int]], list[SyncCompleted]]) -> bool:
        started, done = seen
        finished = {(e.camera, e.source, e.epoch) for e in done}
        return started <= finished and {cam for cam, _, _ in finished} >= set(AWAY)

    _, done = await eventually(completed, all_done, within, "every sync job completed")
    return done


def _assert_home_and_identical(cluster: TestCluster, before: Footage) -> None:
    for cam, segments in before.items():
        home = cluster.recording_dir("rs-1") / cam
        for name, sha in segments.items():
            assert (home / name).exists(), f"{cam}/{name} did not reach home"
            assert _sha(home / name) == sha, f"{cam}/{name} differs at home"
            assert not (home / f".{name}.part").exists(), f"{cam}/{name}: a partial copy remains"


async def test_r9_footage_recorded_elsewhere_reaches_home_verified_and_hosts_let_go(
    start_cluster: StartCluster,
) -> None:
    """R9: after a confirmed failback every away segment is at home, byte-identical, and the
    hosts' copies are deleted (default retention); progress was published."""
    cluster = await start_cluster(make_config(SERVERS, CAMS, **FAST_SEGMENTS))
    hosts = await _outage(cluster, segments=20)
    before = away_footage(cluster, hosts)  # before sync can delete host copies
    assert (await cluster.confirm_failback("rs-1")).ok
    await cluster.wait_status(all_home, 15, "rs-1's cameras home")
    done = await _wait_synced(cluster, 30)

    _assert_home_and_identical(cluster, before)
    assert away_footage(cluster, hosts) == {cam: {} for cam in hosts}, "hosts kept copies"
    assert sum(e.segments for e in done) >= sum(len(v) for v in before.values())
    started = await _sync_events(cluster, SyncStarted)
    assert {(e.camera, e.source) for e in started} == set(hosts.items())
    progress = await _sync_events(cluster, SyncProgress)
    assert progress
    assert progress[-1].segments_done == progress[-1].segments_total
    assert progress[-1].jobs_open == 0

    # The timeline: all footage is home now; the only holes are at the failover (detection
    # and move) and the failback handover (release, then claim), each in milliseconds.
    assert cluster.bus is not None
    for cam in AWAY:
        timeline = await timeline_document(cluster.bus, cam)
        assert {r["server"] for r in timeline["ranges"]} == {"rs-1"}, timeline["ranges"]
        assert timeline["unreachable"] == []
        assert len(timeline["gaps"]) <= 2, timeline["gaps"]
        assert all(g["ms"] < 3000 for g in timeline["gaps"]), timeline["gaps"]
        moves = timeline["handovers"]
        assert len(moves) == 2, moves  # failover to the host, failback home
        assert moves[0]["from_epoch"] < moves[0]["to_epoch"] < moves[1]["to_epoch"]
        assert all(-3000 < m["gap_ms"] < 3000 for m in moves), moves


async def test_r9_sync_survives_a_killed_sync_process_a_restarted_receiver_and_bad_chunks(
    start_cluster: StartCluster,
) -> None:
    """R9: SIGKILL of the sync service mid-transfer, the receiving and a sending agent
    stopped and started mid-transfer, and corrupted chunks: everything still arrives,
    verified, exactly once."""
    # A restart of rs-1's agent must not look like a network failure here.
    timing = FAST_SEGMENTS | {"network_timeout": 10.0}
    config = with_sync(
        make_config(SERVERS, CAMS, **timing),
        chunk_bytes=1024,
        segments_in_flight=1,
        retry_seconds=0.2,
        retention="keep",
    )
    cluster = await start_cluster(config, sync_as_process=True)
    hosts = await _outage(cluster, segments=30)
    for host in set(hosts.values()):
        cluster.agent(host).footage.corrupt_next_chunks = 3
        cluster.agent(host).footage.chunk_delay = 0.01  # a slow link: the kills land mid-way
    received_before = metric("blaze_sync_received_bytes_total")
    refetched_before = metric("blaze_sync_chunks_refetched_total")
    assert (await cluster.confirm_failback("rs-1")).ok
    await cluster.wait_status(all_home, 15, "rs-1's cameras home")
    before = away_footage(cluster, hosts)

    await _first_event(cluster, subjects.sync_event("rs-1", "sync_progress"))
    cluster.kill_process("sync")
    await cluster.agents["rs-1"].close()  # the receiver stops mid-transfer
    cluster.start_agent("rs-1")
    cluster.start_process("sync")
    await _first_event(cluster, subjects.sync_event("rs-1", "sync_progress"))
    sender = sorted(set(hosts.values()))[0]
    await cluster.agents[sender].close()  # a sender stops mid-transfer
    cluster.start_agent(sender).footage.chunk_delay = 0.01
    done = await _wait_synced(cluster, 60)

    _assert_home_and_identical(cluster, before)
    after = away_footage(cluster, hosts)
    for cam in before:
        gone = sorted(set(before[cam]) - set(after[cam]))
        new = sorted(set(after[cam]) - set(before[cam]))
        assert not gone, f"retention 'keep' must keep the hosts' copies: {cam} lost {gone[:3]}"
        assert not new, f"{cam} recorded on its old host after failback: {new[:3]}"
    total = sum(len(v) for v in before.values())
    assert sum(e.segments for e in done) == total
    received = metric("blaze_sync_received_bytes_total") - received_before
    sizes = sum(
        (cluster.recording_dir("rs-1") / c / n).stat().st_size for c in before for n in before[c]
    )
    assert received == sizes, "a segment arrived twice (or not at all)"
    # Each host damages its first three chunks (a restarted sender starts clean).
    assert metric("blaze_sync_chunks_refetched_total") - refetched_before >= 3
    assert not [e for e in await _sync_events(cluster, SyncFailed) if e.paused]


async def test_r9_storage_failing_again_pauses_sync_and_the_next_failback_resumes_it(
    start_cluster: StartCluster,
) -> None:
    """R9: sync under way to a server that fails again pauses, and restarts by itself on its
    next failback."""
    config = with_sync(
        make_config(SERVERS, CAMS, **FAST_SEGMENTS), chunk_bytes=1024, segments_in_flight=1
    )
    cluster = await start_cluster(config)
    hosts = await _outage(cluster, segments=40)
    before = away_footage(cluster, hosts)  # before sync can delete host copies
    assert (await cluster.confirm_failback("rs-1")).ok
    await cluster.wait_status(all_home, 15, "rs-1's cameras home")
    for host in set(hosts.values()):
        cluster.agent(host).footage.chunk_delay = 0.05  # a slow link: sync takes seconds
    await _first_event(cluster, subjects.sync_event("rs-1", "sync_progress"))
    cluster.fail_storage("rs-1")

    async def paused() -> list[SyncFailed]:
        return [e for e in await _sync_events(cluster, SyncFailed) if e.paused]

    await eventually(paused, bool, 15, "sync paused when rs-1 failed again")
    cluster.repair_storage("rs-1")
    await cluster.wait_status(lambda s: server(s, "rs-1")["storage"] == "ok", 10, "storage ok")
    for host in set(hosts.values()):
        cluster.agent(host).footage.chunk_delay = 0.0

    async def confirmed() -> bool:  # health hears the repair on its own, a moment apart
        return (await cluster.confirm_failback("rs-1")).ok

    await eventually(confirmed, bool, 10, "health accepts the confirmation")
    await _wait_synced(cluster, 60)
    _assert_home_and_identical(cluster, before)


async def _first_event(cluster: TestCluster, subject: str) -> None:
    """Wait (bounded) for the first message on a live event subject."""
    assert cluster.bus is not None
    seen = asyncio.Event()

    async def note(_subject: str, _event: SyncProgress) -> None:
        seen.set()

    sub = await cluster.bus.subscribe(subject, SyncProgress, note)
    try:
        await asyncio.wait_for(seen.wait(), 30)
    finally:
        await sub.unsubscribe()


async def test_r9_footage_recorded_under_a_claim_whose_answer_was_lost_reaches_home(
    start_cluster: StartCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R9 (soak seed 7): a failover host receives the claim, records, and is cut off before
    its answer gets back, so no ``camera_moved`` ever names that epoch; the camera is placed
    elsewhere, the host releases it as a stray on its return. After the home's failback,
    what the host recorded under that epoch is home, verified, and gone from the host."""
    servers = {"rs-1": 2, "rs-2": 2, "rs-3": 3}
    cameras = {"c11": "rs-1", "c21": "rs-2", "c31": "rs-3"}
    cluster = await start_cluster(make_config(servers, cameras, **FAST_SEGMENTS))
    await cluster.wait_status(all_home, 20, "every camera home")
    lost: list[tuple[str, int]] = []  # (host, epoch) of the claim whose answer is lost

    for host in ("rs-2", "rs-3"):
        recorder = cluster.agent(host).recorder
        started = recorder.start

        async def start_then_cut(
            camera: str, epoch: int, host: str = host, started: Any = started
        ) -> None:
            await started(camera, epoch)
            if camera == "c11" and not lost:
                lost.append((host, epoch))
                cluster.relays[host].cut()  # it records; its answer never leaves

        monkeypatch.setattr(recorder, "start", start_then_cut)

    cluster.fail_storage("rs-1")
    await eventually(lambda: _value(lost), bool, 10, "c11 claimed by a host then cut off")
    (cut_host, epoch) = lost[0]
    directory = cluster.recording_dir(cut_host) / "c11"

    def held() -> dict[str, str]:
        found = {}
        for path in sorted(directory.glob(f"*_e{epoch}.seg")):
            with contextlib.suppress(FileNotFoundError):  # sync deleted it meanwhile
                found[path.name] = _sha(path)
        return found

    await eventually(lambda: _value(len(held())), lambda n: n >= 10, 20, "segments recorded")
    doc = await cluster.wait_status(
        lambda s: camera(s, "c11")["host"] not in (cut_host, "rs-1"), 20, "c11 placed again"
    )
    assert camera(doc, "c11")["epoch"] > epoch
    cluster.relays[cut_host].restore()
    await eventually(
        lambda: _value(cluster.agent(cut_host).recorder.recording()),
        lambda now: "c11" not in now,
        20,
        f"{cut_host} released c11 as a stray",
    )
    before = held()
    moved = [e for _, e in await cluster.events() if isinstance(e, CameraMoved)]
    assert not [e for e in moved if e.camera == "c11" and e.epoch == epoch], "not the bug"

    cluster.repair_storage("rs-1")
    await cluster.wait_status(lambda s: server(s, "rs-1")["storage"] == "ok", 10, "storage ok")

    async def confirmed() -> bool:
        return (await cluster.confirm_failback("rs-1")).ok

    await eventually(confirmed, bool, 10, "health accepts the confirmation")
    await cluster.wait_status(all_home, 20, "every camera home")

    async def lost_epoch_synced() -> list[SyncCompleted]:
        return [
            e
            for e in await _sync_events(cluster, SyncCompleted)
            if (e.camera, e.source, e.epoch) == ("c11", cut_host, epoch)
        ]

    done = await eventually(lost_epoch_synced, bool, 30, "the lost epoch's job completed")
    assert done[0].segments == len(before)
    _assert_home_and_identical(cluster, {"c11": before})
    assert held() == {}, f"{cut_host} kept footage of epoch {epoch}"


async def _value(value: T) -> T:
    """A plain value as an awaitable probe for ``eventually``."""
    return value
