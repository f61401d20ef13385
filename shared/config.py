"""The cluster config: TOML with ``[timing]``, ``[placement]``, ``[[server]]`` and ``[[camera]]``.

A bad config is refused with a message naming the entry; nothing starts on a
config that could put more cameras on a server than its channel capacity.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ConfigError

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class Priority(StrEnum):
    """Order in which cameras are placed when capacity is short; ``never`` never moves."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NEVER = "never"


class Timing(BaseModel):
    """Every timing rule of the cluster, in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    heartbeat_interval: float = Field(1.0, gt=0, le=60, description="R1: heartbeat period.")
    network_timeout: float = Field(
        10.0, gt=0, le=3600, description="R2: silence before the probe is tried."
    )
    probe_timeout: float = Field(
        1.0, gt=0, le=30, description="R2: the whole probe (all tries) must answer within this."
    )
    probe_tries: int = Field(
        3, strict=True, ge=1, le=10, description="R2: probe attempts within the timeout."
    )
    storage_probe_interval: float = Field(
        0.5,
        gt=0,
        le=60,
        description="R3: write+fsync+read probe of the recording directory (0.5 s, so a "
        "fault is reported within a second however it falls between two probes).",
    )
    segment_seconds: float = Field(
        1.0, gt=0, le=3600, description="Length of one simulated recording segment."
    )
    command_timeout: float = Field(
        1.0, gt=0, le=60, description="How long placement waits for an agent to answer."
    )
    lease_ttl: float = Field(
        3.0,
        ge=1,
        le=60,
        description="R12: a service leader's lease; renewed every third of it. A standby "
        "takes over at most about this long after the leader dies.",
    )

    @model_validator(mode="after")
    def _window_holds_heartbeats(self) -> Timing:
        if self.network_timeout <= self.heartbeat_interval:
            raise ValueError(
                f"network_timeout ({self.network_timeout} s) must be longer than "
                f"heartbeat_interval ({self.heartbeat_interval} s), or every server would fail"
            )
        return self


class Retention(StrEnum):
    """What a failover host does with its copy once the home server has verified it."""

    DELETE = "delete"
    KEEP = "keep"


class SyncSettings(BaseModel):
    """R9: how footage recorded away from home travels back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retention: Retention = Field(
        Retention.DELETE, description="The host's copy after the home server verified it."
    )
    chunk_bytes: int = Field(
        256 << 10, strict=True, ge=1 << 10, le=1 << 20, description="Bytes per chunk request."
    )
    chunks_in_flight: int = Field(
        4, strict=True, ge=1, le=64, description="Chunk requests outstanding per segment."
    )
    segments_in_flight: int = Field(
        4, strict=True, ge=1, le=64, description="Segments fetched at once per home server."
    )
    request_timeout: float = Field(5.0, gt=0, le=120, description="Per chunk or segment step.")
    retry_seconds: float = Field(
        2.0, gt=0, le=600, description="Wait before retrying a job whose source is unreachable."
    )


class Detection(BaseModel):
    """Guards on failure detection: mass silence and flapping (R2, R6)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mass_silence_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Hold network failovers while more than this share of servers is silent.",
    )
    mass_silence_max_hold: float = Field(
        60.0, gt=0, le=86400, description="Longest hold of network failovers, in seconds."
    )
    failback_hold_down: float = Field(
        3.0, ge=0, le=3600, description="Seconds a server must stay reachable before failback."
    )
    max_failovers: int = Field(
        3,
        strict=True,
        ge=0,
        le=1000,
        description="Failovers per server per window before automatic failback waits (0: off).",
    )
    failover_window: float = Field(
        600.0, gt=0, le=86400, description="The window of max_failovers, in seconds."
    )


class FailbackMode(StrEnum):
    """How a camera goes home at failback (R8)."""

    RELEASE_FIRST = "release_first"
    MAKE_BEFORE_BREAK = "make_before_break"


class PlacementPolicy(BaseModel):
    """How far a camera may travel from home, and what may displace or hand over (R4, R5, R8)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    across_groups: bool = Field(
        True,
        description="A camera that fits nowhere in its home server's group may go to another "
        "group of the same site.",
    )
    across_sites: bool = Field(
        False, description="A camera that fits nowhere in its home site may go to another site."
    )
    preemption: bool = Field(
        False,
        description="A high camera that would stay Pending displaces a low camera recording "
        "away from home, which becomes Pending in its place.",
    )
    failback: FailbackMode = Field(
        FailbackMode.RELEASE_FIRST,
        description="release_first: the host stops, then home starts. make_before_break: home "
        "starts and writes its first segment before the host is told to stop (no gap, a brief "
        "double recording under two epochs).",
    )


class ServerConfig(BaseModel):
    """One recording server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    site: Identifier = Field("default", description="Where it stands; failover stays in a site.")
    group: Identifier = Field(
        "default", description="Its failover group within the site: cameras try it first."
    )
    capacity: int = Field(
        strict=True, ge=0, le=100_000, description="Channel capacity: cameras it may host."
    )
    recording_dir: str | None = Field(
        None, description="Where its recorder writes segments; default under the data dir."
    )


class CameraConfig(BaseModel):
    """One camera and its home server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    home: Identifier
    priority: Priority = Priority.MEDIUM
    failback: FailbackMode | None = Field(
        None, description="This camera's failback; unset: the [placement] failback."
    )


class ClusterConfig(BaseModel):
    """The whole cluster: timing, servers, cameras."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    timing: Timing = Field(default_factory=Timing)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    detection: Detection = Field(default_factory=Detection)
    placement: PlacementPolicy = Field(default_factory=PlacementPolicy)
    servers: tuple[ServerConfig, ...] = Field(default=(), alias="server")
    cameras: tuple[CameraConfig, ...] = Field(default=(), alias="camera")

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        _refuse_duplicates("server", [s.id for s in self.servers])
        _refuse_duplicates("camera", [c.id for c in self.cameras])
        capacity = {s.id: s.capacity for s in self.servers}
        for cam in self.cameras:
            if cam.home not in capacity:
                raise ValueError(f"camera {cam.id!r}: home server {cam.home!r} is not a [[server]]")
        homed = Counter(c.home for c in self.cameras)
        for sid, count in sorted(homed.items()):
            if count > capacity[sid]:
                raise ValueError(
                    f"server {sid!r}: {count} cameras are homed on it, capacity is {capacity[sid]}"
                )
        return self

    def server(self, server_id: str) -> ServerConfig:
        """The config entry of one server; KeyError if unknown."""
        for s in self.servers:
            if s.id == server_id:
                return s
        raise KeyError(server_id)


def _refuse_duplicates(kind: str, ids: list[str]) -> None:
    dups = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dups:
        raise ValueError(f"duplicate {kind} id {dups[0]!r}")


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    """One line per problem, naming the entry by its id where it has one."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] in ("server", "camera") and isinstance(loc[1], int):
            entries = raw.get(str(loc[0]), [])
            entry = entries[loc[1]] if loc[1] < len(entries) else {}
            name = entry.get("id", f"#{loc[1] + 1}") if isinstance(entry, dict) else loc[1]
            field = ".".join(str(p) for p in loc[2:])
            where = f"[[{loc[0]}]] {name!r}" + (f" key {field!r}" if field else "")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{where}: {msg}" if where else msg)
    return "; ".join(lines)


def parse_config(text: str, source: str = "config") -> ClusterConfig:
    """Parse and validate TOML text; raise ConfigError naming the bad entry."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return ClusterConfig.model_validate(raw, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, raw)}") from exc


def load_config(path: Path | None) -> ClusterConfig:
    """Load the config file, or the built-in demo when ``path`` is None."""
    if path is None:
        return demo_config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, str(path))


def demo_config() -> ClusterConfig:
    """The built-in demo: 4 servers of capacity 16, 48 cameras, 12 at home on each."""
    servers = [ServerConfig(id=f"rs-{n}", capacity=16) for n in range(1, 5)]
    priorities = [Priority.HIGH, Priority.MEDIUM, Priority.MEDIUM, Priority.LOW]
    cameras = [
        CameraConfig(id=f"cam-{n}-{k:02d}", home=f"rs-{n}", priority=priorities[k % 4])
        for n in range(1, 5)
        for k in range(1, 13)
    ]
    return ClusterConfig(servers=tuple(servers), cameras=tuple(cameras))
