"""StintLog: which footage is away from home, folded from the event log alone (R9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.sync.stints import Stint, StintLog
from shared.messages import (
    AnyEvent,
    CameraMoved,
    FailbackCompleted,
    FailureCause,
    MoveReason,
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
