"""Choosing hosts: a pure function from cameras and free channel capacity to placements (R4, R5).

Capacity is a hard limit. Cameras are placed in priority order (high, medium,
low; ``never`` never leaves home). A camera goes home if home has a free
channel; otherwise to the nearest servers first (its home server's failover
group, then, if the policy allows, other groups of its site, then other sites)
and among those to the one with the most free channels, so a failed server's
cameras spread out instead of filling one neighbour. Ties go to the lower
server id, which keeps every decision deterministic: a replay of the same
history makes the same choices (R11).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.config import Priority

PRIORITY_ORDER = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2, Priority.NEVER: 3}

SAME_GROUP, SAME_SITE, OTHER_SITE = 0, 1, 2
"""How far a server is from a camera's home, nearest first."""

DEFAULT_LOCATION = ("default", "default")
"""(site, group) of a server the topology does not place."""


@dataclass(frozen=True)
class Candidate:
    """A camera that needs a host."""

    camera: str
    home: str
    priority: Priority


@dataclass(frozen=True)
class Guest:
    """A camera recording away from home: what preemption may displace."""

    camera: str
    home: str
    priority: Priority
    host: str


@dataclass(frozen=True)
class Topology:
    """Where each server stands (site, group) and how far a camera may go from home.

    A server absent from ``location`` stands in the default site and group, so an
    empty topology is the seed's rule: any server may take any camera.
    """

    location: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    across_groups: bool = True
    across_sites: bool = False
    members: Mapping[tuple[str, str] | str, list[str]] = field(
        init=False, repr=False, compare=False
    )
    """(site, group), and site -> the servers ``location`` places there."""
    sites: list[str] = field(init=False, repr=False, compare=False)
    """Every site ``location`` names, sorted."""

    def __post_init__(self) -> None:
        # Grouped once, with the topology (placement keeps one per adopt), so that no
        # plan looks at every server's location.
        members: dict[tuple[str, str] | str, list[str]] = {}
        for server, (site, group) in self.location.items():
            members.setdefault((site, group), []).append(server)
            members.setdefault(site, []).append(server)
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "sites", sorted({site for site, _ in self.location.values()}))

    def distance(self, home: str, server: str) -> int | None:
        """SAME_GROUP, SAME_SITE or OTHER_SITE; None when the policy forbids it."""
        home_site, home_group = self.location.get(home, DEFAULT_LOCATION)
        site, group = self.location.get(server, DEFAULT_LOCATION)
        if site != home_site:
            return OTHER_SITE if self.across_sites else None
        if group != home_group:
            return SAME_SITE if self.across_groups else None
        return SAME_GROUP


def placement_order(cameras: Iterable[Candidate]) -> list[Candidate]:
    """Highest priority first, then by camera id."""
    return sorted(cameras, key=lambda c: (PRIORITY_ORDER[c.priority], c.camera))


def plan(
    cameras: Iterable[Candidate], free: Mapping[str, int], topology: Topology | None = None
) -> dict[str, str | None]:
    """Map each camera to a server with a free channel, or None (Pending).

    Args:
        cameras: the cameras to place.
        free: free channels of every server that may take cameras now; servers
            that are failed, cordoned or full are absent or at zero.
        topology: sites, groups and how far a camera may go; None: anywhere.

    Returns:
        camera id -> chosen server id, or None when it fits nowhere within reach.
    """
    spare = Spare(free, topology or Topology())
    chosen: dict[str, str | None] = {}
    for cam in placement_order(cameras):
        server = spare.pick(cam)
        chosen[cam.camera] = server
        if server is not None:
            spare.take(server)
    return chosen


class Spare:
    """The free channels left while one plan is made, and per group and per site the
    servers with the most of them first, so a pick looks at a few heap tops instead of
    every server, and a plan costs what it places, not what the fleet holds (issue 8:
    a failure at 1M cameras and 10k servers).

    ``taken`` counts what this plan gave away, so the caller's map (which may be a live
    view) is never copied. The heaps hold (-free, server) entries; an entry whose count
    is no longer the server's ``left`` is stale and skipped. ``take`` keeps them in
    step: it pushes the server's new count to every heap built so far. A heap is built
    the first time a pick needs it, so a failure that stays in its group never looks at
    the others.
    """

    def __init__(self, free: Mapping[str, int], topology: Topology) -> None:
        self.free, self.topology = free, topology
        self.taken: dict[str, int] = {}
        self.heaps: dict[tuple[str, str] | str, list[tuple[int, str]]] = {}
        """(site, group) or site -> (-free, server) entries, fullest-free first."""
        self._unplaced: list[str] | None = None

    def left(self, server: str) -> int:
        """Free channels of ``server`` not yet given away by this plan (<= 0: none)."""
        return self.free.get(server, 0) - self.taken.get(server, 0)

    def where(self, server: str) -> tuple[str, str]:
        return self.topology.location.get(server, DEFAULT_LOCATION)

    def pick(self, cam: Candidate) -> str | None:
        """Home if it has a free channel; else the nearest reachable tier (home's group,
        its site, other sites), and in it the most free channels, then the lowest id."""
        if self.left(cam.home) > 0:
            return cam.home
        if cam.priority is Priority.NEVER:
            return None
        site, group = self.where(cam.home)
        best = self.best((site, group))
        if best is None and self.topology.across_groups:
            best = self.best(site)  # home's group has nothing free: all of the site is others
        if best is None and self.topology.across_sites:
            tops = (self.best(other) for other in self.sites() if other != site)
            best = min((t for t in tops if t is not None), default=None)
        return None if best is None else best[1]

    def best(self, key: tuple[str, str] | str) -> tuple[int, str] | None:
        """The (-free, server) top of a group's or site's heap, stale entries dropped."""
        heap = self.heaps.get(key)
        if heap is None:
            heap = [(-n, s) for s in self.servers_at(key) if (n := self.left(s)) > 0]
            heapq.heapify(heap)
            self.heaps[key] = heap
        while heap and self.left(heap[0][1]) != -heap[0][0]:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def servers_at(self, key: tuple[str, str] | str) -> list[str]:
        """The servers of a (site, group) or a site, the unplaced ones in the default."""
        placed = self.topology.members.get(key, [])
        if key in (DEFAULT_LOCATION, DEFAULT_LOCATION[0]):
            return placed + self.unplaced()
        return placed

    def sites(self) -> list[str]:
        default = [DEFAULT_LOCATION[0]] if self.unplaced() else []
        return sorted({*self.topology.sites, *default})

    def unplaced(self) -> list[str]:
        """Servers with free channels that the topology places nowhere (looked up once)."""
        if self._unplaced is None:
            location = self.topology.location
            self._unplaced = [s for s in self.free if s not in location and self.left(s) > 0]
        return self._unplaced

    def take(self, server: str) -> None:
        """One channel of ``server`` is given away."""
        self.taken[server] = self.taken.get(server, 0) + 1
        n = self.left(server)
        if n > 0:
            site, group = self.where(server)
            for key in ((site, group), site):
                if key in self.heaps:
                    heapq.heappush(self.heaps[key], (-n, server))


def choose_victims(
    pending: Iterable[Candidate], guests: Iterable[Guest], topology: Topology | None = None
) -> dict[str, Guest]:
    """Preemption: for each ``high`` camera left Pending, a ``low`` guest to displace.

    Only a low camera recording away from home is a victim (never one at home), on a
    server the high camera may reach; the nearest first, then by server and camera id.
    Each guest is displaced for one camera at most.

    Returns:
        high camera id -> the guest it displaces; a camera absent found no victim.
    """
    where = topology or Topology()
    open_guests = sorted(
        (g for g in guests if g.priority is Priority.LOW and g.host != g.home),
        key=lambda g: (g.host, g.camera),
    )
    victims: dict[str, Guest] = {}
    for cam in placement_order(pending):
        if cam.priority is not Priority.HIGH:
            continue
        best: tuple[int, int] | None = None
        for i, guest in enumerate(open_guests):
            distance = where.distance(cam.home, guest.host)
            if distance is not None and (best is None or distance < best[0]):
                best = (distance, i)
        if best is not None:
            victims[cam.camera] = open_guests.pop(best[1])
    return victims
