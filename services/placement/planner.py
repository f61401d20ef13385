"""Choosing hosts: a pure function from cameras and free channel capacity to placements (R4, R5).

Capacity is a hard limit. Cameras are placed in priority order (high, medium,
low; ``never`` never leaves home), each on the healthy server with the most
free channels, so a failed server's cameras spread out instead of filling one
neighbour. Ties go to the lower server id, which keeps every decision
deterministic: a replay of the same history makes the same choices (R11).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.config import Priority

PRIORITY_ORDER = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2, Priority.NEVER: 3}


@dataclass(frozen=True)
class Candidate:
    """A camera that needs a host."""

    camera: str
    home: str
    priority: Priority


def placement_order(cameras: Iterable[Candidate]) -> list[Candidate]:
    """Highest priority first, then by camera id."""
    return sorted(cameras, key=lambda c: (PRIORITY_ORDER[c.priority], c.camera))


def plan(cameras: Iterable[Candidate], free: Mapping[str, int]) -> dict[str, str | None]:
    """Map each camera to a server with a free channel, or None (Pending).

    Args:
        cameras: the cameras to place.
        free: free channels of every server that may take cameras now; servers
            that are failed, cordoned or full are absent or at zero.

    Returns:
        camera id -> chosen server id, or None when it fits nowhere.
    """
    left = {server: n for server, n in free.items() if n > 0}
    chosen: dict[str, str | None] = {}
    for cam in placement_order(cameras):
        server = _pick(cam, left)
        chosen[cam.camera] = server
        if server is not None:
            left[server] -= 1
            if left[server] == 0:
                del left[server]
    return chosen


def _pick(cam: Candidate, left: Mapping[str, int]) -> str | None:
    if cam.home in left:
        return cam.home
    if cam.priority is Priority.NEVER or not left:
        return None
    return min(left, key=lambda server: (-left[server], server))
