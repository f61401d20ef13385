"""The faults of one seed: drawn up front from the seed's own random stream, each with
its own repair, so that any subset of them is a run of its own (what minimising a
failing seed tries). Then the calm: every fault is repaired, the administrator confirms
and restores, and the cluster must settle."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

from shared.messages import CapacityChanged, ServerDrained, ServerUndrained
from sim.cluster import Cluster, Node

KINDS = (
    ("cut", 3),
    ("rack_cut", 1),
    ("heartbeats_lost", 2),
    ("storage", 3),
    ("early_confirm", 1),
    ("restart", 2),
    ("placement_leader", 1),
    ("health_leader", 1),
    ("capacity", 2),
    ("drain", 1),
)
ADMIN_RETRY_S = 5.0
LEASE_TTL_S = 3.0


@dataclass(frozen=True)
class Fault:
    """One fault: what, when, where, for how long."""

    number: int
    at: float
    kind: str
    server: str
    servers: tuple[str, ...] = ()
    duration: float = 0.0
    later: float = 0.0
    """Storage: the administrator confirms this long after the repair."""
    value: int = 0
    """Capacity: the new capacity. Leader changes: 1 to replay the whole log."""

    def describe(self) -> str:
        what = {
            "cut": f"network of {self.server} cut for {self.duration:.1f} s",
            "rack_cut": f"network of {len(self.servers)} servers from {self.server} cut for "
            f"{self.duration:.1f} s",
            "heartbeats_lost": f"heartbeats of {self.server} lost for {self.duration:.1f} s",
            "storage": f"storage of {self.server} fails, repaired after {self.duration:.1f} s, "
            f"confirmed {self.later:.1f} s later",
            "early_confirm": f"administrator confirms {self.server} (maybe too early)",
            "restart": f"agent of {self.server} restarts, down {self.duration:.1f} s",
            "placement_leader": f"placement leader lost; next in {self.duration:.1f} s"
            + (" (replays the whole log)" if self.value else ""),
            "health_leader": f"health leader lost; next in {self.duration:.1f} s",
            "capacity": f"capacity of {self.server} set to {self.value}",
            "drain": f"{self.server} drained for {self.duration:.1f} s",
        }
        return f"fault {self.number}: {what[self.kind]}"


def schedule(cluster: Cluster, rng: random.Random, until: float) -> list[Fault]:
    """The seed's faults over ``[30 s, until)``."""
    ids = [s.id for s in cluster.config.servers]
    capacity = {s.id: s.capacity for s in cluster.config.servers}
    kinds = [k for k, weight in KINDS for _ in range(weight)]
    faults: list[Fault] = []
    t = 30.0
    while True:
        t += rng.expovariate(1.0 / cluster.scenario.fault_every)
        if t >= until:
            return faults
        kind = rng.choice(kinds)
        server = rng.choice(ids)
        n = len(faults)
        match kind:
            case "rack_cut":
                first = ids.index(server)
                size = rng.randint(2, max(2, len(ids) // 20))
                rack = tuple(ids[(first + i) % len(ids)] for i in range(size))
                fault = Fault(n, t, kind, server, rack, duration=rng.uniform(5, 60))
            case "cut":
                fault = Fault(n, t, kind, server, duration=rng.choice([2.0, 8.0, 15.0, 120.0]))
            case "heartbeats_lost":
                fault = Fault(n, t, kind, server, duration=rng.uniform(5, 60))
            case "storage":
                fault = Fault(
                    n, t, kind, server, duration=rng.uniform(1, 300), later=rng.uniform(0, 120)
                )
            case "restart":
                fault = Fault(n, t, kind, server, duration=rng.choice([0.2, 3.0, 20.0]))
            case "placement_leader":
                gap = LEASE_TTL_S + rng.uniform(0, 2)
                fault = Fault(n, t, kind, server, duration=gap, value=int(rng.random() < 0.3))
            case "health_leader":
                fault = Fault(n, t, kind, server, duration=LEASE_TTL_S + rng.uniform(0, 2))
            case "capacity":
                fault = Fault(n, t, kind, server, value=rng.randint(0, 2 * capacity[server] + 1))
            case "drain":
                fault = Fault(n, t, kind, server, duration=rng.uniform(10, 600))
            case _:
                fault = Fault(n, t, kind, server)
        faults.append(fault)


class Injector:
    """Applies faults to the cluster and repairs them; then brings the calm."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.cuts: dict[str, int] = dict.fromkeys(cluster.nodes, 0)
        self.lost: dict[str, int] = dict.fromkeys(cluster.nodes, 0)
        self.broken: dict[str, int] = dict.fromkeys(cluster.nodes, 0)
        self.applied = 0

    def install(self, faults: list[Fault]) -> None:
        for fault in faults:
            self.c.clock.at(fault.at, functools.partial(self.apply, fault))

    def later(self, delay: float, action: Callable[[], None]) -> None:
        """A repair: skipped once the calm has repaired everything."""

        def repair() -> None:
            if not self.c.calm:
                action()

        self.c.clock.after(delay, repair)

    def apply(self, fault: Fault) -> None:  # noqa: PLR0912 (one arm per kind of fault)
        c = self.c
        if c.calm:
            return
        self.applied += 1
        c.step(fault.describe(), fault.server, *fault.servers)
        node = c.nodes[fault.server]
        match fault.kind:
            case "cut" | "rack_cut":
                for sid in fault.servers or (fault.server,):
                    self.cut(sid, +1)
                    self.later(fault.duration, functools.partial(self.cut, sid, -1))
            case "heartbeats_lost":
                self.lose(fault.server, +1)
                self.later(fault.duration, lambda: self.lose(fault.server, -1))
            case "storage":
                self.storage(node, +1)
                self.later(fault.duration, lambda: self.repair_storage(node, fault.later))
            case "early_confirm":
                self.confirm(fault.server, retry=False)
            case "restart":
                self.restart(node, fault.duration)
            case "placement_leader":
                if c.placement is not None:
                    c.depose_placement()
                    c.clock.after(fault.duration, lambda: self.elect(bool(fault.value)))
            case "health_leader":
                if c.health.detector is not None:
                    c.step("health leader deposed")
                    c.health.depose()
                    c.clock.after(fault.duration, self.elect_health)
            case "capacity":
                self.set_capacity(node, fault.value)
            case "drain":
                shell = c.placement
                if shell is not None and not shell.state.servers[fault.server].drained:
                    c.log.append(ServerDrained(server=fault.server, by="sim-admin"))
                    self.later(fault.duration, lambda: self.undrain(fault.server))

    # ---- the pieces ----

    def cut(self, server: str, change: int) -> None:
        node = self.c.nodes[server]
        if node.link.dead:
            return
        self.cuts[server] = max(0, self.cuts[server] + change)
        cut = self.cuts[server] > 0
        if cut != node.link.cut:
            node.link.cut = cut
            node.link.generation += 1  # the connection drops, and what was on its way
            self.c.step(f"{server} {'cut off' if cut else 'reconnected'}", server)

    def lose(self, server: str, change: int) -> None:
        self.lost[server] = max(0, self.lost[server] + change)
        self.c.nodes[server].link.heartbeats_lost = self.lost[server] > 0

    def storage(self, node: Node, change: int) -> None:
        """R3: the agent sends the heartbeat that says so at once."""
        self.broken[node.id] = max(0, self.broken[node.id] + change)
        ok = self.broken[node.id] == 0
        if ok != node.agent.storage_ok:
            node.agent.storage_ok = ok
            self.c.step(f"{node.id} storage {'repaired' if ok else 'fails'}", node.id)
            if node.up:
                self.c.beat(node)

    def repair_storage(self, node: Node, confirm_after: float) -> None:
        self.storage(node, -1)
        self.later(confirm_after, lambda: self.confirm(node.id, retry=True))

    def confirm(self, server: str, *, retry: bool) -> None:
        """R7: the administrator confirms; a refusal is retried while it still waits."""
        c = self.c
        refused = c.health.confirm(server)
        c.step(f"administrator confirms {server}: {refused or 'accepted'}", server)
        waits = server in c.awaiting and c.nodes[server].agent.storage_ok
        if refused is not None and retry and waits:
            self.later(ADMIN_RETRY_S, lambda: self.confirm(server, retry=True))

    def restart(self, node: Node, downtime: float) -> None:
        if not node.up:
            return
        node.up = False
        self.c.restart(node)
        self.c.step(f"agent of {node.id} stopped", node.id)

        def back() -> None:
            node.up = True
            self.c.step(f"agent of {node.id} back (boot {node.agent.boot_id})", node.id)
            self.c.beat(node)

        self.c.clock.after(downtime, back)

    def elect(self, from_log: bool) -> None:
        c = self.c
        if c.placement is None:
            c.counts["leader_changes"] += 0
            c.elect_placement(from_log=from_log)

    def elect_health(self) -> None:
        if self.c.health.detector is None:
            self.c.step("health leader elected")
            self.c.health.elect()

    def set_capacity(self, node: Node, capacity: int) -> bool:
        """A licence change goes through the placement leader; none, no change."""
        if self.c.placement is None:
            return False
        node.agent.capacity = capacity
        self.c.log.append(CapacityChanged(server=node.id, capacity=capacity, by="sim-admin"))
        return True

    def undrain(self, server: str) -> None:
        shell = self.c.placement
        if shell is None:
            self.later(ADMIN_RETRY_S, lambda: self.undrain(server))
        elif shell.state.servers[server].drained:
            self.c.log.append(ServerUndrained(server=server, by="sim-admin"))

    # ---- the calm ----

    def calm(self) -> None:
        """Faults stop: the bus behaves, links and storage are repaired, servers come back
        up; a few servers die for good. The administrator restores capacities, undrains
        and confirms until the cluster has settled."""
        c = self.c
        c.step("faults stop: the calm begins")
        c.calm = True
        faults = c.net.faults
        faults.drop = faults.duplicate = faults.slow = 0.0
        for sid, node in c.nodes.items():
            self.cuts[sid] = self.lost[sid] = 0
            node.link.heartbeats_lost = False
            if sid in c.scenario.dead:
                node.link.cut = node.link.dead = True
                node.link.generation += 1
                c.step(f"{sid} dies for good", sid)
            elif node.link.cut:
                node.link.cut = False
                node.link.generation += 1
            if not node.up:
                node.up = True
            self.broken[sid] = 0
            if not node.agent.storage_ok:
                node.agent.storage_ok = True
                c.beat(node)
        if c.placement is None:
            c.clock.after(LEASE_TTL_S, lambda: self.elect(False))
        if c.health.detector is None:
            c.clock.after(LEASE_TTL_S, self.elect_health)
        c.clock.every(ADMIN_RETRY_S, self.administrator, lambda: c.done)

    def administrator(self) -> None:
        c = self.c
        shell = c.placement
        if shell is None:
            return
        for s in c.config.servers:
            node = c.nodes[s.id]
            slot = shell.state.servers[s.id]
            if node.agent.capacity != s.capacity or slot.capacity != s.capacity:
                self.set_capacity(node, s.capacity)
            if slot.drained:
                c.log.append(ServerUndrained(server=s.id, by="sim-admin"))
            if s.id in c.awaiting and not node.link.dead:
                refused = c.health.confirm(s.id)
                c.step(f"administrator confirms {s.id}: {refused or 'accepted'}", s.id)
