"""Maintenance mode in the placement fold (issue 6: drain): a drained server's cameras move
away by the same rules, capacity respected; nothing is placed there; undrain brings its
cameras home (R4, R5, R8)."""

from __future__ import annotations

from services.placement.state import CameraState, Placement, ServerState
from shared.config import FailbackMode, PlacementPolicy
from shared.messages import (
    Action,
    CameraMovePlanned,
    ClaimsConfirmed,
    DrainCompleted,
    FailureCause,
    MoveReason,
    ServerDrained,
    ServerFailed,
    ServerRecovered,
    ServerUndrained,
)
from tests.unit.agents import carry_out, cluster, settle


def drained_cluster(
    policy: PlacementPolicy | None = None, capacities: tuple[int, int, int] = (4, 3, 2)
) -> Placement:
    """rs-1 (4 channels, 3 cameras), rs-2 (3 channels, 1 camera), rs-3 (2, none)."""
    config = cluster(
        dict(zip(("rs-1", "rs-2", "rs-3"), capacities, strict=True)),
        {"a": "rs-1", "b": "rs-1", "c": "rs-1", "d": "rs-2"},
    )
    if policy is not None:
        config = config.model_copy(update={"placement": policy})
    state, _ = Placement.from_config(config)
    settle(state)
    return state


def test_drain_moves_cameras_where_channels_are_free_and_keeps_the_rest_recording() -> None:
    """Issue 6: 3 cameras to move, 2 + 2 free elsewhere: all move, spread; the server is
    then empty, drain_completed says 0 left, and nothing is placed there afterwards."""
    state = drained_cluster()
    notices = state.apply(ServerDrained(server="rs-1", by="ops"))
    planned = [n for n in notices if isinstance(n, CameraMovePlanned)]
    assert {n.camera for n in planned} == {"a", "b", "c"}
    assert {n.reason for n in planned} == {MoveReason.DRAIN}
    assert next((c.server, c.action) for c in state.outstanding_commands()) == (
        "rs-1",
        Action.RELEASE,
    ), "release-first: rs-1 lets go before the new hosts claim"
    done = settle(state)
    assert [(n.server, n.cameras_left) for n in done if isinstance(n, DrainCompleted)] == [
        ("rs-1", 0)
    ]
    assert state.load("rs-1") == 0
    assert "rs-1" not in state.free_capacity()
    state.apply(ServerFailed(server="rs-2", cause=FailureCause.STORAGE))
    settle(state)
    assert all(c.host != "rs-1" for c in state.cameras.values()), "placed on a drained server"


def test_drain_without_room_leaves_cameras_recording_not_pending() -> None:
    """Issue 6, R4: with two free channels elsewhere (rs-3 is down), two cameras move and
    one keeps recording on the drained server (never Pending); it moves when rs-3 is back."""
    state = drained_cluster()
    state.apply(ServerFailed(server="rs-3", cause=FailureCause.NETWORK))
    state.apply(ServerDrained(server="rs-1"))
    done = settle(state)
    assert [n.cameras_left for n in done if isinstance(n, DrainCompleted)] == [1]
    assert state.load("rs-1") == 1
    assert all(c.state is not CameraState.PENDING for c in state.cameras.values())
    state.apply(ServerRecovered(server="rs-3", cause=FailureCause.NETWORK))
    done = settle(state)
    assert state.load("rs-1") == 0, "the rest moved once rs-3's channels came back"
    assert [n.cameras_left for n in done if isinstance(n, DrainCompleted)] == [0]


def test_undrain_brings_the_servers_cameras_home_and_only_those() -> None:
    """Issue 6, R8: after undrain rs-1's own cameras come home; a guest that was moved off
    it stays where it is (stickiness)."""
    state = drained_cluster(capacities=(4, 1, 4))
    state.apply(ServerFailed(server="rs-3", cause=FailureCause.NETWORK))
    state.apply(ServerFailed(server="rs-2", cause=FailureCause.STORAGE))
    state.apply(ServerRecovered(server="rs-3", cause=FailureCause.NETWORK))
    settle(state)
    assert state.cameras["d"].host == "rs-1", "d is a guest on rs-1"
    state.apply(ServerDrained(server="rs-1"))
    settle(state)
    assert state.cameras["d"].host == "rs-3"
    state.apply(ServerUndrained(server="rs-1"))
    settle(state)
    assert {c: state.cameras[c].host for c in "abcd"} == {
        "a": "rs-1",
        "b": "rs-1",
        "c": "rs-1",
        "d": "rs-3",
    }


def test_a_drained_server_that_recovers_gets_no_cameras_back() -> None:
    """Issue 6, R8: failback does not override maintenance; undrain does."""
    state = drained_cluster()
    state.apply(ServerDrained(server="rs-1"))
    settle(state)
    state.apply(ServerFailed(server="rs-1", cause=FailureCause.NETWORK))
    state.apply(ServerRecovered(server="rs-1", cause=FailureCause.NETWORK))
    settle(state)
    assert state.load("rs-1") == 0
    state.apply(ServerUndrained(server="rs-1"))
    settle(state)
    assert state.load("rs-1") == 3


def test_drain_make_before_break_moves_without_a_release_first() -> None:
    """Issue 6 + 5: with make-before-break the new hosts claim first (first segment on
    disk), then rs-1 releases under the newer epoch."""
    state = drained_cluster(PlacementPolicy(failback=FailbackMode.MAKE_BEFORE_BREAK))
    state.apply(ServerDrained(server="rs-1"))
    steps = [(c.server, c.action, c.first_segment) for c in state.outstanding_commands()]
    assert {a for _, a, _ in steps} == {Action.CLAIM}
    assert all(first for _, _, first in steps)
    settle(state)
    assert state.load("rs-1") == 0


def test_a_handover_off_a_drained_server_falls_back_to_it_if_the_new_host_fails() -> None:
    """Issue 6 + 5: make-before-break off drained rs-1; the new hosts claim, and one fails
    before rs-1 has released: its cameras still record on rs-1, so they are claimed
    there again (a newer epoch), not left Pending, though rs-1 takes no new camera."""
    state = drained_cluster(PlacementPolicy(failback=FailbackMode.MAKE_BEFORE_BREAK))
    state.apply(ServerDrained(server="rs-1"))
    claims = [c for c in state.outstanding_commands() if c.action is Action.CLAIM]
    carry_out(state, claims, [])
    on_rs2 = {c.id for c in state.cameras.values() if c.host == "rs-2" and c.release_after}
    assert on_rs2, "a camera handed over to rs-2, rs-1 not released yet"
    notices = state.apply(ServerFailed(server="rs-2", cause=FailureCause.NETWORK))
    back = {n.camera: n.to for n in notices if isinstance(n, CameraMovePlanned)}
    assert {c: back.get(c) for c in on_rs2} == dict.fromkeys(on_rs2, "rs-1")
    assert all(state.cameras[c].state is CameraState.MOVING for c in on_rs2)


def test_draining_twice_or_undraining_a_server_in_service_changes_nothing() -> None:
    """Issue 6: repeats and unknown servers are no-ops in the fold (the service refuses
    them with a reason before they reach the log)."""
    state = drained_cluster()
    assert state.apply(ServerUndrained(server="rs-1")) == []
    state.apply(ServerDrained(server="rs-1"))
    assert state.apply(ServerDrained(server="rs-1")) == []
    assert state.apply(ServerDrained(server="rs-9")) == []


def test_a_camera_on_its_way_to_a_drained_server_moves_off_once_it_lands() -> None:
    """Issue 6 (review): rs-1's cameras were going home (failback) when rs-1 was drained;
    drain_completed waits, and each camera moves off as soon as its claim lands."""
    state = drained_cluster(capacities=(4, 3, 4))
    state.apply(ServerFailed(server="rs-1", cause=FailureCause.NETWORK))
    settle(state)
    state.apply(ServerRecovered(server="rs-1", cause=FailureCause.NETWORK))
    assert {state.cameras[c].target for c in "abc"} == {"rs-1"}
    early = state.apply(ServerDrained(server="rs-1"))
    assert not [n for n in early if isinstance(n, DrainCompleted)], "completed while in flight"
    done = settle(state)
    assert state.load("rs-1") == 0
    assert [n.cameras_left for n in done if isinstance(n, DrainCompleted)] == [0]


def test_undrain_while_failing_back_still_brings_cameras_home() -> None:
    """Issue 6 (review): rs-1 fails back, is drained mid-way (a lands and moves off again),
    and is undrained while b and c are still on their way home: a comes home too."""
    state = drained_cluster(capacities=(4, 3, 4))
    state.apply(ServerFailed(server="rs-1", cause=FailureCause.NETWORK))
    settle(state)
    state.apply(ServerRecovered(server="rs-1", cause=FailureCause.NETWORK))
    state.apply(ServerDrained(server="rs-1"))
    for command in state.outstanding_commands():  # the hosts release all three
        carry_out(state, [command], [])
    (claim,) = state.outstanding_commands()
    first = next(a for a in claim.cameras if a.camera == "a")
    state.apply(ClaimsConfirmed(server="rs-1", cameras=(first,)))
    assert state.cameras["a"].target not in (None, "rs-1"), "a lands and moves off"
    assert state.servers["rs-1"].state is ServerState.FAILING_BACK
    state.apply(ServerUndrained(server="rs-1"))
    settle(state)
    assert {state.cameras[c].host for c in "abc"} == {"rs-1"}
