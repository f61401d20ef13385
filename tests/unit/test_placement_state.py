"""The Placement fold: failover, Pending, failback, capacity, cascades, replay (R4–R8, R10, R11)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from services.placement.state import (
    CameraState,
    MissedCameras,
    Notice,
    Placement,
    PlacementIndex,
    ServerState,
)
from shared.config import ClusterConfig, Priority
from shared.messages import (
    Action,
    AnyEvent,
    Assignment,
    CameraMoved,
    CameraMovePlanned,
    CameraPending,
    CapacityChanged,
    ClaimsConfirmed,
    CommandRefused,
    FailbackCompleted,
    FailbackStarted,
    FailureCause,
    Refusal,
    ReleasesConfirmed,
    ServerFailed,
    ServerRecovered,
    ServerSilent,
    StorageRepaired,
)
from tests.unit.agents import carry_out, cluster, hosts, kinds, settle

NETWORK, STORAGE = FailureCause.NETWORK, FailureCause.STORAGE


def started(
    servers: dict[str, int],
    cameras: dict[str, str],
    priorities: dict[str, Priority] | None = None,
) -> Placement:
    """A cluster started from config, with every start claim confirmed."""
    state, _ = Placement.from_config(cluster(servers, cameras, priorities))
    settle(state)
    assert all(c.state is CameraState.HOME for c in state.cameras.values())
    return state


def failed(server: str, cause: FailureCause = NETWORK) -> ServerFailed:
    return ServerFailed(server=server, cause=cause)


def recovered(server: str, cause: FailureCause = NETWORK) -> ServerRecovered:
    return ServerRecovered(server=server, cause=cause)


def planned(notices: list[Notice]) -> dict[str, CameraMovePlanned]:
    """The move decisions among ``notices``, by camera."""
    return {n.camera: n for n in notices if isinstance(n, CameraMovePlanned)}


def nothing_on(state: Placement, server: str) -> bool:
    """No camera hosted by, moving to, or waiting for a release from ``server``."""
    return all(
        server not in (c.host, c.target) and server not in c.release_from
        for c in state.cameras.values()
    )


def where(state: Placement, camera: str) -> tuple[str | None, str | None, list[str]]:
    """A camera's (host, target, release_from), read afresh."""
    cam = state.cameras[camera]
    return cam.host, cam.target, list(cam.release_from)


def server_state(state: Placement, server: str) -> ServerState:
    """A server's state, read afresh."""
    return state.servers[server].state


def shape(notices: list[Notice]) -> list[dict[str, object]]:
    """Notices without their wall-clock stamp, for comparing two runs."""
    return [n.model_dump(exclude={"time"}) for n in notices]


# ---- start ----


def test_r4_start_claims_every_camera_at_home() -> None:
    """R4: a fresh cluster plans every camera at home, then records there once claimed."""
    state, notices = Placement.from_config(
        cluster({"rs-1": 2, "rs-2": 1}, {"c11": "rs-1", "c12": "rs-1", "c21": "rs-2"})
    )
    moves = planned(notices)
    assert {c: (m.to, m.reason) for c, m in moves.items()} == {
        "c11": ("rs-1", "start"),
        "c12": ("rs-1", "start"),
        "c21": ("rs-2", "start"),
    }
    assert {c.state for c in state.cameras.values()} == {CameraState.MOVING}
    commands = state.outstanding_commands()
    assert [(c.server, c.action, len(c.cameras)) for c in commands] == [
        ("rs-1", Action.CLAIM, 2),
        ("rs-2", Action.CLAIM, 1),
    ]
    moved = settle(state)
    assert sorted(n.camera for n in moved if isinstance(n, CameraMoved)) == ["c11", "c12", "c21"]
    assert hosts(state) == {"c11": "rs-1", "c12": "rs-1", "c21": "rs-2"}
    assert {c.state for c in state.cameras.values()} == {CameraState.HOME}
    assert state.outstanding_commands() == []


def test_r4_adopting_a_new_camera_places_it_at_home() -> None:
    """R4: a camera added to the config is claimed at home when home has a free channel."""
    state = started({"rs-1": 2}, {"c1": "rs-1"})
    notices = state.adopt(cluster({"rs-1": 2}, {"c1": "rs-1", "c2": "rs-1"}))
    assert [(n.camera, n.to) for n in notices if isinstance(n, CameraMovePlanned)] == [
        ("c2", "rs-1")
    ]
    assert state.adopt(cluster({"rs-1": 2}, {"c1": "rs-1", "c2": "rs-1"})) == []


def mirrored(index: PlacementIndex) -> tuple[object, ...]:
    """What an index says, empty server entries left out, for comparing two of them."""
    holding = {s: c for s, c in index.holding.items() if c}
    cameras = index.position, index.homed, holding, index.by_state, index.unsettled
    return *cameras, index.server_position, index.drained, index.failing_back


def test_issue8_the_index_follows_adoption_and_a_restored_snapshot() -> None:
    """Issue 8: cameras and servers adopted into a running state enter its index, last in
    order; a state read back from its snapshot builds the same index from its cameras."""
    state = started({"rs-1": 2}, {"c1": "rs-1"})
    state.apply(failed("rs-1"))
    state.adopt(cluster({"rs-1": 2, "rs-2": 2}, {"c1": "rs-1", "c0": "rs-2", "c2": "rs-2"}))
    assert list(state.index.position) == ["c1", "c0", "c2"]
    assert list(state.index.server_position) == ["rs-1", "rs-2"]
    fresh = PlacementIndex(state.cameras.values(), state.servers.values())
    assert mirrored(state.index) == mirrored(fresh)
    restored = Placement.model_validate_json(state.model_dump_json())
    assert mirrored(restored.index) == mirrored(state.index)


# ---- failover ----

THREE = {"rs-1": 2, "rs-2": 3, "rs-3": 3}
CAMS = {"a1": "rs-1", "a2": "rs-1", "b1": "rs-2", "c1": "rs-3"}


def test_r2_r4_network_failure_moves_every_camera_to_healthy_servers() -> None:
    """R2/R4: a network-failed server's cameras spread over the servers with free channels."""
    state = started(THREE, CAMS)
    notices = state.apply(failed("rs-1"))
    moves = planned(notices)
    assert {c: (m.from_host, m.to, m.reason) for c, m in moves.items()} == {
        "a1": ("rs-1", "rs-2", "failover"),
        "a2": ("rs-1", "rs-3", "failover"),
    }
    assert state.servers["rs-1"].state is ServerState.NETWORK_FAILED
    assert nothing_on(state, "rs-1")
    settle(state)
    assert state.cameras["a1"].state is CameraState.FAILED_OVER
    assert hosts(state) == {"a1": "rs-2", "a2": "rs-3", "b1": "rs-2", "c1": "rs-3"}
    assert all(c.home == CAMS[c.id] for c in state.cameras.values())


def test_r3_r4_storage_failure_moves_cameras_at_once() -> None:
    """R3/R4: a storage failure fails the cameras over in the same fold step."""
    state = started(THREE, CAMS)
    notices = state.apply(failed("rs-1", STORAGE))
    assert set(planned(notices)) == {"a1", "a2"}
    slot = state.servers["rs-1"]
    assert (slot.state, slot.storage_ok) == (ServerState.STORAGE_FAILED, False)
    assert nothing_on(state, "rs-1")


def test_r4_cameras_still_moving_to_a_failing_server_are_placed_again() -> None:
    """R4/R10: a camera whose claim on the failed server was not yet confirmed moves again."""
    state, _ = Placement.from_config(cluster({"rs-1": 1, "rs-2": 1}, {"a1": "rs-1"}))
    notices = state.apply(failed("rs-1"))
    assert {c: m.to for c, m in planned(notices).items()} == {"a1": "rs-2"}
    assert nothing_on(state, "rs-1")


def test_r4_r5_cameras_that_fit_nowhere_are_pending_in_priority_order() -> None:
    """R4/R5: capacity is a hard limit; what does not fit waits Pending, high placed first."""
    prios = {"a-low": Priority.LOW, "a-high": Priority.HIGH, "a-med": Priority.MEDIUM}
    state = started(
        {"rs-1": 3, "rs-2": 2},
        {"a-low": "rs-1", "a-high": "rs-1", "a-med": "rs-1", "b1": "rs-2"},
        prios,
    )
    notices = state.apply(failed("rs-1"))
    assert {c: m.to for c, m in planned(notices).items()} == {"a-high": "rs-2"}
    pending = {n.camera: n.reason for n in notices if isinstance(n, CameraPending)}
    assert pending == {
        "a-med": "no server has a free channel",
        "a-low": "no server has a free channel",
    }
    assert state.load("rs-2") == state.servers["rs-2"].capacity
    assert state.cameras["a-low"].state is CameraState.PENDING
    assert state.free_capacity() == {"rs-2": 0}


def test_r4_a_never_camera_waits_pending_for_its_home() -> None:
    """R4: a ``never`` camera does not fail over even with room elsewhere; it says why."""
    state = started({"rs-1": 1, "rs-2": 5}, {"a1": "rs-1"}, {"a1": Priority.NEVER})
    notices = state.apply(failed("rs-1"))
    [pending] = notices
    assert isinstance(pending, CameraPending)
    assert pending.reason == "priority 'never': waits for its home server"
    assert state.load("rs-2") == 0


def test_r4_a_second_failure_report_moves_nothing_more() -> None:
    """R4/R11: a repeated failure of an already failed server decides nothing new."""
    state = started(THREE, CAMS)
    state.apply(failed("rs-1"))
    epoch = state.next_epoch
    assert state.apply(failed("rs-1")) == []
    assert state.next_epoch == epoch


def test_r3_storage_failure_of_a_network_failed_server_switches_the_cause() -> None:
    """R3/R7: a network-failed server coming back with failed storage now needs confirmation."""
    state = started(THREE, CAMS)
    state.apply(failed("rs-1"))
    assert state.apply(failed("rs-1", STORAGE)) == []
    slot = state.servers["rs-1"]
    assert (slot.state, slot.storage_ok) == (ServerState.STORAGE_FAILED, False)


def test_r11_events_about_unknown_servers_change_nothing() -> None:
    """R11: events about servers not in the state decide nothing and change nothing."""
    state = started(THREE, CAMS)
    before = state.model_dump()
    assert state.apply(failed("rs-9")) == []
    assert state.apply(recovered("rs-9")) == []
    assert state.apply(CapacityChanged(server="rs-9", capacity=9)) == []
    assert state.apply(StorageRepaired(server="rs-9")) == []
    assert state.model_dump() == before


def test_r11_events_placement_does_not_fold_are_ignored() -> None:
    """R11: health's own notices (ServerSilent, ...) do not change placement."""
    state = started(THREE, CAMS)
    before = state.model_dump()
    assert state.apply(ServerSilent(server="rs-1", silent_for=10.0)) == []
    assert state.apply(FailbackCompleted(server="rs-1", cameras=2)) == []
    assert state.model_dump() == before


# ---- confirmations ----


def test_r11_a_claim_is_settled_only_by_its_server_and_epoch() -> None:
    """R11: a confirmation from another server, or of an older epoch, settles nothing."""
    state = started(THREE, CAMS)
    state.apply(failed("rs-1"))
    cam = state.cameras["a1"]
    assert where(state, "a1") == (None, "rs-2", [])
    stale = Assignment(camera="a1", epoch=cam.epoch - 1)
    current = Assignment(camera="a1", epoch=cam.epoch)
    assert state.apply(ClaimsConfirmed(server="rs-2", cameras=(stale,))) == []
    assert state.apply(ClaimsConfirmed(server="rs-3", cameras=(current,))) == []
    assert (
        state.apply(ClaimsConfirmed(server="rs-2", cameras=(Assignment(camera="zz", epoch=1),)))
        == []
    )
    assert cam.state is CameraState.MOVING
    [moved] = state.apply(ClaimsConfirmed(server="rs-2", cameras=(current,)))
    assert isinstance(moved, CameraMoved)
    assert (moved.from_host, moved.to, moved.reason) == ("rs-1", "rs-2", "failover")
    assert where(state, "a1") == ("rs-2", None, [])
    assert state.apply(ClaimsConfirmed(server="rs-2", cameras=(current,))) == [], "idempotent"


def test_r11_a_refused_command_is_reissued_above_the_epoch_the_agent_saw() -> None:
    """R11: an agent that has seen a newer epoch gets the same move again under a higher one."""
    state = started(THREE, CAMS)
    state.apply(failed("rs-1"))
    cam = state.cameras["a1"]
    refusal = Refusal(camera="a1", epoch=cam.epoch, seen_epoch=500, reason="newer epoch seen")
    [again] = state.apply(CommandRefused(server="rs-2", refusals=(refusal,)))
    assert isinstance(again, CameraMovePlanned)
    assert (again.to, again.epoch) == ("rs-2", 501)
    assert state.next_epoch == 502
    stale = Refusal(camera="a1", epoch=3, seen_epoch=900, reason="stale")
    assert state.apply(CommandRefused(server="rs-2", refusals=(stale,))) == []
    assert state.next_epoch == 502


def test_issue7_an_implausible_seen_epoch_is_not_believed() -> None:
    """A lying agent's refusal cannot push placement's epochs to the 64-bit ceiling, where
    no command would validate for any camera."""
    state = started(THREE, CAMS)
    state.apply(failed("rs-1"))
    cam = state.cameras["a1"]
    before = state.next_epoch
    lie = Refusal(camera="a1", epoch=cam.epoch, seen_epoch=2**63 - 1, reason="newer epoch seen")
    assert state.apply(CommandRefused(server="rs-2", refusals=(lie,))) == []
    assert state.next_epoch == before


# ---- failback ----


def test_r6_r8_failback_releases_everywhere_before_claiming_at_home() -> None:
    """R6/R8: home is ready; every current host releases first; only then home claims."""
    state = started(THREE, CAMS)
    state.apply(failed("rs-1"))
    settle(state)
    notices = state.apply(recovered("rs-1"))
    started_ = notices[0]
    assert isinstance(started_, FailbackStarted)
    assert (started_.server, started_.cameras, started_.cause) == ("rs-1", 2, NETWORK)
    assert {c: (m.to, m.reason) for c, m in planned(notices).items()} == {
        "a1": ("rs-1", "failback"),
        "a2": ("rs-1", "failback"),
    }
    assert state.servers["rs-1"].state is ServerState.FAILING_BACK
    commands = state.outstanding_commands()
    assert {(c.server, c.action) for c in commands} == {
        ("rs-2", Action.RELEASE),
        ("rs-3", Action.RELEASE),
    }
    # A claim at home before the release is confirmed is not accepted.
    a1 = state.cameras["a1"]
    early = ClaimsConfirmed(server="rs-1", cameras=(Assignment(camera="a1", epoch=a1.epoch),))
    assert state.apply(early) == []
    assert where(state, "a1") == ("rs-2", "rs-1", ["rs-2"])
    assert state.load("rs-2") == 2, "the released camera occupies its channel until released"

    log: list[AnyEvent] = []
    carry_out(state, commands, log)
    assert where(state, "a1") == (None, "rs-1", [])
    assert [(c.server, c.action) for c in state.outstanding_commands()] == [("rs-1", Action.CLAIM)]
    done = settle(state)
    moved = [n for n in done if isinstance(n, CameraMoved)]
    assert {(n.camera, n.from_host, n.to) for n in moved} == {
        ("a1", "rs-2", "rs-1"),
        ("a2", "rs-3", "rs-1"),
    }
    assert isinstance(done[-1], FailbackCompleted)
    assert (done[-1].server, done[-1].cameras) == ("rs-1", 2)
    assert server_state(state, "rs-1") is ServerState.ONLINE
    assert {c.state for c in state.cameras.values()} == {CameraState.HOME}


def test_r7_storage_repaired_alone_does_not_fail_back() -> None:
    """R7: the repair report changes storage health only; cameras stay where they are."""
    state = started(THREE, CAMS)
    state.apply(failed("rs-1", STORAGE))
    settle(state)
    before = hosts(state)
    assert state.apply(StorageRepaired(server="rs-1")) == []
    assert state.servers["rs-1"].storage_ok is True
    assert state.servers["rs-1"].state is ServerState.STORAGE_FAILED
    assert hosts(state) == before
    assert state.free_capacity().get("rs-1") is None


def test_r7_r8_confirmed_storage_recovery_fails_back() -> None:
    """R7/R8: the recovery that follows the confirmation fails the cameras back home."""
    state = started(THREE, CAMS)
    state.apply(failed("rs-1", STORAGE))
    settle(state)
    notices = state.apply(recovered("rs-1", STORAGE))
    assert isinstance(notices[0], FailbackStarted)
    assert notices[0].cause is STORAGE
    settle(state)
    assert hosts(state)["a1"] == "rs-1"
    assert state.servers["rs-1"].storage_ok is True


def test_r8_pending_cameras_of_the_recovering_server_go_straight_home() -> None:
    """R8: a Pending camera of the recovered server is claimed at home with nothing to release."""
    state = started({"rs-1": 2, "rs-2": 1}, {"a1": "rs-1", "a2": "rs-1", "b1": "rs-2"})
    state.apply(failed("rs-1"))
    assert {c.state for c in state.cameras.values() if c.home == "rs-1"} == {CameraState.PENDING}
    notices = state.apply(recovered("rs-1"))
    assert kinds(notices) == ["failback_started", "camera_move_planned", "camera_move_planned"]
    assert all(m.to == "rs-1" for m in planned(notices).values())
    assert all(state.cameras[c].release_from == [] for c in ("a1", "a2"))
    assert [(c.server, c.action) for c in state.outstanding_commands()] == [("rs-1", Action.CLAIM)]
    done = settle(state)
    assert kinds(done)[-1] == "failback_completed"
    assert hosts(state) == {"a1": "rs-1", "a2": "rs-1", "b1": "rs-2"}


def test_r8_failback_with_nothing_away_completes_at_once() -> None:
    """R8: a recovered server with no cameras elsewhere is back online in the same step."""
    state = started({"rs-1": 2, "rs-2": 2}, {"b1": "rs-2"})
    state.apply(failed("rs-1"))
    notices = state.apply(recovered("rs-1"))
    assert kinds(notices) == ["failback_started", "failback_completed"]
    assert state.servers["rs-1"].state is ServerState.ONLINE


def test_r6_recovery_of_a_server_that_is_not_failed_changes_nothing() -> None:
    """R6/R11: a repeated or spurious recovery starts no second failback."""
    state = started(THREE, CAMS)
    assert state.apply(recovered("rs-1")) == []
    state.apply(failed("rs-1"))
    settle(state)
    state.apply(recovered("rs-1"))
    epoch = state.next_epoch
    assert state.apply(recovered("rs-1")) == [], "already failing back"
    assert state.next_epoch == epoch


def test_r8_failback_takes_only_as_many_cameras_as_home_has_channels() -> None:
    """R4/R8: capacity lowered during the outage: the highest-priority cameras go home first."""
    prios = {"a1": Priority.LOW, "a2": Priority.HIGH}
    state = started({"rs-1": 2, "rs-2": 4}, {"a1": "rs-1", "a2": "rs-1"}, prios)
    state.apply(failed("rs-1"))
    settle(state)
    state.apply(CapacityChanged(server="rs-1", capacity=1))
    notices = state.apply(recovered("rs-1"))
    assert set(planned(notices)) == {"a2"}
    settle(state)
    assert hosts(state) == {"a1": "rs-2", "a2": "rs-1"}
    assert state.load("rs-1") <= state.servers["rs-1"].capacity


def test_r5_a_release_during_failback_frees_the_channel_for_a_pending_camera() -> None:
    """R5/R8: a host's channel freed by a failback release goes to a Pending camera."""
    state = started({"rs-1": 1, "rs-2": 1, "rs-4": 1}, {"a1": "rs-1", "b1": "rs-2"})
    state.apply(failed("rs-1"))
    settle(state)
    assert hosts(state)["a1"] == "rs-4"
    state.apply(failed("rs-2"))
    assert state.cameras["b1"].state is CameraState.PENDING
    state.apply(recovered("rs-1"))
    assert state.cameras["b1"].state is CameraState.PENDING, "rs-4 still records a1"
    [release] = state.outstanding_commands()
    assert (release.server, release.action) == ("rs-4", Action.RELEASE)
    notices = carry_out(state, [release], [])
    assert {c: (m.to, m.reason) for c, m in planned(notices).items()} == {
        "b1": ("rs-4", "capacity_freed")
    }
    settle(state)
    assert hosts(state) == {"a1": "rs-1", "b1": "rs-4"}


# ---- capacity ----


def test_r5_raising_capacity_places_pending_cameras_in_priority_order() -> None:
    """R5: Pending cameras are placed as soon as capacity is raised, high priority first."""
    prios = {"a1": Priority.LOW, "a2": Priority.HIGH, "a3": Priority.MEDIUM}
    state = started({"rs-1": 3, "rs-2": 0}, {"a1": "rs-1", "a2": "rs-1", "a3": "rs-1"}, prios)
    state.apply(failed("rs-1"))
    assert {c.state for c in state.cameras.values()} == {CameraState.PENDING}
    notices = state.apply(CapacityChanged(server="rs-2", capacity=2))
    assert {c: (m.to, m.reason) for c, m in planned(notices).items()} == {
        "a2": ("rs-2", "capacity_freed"),
        "a3": ("rs-2", "capacity_freed"),
    }
    assert not any(isinstance(n, CameraPending) for n in notices), "Pending not announced twice"
    assert state.cameras["a1"].state is CameraState.PENDING


def test_r5_lowering_capacity_below_the_load_moves_nothing() -> None:
    """R5: a lower capacity takes effect for new placements; recording cameras stay."""
    state = started({"rs-1": 3, "rs-2": 3}, {"a1": "rs-1", "a2": "rs-1", "a3": "rs-1"})
    before = hosts(state)
    epoch = state.next_epoch
    assert state.apply(CapacityChanged(server="rs-1", capacity=1)) == []
    assert hosts(state) == before
    assert state.next_epoch == epoch
    assert state.servers["rs-1"].capacity == 1
    assert state.free_capacity()["rs-1"] == 0, "never negative"


def test_r4_a_server_over_its_lowered_capacity_takes_no_failed_over_camera() -> None:
    """R4: a server left above its capacity by a change is full for failover."""
    state = started({"rs-1": 1, "rs-2": 3}, {"a1": "rs-1", "b1": "rs-2", "b2": "rs-2"})
    state.apply(CapacityChanged(server="rs-2", capacity=1))
    notices = state.apply(failed("rs-1"))
    assert kinds(notices) == ["camera_pending"]
    assert state.load("rs-2") == 2


def test_r5_capacity_of_a_failed_server_is_not_used() -> None:
    """R4/R5: raising the capacity of a failed server places nothing on it."""
    state = started({"rs-1": 1, "rs-2": 1}, {"a1": "rs-1", "b1": "rs-2"})
    state.apply(failed("rs-1"))
    state.apply(failed("rs-2"))
    assert state.apply(CapacityChanged(server="rs-2", capacity=10)) == []
    assert all(c.state is CameraState.PENDING for c in state.cameras.values())


# ---- cascades ----


def test_r10_cascading_failure_moves_cameras_again_and_keeps_their_home() -> None:
    """R10: the server hosting failed-over cameras fails; they move again, home unchanged."""
    state = started(
        {"rs-1": 2, "rs-2": 4, "rs-3": 1, "rs-4": 2},
        {"a1": "rs-1", "a2": "rs-1", "b1": "rs-2", "c1": "rs-3"},
    )
    state.apply(failed("rs-1"))
    settle(state)
    assert (hosts(state)["a1"], hosts(state)["a2"]) == ("rs-2", "rs-2")
    notices = state.apply(failed("rs-2"))
    moves = planned(notices)
    assert {c: (m.home, m.from_host, m.to) for c, m in moves.items()} == {
        "a1": ("rs-1", "rs-2", "rs-4"),
        "a2": ("rs-1", "rs-2", "rs-4"),
    }
    assert [n.camera for n in notices if isinstance(n, CameraPending)] == ["b1"]
    settle(state)
    assert state.cameras["a1"].home == "rs-1"
    assert state.cameras["a1"].state is CameraState.FAILED_OVER
    # The original home recovers: its cameras come home from the second host.
    state.apply(recovered("rs-1"))
    done = settle(state)
    assert {(n.camera, n.from_host, n.to) for n in done if isinstance(n, CameraMoved)} >= {
        ("a1", "rs-4", "rs-1"),
        ("a2", "rs-4", "rs-1"),
    }
    assert hosts(state) == {"a1": "rs-1", "a2": "rs-1", "b1": "rs-4", "c1": "rs-3"}
    state.apply(recovered("rs-2"))
    settle(state)
    assert {c.state for c in state.cameras.values()} == {CameraState.HOME}


def test_r10_home_failing_again_during_failback_reclaims_on_the_current_host() -> None:
    """R10: home fails before the host released: the host keeps the camera under a new epoch."""
    state = started({"rs-1": 1, "rs-2": 2}, {"a1": "rs-1"})
    state.apply(failed("rs-1"))
    settle(state)
    state.apply(recovered("rs-1"))
    cam = state.cameras["a1"]
    release_epoch = cam.epoch
    notices = state.apply(failed("rs-1"))
    [again] = list(planned(notices).values())
    assert (again.to, again.epoch > release_epoch) == ("rs-2", True)
    assert where(state, "a1") == ("rs-2", "rs-2", [])
    late = ReleasesConfirmed(server="rs-2", cameras=(Assignment(camera="a1", epoch=release_epoch),))
    assert state.apply(late) == [], "a release of the cancelled epoch is ignored"
    assert where(state, "a1") == ("rs-2", "rs-2", [])
    settle(state)
    assert where(state, "a1") == ("rs-2", None, [])
    assert cam.home == "rs-1"
    assert nothing_on(state, "rs-1")


def test_r10_home_failing_after_the_release_places_the_camera_again() -> None:
    """R10: released but not yet claimed at home when home fails: it fails over anew."""
    state = started({"rs-1": 1, "rs-2": 2}, {"a1": "rs-1"})
    state.apply(failed("rs-1"))
    settle(state)
    state.apply(recovered("rs-1"))
    carry_out(state, state.outstanding_commands(), [])
    assert state.cameras["a1"].host is None
    notices = state.apply(failed("rs-1"))
    assert {c: (m.to, m.reason) for c, m in planned(notices).items()} == {
        "a1": ("rs-2", "failover")
    }
    assert nothing_on(state, "rs-1")


def test_r10_host_failing_during_failback_lets_home_claim_at_once() -> None:
    """R8/R10: a host that fails before releasing has nothing left to release; home claims."""
    state = started({"rs-1": 1, "rs-2": 2}, {"a1": "rs-1"})
    state.apply(failed("rs-1"))
    settle(state)
    state.apply(recovered("rs-1"))
    assert state.cameras["a1"].release_from == ["rs-2"]
    state.apply(failed("rs-2"))
    assert where(state, "a1") == (None, "rs-1", [])
    assert [(c.server, c.action) for c in state.outstanding_commands()] == [("rs-1", Action.CLAIM)]
    settle(state)
    assert hosts(state) == {"a1": "rs-1"}


# ---- level-triggered repair ----


def test_r11_strays_and_missing_cameras_are_found_from_a_heartbeat() -> None:
    """R11: a server recording a camera moved away is told to release; a lost claim is redone."""
    state = started({"rs-1": 1, "rs-2": 2}, {"a1": "rs-1"})
    old = state.cameras["a1"].epoch
    state.apply(failed("rs-1"))
    settle(state)
    new = state.cameras["a1"].epoch
    assert state.strays("rs-1", {"a1": old}) == [Assignment(camera="a1", epoch=new)]
    assert state.strays("rs-2", {"a1": new}) == []
    assert state.strays("rs-1", {"a1": new}) == [], "it has seen the newest epoch already"
    assert state.strays("rs-1", {"unknown": 1}) == []
    assert state.missing("rs-2", {}) == [Assignment(camera="a1", epoch=new)]
    assert state.missing("rs-2", {"a1": new}) == []


# ---- epochs and replay (R11) ----


@dataclass
class History:
    """A config and the event log folded on top of it."""

    config: ClusterConfig
    log: list[AnyEvent]

    def replay(self, upto: int | None = None) -> tuple[Placement, list[Notice]]:
        """Fold the first ``upto`` events (all by default) into a fresh state."""
        state, notices = Placement.from_config(self.config)
        for event in self.log[:upto]:
            notices += state.apply(event)
        return state, notices


def scenario() -> tuple[History, Placement]:
    """A busy history: failures, Pending, capacity, cascade, failbacks; every input logged."""
    config = cluster(
        {"rs-1": 3, "rs-2": 3, "rs-3": 2, "rs-4": 1},
        {"a1": "rs-1", "a2": "rs-1", "a3": "rs-1", "b1": "rs-2", "b2": "rs-2", "c1": "rs-3"},
        {"a1": Priority.HIGH, "a3": Priority.LOW, "b2": Priority.NEVER},
    )
    state, _ = Placement.from_config(config)
    log: list[AnyEvent] = []
    settle(state, log)
    steps: list[AnyEvent] = [
        failed("rs-1"),
        failed("rs-3", STORAGE),
        CapacityChanged(server="rs-4", capacity=3),
        failed("rs-2"),
        recovered("rs-1"),
        StorageRepaired(server="rs-3"),
        recovered("rs-3", STORAGE),
        CapacityChanged(server="rs-1", capacity=1),
        recovered("rs-2"),
    ]
    for i, step in enumerate(steps):
        log.append(step)
        state.apply(step)
        if i % 2 == 0:
            settle(state, log)
    settle(state, log)
    return History(config=config, log=log), state


def test_r11_epochs_strictly_increase_with_every_decision() -> None:
    """R11: every move decision takes a fresh epoch above all before it."""
    history, _ = scenario()
    _, notices = history.replay()
    epochs = [n.epoch for n in notices if isinstance(n, CameraMovePlanned)]
    assert len(epochs) > 15
    assert all(a < b for a, b in itertools.pairwise(epochs))


def test_r11_replaying_the_same_events_gives_the_same_state() -> None:
    """R11: the fold is deterministic: same log, same state and same decisions."""
    history, live = scenario()
    first, first_notices = history.replay()
    second, second_notices = history.replay()
    assert first.model_dump() == second.model_dump() == live.model_dump()
    assert shape(first_notices) == shape(second_notices)
    assert {c.state for c in live.cameras.values()} <= {CameraState.HOME, CameraState.FAILED_OVER}


@pytest.mark.parametrize("cut", [0, 4, 11, 19])
def test_r11_a_snapshot_resumes_exactly_where_it_stopped(cut: int) -> None:
    """R11: persist, kill, restore from the snapshot, fold the rest: same as never stopping."""
    history, live = scenario()
    assert cut < len(history.log)
    state, _ = history.replay(cut)
    restored = Placement.model_validate_json(state.model_dump_json())
    for event in history.log[cut:]:
        restored.apply(event)
    assert restored.model_dump() == live.model_dump()


# ---- known bugs ----


def test_r4_a_server_still_releasing_a_camera_gets_no_new_claim() -> None:
    """R4: a channel is reused only after its release is confirmed; else the agent exceeds it."""
    state = started({"rs-1": 1, "rs-2": 1, "rs-4": 1}, {"a1": "rs-1", "b1": "rs-2"})
    state.apply(failed("rs-1"))  # a1 -> rs-4; rs-4 may claim at once, confirmation not yet in
    state.apply(failed("rs-2"))  # b1 Pending: rs-4 is full
    state.apply(recovered("rs-1"))  # a1 home: rs-4 must release it first
    assert state.cameras["a1"].release_from == ["rs-4"]
    on_rs4 = [
        (c.server, c.action, a.camera)
        for c in state.outstanding_commands()
        for a in c.cameras
        if c.server == "rs-4"
    ]
    assert ("rs-4", Action.CLAIM, "b1") not in on_rs4, f"rs-4 (capacity 1) is sent {on_rs4}"


def test_r5_a_server_joining_places_pending_cameras() -> None:
    """R5: a camera Pending for lack of capacity is placed as soon as a server joins."""
    state = started({"rs-1": 1, "rs-2": 1}, {"a1": "rs-1", "b1": "rs-2"})
    state.apply(failed("rs-1"))
    assert state.cameras["a1"].state is CameraState.PENDING
    notices = state.adopt(cluster({"rs-1": 1, "rs-2": 1, "rs-5": 4}, {"a1": "rs-1", "b1": "rs-2"}))
    assert "rs-5" in state.servers
    assert {c: m.to for c, m in planned(notices).items()} == {"a1": "rs-5"}


def test_a_camera_missed_by_two_heartbeats_in_a_row_is_claimed_again() -> None:
    """Heartbeat repair: one heartbeat may have left just before a claim was carried out;
    the second in a row that misses the camera has it claimed again, and counting
    starts afresh."""
    missed = MissedCameras()
    gone = [Assignment(camera="a1", epoch=4)]
    assert missed.to_reclaim("rs-1", gone) == []
    assert missed.to_reclaim("rs-2", gone) == [], "counted per server"
    assert missed.to_reclaim("rs-1", gone) == gone
    assert missed.to_reclaim("rs-1", gone) == []


def test_r4_r8_what_was_left_on_a_failed_server_is_released_there_before_it_fills_up() -> None:
    """R4/R8: a server that failed hosting a guest may still record it when it is back
    (simulation seeds 90, 199): its channel counts until the server has released it, so
    failback claims only the room left, and the rest comes home once it is released."""
    state = started({"rs-1": 2, "rs-2": 3, "rs-3": 2}, {"a1": "rs-1", "a2": "rs-1", "b1": "rs-2"})
    state.apply(failed("rs-2"))  # b1 -> rs-1 or rs-3 ...
    settle(state)
    guest_host = hosts(state)["b1"]
    assert guest_host in ("rs-1", "rs-3")
    state.apply(failed("rs-1"))  # ... a1, a2 and maybe b1 go where room is
    settle(state)
    left = sorted(c.id for c in state.cameras.values() if "rs-1" in c.left_on)
    assert {"a1", "a2"} <= set(left)
    assert state.load("rs-1") == len(left), "a failed server's channels stay counted"
    assert all(c.server != "rs-1" for c in state.outstanding_commands()), "not while failed"
    state.apply(recovered("rs-2"))  # b1 goes home; if it was on rs-1, rs-1 still holds it
    settle(state)
    assert hosts(state)["b1"] == "rs-2"
    notices = state.apply(recovered("rs-1"))
    claimed = planned(notices)
    assert set(claimed) == {"a1", "a2"}, "its own cameras left on it take no other channel"
    releases = [c for c in state.outstanding_commands() if c.server == "rs-1"]
    released = {a.camera for c in releases if c.action is Action.RELEASE for a in c.cameras}
    assert released == set(left) - {"a1", "a2"}
    settle(state)
    assert hosts(state) == {"a1": "rs-1", "a2": "rs-1", "b1": "rs-2"}
    assert all(not c.left_on for c in state.cameras.values())


def test_r4_r8_a_guest_left_on_a_recovering_server_holds_its_channel_until_released() -> None:
    """R4/R8: the recovering home gets claims only for its free channels; the channel of a
    guest it may still record frees at the guest's release, and its last camera comes home."""
    state = started({"rs-1": 2, "rs-2": 2, "rs-3": 1}, {"a1": "rs-1", "b1": "rs-2", "b2": "rs-2"})
    state.apply(failed("rs-2"))
    settle(state)
    assert hosts(state)["b1"] == "rs-1" or hosts(state)["b2"] == "rs-1"
    on_rs1 = next(c for c in ("b1", "b2") if hosts(state)[c] == "rs-1")
    state.apply(failed("rs-1"))  # a1 and the guest: rs-3 has room for one
    settle(state)
    state.apply(recovered("rs-2"))
    settle(state)
    assert hosts(state)[on_rs1] == "rs-2"
    assert state.cameras[on_rs1].left_on == ["rs-1"]
    assert state.load("rs-1") == 2, "a1 and the guest left on it"
    notices = state.apply(recovered("rs-1"))
    assert set(planned(notices)) == {"a1"}, "a1 was left on it: its claim costs nothing more"
    commands = {(c.server, c.action): c for c in state.outstanding_commands()}
    assert [a.camera for a in commands["rs-1", Action.RELEASE].cameras] == [on_rs1]
    settle(state)
    assert state.load("rs-1") == 1
    assert not state.cameras[on_rs1].left_on
