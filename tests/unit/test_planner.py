"""plan(): hard capacity, priority order, ``never`` stays home, spread, Pending (R4, R5, R10)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from services.placement.planner import PRIORITY_ORDER, Candidate, Topology, placement_order, plan
from shared.config import Priority

HIGH, MEDIUM, LOW, NEVER = Priority.HIGH, Priority.MEDIUM, Priority.LOW, Priority.NEVER


def cam(camera: str, home: str = "gone", priority: Priority = MEDIUM) -> Candidate:
    """A camera whose home (by default) is not among the free servers: it has to move."""
    return Candidate(camera=camera, home=home, priority=priority)


def test_r4_capacity_is_a_hard_limit() -> None:
    """R4: no server gets more cameras than its free channels; the rest are Pending (R5)."""
    chosen = plan([cam(f"c{i}") for i in range(5)], {"rs-1": 2, "rs-2": 1})
    per_server = Counter(s for s in chosen.values() if s is not None)
    assert per_server == {"rs-1": 2, "rs-2": 1}
    assert sorted(c for c, s in chosen.items() if s is None) == ["c3", "c4"]


def test_r4_servers_that_are_full_or_absent_take_nothing() -> None:
    """R4: a server at zero free channels is never chosen; with nothing free all are Pending."""
    assert plan([cam("c1"), cam("c2")], {"rs-1": 0, "rs-2": 0}) == {"c1": None, "c2": None}
    assert plan([cam("c1")], {}) == {"c1": None}


def test_r4_negative_free_counts_are_treated_as_full() -> None:
    """R4: a server already over its capacity (negative free) takes nothing more."""
    assert plan([cam("c1")], {"rs-1": -2}) == {"c1": None}


def test_r4_home_first_when_it_has_a_free_channel() -> None:
    """R4/R8: a camera goes to its home server whenever home has a free channel."""
    chosen = plan([cam("c1", home="rs-2")], {"rs-1": 5, "rs-2": 1})
    assert chosen == {"c1": "rs-2"}


def test_r4_failed_over_cameras_spread_by_most_free_capacity() -> None:
    """R4: each camera goes to the server with the most free channels, so they spread out."""
    chosen = plan([cam(f"c{i}") for i in range(4)], {"rs-1": 2, "rs-2": 2, "rs-3": 5})
    assert chosen == {"c0": "rs-3", "c1": "rs-3", "c2": "rs-3", "c3": "rs-1"}


def test_r4_ties_go_to_the_lower_server_id() -> None:
    """R4/R11: equal free capacity is broken by server id, so replays choose the same."""
    chosen = plan([cam("c1"), cam("c2")], {"rs-2": 1, "rs-1": 1})
    assert chosen == {"c1": "rs-1", "c2": "rs-2"}


def test_r5_priority_high_before_medium_before_low() -> None:
    """R5: when capacity is short, high is placed before medium before low."""
    cams = [cam("a", priority=LOW), cam("b", priority=MEDIUM), cam("c", priority=HIGH)]
    assert plan(cams, {"rs-1": 1}) == {"a": None, "b": None, "c": "rs-1"}
    assert plan(cams, {"rs-1": 2}) == {"a": None, "b": "rs-1", "c": "rs-1"}
    assert plan(cams, {"rs-1": 3}) == {"a": "rs-1", "b": "rs-1", "c": "rs-1"}


def test_r5_high_priority_camera_takes_another_cameras_home_channel() -> None:
    """R5: priority beats home: a high camera may take the last channel of a low camera's home."""
    cams = [cam("low", home="rs-1", priority=LOW), cam("high", priority=HIGH)]
    assert plan(cams, {"rs-1": 1}) == {"high": "rs-1", "low": None}


def test_r4_never_camera_never_leaves_home() -> None:
    """R4: a ``never`` camera is Pending when its home is not free, even with room elsewhere."""
    assert plan([cam("c1", home="rs-9", priority=NEVER)], {"rs-1": 10}) == {"c1": None}
    assert plan([cam("c1", home="rs-1", priority=NEVER)], {"rs-1": 1}) == {"c1": "rs-1"}


def test_r4_never_camera_waiting_uses_no_channel() -> None:
    """R4/R5: a Pending ``never`` camera leaves the free channel to cameras that may move."""
    cams = [cam("a", home="rs-9", priority=NEVER), cam("b", priority=LOW)]
    assert plan(cams, {"rs-1": 1}) == {"a": None, "b": "rs-1"}


def test_r5_placement_order_is_priority_then_camera_id() -> None:
    """R5/R11: the order cameras are placed in: priority, then camera id."""
    cams = [
        cam("z", priority=NEVER),
        cam("b", priority=LOW),
        cam("y", priority=HIGH),
        cam("a", priority=LOW),
        cam("x", priority=MEDIUM),
    ]
    assert [c.camera for c in placement_order(cams)] == ["y", "x", "a", "b", "z"]


def test_r11_plan_is_deterministic_whatever_the_input_order() -> None:
    """R11: the same cameras and capacity give the same choices in any input order."""
    cams = [cam(f"c{i}", priority=[HIGH, MEDIUM, LOW][i % 3]) for i in range(9)]
    free = {"rs-1": 2, "rs-2": 3, "rs-3": 1}
    assert plan(cams, free) == plan(list(reversed(cams)), dict(reversed(free.items())))


def test_r4_plan_does_not_modify_the_free_map() -> None:
    """R4: plan() works on a copy; the caller's view of free capacity is unchanged."""
    free = {"rs-1": 2}
    plan([cam("c1"), cam("c2")], free)
    assert free == {"rs-1": 2}


SERVERS = ["rs-1", "rs-2", "rs-3", "rs-4"]
candidates = st.lists(
    st.builds(
        Candidate,
        camera=st.sampled_from([f"cam-{i}" for i in range(30)]),
        home=st.sampled_from([*SERVERS, "rs-gone"]),
        priority=st.sampled_from(Priority),
    ),
    unique_by=lambda c: c.camera,
    max_size=25,
)
free_maps = st.dictionaries(st.sampled_from(SERVERS), st.integers(-1, 6))


@settings(max_examples=300, deadline=None, database=None)
@given(cams=candidates, free=free_maps)
def test_r4_r5_plan_properties(cams: list[Candidate], free: dict[str, int]) -> None:
    """R4/R5: capacity holds, ``never`` stays home, and nothing is Pending while a channel is free.

    Also: nothing of lower placement order is placed while an earlier movable camera waits.
    """
    chosen = plan(cams, free)
    assert set(chosen) == {c.camera for c in cams}
    used = Counter(s for s in chosen.values() if s is not None)
    for server, n in used.items():
        assert n <= free.get(server, 0), f"{server} over its free channels"
    for c in cams:
        if c.priority is NEVER:
            assert chosen[c.camera] in (None, c.home)
    movable_pending = [c for c in cams if c.priority is not NEVER and chosen[c.camera] is None]
    if movable_pending:
        assert all(used[s] >= n for s, n in free.items()), "Pending while a channel is free"
        first_waiting = placement_order(movable_pending)[0]
        rank = (PRIORITY_ORDER[first_waiting.priority], first_waiting.camera)
        for c in cams:
            if c.priority is not NEVER and (PRIORITY_ORDER[c.priority], c.camera) > rank:
                assert chosen[c.camera] is None, f"{c.camera} placed before {first_waiting.camera}"


def plan_by_scanning(
    cameras: list[Candidate], free: dict[str, int], topology: Topology
) -> dict[str, str | None]:
    """The rule of ``plan`` written as plainly as it reads: for each camera in placement
    order, home if it has a channel, else the least (distance, -free, server) of all."""
    left = {s: n for s, n in free.items() if n > 0}
    chosen: dict[str, str | None] = {}
    for c in placement_order(cameras):
        ranked = sorted(
            (d, -n, s) for s, n in left.items() if (d := topology.distance(c.home, s)) is not None
        )
        if c.home in left:
            server: str | None = c.home
        elif c.priority is NEVER or not ranked:
            server = None
        else:
            server = ranked[0][2]
        chosen[c.camera] = server
        if server is not None:
            left[server] -= 1
            if left[server] == 0:
                del left[server]
    return chosen


LOCATIONS = [("north", "a"), ("north", "b"), ("north", "c"), ("south", "a"), ("west", "z")]
fleets = st.dictionaries(
    st.sampled_from([f"rs-{i}" for i in range(10)]),
    st.tuples(st.sampled_from(LOCATIONS), st.integers(-1, 4)),
)


@settings(max_examples=500, deadline=None, database=None)
@given(
    cams=st.lists(
        st.builds(
            Candidate,
            camera=st.sampled_from([f"cam-{i}" for i in range(40)]),
            home=st.sampled_from([f"rs-{i}" for i in range(11)]),  # rs-10: placed nowhere
            priority=st.sampled_from(Priority),
        ),
        unique_by=lambda c: c.camera,
        max_size=40,
    ),
    fleet=fleets,
    across_groups=st.booleans(),
    across_sites=st.booleans(),
)
def test_issue8_plan_chooses_as_a_scan_of_every_server_would(
    cams: list[Candidate],
    fleet: dict[str, tuple[tuple[str, str], int]],
    across_groups: bool,
    across_sites: bool,
) -> None:
    """Issue 8: the per-group and per-site heaps are a shortcut, not a new rule: every
    choice is the one a scan of every free server makes (nearest, most free, lowest id)."""
    located = {s: loc for s, (loc, _) in fleet.items() if s != "rs-9"}  # rs-9: default place
    topology = Topology(located, across_groups, across_sites)
    free = {s: n for s, (_, n) in fleet.items()}
    assert plan(cams, free, topology) == plan_by_scanning(cams, free, topology)
