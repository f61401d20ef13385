"""StintLog: which footage is away from home, folded from the event log alone (R9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.sync.jobs import away_jobs
from services.sync.stints import Stint, StintLog
from shared.messages import (
    AnyEvent,
    Assignment,
    CameraMoved,
    CameraMovePlanned,
    CameraPending,
    ClaimsConfirmed,
    FailbackCompleted,
    FailureCause,
    MoveReason,
    ReleasesConfirmed,
    ServerFailed,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A wall-clock stamp ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def moved(
    camera: str,
    to: str,
    epoch: int,
    when: float,
    *,
    home: str = "rs-1",
    from_host: str | None = None,
    reason: MoveReason = MoveReason.FAILOVER,
) -> CameraMoved:
    """A ``camera_moved`` event stamped ``when`` seconds after T0."""
    return CameraMoved(
        camera=camera,
        home=home,
        from_host=from_host,
        to=to,
        epoch=epoch,
        reason=reason,
        time=at(when),
    )


def failed(server: str, when: float = 0.0) -> ServerFailed:
    """A storage failure of ``server``."""
    return ServerFailed(server=server, cause=FailureCause.STORAGE, time=at(when))


def failback_completed(server: str, when: float = 0.0) -> FailbackCompleted:
    """Every camera of ``server`` records at home again."""
    return FailbackCompleted(server=server, cameras=1, time=at(when))


def fold(*events: AnyEvent) -> tuple[StintLog, list[str | None]]:
    """Fold events into an empty log; return it and what each ``apply`` returned."""
    log = StintLog.empty()
    return log, [log.apply(e) for e in events]


def outage(camera: str = "c1", home: str = "rs-1", host: str = "rs-2") -> list[AnyEvent]:
    """A camera starts at home, its home fails, it records on ``host``, then goes home."""
    return [
        moved(camera, home, 1, 0, home=home, reason=MoveReason.START),
        failed(home, 10),
        moved(camera, host, 2, 12, home=home, from_host=home),
        moved(camera, home, 3, 60, home=home, from_host=host, reason=MoveReason.FAILBACK),
        failback_completed(home, 61),
    ]


# ---- stints open and close ----


def test_r9_first_move_opens_a_stint_and_closes_nothing() -> None:
    """R9: the first ``camera_moved`` of a camera opens its stint; nothing is closed yet."""
    log, returned = fold(moved("c1", "rs-1", 1, 0, reason=MoveReason.START))
    assert log.open == {"c1": Stint("c1", "rs-1", "rs-1", 1, at(0))}
    assert log.closed == []
    assert returned == [None]


def test_r9_a_move_closes_the_previous_stint_at_the_time_of_the_move() -> None:
    """R9: a new epoch closes the open stint with the new move's time as its end, and opens
    a stint on the new host."""
    log, _ = fold(
        moved("c1", "rs-1", 1, 0, reason=MoveReason.START),
        moved("c1", "rs-2", 2, 12, from_host="rs-1"),
    )
    assert log.closed == [Stint("c1", "rs-1", "rs-1", 1, at(0), at(12))]
    assert log.open["c1"] == Stint("c1", "rs-1", "rs-2", 2, at(12))
    assert log.open["c1"].end is None


def test_r9_a_repeated_camera_moved_with_the_same_epoch_closes_nothing() -> None:
    """R9/R11: a repeat of the same move (a replayed decision) is not a new stint: nothing is
    closed and the camera stays on the same host under the same epoch."""
    log, _ = fold(
        moved("c1", "rs-1", 1, 0, reason=MoveReason.START),
        moved("c1", "rs-2", 2, 12, from_host="rs-1"),
        moved("c1", "rs-2", 2, 13, from_host="rs-1"),
    )
    assert [(s.host, s.epoch) for s in log.closed] == [("rs-1", 1)]
    assert (log.open["c1"].host, log.open["c1"].epoch) == ("rs-2", 2)
    assert log.away_stints("rs-1") == []


def test_r9_a_repeated_camera_moved_keeps_the_stint_start() -> None:
    """R9: a replayed ``camera_moved`` does not move the start of the stint it repeats."""
    log, _ = fold(
        moved("c1", "rs-2", 2, 12, from_host="rs-1"),
        moved("c1", "rs-2", 2, 700, from_host="rs-1"),
    )
    assert log.open["c1"].start == at(12)


def test_r9_cameras_have_independent_stints() -> None:
    """R9: one camera's move never closes another camera's stint."""
    log, _ = fold(
        moved("c1", "rs-1", 1, 0, reason=MoveReason.START),
        moved("c2", "rs-1", 2, 0, reason=MoveReason.START),
        moved("c1", "rs-2", 3, 12, from_host="rs-1"),
    )
    assert [s.camera for s in log.closed] == ["c1"]
    assert set(log.open) == {"c1", "c2"}
    assert log.open["c2"] == Stint("c2", "rs-1", "rs-1", 2, at(0))


def test_r9_stint_away_means_recorded_off_home() -> None:
    """R9: a stint is away exactly when its host is not the camera's home."""
    assert Stint("c1", "rs-1", "rs-2", 2, at(0)).away
    assert not Stint("c1", "rs-1", "rs-1", 1, at(0)).away


# ---- away stints per home ----


def test_r9_away_stints_are_the_closed_stints_off_home_of_that_home_only() -> None:
    """R9: only closed stints recorded away from the home count; home stints, open stints
    and other homes' cameras do not."""
    log, _ = fold(
        *outage("c1", "rs-1", "rs-2"),
        *outage("c9", "rs-3", "rs-2"),
        moved("c5", "rs-2", 10, 100, home="rs-1", from_host="rs-1"),  # still open
    )
    away = log.away_stints("rs-1")
    assert [(s.camera, s.host, s.epoch) for s in away] == [("c1", "rs-2", 2)]
    assert away[0].start == at(12)
    assert away[0].end == at(60)
    assert [(s.camera, s.host) for s in log.away_stints("rs-3")] == [("c9", "rs-2")]
    assert log.away_stints("rs-2") == []


def test_r9_away_stints_come_oldest_first() -> None:
    """R9: a home's away stints come in the order they were closed: oldest footage first."""
    log, _ = fold(
        moved("c1", "rs-2", 2, 10, from_host="rs-1"),
        moved("c2", "rs-3", 3, 11, from_host="rs-1"),
        moved("c1", "rs-1", 4, 50, from_host="rs-2", reason=MoveReason.FAILBACK),
        moved("c2", "rs-1", 5, 51, from_host="rs-3", reason=MoveReason.FAILBACK),
    )
    assert [(s.camera, s.host, s.start) for s in log.away_stints("rs-1")] == [
        ("c1", "rs-2", at(10)),
        ("c2", "rs-3", at(11)),
    ]


def test_r10_cascade_home_a_b_home_gives_two_away_stints_with_their_epochs() -> None:
    """R9/R10: a camera moved home -> A -> B -> home (its failover host failed too) leaves
    two away stints, on A and on B, each under the epoch it recorded with."""
    log, returned = fold(
        moved("c1", "rs-1", 1, 0, reason=MoveReason.START),
        failed("rs-1", 10),
        moved("c1", "rs-2", 2, 12, from_host="rs-1"),
        failed("rs-2", 30),
        moved("c1", "rs-3", 3, 32, from_host="rs-2"),
        moved("c1", "rs-1", 4, 60, from_host="rs-3", reason=MoveReason.FAILBACK),
        failback_completed("rs-1", 61),
    )
    away = log.away_stints("rs-1")
    assert [(s.host, s.epoch, s.start, s.end) for s in away] == [
        ("rs-2", 2, at(12), at(32)),
        ("rs-3", 3, at(32), at(60)),
    ]
    assert all(s.home == "rs-1" for s in away)
    assert log.open["c1"] == Stint("c1", "rs-1", "rs-1", 4, at(60))
    assert returned[-1] == "rs-1"
    assert log.ready("rs-1")
    assert not log.ready("rs-2"), "rs-2 failed and has not failed back"


# ---- home readiness ----


def test_r9_an_unknown_server_is_ready() -> None:
    """R9: before the log says otherwise, a home server may receive footage."""
    assert StintLog.empty().ready("rs-1")


def test_r9_a_failed_home_is_not_ready_until_its_failback_completes() -> None:
    """R9: ``server_failed`` makes a home unready; its ``failback_completed`` makes it ready
    again and is the one event that says its footage may now move."""
    log = StintLog.empty()
    assert log.apply(failed("rs-1")) is None
    assert not log.ready("rs-1")
    assert log.ready("rs-2"), "another server's failure does not touch rs-2"
    assert log.apply(failback_completed("rs-1")) == "rs-1"
    assert log.ready("rs-1")


def test_r9_failing_again_after_a_failback_makes_the_home_unready_again() -> None:
    """R9: a home that fails again after a failback stops receiving until the next one."""
    log, returned = fold(failed("rs-1", 0), failback_completed("rs-1", 10), failed("rs-1", 20))
    assert returned == [None, "rs-1", None]
    assert not log.ready("rs-1")
    assert log.apply(failback_completed("rs-1", 30)) == "rs-1"
    assert log.ready("rs-1")


def test_r9_a_full_outage_leaves_one_away_stint_and_a_ready_home() -> None:
    """R9: storage failure, failover to rs-2, failback: one away stint of the outage on rs-2,
    the home ready again, the camera open at home under its newest epoch."""
    log, returned = fold(*outage())
    assert returned == [None, None, None, None, "rs-1"]
    assert [(s.host, s.epoch) for s in log.away_stints("rs-1")] == [("rs-2", 2)]
    assert log.ready("rs-1")
    assert (log.open["c1"].host, log.open["c1"].epoch) == ("rs-1", 3)


def test_r9_an_away_stint_closing_while_its_home_is_ready_lets_its_footage_move() -> None:
    """R9: footage may move as soon as an away stint of a ready home closes. When the last
    ``camera_moved`` home lands after ``failback_completed``, ``apply`` says so for it."""
    log, returned = fold(
        moved("c1", "rs-1", 1, 0, reason=MoveReason.START),
        failed("rs-1", 10),
        moved("c1", "rs-2", 2, 12, from_host="rs-1"),
        failback_completed("rs-1", 60),
        moved("c1", "rs-1", 3, 60, from_host="rs-2", reason=MoveReason.FAILBACK),
    )
    assert [(s.host, s.epoch) for s in log.away_stints("rs-1")] == [("rs-2", 2)]
    assert returned[-1] == "rs-1"


# ---- possible stints: footage under an epoch that never reached camera_moved ----


def planned(
    camera: str,
    to: str,
    epoch: int,
    when: float,
    *,
    home: str = "rs-1",
    from_host: str | None = None,
    reason: MoveReason = MoveReason.FAILOVER,
) -> CameraMovePlanned:
    """A ``camera_move_planned`` event stamped ``when`` seconds after T0 (the fields of
    the ``camera_moved`` that would confirm it)."""
    decided = moved(camera, to, epoch, when, home=home, from_host=from_host, reason=reason)
    return CameraMovePlanned(**decided.model_dump(exclude={"type"}))


def claims(server: str, camera: str, epoch: int, when: float) -> ClaimsConfirmed:
    """An agent's answer to a claim, as placement puts it on the log."""
    return ClaimsConfirmed(
        server=server, cameras=(Assignment(camera=camera, epoch=epoch),), time=at(when)
    )


def releases(server: str, camera: str, epoch: int, when: float) -> ReleasesConfirmed:
    """An agent's answer to a release (a stray release of heartbeat reconciliation too)."""
    return ReleasesConfirmed(
        server=server, cameras=(Assignment(camera=camera, epoch=epoch),), time=at(when)
    )


def jobs_of(log: StintLog) -> list[tuple[str, str, str, int]]:
    """The jobs the log calls for, as (home, camera, source, epoch), sorted by key."""
    found = away_jobs(log)
    return [(j.home, j.camera, j.source, j.epoch) for j, _ in (found[k] for k in sorted(found))]


def lost_answer() -> list[AnyEvent]:
    """Seed 7, cam-13-001: planned onto rs-06 under 642, rs-06 cut off before its answer
    came back, re-planned onto rs-19 under 682 and moved there; rs-06 released it as a
    stray on its return; later the camera went home."""
    cam, home = "cam-13-001", "rs-13"
    return [
        moved(cam, home, 600, 0, home=home, reason=MoveReason.START),
        failed(home, 10),
        planned(cam, "rs-06", 642, 11, home=home, from_host=home),
        failed("rs-06", 20),
        planned(cam, "rs-19", 682, 21, home=home),
        claims("rs-19", cam, 682, 21.5),
        moved(cam, "rs-19", 682, 21.5, home=home),
        releases("rs-06", cam, 690, 25),  # the stray, released once rs-06 was back
        planned(cam, home, 700, 60, home=home, from_host="rs-19", reason=MoveReason.FAILBACK),
        moved(cam, home, 700, 61, home=home, from_host="rs-19", reason=MoveReason.FAILBACK),
        failback_completed(home, 62),
    ]


def late_confirmation() -> list[AnyEvent]:
    """Seed 7, cam-11-006: a drain planned it onto rs-18 under 933, an undrain planned it
    home under 942 30 ms later; rs-18's confirmation of 933 came after that and placement
    ignored it (no camera_moved for 933)."""
    cam, home = "cam-11-006", "rs-11"
    return [
        moved(cam, "rs-09", 900, 0, home=home, reason=MoveReason.FAILOVER),
        planned(cam, "rs-18", 933, 10, home=home, from_host="rs-09", reason=MoveReason.DRAIN),
        planned(cam, home, 942, 10.03, home=home, from_host="rs-09", reason=MoveReason.FAILBACK),
        claims("rs-18", cam, 933, 10.05),
        claims(home, cam, 942, 10.5),
        moved(cam, home, 942, 10.5, home=home, from_host="rs-09", reason=MoveReason.FAILBACK),
    ]


def test_r9_footage_under_an_epoch_whose_claim_answer_was_lost_gets_a_job() -> None:
    """R9, seed 7 scenario 1: a move planned away and superseded without camera_moved is
    a possible stint; once closed it is a job against the host that may hold its footage,
    besides the ordinary job of the stint that camera_moved confirmed."""
    log, returned = fold(*lost_answer())
    assert jobs_of(log) == [
        ("rs-13", "cam-13-001", "rs-06", 642),
        ("rs-13", "cam-13-001", "rs-19", 682),
    ]
    possible = next(s for s in log.closed if s.epoch == 642)
    assert possible.possible
    assert (possible.start, possible.end) == (at(11), at(21))
    assert log.planned == {}
    assert returned[-1] == "rs-13"


def test_r9_footage_confirmed_after_placement_changed_its_mind_gets_a_job() -> None:
    """R9, seed 7 scenario 2: the plan of 933 was superseded by 942 before rs-18's
    confirmation arrived; that late claims_confirmed makes no second job."""
    log, returned = fold(*late_confirmation())
    assert jobs_of(log) == [
        ("rs-11", "cam-11-006", "rs-09", 900),
        ("rs-11", "cam-11-006", "rs-18", 933),
    ]
    # The home was never failed: the job may run as soon as the plan is superseded.
    assert returned[2] == "rs-11"


def test_r9_a_lone_claims_confirmed_of_an_unknown_epoch_is_evidence_enough() -> None:
    """R9: an agent's answer for an epoch the fold has no plan for (superseded since)
    opens a possible stint, closed at once."""
    log, _ = fold(
        moved("c1", "rs-2", 5, 0, from_host="rs-1"),
        claims("rs-3", "c1", 4, 1),
    )
    assert jobs_of(log) == [("rs-1", "c1", "rs-3", 4)]
    assert log.apply(claims("rs-3", "c1", 4, 2)) is None
    assert len(log.closed) == 1, "a repeated answer makes no second stint"


def test_r9_a_confirmed_move_makes_one_job_not_two() -> None:
    """R9: planned then camera_moved of the same epoch is one stint and, once closed, one
    job; the plan's possible stint never becomes a job of its own."""
    log, _ = fold(*outage())
    assert jobs_of(log) == [("rs-1", "c1", "rs-2", 2)]
    log, _ = fold(
        planned("c1", "rs-2", 2, 11, from_host="rs-1"),
        claims("rs-2", "c1", 2, 11.5),
        moved("c1", "rs-2", 2, 12, from_host="rs-1"),
        claims("rs-2", "c1", 2, 12.5),  # a late repeat of the answer
        planned("c1", "rs-1", 3, 59, from_host="rs-2", reason=MoveReason.FAILBACK),
        moved("c1", "rs-1", 3, 60, from_host="rs-2", reason=MoveReason.FAILBACK),
    )
    assert jobs_of(log) == [("rs-1", "c1", "rs-2", 2)]
    assert [s.possible for s in log.closed] == [False]


def test_r9_moves_onto_the_home_make_no_stint_to_bring_home() -> None:
    """R9: a fleet's start-up plans every camera home; nothing is away, no job, and no
    possible stint is kept in memory for any of them."""
    events: list[AnyEvent] = []
    for i in range(1000):
        cam, home = f"c{i}", f"rs-{i % 10}"
        events += [
            planned(cam, home, i + 1, 0, home=home, reason=MoveReason.START),
            claims(home, cam, i + 1, 1),
            moved(cam, home, i + 1, 1, home=home, reason=MoveReason.START),
        ]
    log, returned = fold(*events)
    assert log.planned == {}
    assert log.closed == []
    assert away_jobs(log) == {}
    assert set(returned) == {None}


def test_r9_an_unanswered_plan_closes_when_the_camera_goes_pending_or_is_released() -> None:
    """R9: pending (no epoch) and the planned host's own release also end a plan."""
    log, _ = fold(
        planned("c1", "rs-2", 2, 10, from_host="rs-1"),
        CameraPending(camera="c1", home="rs-1", reason="no server has a free channel"),
        planned("c2", "rs-3", 3, 10, from_host="rs-1"),
        releases("rs-3", "c2", 3, 20),
    )
    assert jobs_of(log) == [("rs-1", "c1", "rs-2", 2), ("rs-1", "c2", "rs-3", 3)]


def test_r9_an_open_plan_is_no_job_yet_and_a_stale_or_repeated_plan_changes_nothing() -> None:
    """R9/R11: a plan still under way is not closed; a replayed older plan neither reopens
    nor closes anything."""
    log, _ = fold(
        planned("c1", "rs-2", 2, 10, from_host="rs-1"),
        planned("c1", "rs-2", 2, 11, from_host="rs-1"),
    )
    assert away_jobs(log) == {}
    assert log.planned["c1"].start == at(10)
    log.apply(planned("c1", "rs-3", 3, 12, from_host="rs-1"))
    log.apply(planned("c1", "rs-2", 2, 13, from_host="rs-1"))
    assert jobs_of(log) == [("rs-1", "c1", "rs-2", 2)]
    assert (log.planned["c1"].host, log.planned["c1"].epoch) == ("rs-3", 3)


def test_r9_a_failed_home_waits_for_its_failback_before_a_possible_stint_may_move() -> None:
    """R9: a possible stint of a failed home closes without saying its footage may move;
    the home's failback_completed does."""
    log, returned = fold(*lost_answer()[:5])
    assert returned == [None] * 5
    assert ("rs-13", "cam-13-001", "rs-06", 642) in jobs_of(log)
    assert not log.ready("rs-13")


def test_r12_replaying_the_whole_log_gives_the_same_jobs_in_the_same_order() -> None:
    """R9/R12: a new leader folds the whole log again: the same stints, the same jobs,
    oldest footage first (by start), however often it is replayed."""
    events = [*lost_answer(), *late_confirmation(), *outage("c7", "rs-1", "rs-2")]
    first, _ = fold(*events)
    again, _ = fold(*events)
    assert again.closed == first.closed
    assert away_jobs(again).keys() == away_jobs(first).keys()
    by_start = sorted(away_jobs(first).values(), key=lambda js: (js[1].start, js[0].key))
    assert [(j.camera, j.source, j.epoch) for j, _ in by_start] == [
        ("cam-11-006", "rs-09", 900),
        ("cam-11-006", "rs-18", 933),
        ("cam-13-001", "rs-06", 642),
        ("c7", "rs-2", 2),
        ("cam-13-001", "rs-19", 682),
    ]


def test_r12_a_kill_at_any_point_never_makes_a_job_the_whole_log_would_not() -> None:
    """R9/R12: jobs a leader created before a kill -9 (from a prefix of the log) are all
    among those its successor derives from the whole log, each with the same stint start:
    nothing is repeated under another key, and nothing is contradicted."""
    events = [*lost_answer(), *late_confirmation(), *outage("c7", "rs-1", "rs-2")]
    whole, _ = fold(*events)
    final = away_jobs(whole)
    for cut in range(len(events) + 1):
        before_kill, _ = fold(*events[:cut])
        for key, (_, stint) in away_jobs(before_kill).items():
            assert key in final, f"cut at {cut}: {key} is not a job of the whole log"
            assert final[key][1].start == stint.start
