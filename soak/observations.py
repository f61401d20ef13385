"""What the checker observes, as plain values: the cluster's status (``blaze status
--json``), the segments in the recording directories, and the bounds it judges them by.

Pure: built from bytes and file names, no I/O, so the checker's rules are unit-tested on
made-up observations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from services.cli.views import status_document_of_snapshot
from shared.config import ClusterConfig

HOME, FAILED_OVER, PENDING, MOVING = "home", "failed_over", "pending", "moving"
TAKES_CAMERAS = ("online", "failing_back")
"""Server states placement may give cameras to (``ACCEPTS_CAMERAS``), when not drained."""


@dataclass(frozen=True)
class ServerSeen:
    """One server as ``blaze status --json`` shows it."""

    id: str
    state: str
    capacity: int
    hosting: int
    storage_ok: bool = True
    drained: bool = False

    @property
    def free(self) -> int:
        """Channels placement may still give it now (0 if it takes no cameras)."""
        if self.state not in TAKES_CAMERAS or self.drained:
            return 0
        return max(0, self.capacity - self.hosting)


@dataclass(frozen=True)
class CameraSeen:
    """One camera as ``blaze status --json`` shows it."""

    id: str
    home: str
    host: str | None
    state: str
    epoch: int = 0
    releasing_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusSeen:
    """One read of the cluster's status, at ``at`` (monotonic seconds)."""

    at: float
    cursor: int
    """The placement state's log position: the last event folded into it."""
    servers: dict[str, ServerSeen]
    cameras: dict[str, CameraSeen]

    def on(self, server: str) -> list[str]:
        """Cameras that hold a channel on ``server``: recording, arriving, or releasing."""
        return sorted(
            c.id for c in self.cameras.values() if c.host == server or server in c.releasing_on
        )

    def recorded_on(self, server: str) -> list[str]:
        """Cameras ``blaze status`` shows on ``server``: recording there, or on their way
        there (not those it has yet to confirm releasing: they record elsewhere)."""
        return sorted(c.id for c in self.cameras.values() if c.host == server)

    def not_home(self) -> list[str]:
        """Cameras not recording at home now."""
        return sorted(c.id for c in self.cameras.values() if c.state != HOME)

    def pending(self) -> list[str]:
        """Cameras recording nowhere."""
        return sorted(c.id for c in self.cameras.values() if c.state == PENDING)


def status_of_snapshot(at: float, raw: bytes) -> StatusSeen:
    """``blaze status --json``'s view of a placement snapshot (the same function makes it),
    with the snapshot's log cursor."""
    doc = status_document_of_snapshot(raw, [])
    cursor = int(json.loads(raw).get("cursor", 0))
    servers = {
        s["id"]: ServerSeen(
            id=s["id"],
            state=s["state"],
            capacity=int(s["capacity"]),
            hosting=int(s["hosting"]),
            storage_ok=s["storage"] == "ok",
            drained=bool(s["drained"]),
        )
        for s in doc["servers"]
    }
    cameras = {c["id"]: _camera(c) for c in doc["cameras"]}
    return StatusSeen(at, cursor, servers, cameras)


def _camera(row: dict[str, Any]) -> CameraSeen:
    return CameraSeen(
        id=row["id"],
        home=row["home"],
        host=row["host"],
        state=row["state"],
        epoch=int(row["epoch"]),
        releasing_on=tuple(row["releasing_on"]),
    )


SEGMENT_NAME = re.compile(r"^(\d{8}T\d{6}\.\d{6})Z_e(\d+)\.seg$")
SEGMENT_HEADER = re.compile(rb"^blaze segment camera=(\S+) epoch=(\d+) server=(\S*) ")


@dataclass(frozen=True)
class SegmentSeen:
    """One segment file found in a recording directory."""

    camera: str
    name: str
    epoch: int
    recorded_by: str
    """The server whose recorder wrote it (its header); a copy brought home by sync
    keeps the recorder's name."""
    held_by: str
    """The server whose recording directory holds this copy."""

    @property
    def started(self) -> str:
        """The UTC time in its name (``20260101T120000.000000``): names sort by it."""
        found = SEGMENT_NAME.match(self.name)
        return found.group(1) if found else ""


def segment_of(held_by: str, camera: str, name: str, header: bytes) -> SegmentSeen | None:
    """A segment from its directory, file name and the first bytes of the file; None for
    anything that is not a complete segment (a ``.part`` or ``.tmp`` on its way)."""
    named = SEGMENT_NAME.match(name)
    said = SEGMENT_HEADER.match(header)
    if named is None or said is None:
        return None
    return SegmentSeen(
        camera=camera,
        name=name,
        epoch=int(named.group(2)),
        recorded_by=said.group(3).decode(errors="replace"),
        held_by=held_by,
    )


@dataclass(frozen=True)
class Bounds:
    """How long the checker allows for each thing the cluster must do (seconds), derived
    from the cluster's timing (docs/soak.md lists each with its reasoning)."""

    storage_failover: float = 6.0
    """A storage failure to every camera off the server: the agent's storage probe
    (0.5 s) reports at once (R3); placement moves them and commits its snapshot."""
    network_failover: float = 16.0
    """A silenced server to every camera off it: ``network_timeout``, the probe, then as
    for storage (R2)."""
    takeover: float = 5.0
    """A leader SIGKILLed or cut off until its standby leads: the lease TTL after the
    last renewal, plus the standby's next try (R12)."""
    nats_election: float = 8.0
    """A NATS node lost or back until its streams have leaders and leases renew."""
    network_timeout: float = 10.0
    """A new health leader gives every server this long before declaring it failed."""
    mass_silence_hold: float = 60.0
    """The detector's longest hold of failovers when many servers are silent."""
    lookback: float = 30.0
    """A control-plane fault this long before a server fault may still delay its failover."""
    converge: float = 60.0
    """After the faults stop: every camera home (R6-R8)."""
    sync_settle: float = 120.0
    """After convergence: every sync job completed (R9)."""
    recording_at_home: float = 10.0
    """After convergence: a segment at home under the camera's current epoch."""
    pending_grace: float = 2.0
    """A camera Pending beside a free channel: reads at least this far apart, both showing
    it, make a violation (one read may fall between two of placement's steps)."""

    @classmethod
    def of(cls, config: ClusterConfig, **overrides: float) -> Bounds:
        """The bounds for a cluster's timing."""
        t, d = config.timing, config.detection
        network = t.network_timeout + t.probe_timeout + 5.0
        values: dict[str, float] = {
            "storage_failover": 2 * t.storage_probe_interval + t.heartbeat_interval + 4.0,
            "network_failover": network,
            "takeover": t.lease_ttl + t.lease_ttl / 3 + 1.0,
            "network_timeout": t.network_timeout,
            "mass_silence_hold": d.mass_silence_max_hold,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class Tally:
    """Counts for the report."""

    events: dict[str, int] = field(default_factory=dict)
    failovers: dict[str, int] = field(default_factory=dict)
    """``server_failed`` by cause."""
    recoveries: dict[str, int] = field(default_factory=dict)
    """``server_recovered`` by cause."""
    moves: dict[str, int] = field(default_factory=dict)
    """``camera_moved`` by reason."""
    failbacks_completed: int = 0
    segments_seen: int = 0
    status_reads: int = 0
