"""What one seed simulates: the fleet, its placement policy, how bad the bus is, how
often faults come. Everything is drawn from the seed's own random stream."""

from __future__ import annotations

import random
from dataclasses import dataclass

from shared.config import (
    CameraConfig,
    ClusterConfig,
    FailbackMode,
    PlacementPolicy,
    Priority,
    ServerConfig,
)
from sim.network import BusFaults

SMALL_FLEET = 200
"""Up to this many servers a seed also draws sites, groups and a placement policy, and
runs the checks that cost a pass over every camera."""


@dataclass(frozen=True)
class Settings:
    """One run: the seed and the size of the world it builds."""

    seed: int = 0
    servers: int = 12
    cameras: int = 240
    hours: float = 0.25
    """Virtual hours of faults; a calm follows, in which the cluster must settle."""
    calm: float = 1200.0
    """Virtual seconds the cluster has to settle once faults stop (a flapping server's
    automatic failback may wait the whole failover window, 600 s)."""
    mutant: str | None = None
    faults: tuple[int, ...] | None = None
    """Only these faults of the seed's schedule (by number): what minimising tries."""
    trace: bool = False
    """Record every step (for printing a failing seed's trace; slower)."""
    strict: bool = True
    """Known findings (see docs/simulation.md) break the run too; False counts them."""


@dataclass(frozen=True)
class Scenario:
    """The world one seed builds."""

    config: ClusterConfig
    bus: BusFaults
    fault_every: float
    """Mean virtual seconds between two faults."""
    first_segment_fails: float
    """Share of make-before-break claims whose first segment is not written in time."""
    commit_every: float
    """Virtual seconds between two snapshot commits of the placement leader."""
    dead: tuple[str, ...]
    """Servers that stay cut off for good once the faults stop."""
    small: bool

    def describe(self) -> str:
        p = self.config.placement
        return (
            f"{len(self.config.servers)} servers, {len(self.config.cameras)} cameras, "
            f"policy groups={p.across_groups} sites={p.across_sites} "
            f"preemption={p.preemption} failback={p.failback}; bus {self.bus.describe()}; "
            f"a fault every {self.fault_every:.0f} s; dead at the end: {list(self.dead)}"
        )


def build(settings: Settings, rng: random.Random) -> Scenario:
    """The seed's world."""
    n, m = max(2, settings.servers), max(1, settings.cameras)
    small = n <= SMALL_FLEET
    width = len(str(n - 1))
    ids = [f"rs-{i:0{width}d}" for i in range(n)]
    homed = [0] * n
    homes: list[int] = []
    for _ in range(m):
        i = rng.randrange(n)
        homed[i] += 1
        homes.append(i)
    topology = small and rng.random() < 0.5
    layout = [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]
    servers = []
    for i, sid in enumerate(ids):
        headroom = rng.choice([0.0, 0.1, 0.25, 0.5])
        capacity = homed[i] + round(homed[i] * headroom) + rng.randint(0, 2)
        site, group = layout[i % len(layout)] if topology else ("default", "default")
        servers.append(ServerConfig(id=sid, capacity=capacity, site=site, group=group))
    cwidth = len(str(m - 1))
    weights = [Priority.HIGH] * 2 + [Priority.MEDIUM] * 5 + [Priority.LOW] * 2
    cameras = tuple(
        CameraConfig(
            id=f"cam-{k:0{cwidth}d}",
            home=ids[homes[k]],
            priority=Priority.NEVER if rng.random() < 0.02 else rng.choice(weights),
            failback=rng.choice([None, None, None, *FailbackMode]),
        )
        for k in range(m)
    )
    policy = PlacementPolicy(
        across_groups=rng.random() < 0.7 if topology else True,
        across_sites=rng.random() < 0.5 if topology else False,
        preemption=rng.random() < 0.5,
        failback=rng.choice(list(FailbackMode)),
    )
    config = ClusterConfig(servers=tuple(servers), cameras=cameras, placement=policy)
    bus = BusFaults(
        drop=rng.choice([0.0, 0.001, 0.01, 0.05]),
        duplicate=rng.choice([0.0, 0.01, 0.05]),
        slow=rng.choice([0.0, 0.01, 0.05]),
        slow_max=rng.choice([0.5, 2.0, 5.0]),
    )
    dead = tuple(sorted(rng.sample(ids, 1))) if rng.random() < 0.3 else ()
    return Scenario(
        config=config,
        bus=bus,
        fault_every=rng.choice([5.0, 15.0, 30.0, 60.0]),
        first_segment_fails=rng.choice([0.0, 0.05]),
        commit_every=rng.uniform(2.0, 30.0) if small else 300.0,
        dead=dead,
        small=small,
    )
