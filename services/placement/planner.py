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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.config import Priority

PRIORITY_ORDER = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2, Priority.NEVER: 3}

SAME_GROUP, SAME_SITE, OTHER_SITE = 0, 1, 2
"""How far a server is from a camera's home, nearest first."""


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

    def distance(self, home: str, server: str) -> int | None:
        """SAME_GROUP, SAME_SITE or OTHER_SITE; None when the policy forbids it."""
        home_site, home_group = self.location.get(home, ("default", "default"))
        site, group = self.location.get(server, ("default", "default"))
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
    where = topology or Topology()
    left = {server: n for server, n in free.items() if n > 0}
    chosen: dict[str, str | None] = {}
    for cam in placement_order(cameras):
        server = _pick(cam, left, where)
        chosen[cam.camera] = server
        if server is not None:
            left[server] -= 1
            if left[server] == 0:
                del left[server]
    return chosen


def _pick(cam: Candidate, left: Mapping[str, int], topology: Topology) -> str | None:
    if cam.home in left:
        return cam.home
    if cam.priority is Priority.NEVER:
        return None
    best: tuple[int, int, str] | None = None
    for server, n in left.items():
        distance = topology.distance(cam.home, server)
        if distance is not None and (best is None or (distance, -n, server) < best):
            best = (distance, -n, server)
    return None if best is None else best[2]


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
