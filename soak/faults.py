"""The seeded fault plan: every ``fault_every`` seconds one fault, drawn from the seed, that
ends by itself after a bounded time. Pure: the same seed and fleet give the same plan.

The plan keeps to what the run can be judged by (docs/soak.md, "what the issue leaves
open"): one fault per target at a time; fewer servers silent at once than the detector's
mass-silence share; at most one replica of a service and one NATS node down at a time
(a node gets ``NODE_REJOIN_S`` to catch up before the next node fault); and no server cut
off for long enough to fail over more often than the anti-flapping guard allows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    """What the injector can do, in the operator's words."""

    SERVER_NETWORK_CUT = "server_network_cut"
    REPLICA_NETWORK_CUT = "replica_network_cut"
    STORAGE_FAILURE = "storage_failure"
    REPLICA_KILL = "replica_kill"
    AGENT_KILL = "agent_kill"
    NATS_NODE_KILL = "nats_node_kill"
    NATS_NODE_RESTART = "nats_node_restart"
    CAPACITY_CHANGE = "capacity_change"
    DRAIN = "drain"


SERVER_FAULTS = frozenset(
    {
        FaultKind.SERVER_NETWORK_CUT,
        FaultKind.STORAGE_FAILURE,
        FaultKind.AGENT_KILL,
        FaultKind.CAPACITY_CHANGE,
        FaultKind.DRAIN,
    }
)
"""Faults aimed at one recording server."""
SILENCING = frozenset({FaultKind.SERVER_NETWORK_CUT, FaultKind.AGENT_KILL})
"""Server faults that silence its heartbeats (the detector's network path, R2)."""
REPLICA_FAULTS = frozenset({FaultKind.REPLICA_NETWORK_CUT, FaultKind.REPLICA_KILL})
NODE_FAULTS = frozenset({FaultKind.NATS_NODE_KILL, FaultKind.NATS_NODE_RESTART})

SERVICES = ("health", "placement", "sync")
LEADER_SHARE = 0.75
"""How often a replica fault hits the service's leader rather than its standby."""
NODE_REJOIN_S = 10.0
"""A restarted NATS node's time to catch up before another node may be hit."""
REPLICA_RESTART_S = 6.0
"""A SIGKILLed replica's longest wait for its restart (the supervisor's back-off is 5 s)."""
CONFIRM_ALLOWANCE_S = 10.0
"""Planned time, after a storage repair, for the administrator's confirmation."""
RESTORED_SILENCE_S = 5.0
"""A server back from a cut or a kill still counts as silent this long (reconnecting)."""
MOST_REPLICA_FAULTS = 2
"""Replica faults at once (never two of one service)."""


@dataclass(frozen=True)
class FaultBounds:
    """How long each kind of fault lasts, uniform between the two bounds (seconds)."""

    server_cut: tuple[float, float] = (2.0, 25.0)
    replica_cut: tuple[float, float] = (2.0, 12.0)
    storage: tuple[float, float] = (2.0, 15.0)
    agent_down: tuple[float, float] = (1.0, 20.0)
    node_down: tuple[float, float] = (2.0, 15.0)
    node_restart_gap: tuple[float, float] = (0.0, 2.0)
    capacity: tuple[float, float] = (5.0, 25.0)
    drain: tuple[float, float] = (5.0, 25.0)

    @property
    def longest(self) -> float:
        """The longest any fault lasts before its repair starts."""
        spans: list[tuple[float, float]] = list(asdict(self).values())
        return max(high for _, high in spans)


@dataclass(frozen=True)
class FleetShape:
    """What the plan needs to know of the cluster."""

    capacities: dict[str, int]
    """Each server's configured channel capacity."""
    homed: dict[str, int]
    """Cameras homed on each server."""
    nodes: int = 3
    network_timeout: float = 10.0
    mass_silence_share: float = 0.5
    max_failovers: int = 3
    failover_window: float = 600.0

    @property
    def servers(self) -> list[str]:
        """Server ids, in order."""
        return sorted(self.capacities)

    @property
    def most_silent(self) -> int:
        """Servers that may be silent at once: below the mass-silence guard, with a margin
        for a server whose failure was declared a moment ago (it still counts)."""
        return max(1, math.floor(self.mass_silence_share * len(self.capacities)) - 1)

    @property
    def most_server_faults(self) -> int:
        """Server faults of any kind at once: a third of the fleet."""
        return max(1, len(self.capacities) // 3)


@dataclass(frozen=True)
class PlannedFault:
    """One fault of the plan."""

    number: int
    at: float
    """Seconds after the start of the fault phase."""
    kind: FaultKind
    target: str
    """A server id, a service name (``placement``), or a NATS node (``nats-2``)."""
    duration: float
    """Seconds until its repair starts (0 for a SIGKILLed replica: it is restarted)."""
    role: str = ""
    """For a replica fault: ``leader`` or ``standby``, resolved when it is injected."""
    capacity: int | None = None
    """For a capacity change: the new channel capacity."""

    def to_json(self) -> dict[str, Any]:
        """The plan entry as JSON."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    def describe(self) -> str:
        """One line for people."""
        extra = f" {self.role}" if self.role else ""
        extra += f" -> capacity {self.capacity}" if self.capacity is not None else ""
        when = f"#{self.number} t={self.at:.0f}s"
        return f"{when} {self.kind} {self.target}{extra} for {self.duration:.1f}s"


@dataclass
class _Planner:
    """Draws the plan, keeping what it has in flight at each moment (planned end times)."""

    rng: random.Random
    fleet: FleetShape
    bounds: FaultBounds
    targets: dict[str, float] = field(default_factory=dict)
    silencing: dict[str, float] = field(default_factory=dict)
    nodes_free_at: float = 0.0
    long_silences: dict[str, list[float]] = field(default_factory=dict)

    def free(self, target: str, at: float) -> bool:
        return self.targets.get(target, 0.0) <= at

    def in_flight(self, targets: Iterable[str], at: float) -> int:
        return sum(1 for t in targets if self.targets.get(t, 0.0) > at)

    def draw(self, kind: FaultKind, number: int, at: float) -> PlannedFault | None:
        """A fault of ``kind`` at ``at`` with a free target, or None."""
        if kind in SERVER_FAULTS:
            return self._server_fault(kind, number, at)
        if kind in REPLICA_FAULTS:
            return self._replica_fault(kind, number, at)
        if self.nodes_free_at > at:
            return None
        node = f"nats-{self.rng.randint(1, self.fleet.nodes)}"
        b = self.bounds
        span = b.node_down if kind is FaultKind.NATS_NODE_KILL else b.node_restart_gap
        return PlannedFault(number, at, kind, node, round(self.rng.uniform(*span), 1))

    def _replica_fault(self, kind: FaultKind, number: int, at: float) -> PlannedFault | None:
        services = [s for s in SERVICES if self.free(s, at)]
        if not services or self.in_flight(SERVICES, at) >= MOST_REPLICA_FAULTS:
            return None
        role = "leader" if self.rng.random() < LEADER_SHARE else "standby"
        cut = kind is FaultKind.REPLICA_NETWORK_CUT
        length = round(self.rng.uniform(*self.bounds.replica_cut), 1) if cut else 0.0
        return PlannedFault(number, at, kind, self.rng.choice(services), length, role)

    def _server_fault(self, kind: FaultKind, number: int, at: float) -> PlannedFault | None:
        fleet = self.fleet
        servers = [s for s in fleet.servers if self.free(s, at)]
        if not servers or self.in_flight(fleet.servers, at) >= fleet.most_server_faults:
            return None
        silent = sum(1 for end in self.silencing.values() if end > at)
        if kind in SILENCING and silent >= fleet.most_silent:
            return None
        b = self.bounds
        span = {
            FaultKind.SERVER_NETWORK_CUT: b.server_cut,
            FaultKind.STORAGE_FAILURE: b.storage,
            FaultKind.AGENT_KILL: b.agent_down,
            FaultKind.CAPACITY_CHANGE: b.capacity,
            FaultKind.DRAIN: b.drain,
        }[kind]
        length = round(self.rng.uniform(*span), 1)
        if kind in SILENCING and length >= fleet.network_timeout - 2:
            servers = [s for s in servers if self._may_fail_over(s, at)]
            if not servers:
                return None
        target = self.rng.choice(servers)
        capacity = None
        if kind is FaultKind.CAPACITY_CHANGE:
            capacity = _new_capacity(self.rng, fleet.capacities[target])
        return PlannedFault(number, at, kind, target, length, capacity=capacity)

    def _may_fail_over(self, server: str, at: float) -> bool:
        """Whether one more network failover of ``server`` stays below the anti-flapping
        guard (``max_failovers`` within ``failover_window`` holds its failback back)."""
        fleet = self.fleet
        if fleet.max_failovers == 0:
            return True
        recent = [t for t in self.long_silences.get(server, []) if at - t < fleet.failover_window]
        return len(recent) < fleet.max_failovers - 1

    def occupy(self, fault: PlannedFault) -> None:
        """Mark the fault's target busy until its planned end (and what it implies)."""
        end = fault.at + fault.duration
        if fault.kind is FaultKind.STORAGE_FAILURE:
            end += CONFIRM_ALLOWANCE_S
        if fault.kind is FaultKind.REPLICA_KILL:
            end += REPLICA_RESTART_S
        if fault.kind in NODE_FAULTS:
            self.nodes_free_at = end + NODE_REJOIN_S
            return
        self.targets[fault.target] = end
        if fault.kind in SILENCING:
            # A restored server is silent a little longer: reconnects, the hold-down.
            self.silencing[fault.target] = end + RESTORED_SILENCE_S
            if fault.duration >= self.fleet.network_timeout - 2:
                self.long_silences.setdefault(fault.target, []).append(fault.at)


def plan_faults(
    seed: int,
    duration: float,
    every: float,
    fleet: FleetShape,
    bounds: FaultBounds = FaultBounds(),
) -> list[PlannedFault]:
    """The faults of a run: one every ``every`` seconds from ``every`` until ``duration``.
    A draw whose kind has no free target tries the other kinds in a drawn order; a moment
    at which no kind fits plans nothing."""
    planner = _Planner(random.Random(seed), fleet, bounds)  # noqa: S311 - a seed, not a secret
    planned: list[PlannedFault] = []
    at = every
    while at < duration:
        kinds = list(FaultKind)
        first = planner.rng.choice(kinds)
        rest = [k for k in kinds if k is not first]
        planner.rng.shuffle(rest)
        for kind in (first, *rest):
            fault = planner.draw(kind, len(planned) + 1, at)
            if fault is not None:
                planned.append(fault)
                planner.occupy(fault)
                break
        at += every
    return planned


def _new_capacity(rng: random.Random, capacity: int) -> int:
    """A different channel capacity near the configured one, raised or lowered."""
    step = max(2, capacity // 4)
    choices = [c for c in range(max(0, capacity - step), capacity + step + 1) if c != capacity]
    return rng.choice(choices)
