"""The soak's fault plan (issue 10): the same seed gives the same plan, every kind of fault
turns up, and the plan keeps to its limits at every moment."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from soak.faults import (
    CONFIRM_ALLOWANCE_S,
    NODE_FAULTS,
    NODE_REJOIN_S,
    REPLICA_FAULTS,
    SERVER_FAULTS,
    SILENCING,
    FaultBounds,
    FaultKind,
    FleetShape,
    PlannedFault,
    plan_faults,
)
from soak.fleet import fleet_toml, shape_of, write_fleet


def fleet(servers: int = 6) -> FleetShape:
    ids = [f"rs-{n}" for n in range(1, servers + 1)]
    return FleetShape(dict.fromkeys(ids, 13), dict.fromkeys(ids, 10))


def busy_until(fault: PlannedFault) -> float:
    end = fault.at + fault.duration
    return end + CONFIRM_ALLOWANCE_S if fault.kind is FaultKind.STORAGE_FAILURE else end


def overlapping(plan: list[PlannedFault], at: float) -> list[PlannedFault]:
    return [f for f in plan if f.at <= at < busy_until(f)]


def test_a_seed_gives_the_same_plan_and_another_seed_another() -> None:
    shape = fleet()
    assert plan_faults(7, 600, 5, shape) == plan_faults(7, 600, 5, shape)
    assert plan_faults(7, 600, 5, shape) != plan_faults(8, 600, 5, shape)


def test_every_kind_turns_up_at_the_given_rate() -> None:
    plan = plan_faults(1, 1800, 5, fleet(12))
    kinds = Counter(f.kind for f in plan)
    assert set(kinds) == set(FaultKind)
    assert len(plan) >= 0.9 * (1800 / 5 - 1)
    assert all(f.at % 5 == 0 for f in plan)


@pytest.mark.parametrize("seed", range(5))
def test_the_plan_keeps_its_limits_at_every_moment(seed: int) -> None:
    shape = fleet(6)
    plan = plan_faults(seed, 900, 3, shape)
    bounds = FaultBounds()
    for fault in plan:
        now = overlapping(plan, fault.at)
        targets = Counter(f.target for f in now if f.kind not in NODE_FAULTS)
        assert max(targets.values(), default=1) == 1, (
            f"two faults on one target at {fault.describe()}"
        )
        server_faults = [f for f in now if f.kind in SERVER_FAULTS]
        assert len(server_faults) <= shape.most_server_faults
        assert sum(1 for f in now if f.kind in SILENCING) <= shape.most_silent
        replicas = Counter(f.target for f in now if f.kind in REPLICA_FAULTS)
        assert all(n == 1 for n in replicas.values())
        assert fault.duration <= bounds.longest
    nodes = [f for f in plan if f.kind in NODE_FAULTS]
    for before, after in itertools.pairwise(nodes):
        assert after.at >= before.at + before.duration + NODE_REJOIN_S, "two NATS nodes at once"


def test_no_server_is_silenced_long_enough_to_trip_the_flapping_guard() -> None:
    shape = fleet(4)
    plan = plan_faults(3, 1800, 2, shape)
    long_ones = [f for f in plan if f.kind in SILENCING and f.duration >= shape.network_timeout - 2]
    for f in long_ones:
        recent = [
            g
            for g in long_ones
            if g.target == f.target and 0 <= f.at - g.at < shape.failover_window
        ]
        assert len(recent) < shape.max_failovers


def test_capacity_changes_raise_or_lower_and_the_fleet_config_is_valid(tmp_path: Path) -> None:
    config = write_fleet(tmp_path / "soak.toml", 5, 43)
    shape = shape_of(config)
    assert sum(shape.homed.values()) == 43
    assert all(shape.capacities[s] > shape.homed[s] for s in shape.servers)
    changes = [f for f in plan_faults(2, 1800, 5, shape) if f.kind is FaultKind.CAPACITY_CHANGE]
    assert {
        f.capacity is not None and f.capacity < shape.capacities[f.target] for f in changes
    } == {
        True,
        False,
    }
    assert "segment_seconds = 2" in fleet_toml(2, 4, segment_seconds=2)


def test_the_soak_package_exports_what_its_all_says() -> None:
    import soak  # noqa: PLC0415

    assert soak.__all__
    assert all(hasattr(soak, name) for name in soak.__all__)
