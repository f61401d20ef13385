"""The soak checker's rules on made-up observations (issue 10): each rule fires on what
breaks it and stays quiet on what the cluster legitimately does. No NATS, no processes."""

from __future__ import annotations

from collections.abc import Iterable

from shared.messages import (
    AnyEvent,
    Assignment,
    CameraMoved,
    CameraMovePlanned,
    ClaimsConfirmed,
    FailbackConfirmed,
    FailbackStarted,
    FailureCause,
    MoveReason,
    ServerFailed,
    ServerRecovered,
)
from soak import rules
from soak.faultlog import ENDED, FAULTS_STOPPED, REPAIRING, STARTED, FaultRecord
from soak.observations import Bounds, CameraSeen, SegmentSeen, ServerSeen, StatusSeen
from soak.rules import Checker

STORAGE, NETWORK = FailureCause.STORAGE, FailureCause.NETWORK
BOUNDS = Bounds()
"""The defaults: storage failover 6 s, network 16 s, takeover 5 s, NATS election 8 s."""


def fired(checker: Checker) -> list[str]:
    return [v.rule for v in checker.violations]


def status(
    at: float,
    servers: dict[str, tuple[int, int]],
    cameras: Iterable[CameraSeen] = (),
    *,
    states: dict[str, str] | None = None,
    drained: Iterable[str] = (),
    cursor: int = 0,
) -> StatusSeen:
    """Servers as {id: (capacity, hosting)}; without ``cameras``, each server's hosting is
    that many cameras of its own recording there."""
    states = states or {}
    if not cameras:
        cameras = [
            cam(f"{sid}-c{i}", sid, sid) for sid, (_, load) in servers.items() for i in range(load)
        ]
    return StatusSeen(
        at,
        cursor,
        {
            sid: ServerSeen(sid, states.get(sid, "online"), cap, load, drained=sid in drained)
            for sid, (cap, load) in servers.items()
        },
        {c.id: c for c in cameras},
    )


def cam(cid: str, home: str, host: str | None, state: str = "", epoch: int = 1) -> CameraSeen:
    state = state or ("pending" if host is None else "home" if host == home else "failed_over")
    return CameraSeen(cid, home, host, state, epoch)


def fault(number: int, kind: str, target: str, at: float, role: str = "") -> FaultRecord:
    return FaultRecord(STARTED, at, number, kind, target, role)


def ended(number: int, kind: str, target: str, at: float, *, ok: bool = True) -> FaultRecord:
    return FaultRecord(ENDED, at, number, kind, target, ok=ok, detail="" if ok else "refused")


def feed(checker: Checker, *events: AnyEvent, at: float = 0.0) -> None:
    for event in events:
        checker.on_event(checker.last_seq + 1, at, event, f"d{checker.last_seq + 1}")


def seg(camera: str, epoch: int, recorded_by: str, held_by: str, second: int = 0) -> SegmentSeen:
    name = f"20260101T1200{second:02d}.000000Z_e{epoch}.seg"
    return SegmentSeen(camera, name, epoch, recorded_by, held_by)


# ---- no server above its channel capacity (R4) ----


def test_a_server_above_its_capacity_is_a_violation() -> None:
    checker = Checker(BOUNDS)
    checker.on_status(status(1.0, {"rs-1": (4, 4)}))
    assert fired(checker) == []
    checker.on_status(status(2.0, {"rs-1": (4, 5)}, cursor=17))
    assert fired(checker) == [rules.OVER_CAPACITY]
    assert checker.violations[0].cursor == 17


def test_a_capacity_lowered_below_the_load_may_stay_above_it_but_never_gains() -> None:
    checker = Checker(BOUNDS)
    checker.on_status(status(1.0, {"rs-1": (8, 6)}))
    checker.on_status(status(2.0, {"rs-1": (4, 6)}))  # lowered: moves nothing
    checker.on_status(status(3.0, {"rs-1": (4, 5)}))  # a camera left
    assert fired(checker) == []
    checker.on_status(status(4.0, {"rs-1": (4, 6)}))  # and one came back: not allowed
    assert fired(checker) == [rules.OVER_CAPACITY]


# ---- one server per camera and epoch ----


def test_two_servers_confirming_one_camera_under_one_epoch_is_a_violation() -> None:
    checker = Checker(BOUNDS)
    a = Assignment(camera="c1", epoch=7)
    feed(checker, ClaimsConfirmed(server="rs-1", cameras=(a,)))
    feed(checker, ClaimsConfirmed(server="rs-1", cameras=(a,)))  # the same answer again
    assert fired(checker) == []
    feed(checker, ClaimsConfirmed(server="rs-2", cameras=(a,)))
    assert fired(checker) == [rules.RECORDED_TWICE]
    assert checker.violations[0].events == (1, 3)


def test_segments_of_one_epoch_written_by_two_servers_are_a_violation() -> None:
    checker = Checker(BOUNDS)
    checker.on_segments(1.0, [seg("c1", 7, "rs-1", "rs-1", 1), seg("c1", 8, "rs-2", "rs-2", 2)])
    # sync's copy at home keeps its recorder's name: not a second recorder
    checker.on_segments(2.0, [seg("c1", 8, "rs-2", "rs-1", 2)])
    assert fired(checker) == []
    checker.on_segments(3.0, [seg("c1", 7, "rs-3", "rs-3", 3)])
    assert fired(checker) == [rules.RECORDED_TWICE]


# ---- a failed server holds no camera once its failover is due (R2-R4) ----


def test_a_storage_failed_server_must_be_empty_within_the_storage_bound() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "storage_failure", "rs-1", 100.0))
    checker.on_status(status(105.0, {"rs-1": (4, 1)}, [cam("c1", "rs-1", "rs-1")]))
    assert fired(checker) == []
    # a camera recording elsewhere while rs-1 has yet to confirm its release: not on rs-1
    releasing = CameraSeen("c2", "rs-1", "rs-2", "failed_over", 9, ("rs-1",))
    checker.on_status(status(106.5, {"rs-1": (4, 1)}, [releasing]))
    assert fired(checker) == []
    checker.on_status(status(107.0, {"rs-1": (4, 2)}, [cam("c1", "rs-1", "rs-1"), releasing]))
    assert fired(checker) == [rules.FAILED_SERVER_HOSTS]
    assert checker.violations[0].fault == 1
    assert checker.violations[0].cameras == ("c1",)


def test_a_cut_server_keeps_its_cameras_until_the_network_window_has_passed() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "server_network_cut", "rs-1", 100.0))
    checker.on_status(status(114.0, {"rs-1": (4, 3)}))  # silence alone is no failure (R2)
    assert fired(checker) == []
    checker.on_status(status(117.0, {"rs-1": (4, 3)}))
    assert fired(checker) == [rules.FAILED_SERVER_HOSTS]


def test_a_short_cut_that_ended_is_not_judged() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "server_network_cut", "rs-1", 100.0))
    checker.on_fault(ended(1, "server_network_cut", "rs-1", 105.0))
    checker.on_status(status(130.0, {"rs-1": (4, 3)}))
    assert fired(checker) == []


def test_a_health_leader_taken_out_pushes_the_network_failover_back() -> None:
    """A new health leader gives every server a whole network_timeout (R12)."""
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "server_network_cut", "rs-1", 100.0))
    checker.on_fault(fault(2, "replica_kill", "health-a", 105.0, role="leader"))
    checker.on_status(status(125.0, {"rs-1": (4, 3)}))
    assert fired(checker) == []
    # 105 + takeover 5 + network_timeout 10 + network failover 16 = 136
    checker.on_status(status(137.0, {"rs-1": (4, 3)}))
    assert fired(checker) == [rules.FAILED_SERVER_HOSTS]


def test_a_standby_taken_out_pushes_nothing_back() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "server_network_cut", "rs-1", 100.0))
    checker.on_fault(fault(2, "replica_network_cut", "health-b", 105.0, role="standby"))
    checker.on_status(status(117.0, {"rs-1": (4, 3)}))
    assert fired(checker) == [rules.FAILED_SERVER_HOSTS]


def test_a_nats_node_lost_and_back_pushes_a_storage_failover_back() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "nats_node_kill", "nats-2", 98.0))
    checker.on_fault(fault(2, "storage_failure", "rs-1", 100.0))
    checker.on_fault(ended(1, "nats_node_kill", "nats-2", 103.0))
    # from the node's return: election 8 + takeover 5 + storage failover 6 = 122
    checker.on_status(status(121.0, {"rs-1": (4, 3)}))
    assert fired(checker) == []
    checker.on_status(status(123.0, {"rs-1": (4, 3)}))
    assert fired(checker) == [rules.FAILED_SERVER_HOSTS]


def test_a_drained_or_capacity_changed_server_is_not_a_failed_one() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "drain", "rs-1", 100.0))
    checker.on_fault(fault(2, "capacity_change", "rs-2", 100.0))
    checker.on_status(status(200.0, {"rs-1": (4, 3), "rs-2": (4, 3)}))
    assert fired(checker) == []


# ---- a storage-failed server gets nothing before the confirmation (R7) ----


def test_moves_onto_a_storage_failed_server_before_its_confirmation_are_violations() -> None:
    checker = Checker(BOUNDS)
    feed(checker, ServerFailed(server="rs-1", cause=STORAGE))
    feed(
        checker,
        CameraMovePlanned(
            camera="c1",
            home="rs-1",
            from_host="rs-2",
            to="rs-1",
            epoch=9,
            reason=MoveReason.FAILBACK,
        ),
        FailbackStarted(server="rs-1", cameras=1, cause=STORAGE),
    )
    assert fired(checker) == [rules.STORAGE_GATE, rules.STORAGE_GATE]
    assert checker.violations[0].events == (1, 2)


def test_the_confirmed_failback_of_a_storage_failed_server_is_no_violation() -> None:
    checker = Checker(BOUNDS)
    feed(
        checker,
        ServerFailed(server="rs-1", cause=STORAGE),
        FailbackConfirmed(server="rs-1"),
        ServerRecovered(server="rs-1", cause=STORAGE),
        FailbackStarted(server="rs-1", cameras=1, cause=STORAGE),
        CameraMovePlanned(
            camera="c1",
            home="rs-1",
            from_host="rs-2",
            to="rs-1",
            epoch=9,
            reason=MoveReason.FAILBACK,
        ),
    )
    assert fired(checker) == []


def log_at(checker: Checker, events: dict[int, AnyEvent]) -> None:
    """Events at their sequence numbers in the log; the events in between, about other
    things, are left out (the checker is told it saw up to just before each)."""
    for seq, event in sorted(events.items()):
        checker.last_seq = seq - 1
        checker.on_event(seq, 0.0, event, f"d{seq}")


def planned(camera: str, to: str, epoch: int, decided_at: int | None) -> CameraMovePlanned:
    home = camera.split("-")[1]
    return CameraMovePlanned(
        camera=camera,
        home=f"rs-{home}",
        from_host=f"rs-{home}",
        to=to,
        epoch=epoch,
        reason=MoveReason.FAILOVER,
        decided_at=decided_at,
    )


def test_a_plan_decided_before_the_storage_failure_but_logged_after_it_is_no_violation() -> None:
    """Seed 10: placement planned cam-48-029 onto rs-11 while folding 9822 (rs-48 failed);
    rs-11's storage failure (9823) was in the log before the notice (9853), which placement
    publishes behind its commands. Once it folded 9823 it planned the camera elsewhere."""
    checker = Checker(BOUNDS)
    log_at(
        checker,
        {
            9822: ServerFailed(server="rs-48", cause=NETWORK),
            9823: ServerFailed(server="rs-11", cause=STORAGE),
            9853: planned("cam-48-029", "rs-11", 3235, decided_at=9822),
            9947: planned("cam-48-029", "rs-13", 3302, decided_at=9823),
        },
    )
    assert fired(checker) == []


def test_a_plan_decided_at_an_event_before_the_failure_is_no_violation() -> None:
    """Seed 10: cam-40-011 planned onto rs-23 (31599), decided at an event before rs-23's
    storage failure (31541); re-planned onto rs-22 once placement had folded it (31669)."""
    checker = Checker(BOUNDS)
    log_at(
        checker,
        {
            31541: ServerFailed(server="rs-23", cause=STORAGE),
            31599: planned("cam-40-011", "rs-23", 7652, decided_at=31540),
            31669: planned("cam-40-011", "rs-22", 7701, decided_at=31541),
        },
    )
    assert fired(checker) == []


def test_a_plan_decided_after_placement_folded_the_storage_failure_is_a_violation() -> None:
    checker = Checker(BOUNDS)
    log_at(
        checker,
        {
            31541: ServerFailed(server="rs-23", cause=STORAGE),
            31599: planned("cam-40-011", "rs-23", 7652, decided_at=31541),
        },
    )
    assert fired(checker) == [rules.STORAGE_GATE]
    violation = checker.violations[0]
    assert violation.events == (31541, 31599)
    assert violation.servers == ("rs-23",)
    assert violation.cameras == ("cam-40-011",)
    assert "decided at event 31541" in violation.detail


def test_a_decision_is_judged_by_the_confirmations_placement_had_folded() -> None:
    """A failback decided before the confirmation, logged after it, broke R7; one decided
    after the confirmation did not, wherever the notices land in the log."""
    checker = Checker(BOUNDS)
    log_at(
        checker,
        {
            10: ServerFailed(server="rs-1", cause=STORAGE),
            20: FailbackConfirmed(server="rs-1"),
            30: FailbackStarted(server="rs-1", cameras=1, cause=STORAGE, decided_at=15),
            31: planned("cam-1-001", "rs-1", 9, decided_at=20),
            40: ServerFailed(server="rs-1", cause=STORAGE),
            41: planned("cam-1-002", "rs-1", 10, decided_at=35),
            42: planned("cam-1-003", "rs-1", 11, decided_at=40),
        },
    )
    assert fired(checker) == [rules.STORAGE_GATE, rules.STORAGE_GATE]
    assert [v.events for v in checker.violations] == [(10, 30), (40, 42)]


def test_a_notice_that_says_it_was_decided_after_itself_is_judged_at_its_place() -> None:
    checker = Checker(BOUNDS)
    log_at(
        checker,
        {
            5: planned("cam-1-001", "rs-1", 9, decided_at=99),
            6: ServerFailed(server="rs-1", cause=STORAGE),
        },
    )
    assert fired(checker) == []


def test_a_network_failure_needs_no_confirmation() -> None:
    checker = Checker(BOUNDS)
    feed(
        checker,
        ServerFailed(server="rs-1", cause=NETWORK),
        FailbackStarted(server="rs-1", cameras=1, cause=NETWORK),
    )
    assert fired(checker) == []


# ---- every camera home after the faults stop (R6-R8) ----


def test_cameras_away_from_home_when_the_bound_passes_are_a_violation() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(FaultRecord(FAULTS_STOPPED, 100.0))
    checker.on_status(status(110.0, {"rs-1": (4, 1)}, [cam("c1", "rs-1", "rs-2")]))
    checker.judge_convergence(160.0)
    assert fired(checker) == [rules.NOT_HOME]
    assert checker.violations[0].cameras == ("c1",)


def test_a_cluster_all_home_after_the_faults_converged() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(FaultRecord(FAULTS_STOPPED, 100.0))
    checker.on_status(status(103.0, {"rs-1": (4, 1)}, [cam("c1", "rs-1", "rs-1")]))
    checker.judge_convergence(160.0)
    assert fired(checker) == []
    assert checker.converged_at == 103.0


def test_a_camera_recording_elsewhere_or_under_an_old_epoch_is_not_recording_at_home() -> None:
    checker = Checker(BOUNDS)
    checker.on_status(
        status(
            1.0, {"rs-1": (4, 2)}, [cam("c1", "rs-1", "rs-1", epoch=8), cam("c2", "rs-1", "rs-1")]
        )
    )
    newest = {"c1": seg("c1", 7, "rs-1", "rs-1", 30), "c2": seg("c2", 1, "rs-1", "rs-1", 30)}
    checker.judge_recording_at_home(2.0, newest, since="20260101T120010.000000")
    assert fired(checker) == [rules.NOT_RECORDING_AT_HOME]
    assert checker.violations[0].cameras == ("c1",)


# ---- Pending only when capacity is truly short (R5) ----


def test_pending_beside_a_free_channel_on_two_reads_is_a_violation() -> None:
    checker = Checker(BOUNDS)
    cams = [cam("c1", "rs-1", None)]
    checker.on_status(status(1.0, {"rs-1": (4, 4), "rs-2": (4, 3)}, cams, cursor=40))
    assert fired(checker) == []  # one read may fall between two of placement's steps
    checker.on_status(status(3.5, {"rs-1": (4, 4), "rs-2": (4, 3)}, cams, cursor=41))
    assert fired(checker) == [rules.PENDING_WITH_FREE]
    assert checker.violations[0].servers == ("rs-2",)


def test_pending_when_every_channel_that_may_take_it_is_used_is_no_violation() -> None:
    checker = Checker(BOUNDS)
    cams = [cam("c1", "rs-1", None)]
    servers = {"rs-1": (4, 0), "rs-2": (4, 4), "rs-3": (4, 0), "rs-4": (4, 1)}
    shown = {"rs-1": "network_failed", "rs-3": "storage_failed"}
    for at in (1.0, 4.0, 7.0):
        checker.on_status(status(at, servers, cams, states=shown, drained=["rs-4"]))
    assert fired(checker) == []


# ---- the event log: no holes, replayable (R11) ----


def test_a_hole_in_the_sequence_and_an_event_that_does_not_validate_are_violations() -> None:
    checker = Checker(BOUNDS)
    checker.on_event(1, 0.0, ServerFailed(server="rs-1", cause=NETWORK), "a")
    checker.on_event(3, 0.0, None, "invalid")
    assert fired(checker) == [rules.EVENT_HOLE, rules.EVENT_INVALID]


def test_the_replay_must_hold_every_event_seen_live_unchanged() -> None:
    checker = Checker(BOUNDS)
    for seq in (1, 2, 3):
        checker.on_event(seq, 0.0, ServerFailed(server="rs-1", cause=NETWORK), f"d{seq}")
    checker.judge_replay(10.0, {1: "d1", 2: "d2", 3: "d3", 4: "d4"}, 4)
    assert fired(checker) == []
    checker.judge_replay(11.0, {1: "d1", 3: "changed"}, 3)
    assert fired(checker) == [rules.EVENT_NOT_REPLAYED, rules.EVENT_NOT_REPLAYED]


def test_a_move_confirmed_twice_is_a_violation() -> None:
    checker = Checker(BOUNDS)
    moved = CameraMoved(
        camera="c1", home="rs-1", from_host="rs-1", to="rs-2", epoch=5, reason=MoveReason.FAILOVER
    )
    feed(checker, moved)
    assert fired(checker) == []
    feed(checker, moved)
    assert fired(checker) == [rules.MOVE_REPEATED]


# ---- every segment somewhere, and at home once sync settles (R9) ----


def test_segments_lost_or_left_away_from_home_are_violations() -> None:
    checker = Checker(BOUNDS)
    kept_home = seg("c1", 7, "rs-2", "rs-2", 1)
    left_away = seg("c1", 7, "rs-2", "rs-2", 2)
    lost = seg("c1", 7, "rs-2", "rs-2", 3)
    checker.on_segments(1.0, [kept_home, left_away, lost])
    holders = {("c1", kept_home.name): {"rs-1"}, ("c1", left_away.name): {"rs-2"}}
    checker.judge_segments(2.0, holders, {"c1": "rs-1"})
    assert sorted(fired(checker)) == [rules.SEGMENT_LOST, rules.SEGMENT_NOT_HOME]


def test_segments_all_at_home_are_no_violation() -> None:
    checker = Checker(BOUNDS)
    a, b = seg("c1", 7, "rs-2", "rs-2", 1), seg("c1", 8, "rs-1", "rs-1", 2)
    checker.on_segments(1.0, [a, b])
    checker.judge_segments(
        2.0, {("c1", a.name): {"rs-1"}, ("c1", b.name): {"rs-1"}}, {"c1": "rs-1"}
    )
    assert fired(checker) == []


# ---- faults that do not end, and the convergence times ----


def test_a_repair_the_cluster_never_accepted_is_a_violation() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "storage_failure", "rs-1", 1.0))
    checker.on_fault(ended(1, "storage_failure", "rs-1", 80.0, ok=False))
    assert fired(checker) == [rules.FAULT_NOT_REPAIRED]


def test_convergence_is_timed_from_each_fault_end_to_every_camera_it_could_home() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "server_network_cut", "rs-1", 0.0))
    checker.on_fault(fault(2, "drain", "rs-2", 5.0))
    checker.on_fault(ended(1, "server_network_cut", "rs-1", 20.0))
    away = [cam("c1", "rs-1", "rs-3"), cam("c2", "rs-2", "rs-3")]
    checker.on_status(status(21.0, {"rs-3": (4, 2)}, away))
    assert checker.faults[1].settled_after is None
    # c2's home is still drained: only c1 must be home
    back = [cam("c1", "rs-1", "rs-1"), cam("c2", "rs-2", "rs-3")]
    checker.on_status(status(24.5, {"rs-3": (4, 1)}, back))
    assert checker.faults[1].settled_after == 4.5
    times = checker.convergence_times()
    assert times["all"]["count"] == 1
    assert times["all"]["max_s"] == 4.5


def test_a_replica_hit_while_the_leases_were_unreadable_counts_as_a_leader() -> None:
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "server_network_cut", "rs-1", 100.0))
    checker.on_fault(fault(2, "replica_network_cut", "health-a", 105.0, role="unknown"))
    checker.on_status(status(125.0, {"rs-1": (4, 3)}))
    assert fired(checker) == []


def test_a_server_whose_repair_has_begun_may_take_its_cameras_back() -> None:
    """A storage failure's repair and confirmation are logged before they are made: a
    read after that may show the failback already (R7, R8)."""
    checker = Checker(BOUNDS)
    checker.on_fault(fault(1, "storage_failure", "rs-1", 100.0))
    checker.on_status(status(107.0, {"rs-1": (4, 0)}))
    checker.on_fault(FaultRecord(REPAIRING, 112.0, 1, "storage_failure", "rs-1"))
    checker.on_status(status(112.5, {"rs-1": (4, 3)}))
    assert fired(checker) == []


def test_a_segment_left_away_from_home_is_told_with_the_log_of_its_epoch() -> None:
    checker = Checker(BOUNDS)
    feed(
        checker,
        CameraMovePlanned(
            camera="c1", home="rs-1", from_host=None, to="rs-2", epoch=7, reason=MoveReason.FAILOVER
        ),
        ClaimsConfirmed(server="rs-2", cameras=(Assignment(camera="c1", epoch=7),)),
    )
    away = seg("c1", 7, "rs-2", "rs-2", 1)
    checker.on_segments(1.0, [away])
    checker.judge_segments(2.0, {("c1", away.name): {"rs-2"}}, {"c1": "rs-1"})
    [found] = checker.violations
    assert found.rule == rules.SEGMENT_NOT_HOME
    assert found.events == (1, 2)
    assert "camera_move_planned rs-2 (seq 1), claims_confirmed rs-2 (seq 2)" in found.detail
