"""Placement policy on a real nats-server (issue 5): group-confined failover, preemption
with its events, and make-before-break failback with no recording gap (R4, R5, R8)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.cli.footage import timeline_document
from services.cli.views import whatif_document
from services.heartbeat.recorder import SimulatedRecorder, Stint
from services.placement.state import Placement
from shared.config import ClusterConfig, FailbackMode, PlacementPolicy, Priority, ServerConfig
from shared.messages import (
    CameraPending,
    CameraPreempted,
    ClaimsConfirmed,
    ReleasesConfirmed,
)
from tests.helpers import eventually, holds
from tests.integration.cluster import (
    TestCluster,
    all_home,
    camera,
    make_config,
    server,
    settled,
)
from tests.integration.conftest import StartCluster

HIGH, MEDIUM, LOW = Priority.HIGH, Priority.MEDIUM, Priority.LOW


def with_policy(
    config: ClusterConfig, groups: dict[str, tuple[str, str]], **policy: Any
) -> ClusterConfig:
    """The same config with servers placed in (site, group) and a ``[placement]`` policy."""
    servers = tuple(
        ServerConfig(id=s.id, capacity=s.capacity, site=groups[s.id][0], group=groups[s.id][1])
        for s in config.servers
    )
    return config.model_copy(
        update={"servers": servers, "placement": PlacementPolicy.model_validate(policy)}
    )


async def _started(start_cluster: StartCluster, config: ClusterConfig) -> TestCluster:
    cluster = await start_cluster(config)
    await cluster.wait_status(all_home, 20, "every camera recording at home")
    return cluster


async def test_issue5_failover_stays_in_the_group_pending_while_another_group_has_room(
    start_cluster: StartCluster,
) -> None:
    """Issue 5, R4, R5: with across_groups off, rs-1's cameras fill rs-2 (its group) and
    the rest wait Pending although rs-3 (another group of the site) has free channels."""
    cams = {"c11": ("rs-1", HIGH), "c12": ("rs-1", MEDIUM), "c13": ("rs-1", LOW)}
    cams["c21"] = ("rs-2", MEDIUM)
    config = with_policy(
        make_config({"rs-1": 3, "rs-2": 3, "rs-3": 4}, cams),
        {"rs-1": ("hq", "east"), "rs-2": ("hq", "east"), "rs-3": ("hq", "west")},
        across_groups=False,
    )
    cluster = await _started(start_cluster, config)
    cluster.fail_storage("rs-1")
    doc = await cluster.wait_status(
        lambda s: server(s, "rs-1")["state"] == "storage_failed" and settled(s, "rs-1"),
        10,
        "rs-1 failed, its cameras settled",
    )
    assert [camera(doc, c)["host"] for c in ("c11", "c12")] == ["rs-2", "rs-2"]
    assert camera(doc, "c13")["state"] == "pending"
    assert server(doc, "rs-3")["hosting"] == 0, "another group's channels stay unused"
    assert (server(doc, "rs-3")["site"], server(doc, "rs-3")["group"]) == ("hq", "west")
    await holds(
        cluster.status,
        lambda s: camera(s, "c13")["state"] == "pending" and server(s, "rs-3")["hosting"] == 0,
        1.0,
        "c13 stays Pending: it may not leave its group",
    )
    pending = [e for _, e in await cluster.events() if isinstance(e, CameraPending)]
    assert [(e.camera, e.reason) for e in pending] == [("c13", "no server has a free channel")]
    assert "c13" not in cluster.recorders()["rs-3"]


async def test_issue5_a_high_camera_preempts_a_low_guest_with_events_naming_both(
    start_cluster: StartCluster,
) -> None:
    """Issue 5, R4: lo (low) is a guest on rs-2; when rs-1 fails, its high camera has no
    free channel, so rs-2 releases lo (camera_preempted names both cameras; lo becomes
    Pending) and only then claims hi. Nobody records lo any more; capacity holds. The
    what-if view foretold exactly that. Its failed home rs-3 may still count lo
    (``releasing_on``) until it confirms a release: it is not rs-2's channel."""
    cams = {"hi": ("rs-1", HIGH), "lo": ("rs-3", LOW)}
    config = with_policy(
        make_config({"rs-1": 1, "rs-2": 1, "rs-3": 1}, cams),
        dict.fromkeys(("rs-1", "rs-2", "rs-3"), ("hq", "east")),
        preemption=True,
    )
    cluster = await _started(start_cluster, config)
    cluster.fail_storage("rs-3")
    await cluster.wait_status(
        lambda s: camera(s, "lo")["host"] == "rs-2" and camera(s, "lo")["state"] == "failed_over",
        10,
        "lo failed over to rs-2",
    )
    assert cluster.bus is not None
    snapshot = await cluster.bus.read_state()
    assert snapshot is not None
    predicted = whatif_document(Placement.model_validate_json(snapshot[0]), "rs-1")
    assert predicted["preempted"] == [{"camera": "lo", "server": "rs-2", "by": "hi"}]
    assert predicted["moves"] == [{"camera": "hi", "home": "rs-1", "from": "rs-1", "to": "rs-2"}]
    assert predicted["pending"] == [{"camera": "lo", "home": "rs-3", "from": "rs-2"}]
    cluster.fail_storage("rs-1")
    doc = await cluster.wait_status(
        lambda s: camera(s, "hi")["host"] == "rs-2" and camera(s, "hi")["state"] == "failed_over",
        10,
        "hi recording on rs-2 in lo's place",
    )
    assert camera(doc, "lo")["state"] == "pending"
    # rs-2 released it; rs-3 (its failed home) may still be listed until it is back or
    # its heartbeat shows lo (a stray then): a failed server's channel stays counted.
    assert "rs-2" not in camera(doc, "lo")["releasing_on"]
    assert "lo" not in cluster.recorders()["rs-2"]
    log = [e for _, e in await cluster.events()]
    preempted = [e for e in log if isinstance(e, CameraPreempted)]
    assert [(e.camera, e.by, e.server, e.by_home) for e in preempted] == [
        ("lo", "hi", "rs-2", "rs-1")
    ]
    assert any(isinstance(e, CameraPending) and e.reason == "preempted by hi" for e in log)
    released = _indices(log, ReleasesConfirmed, "lo", "rs-2")[0]
    claimed = _indices(log, ClaimsConfirmed, "hi", "rs-2")[0]
    assert released < claimed, "the high camera claimed before the low one was released"
    recorders = await eventually(
        cluster.recording_now, lambda r: "hi" in r["rs-2"], 5, "rs-2 records hi"
    )
    assert recorders["rs-2"].keys() == {"hi"}
    # Only its failed home may still hold it (its own Pending camera: failback decides).
    assert not any("lo" in cams for server, cams in recorders.items() if server != "rs-3")


Outcome = type[ClaimsConfirmed] | type[ReleasesConfirmed]


def _indices(log: list[Any], kind: Outcome, camera: str, on: str) -> list[int]:
    """Where in the log ``on`` confirmed a claim (or release) of ``camera``."""
    return [
        i
        for i, e in enumerate(log)
        if isinstance(e, kind) and e.server == on and any(a.camera == camera for a in e.cameras)
    ]


async def test_issue5_make_before_break_failback_leaves_no_recording_gap(
    start_cluster: StartCluster,
) -> None:
    """Issue 5, R8: after the confirmed repair, home claims and writes its first segment
    while rs-2 still records; only then does rs-2 release, under the newer epoch. Every
    camera's recording overlaps at the handover (a double recording measured in ms) and
    its timeline shows no gap there."""
    cams = {f"c1{i}": "rs-1" for i in range(3)}
    config = with_policy(
        make_config({"rs-1": 3, "rs-2": 3}, cams),
        dict.fromkeys(("rs-1", "rs-2"), ("hq", "east")),
        failback=FailbackMode.MAKE_BEFORE_BREAK,
    )
    cluster = await _started(start_cluster, config)
    cluster.fail_storage("rs-1")
    await cluster.wait_status(
        lambda s: all(c["host"] == "rs-2" and c["state"] == "failed_over" for c in s["cameras"]),
        10,
        "every camera failed over to rs-2",
    )
    cluster.repair_storage("rs-1")
    await cluster.wait_status(lambda s: server(s, "rs-1")["storage"] == "ok", 10, "storage ok")
    reply = await cluster.confirm_failback("rs-1")
    assert reply.ok, reply.reason
    await cluster.wait_status(
        lambda s: all_home(s) and not any(c["releasing_on"] for c in s["cameras"]),
        15,
        "every camera home and rs-2 released them",
    )
    log = [e for _, e in await cluster.events()]
    overlaps = []
    for cam in cams:
        claimed_home = _indices(log, ClaimsConfirmed, cam, "rs-1")[-1]
        released_host = _indices(log, ReleasesConfirmed, cam, "rs-2")[-1]
        assert claimed_home < released_host, f"{cam}: rs-2 released before home claimed"
        home, host = _stint(cluster, "rs-1", cam, last=True), _stint(cluster, "rs-2", cam)
        assert host.stopped is not None
        overlaps.append((host.stopped - home.started).total_seconds() * 1000)
    assert all(ms > 0 for ms in overlaps), f"a gap at handover: overlap {overlaps} ms"
    print(f"\ndouble recording at make-before-break failback: {sorted(overlaps)} ms")
    assert cluster.bus is not None
    for cam in cams:
        doc = await timeline_document(cluster.bus, cam)
        last = doc["handovers"][-1]
        assert last["gap_ms"] <= 0, f"{cam}: the timeline shows a gap at failback: {last}"

    async def left_on_host() -> list[str]:
        host_dir = cluster.recording_dir("rs-2")
        return sorted(p.name for cam in cams for p in (host_dir / cam).glob("*.seg"))

    # R9: the footage of the double-recorded stint travels home like any other.
    await eventually(left_on_host, lambda left: not left, 20, "footage home, host copy gone")


def _stint(cluster: TestCluster, sid: str, camera: str, *, last: bool = False) -> Stint:
    """One server's stint of a camera: the last one, or the last one that ended."""
    recorder = cluster.agent(sid).recorder
    assert isinstance(recorder, SimulatedRecorder)
    stints = [s for s in recorder.stints if s.camera == camera and (last or s.stopped)]
    assert stints, f"{sid} never recorded {camera}"
    return max(stints, key=lambda s: s.started or datetime.min)
