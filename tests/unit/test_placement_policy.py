"""Issue 5 on the pure planner and the fold: groups and sites, preemption, make-before-break.

Hypothesis checks the planner's rules over random fleets (confinement; preemption only
of low guests, for high cameras); the examples walk the fold through each flow (R4, R5,
R8) with agents played by ``tests.unit.agents``.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.placement.planner import (
    OTHER_SITE,
    SAME_GROUP,
    SAME_SITE,
    Candidate,
    Guest,
    Topology,
    choose_victims,
    plan,
)
from services.placement.state import CameraState, Placement, ServerState
from shared.config import (
    CameraConfig,
    ClusterConfig,
    FailbackMode,
    PlacementPolicy,
    Priority,
    ServerConfig,
)
from shared.messages import (
    Action,
    AnyEvent,
    CameraMoved,
    CameraMovePlanned,
    CameraPending,
    CameraPreempted,
    CapacityChanged,
    ClaimsConfirmed,
    CommandRefused,
    FailbackCompleted,
    FailureCause,
    MoveReason,
    Refusal,
    ServerDrained,
    ServerFailed,
    ServerRecovered,
    ServerUndrained,
)
from tests.unit.agents import carry_out, settle

LOCATIONS = [("north", "a"), ("north", "b"), ("south", "a")]
servers_st = st.dictionaries(
    st.sampled_from([f"rs-{i}" for i in range(8)]),
    st.tuples(st.sampled_from(LOCATIONS), st.integers(0, 3)),
    min_size=1,
)
priority_st = st.sampled_from(Priority)


@given(
    servers=servers_st,
    homes=st.lists(st.tuples(st.sampled_from([f"rs-{i}" for i in range(8)]), priority_st)),
    across_groups=st.booleans(),
    across_sites=st.booleans(),
)
@settings(max_examples=300, deadline=None, database=None)
def test_issue5_a_camera_is_placed_within_its_reach_and_nearest_first(
    servers: dict[str, tuple[tuple[str, str], int]],
    homes: list[tuple[str, Priority]],
    across_groups: bool,
    across_sites: bool,
) -> None:
    """Issue 5, R4: never outside the group/site the policy allows; never farther than a
    nearer server with a channel left; capacity a hard limit; Pending only when nothing
    within reach is free."""
    topology = Topology({s: loc for s, (loc, _) in servers.items()}, across_groups, across_sites)
    free = {s: n for s, (_, n) in servers.items()}
    cams = [Candidate(f"c{i}", home, p) for i, (home, p) in enumerate(homes)]
    chosen = plan(cams, free, topology)
    left = dict(free)
    for server in chosen.values():
        if server is not None:
            left[server] -= 1
    assert all(n >= 0 for n in left.values()), "capacity exceeded"
    for cam in cams:
        server = chosen[cam.camera]
        reach = {s for s in free if topology.distance(cam.home, s) is not None}
        if server is None:
            if cam.priority is not Priority.NEVER:
                assert not any(left[s] for s in reach), f"{cam} Pending with room in reach"
            continue
        assert server == cam.home or server in reach, f"{cam} sent out of reach to {server}"
        if server != cam.home:
            assert cam.priority is not Priority.NEVER
            nearer = [
                s
                for s in reach
                if left[s] and topology.distance(cam.home, s) < topology.distance(cam.home, server)  # type: ignore[operator]
            ]
            assert not nearer or cam.home not in free, f"{cam} on {server}, {nearer} nearer"


def test_issue5_distance_follows_the_policy() -> None:
    """Issue 5: same group, same site, other site; forbidden reaches are None."""
    where = {"a1": ("n", "a"), "a2": ("n", "a"), "b1": ("n", "b"), "s1": ("s", "a")}
    assert Topology(where).distance("a1", "a2") == SAME_GROUP
    assert Topology(where).distance("a1", "b1") == SAME_SITE
    assert Topology(where).distance("a1", "s1") is None
    assert Topology(where, across_sites=True).distance("a1", "s1") == OTHER_SITE
    assert Topology(where, across_groups=False).distance("a1", "b1") is None
    assert Topology().distance("x", "y") == SAME_GROUP, "an empty topology is the seed's rule"


def test_issue5_the_own_group_is_tried_before_a_roomier_group() -> None:
    """Issue 5: within the group first, even when another group of the site has more room."""
    topology = Topology({"a1": ("n", "a"), "a2": ("n", "a"), "b1": ("n", "b")})
    chosen = plan([Candidate("c1", "a1", Priority.MEDIUM)], {"a2": 1, "b1": 9}, topology)
    assert chosen == {"c1": "a2"}


@given(
    pending=st.lists(st.tuples(st.sampled_from([f"rs-{i}" for i in range(4)]), priority_st)),
    guests=st.lists(
        st.tuples(
            st.sampled_from([f"rs-{i}" for i in range(4)]),
            st.sampled_from([f"rs-{i}" for i in range(4)]),
            priority_st,
        )
    ),
    across_groups=st.booleans(),
)
@settings(max_examples=300, deadline=None, database=None)
def test_issue5_preemption_displaces_only_low_guests_for_high_cameras(
    pending: list[tuple[str, Priority]],
    guests: list[tuple[str, str, Priority]],
    across_groups: bool,
) -> None:
    """Issue 5: a victim is a low camera away from home, within the high camera's reach,
    displaced for one camera at most; only high cameras preempt."""
    topology = Topology(
        {"rs-0": ("n", "a"), "rs-1": ("n", "a"), "rs-2": ("n", "b"), "rs-3": ("s", "a")},
        across_groups=across_groups,
    )
    waiting = [Candidate(f"p{i}", home, p) for i, (home, p) in enumerate(pending)]
    present = [Guest(f"g{i}", home, p, host) for i, (home, host, p) in enumerate(guests)]
    victims = choose_victims(waiting, present, topology)
    by_id = {c.camera: c for c in waiting}
    assert len({v.camera for v in victims.values()}) == len(victims), "a guest displaced twice"
    for camera, victim in victims.items():
        assert by_id[camera].priority is Priority.HIGH
        assert victim.priority is Priority.LOW
        assert victim.host != victim.home, "a camera at home was preempted"
        assert topology.distance(by_id[camera].home, victim.host) is not None
    used = {v.camera for v in victims.values()}
    unused = [
        g
        for g in present
        if g.priority is Priority.LOW and g.host != g.home and g.camera not in used
    ]
    for cam in waiting:
        if cam.priority is Priority.HIGH and cam.camera not in victims:
            reachable = [g for g in unused if topology.distance(cam.home, g.host) is not None]
            assert not reachable, f"{cam.camera} waits while {reachable} could be displaced"


# ---- the fold: flows with agents played by the tests ----

DELIBERATE = (MoveReason.FAILBACK, MoveReason.DRAIN)
"""Moves that may take a camera off a healthy server: going home, maintenance."""

policy_st = st.builds(
    PlacementPolicy,
    across_groups=st.booleans(),
    across_sites=st.booleans(),
    preemption=st.booleans(),
    failback=st.sampled_from(FailbackMode),
)
step_st = st.tuples(
    st.sampled_from(["storage", "network", "recovered", "capacity", "drain", "undrain"]),
    st.integers(0, 5),
    st.integers(0, 4),
)


def history_event(state: Placement, kind: str, which: int, n: int) -> AnyEvent:
    server = sorted(state.servers)[which % len(state.servers)]
    if kind == "capacity":
        return CapacityChanged(server=server, capacity=n)
    if kind == "drain":
        return ServerDrained(server=server)
    if kind == "undrain":
        return ServerUndrained(server=server)
    if kind == "recovered":
        return ServerRecovered(server=server, cause=FailureCause.NETWORK)
    return ServerFailed(server=server, cause=FailureCause(kind))


@given(
    policy=policy_st,
    fleet=st.lists(
        st.tuples(st.sampled_from(LOCATIONS), st.integers(1, 3), st.lists(priority_st, max_size=3)),
        min_size=2,
        max_size=6,
    ),
    steps=st.lists(step_st, max_size=25),
)
@settings(max_examples=200, deadline=None, database=None)
def test_issue5_stickiness_a_replan_moves_only_what_failback_or_preemption_asks_for(
    policy: PlacementPolicy,
    fleet: list[tuple[tuple[str, str], int, list[Priority]]],
    steps: list[tuple[str, int, int]],
) -> None:
    """Issue 5: over random histories of failures, recoveries and capacity changes, each
    carried out by the agents to the end, a camera that recorded on a server that is
    still healthy is still there, unless failback took it home, a drain moved it off, or
    preemption displaced it.
    """
    servers, cameras = [], []
    for i, ((site, group), capacity, priorities) in enumerate(fleet):
        servers.append(ServerConfig(id=f"rs-{i}", capacity=capacity, site=site, group=group))
        cameras += [
            CameraConfig(id=f"cam-{i}-{k}", home=f"rs-{i}", priority=p)
            for k, p in enumerate(priorities[:capacity])
        ]
    config = ClusterConfig(servers=tuple(servers), cameras=tuple(cameras), placement=policy)
    state, log = started(config)
    for kind, which, n in steps:
        before = {
            c.id: c.host
            for c in state.cameras.values()
            if c.host is not None and state.servers[c.host].state is ServerState.ONLINE
        }
        notices = state.apply(history_event(state, kind, which, n))
        notices += settle(state, log)
        asked = {
            n.camera
            for n in notices
            if isinstance(n, CameraPreempted)
            or (isinstance(n, CameraMovePlanned) and n.reason in DELIBERATE)
        }
        for camera, host in before.items():
            if camera in asked or state.servers[host].state is not ServerState.ONLINE:
                continue
            assert state.cameras[camera].host == host, f"{camera} moved off healthy {host}"


def sited_cluster(policy: PlacementPolicy, failback: FailbackMode | None = None) -> ClusterConfig:
    """North: group a (n-a1, n-a2) and group b (n-b1); south: s-1. Capacity 2 each;
    n-a1 is full of its own cameras (one high, one low), the others are empty."""
    servers = [
        ServerConfig(id="n-a1", capacity=2, site="north", group="a"),
        ServerConfig(id="n-a2", capacity=2, site="north", group="a"),
        ServerConfig(id="n-b1", capacity=2, site="north", group="b"),
        ServerConfig(id="s-1", capacity=2, site="south", group="a"),
    ]
    cameras = [
        CameraConfig(id="hi", home="n-a1", priority=Priority.HIGH, failback=failback),
        CameraConfig(id="lo", home="n-a1", priority=Priority.LOW, failback=failback),
    ]
    return ClusterConfig(servers=tuple(servers), cameras=tuple(cameras), placement=policy)


def started(config: ClusterConfig) -> tuple[Placement, list[AnyEvent]]:
    state, _ = Placement.from_config(config)
    log: list[AnyEvent] = []
    settle(state, log)
    return state, log


def test_issue5_failover_stays_in_the_group_then_the_site_never_another_site() -> None:
    """Issue 5, R4: n-a1 fails: its cameras go to n-a2 (its group); when n-a2 fails too,
    to n-b1 (same site); when that fails, Pending: south is another site."""
    state, log = started(sited_cluster(PlacementPolicy()))
    state.apply(ServerFailed(server="n-a1", cause=FailureCause.STORAGE))
    settle(state, log)
    assert {c.host for c in state.cameras.values()} == {"n-a2"}
    state.apply(ServerFailed(server="n-a2", cause=FailureCause.NETWORK))
    settle(state, log)
    assert {c.host for c in state.cameras.values()} == {"n-b1"}
    notices = state.apply(ServerFailed(server="n-b1", cause=FailureCause.NETWORK))
    assert {c.state for c in state.cameras.values()} == {CameraState.PENDING}
    assert sorted(n.camera for n in notices if isinstance(n, CameraPending)) == ["hi", "lo"]
    assert state.free_capacity()["s-1"] == 2, "another site's free channels stay unused"


def test_issue5_across_groups_off_keeps_cameras_pending_in_their_group() -> None:
    """Issue 5: with across_groups off, a full group leaves its cameras Pending even while
    another group of the site has room (Pending is per reachable capacity)."""
    state, log = started(sited_cluster(PlacementPolicy(across_groups=False)))
    state.apply(ServerFailed(server="n-a2", cause=FailureCause.NETWORK))
    state.apply(ServerFailed(server="n-a1", cause=FailureCause.STORAGE))
    settle(state, log)
    assert {c.state for c in state.cameras.values()} == {CameraState.PENDING}


def test_issue5_across_sites_lets_cameras_cross_when_the_site_is_full() -> None:
    """Issue 5: across_sites on: the other site is the last resort."""
    state, log = started(sited_cluster(PlacementPolicy(across_sites=True)))
    for sid in ("n-a2", "n-b1"):
        state.apply(ServerFailed(server=sid, cause=FailureCause.NETWORK))
    state.apply(ServerFailed(server="n-a1", cause=FailureCause.STORAGE))
    settle(state, log)
    assert {c.host for c in state.cameras.values()} == {"s-1"}


def high_and_low(servers: list[str], low_home: str, preemption: bool) -> ClusterConfig:
    """Servers of one channel each; ``hi`` (high) at home on the first, ``lo`` (low) on
    ``low_home``."""
    cameras = (
        CameraConfig(id="hi", home=servers[0], priority=Priority.HIGH),
        CameraConfig(id="lo", home=low_home, priority=Priority.LOW),
    )
    return ClusterConfig(
        servers=tuple(ServerConfig(id=s, capacity=1) for s in servers),
        cameras=cameras,
        placement=PlacementPolicy(preemption=preemption),
    )


def preemption_setup(preemption: bool) -> tuple[Placement, list[AnyEvent]]:
    """Three servers of one channel: ``lo`` (low) of n-a3 is a guest on n-a2 once n-a3
    fails, so when n-a1 fails its high camera ``hi`` finds no free channel."""
    state, log = started(high_and_low(["n-a1", "n-a2", "n-a3"], "n-a3", preemption))
    state.apply(ServerFailed(server="n-a3", cause=FailureCause.STORAGE))
    settle(state, log)
    assert state.cameras["lo"].host == "n-a2", "the low camera is a guest on n-a2"
    return state, log


def test_issue5_preemption_is_off_by_default_the_high_camera_waits() -> None:
    """Issue 5: without preemption a high camera with nowhere to go is Pending."""
    state, _ = preemption_setup(preemption=False)
    notices = state.apply(ServerFailed(server="n-a1", cause=FailureCause.STORAGE))
    assert state.cameras["hi"].state is CameraState.PENDING
    assert state.cameras["lo"].host == "n-a2"
    assert not [n for n in notices if isinstance(n, CameraPreempted)]


def test_issue5_a_high_camera_preempts_a_low_guest_release_first() -> None:
    """Issue 5, R4: the low guest is released (an event names both cameras), becomes
    Pending, and only after its host confirms does the high camera claim the channel."""
    state, log = preemption_setup(preemption=True)
    notices = state.apply(ServerFailed(server="n-a1", cause=FailureCause.STORAGE))
    preempted = [n for n in notices if isinstance(n, CameraPreempted)]
    assert [(p.camera, p.by, p.server) for p in preempted] == [("lo", "hi", "n-a2")]
    assert [(n.camera, n.reason) for n in notices if isinstance(n, CameraPending)] == [
        ("lo", "preempted by hi")
    ]
    assert state.cameras["lo"].state is CameraState.PENDING
    assert state.load("n-a2") == 1, "the channel stays taken until the release"
    commands = state.outstanding_commands()
    assert [(c.server, c.action) for c in commands] == [("n-a2", Action.RELEASE)]
    again = state.apply(ServerFailed(server="n-a3", cause=FailureCause.NETWORK))
    assert not [n for n in again if isinstance(n, CameraPreempted)], "preempted once"
    settle(state, log)
    assert state.cameras["hi"].host == "n-a2"
    assert state.cameras["lo"].state is CameraState.PENDING


def test_issue5_a_camera_at_home_is_never_preempted() -> None:
    """Issue 5: only guests are displaced; low cameras at home keep recording."""
    state, _ = started(high_and_low(["a", "b"], "b", preemption=True))
    notices = state.apply(ServerFailed(server="a", cause=FailureCause.STORAGE))
    assert not [n for n in notices if isinstance(n, CameraPreempted)]
    assert state.cameras["lo"].state is CameraState.HOME
    assert state.cameras["hi"].state is CameraState.PENDING


def failed_over(failback: FailbackMode | None, policy: PlacementPolicy) -> Placement:
    state, log = started(sited_cluster(policy, failback))
    state.apply(ServerFailed(server="n-a1", cause=FailureCause.NETWORK))
    settle(state, log)
    assert {c.host for c in state.cameras.values()} == {"n-a2"}
    state.apply(ServerRecovered(server="n-a1", cause=FailureCause.NETWORK))
    return state


def test_issue5_make_before_break_claims_home_before_the_host_releases() -> None:
    """Issue 5, R8: home is told to claim first (waiting for its first segment) while the
    host keeps recording; only after home confirms is the host told to release, under
    the newer epoch."""
    state = failed_over(None, PlacementPolicy(failback=FailbackMode.MAKE_BEFORE_BREAK))
    commands = state.outstanding_commands()
    assert [(c.server, c.action, c.first_segment) for c in commands] == [
        ("n-a1", Action.CLAIM, True)
    ]
    assert state.load("n-a2") == 2, "the host's channels stay taken during the handover"
    assert all(c.host == "n-a2" for c in state.cameras.values())
    notices = carry_out(state, commands, [])
    assert {n.camera for n in notices if isinstance(n, CameraMoved)} == {"hi", "lo"}
    assert all(c.state is CameraState.HOME for c in state.cameras.values())
    releases = state.outstanding_commands()
    assert [(c.server, c.action) for c in releases] == [("n-a2", Action.RELEASE)]
    assert {a.epoch for a in releases[0].cameras} == {c.epoch for c in state.cameras.values()}
    carry_out(state, releases, [])
    assert state.outstanding_commands() == []
    assert state.load("n-a2") == 0
    assert state.servers["n-a1"].state is ServerState.ONLINE


def test_issue8_a_refused_release_is_sent_again_under_its_new_epoch() -> None:
    """R11, issue 8: after a make-before-break the old host's release has no move behind
    it; refused (the host saw a newer epoch), it is re-issued under a fresh epoch, and the
    outstanding commands, derived again only for what changed, carry that epoch."""
    state = failed_over(None, PlacementPolicy(failback=FailbackMode.MAKE_BEFORE_BREAK))
    carry_out(state, state.outstanding_commands(), [])
    [release] = state.outstanding_commands()
    first = release.cameras[0]
    refusal = Refusal(camera=first.camera, epoch=first.epoch, seen_epoch=700, reason="newer")
    assert state.apply(CommandRefused(server="n-a2", refusals=(refusal,))) == []
    [again] = state.outstanding_commands()
    epochs = {a.camera: a.epoch for a in again.cameras}
    assert epochs[first.camera] == 701
    assert epochs == {c.id: c.epoch for c in state.cameras.values()}


def test_issue5_release_first_stays_the_default() -> None:
    """Issue 5, R8: by default the host releases first, then home claims."""
    state = failed_over(None, PlacementPolicy())
    commands = state.outstanding_commands()
    assert [(c.server, c.action) for c in commands] == [("n-a2", Action.RELEASE)]


def test_issue5_make_before_break_per_camera_overrides_the_policy() -> None:
    """Issue 5: a camera's own ``failback`` beats the [placement] default."""
    state = failed_over(FailbackMode.MAKE_BEFORE_BREAK, PlacementPolicy())
    assert [(c.server, c.action) for c in state.outstanding_commands()] == [("n-a1", Action.CLAIM)]


def test_issue5_home_failing_during_a_handover_leaves_the_host_recording() -> None:
    """Issue 5, R4: home fails after confirming its claim but before the host released:
    the host, which still records, is asked to claim again under a newer epoch."""
    state = failed_over(None, PlacementPolicy(failback=FailbackMode.MAKE_BEFORE_BREAK))
    claim = state.outstanding_commands()[0]
    state.apply(ClaimsConfirmed(server=claim.server, cameras=claim.cameras))
    state.apply(ServerFailed(server="n-a1", cause=FailureCause.NETWORK))
    assert {(c.target, tuple(c.release_after)) for c in state.cameras.values()} == {("n-a2", ())}
    settle(state, [])
    assert {c.host for c in state.cameras.values()} == {"n-a2"}
    assert state.load("n-a2") == 2


def test_issue5_what_if_shows_preemption_and_changes_nothing() -> None:
    """Issue 5/6: the what-if view runs the same fold on a copy: it shows the high camera
    taking the low guest's channel, and the real state is untouched."""
    state, _ = preemption_setup(preemption=True)
    before = state.model_dump()
    after, notices = state.what_if("n-a1")
    assert state.model_dump() == before
    assert [(n.camera, n.by) for n in notices if isinstance(n, CameraPreempted)] == [("lo", "hi")]
    assert after.cameras["hi"].host == "n-a2"
    assert after.cameras["lo"].state is CameraState.PENDING
    assert after.outstanding_commands() == []


def test_issue5_an_old_host_failing_mid_handover_still_completes_the_failback() -> None:
    """Issue 5, R8: home confirmed its make-before-break claims, then the old host fails
    before releasing: nothing is left to wait for, so failback completes."""
    state = failed_over(None, PlacementPolicy(failback=FailbackMode.MAKE_BEFORE_BREAK))
    claim = state.outstanding_commands()[0]
    state.apply(ClaimsConfirmed(server=claim.server, cameras=claim.cameras))
    notices = state.apply(ServerFailed(server="n-a2", cause=FailureCause.NETWORK))
    assert [n.server for n in notices if isinstance(n, FailbackCompleted)] == ["n-a1"]
    assert state.servers["n-a1"].state is ServerState.ONLINE
    assert state.outstanding_commands() == []


def test_issue5_a_refused_preemption_release_is_sent_again_above_the_seen_epoch() -> None:
    """Issue 5, R11: the victim's host has seen a newer epoch and refuses the release; the
    same release goes out above it, and once done the high camera takes the channel."""
    state, log = preemption_setup(preemption=True)
    state.apply(ServerFailed(server="n-a1", cause=FailureCause.STORAGE))
    (release,) = state.outstanding_commands()
    (a,) = release.cameras
    refusal = Refusal(camera="lo", epoch=a.epoch, seen_epoch=a.epoch + 5, reason="newer")
    state.apply(CommandRefused(server="n-a2", refusals=(refusal,)))
    (again,) = state.outstanding_commands()
    assert (again.server, again.action) == ("n-a2", Action.RELEASE)
    assert again.cameras[0].epoch > a.epoch + 5
    settle(state, log)
    assert state.cameras["hi"].host == "n-a2"
    assert state.cameras["lo"].preempted_by is None


def test_issue5_a_refused_handover_release_is_sent_again_above_the_seen_epoch() -> None:
    """Issue 5, R11: after a make-before-break claim, the old host refuses its release (it
    has seen a newer epoch); the release goes out again above it, and failback completes."""
    state = failed_over(None, PlacementPolicy(failback=FailbackMode.MAKE_BEFORE_BREAK))
    claim = state.outstanding_commands()[0]
    state.apply(ClaimsConfirmed(server=claim.server, cameras=claim.cameras))
    (release,) = state.outstanding_commands()
    refusals = tuple(
        Refusal(camera=a.camera, epoch=a.epoch, seen_epoch=a.epoch + 3, reason="newer")
        for a in release.cameras
    )
    state.apply(CommandRefused(server=release.server, refusals=refusals))
    (again,) = state.outstanding_commands()
    assert (again.server, again.action) == ("n-a2", Action.RELEASE)
    seen = {r.camera: r.seen_epoch for r in refusals}
    assert all(a.epoch > seen[a.camera] for a in again.cameras), (again.cameras, seen)
    notices = carry_out(state, [again], [])
    assert [n.server for n in notices if isinstance(n, FailbackCompleted)] == ["n-a1"]
