"""The durable event log (R11): every failure, decision and camera move.

Each event is one message on the ``BLAZE_EVENTS`` stream; its subject is built
in ``shared.subjects`` and its ``type`` field tells the model. Integrators read
them with a core subscription to ``blaze.evt.>`` or a JetStream consumer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter

from shared.messages.base import CameraId, ChannelCapacity, Count, Epoch, Message, ServerId
from shared.messages.commands import Assignment, Refusal


def utc_now() -> datetime:
    """Wall-clock time for event stamps (never for timing decisions)."""
    return datetime.now(UTC)


class FailureCause(StrEnum):
    """Why a server was declared failed."""

    NETWORK = "network"
    STORAGE = "storage"


class MoveReason(StrEnum):
    """Why placement moves a camera."""

    START = "start"
    FAILOVER = "failover"
    FAILBACK = "failback"
    CAPACITY_FREED = "capacity_freed"
    DRAIN = "drain"


class Event(Message):
    """Fields every event carries."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, strict=True)

    time: AwareDatetime = Field(
        default_factory=utc_now,
        description="When it was decided (UTC; a time without a zone is refused).",
    )


class PlacementNotice(Event):
    """Fields every decision of placement carries (the events it publishes itself)."""

    decided_at: Count | None = Field(
        None,
        description="Stream sequence of the last event placement had folded when it made "
        "this decision (0: none yet); null if not known. Events after it were not known to "
        "placement then, even those the log holds before this notice.",
    )


class ServerFailed(Event):
    """A server is declared failed (R2 network, R3 storage); its cameras fail over."""

    type: Literal["server_failed"] = "server_failed"
    server: ServerId
    cause: FailureCause
    detail: str = Field("", max_length=1000, description="What the detector saw.")


class ServerRecovered(Event):
    """A failed server is back: network restored (R6) or storage confirmed (R7); failback starts."""

    type: Literal["server_recovered"] = "server_recovered"
    server: ServerId
    cause: FailureCause = Field(description="The failure it recovered from.")


class ServerSilent(Event):
    """Heartbeats stopped but the probe answers: not a failure (R2), worth a look."""

    type: Literal["server_silent"] = "server_silent"
    server: ServerId
    silent_for: float = Field(ge=0, description="Seconds since its last heartbeat.")


class StorageRepaired(Event):
    """A storage-failed server reports healthy storage again; it waits for a confirmation (R7)."""

    type: Literal["storage_repaired"] = "storage_repaired"
    server: ServerId


class FailbackConfirmed(Event):
    """The administrator confirmed a storage repair (R7)."""

    type: Literal["failback_confirmed"] = "failback_confirmed"
    server: ServerId
    by: str = Field("admin", max_length=64, description="Who asked (the administrator).")


class CapacityChanged(Event):
    """A server's channel capacity changed at run time."""

    type: Literal["capacity_changed"] = "capacity_changed"
    server: ServerId
    capacity: ChannelCapacity
    by: str = Field("admin", max_length=64, description="Who asked (the administrator).")


class ServerDrained(Event):
    """The administrator put a server in maintenance: its cameras move away (same rules,
    capacity respected) and nothing is placed there until it is undrained."""

    type: Literal["server_drained"] = "server_drained"
    server: ServerId
    by: str = Field("admin", max_length=64, description="Who asked (the administrator).")


class ServerUndrained(Event):
    """The administrator ended a server's maintenance: its cameras come home (R8 rules)."""

    type: Literal["server_undrained"] = "server_undrained"
    server: ServerId
    by: str = Field("admin", max_length=64, description="Who asked (the administrator).")


class DrainCompleted(PlacementNotice):
    """Every camera that could move off a drained server has; ``cameras_left`` still record
    there because no other server had a free channel (they move when one frees)."""

    type: Literal["drain_completed"] = "drain_completed"
    server: ServerId
    cameras_left: Count = Field(description="Cameras still recording on it: no free channel.")


class CameraMovePlanned(PlacementNotice):
    """Placement chose a new host for a camera; the claim is under way."""

    type: Literal["camera_move_planned"] = "camera_move_planned"
    camera: CameraId
    home: ServerId
    from_host: ServerId | None = Field(None, alias="from", description="Host it leaves, if any.")
    to: ServerId
    epoch: Epoch
    reason: MoveReason


class CameraMoved(PlacementNotice):
    """A camera records on its new host: the agent confirmed the claim."""

    type: Literal["camera_moved"] = "camera_moved"
    camera: CameraId
    home: ServerId
    from_host: ServerId | None = Field(None, alias="from", description="Host it left, if any.")
    to: ServerId
    epoch: Epoch
    reason: MoveReason


class CameraPending(PlacementNotice):
    """No server has free channel capacity for this camera (R5)."""

    type: Literal["camera_pending"] = "camera_pending"
    camera: CameraId
    home: ServerId
    reason: str = Field(max_length=200)


class CameraPreempted(PlacementNotice):
    """A ``high`` camera with no free channel in reach displaces a ``low`` camera recording
    away from home (opt-in ``[placement] preemption``). The low camera is released from
    ``server`` and becomes Pending; the high camera takes the freed channel."""

    type: Literal["camera_preempted"] = "camera_preempted"
    camera: CameraId = Field(description="The low camera displaced.")
    home: ServerId = Field(description="Its home server.")
    server: ServerId = Field(description="The host that releases it.")
    epoch: Epoch = Field(description="Epoch of its release.")
    by: CameraId = Field(description="The high camera that takes its channel.")
    by_home: ServerId = Field(description="Home server of the high camera.")


class FailbackStarted(PlacementNotice):
    """R8: the home server is ready; its cameras' hosts are told to release them."""

    type: Literal["failback_started"] = "failback_started"
    server: ServerId
    cameras: Count = Field(description="Cameras that go home.")
    cause: FailureCause


class FailbackCompleted(PlacementNotice):
    """R8: every camera of the server records at home again."""

    type: Literal["failback_completed"] = "failback_completed"
    server: ServerId
    cameras: Count = Field(description="Its cameras recording at home now.")


class ClaimsConfirmed(Event):
    """An agent started recording these cameras under these epochs."""

    type: Literal["claims_confirmed"] = "claims_confirmed"
    server: ServerId
    cameras: tuple[Assignment, ...]


class ReleasesConfirmed(Event):
    """An agent stopped recording these cameras."""

    type: Literal["releases_confirmed"] = "releases_confirmed"
    server: ServerId
    cameras: tuple[Assignment, ...]


class CommandRefused(Event):
    """An agent refused assignments because it has seen a newer epoch."""

    type: Literal["command_refused"] = "command_refused"
    server: ServerId
    refusals: tuple[Refusal, ...]


class FailoversHeld(Event):
    """Alert: more than the configured share of servers went silent at once, which points
    at the observer's own network rather than the fleet; their network failovers are held
    (storage failures still act) until fewer are silent."""

    type: Literal["failovers_held"] = "failovers_held"
    servers: tuple[ServerId, ...] = Field(description="The silent servers.")
    total: Count = Field(description="Servers watched.")
    share: float = Field(ge=0, description="The configured mass-silence share.")


class SyncStarted(Event):
    """R9: footage of one camera recorded on ``source`` under ``epoch`` starts going home."""

    type: Literal["sync_started"] = "sync_started"
    server: ServerId = Field(description="The home server receiving the footage.")
    camera: CameraId
    source: ServerId
    epoch: Epoch
    segments: Count
    bytes: Count


class SyncProgress(Event):
    """R9: footage still on its way to one home server, at most about once a second."""

    type: Literal["sync_progress"] = "sync_progress"
    server: ServerId
    jobs_open: Count
    segments_done: Count
    segments_total: Count
    bytes_done: Count
    bytes_total: Count


class SyncCompleted(Event):
    """R9: every segment of the stint is home, verified; the host's copy is handled."""

    type: Literal["sync_completed"] = "sync_completed"
    server: ServerId
    camera: CameraId
    source: ServerId
    epoch: Epoch
    segments: Count
    bytes: Count
    refetched_chunks: Count = 0
    seconds: float = Field(ge=0)


class SyncFailed(Event):
    """R9: a sync job stopped; ``reason`` says why. It is retried, or resumes on failback."""

    type: Literal["sync_failed"] = "sync_failed"
    server: ServerId
    camera: CameraId
    source: ServerId
    epoch: Epoch
    reason: str = Field(max_length=500)
    paused: bool = Field(False, description="True when it waits for the next failback.")


AnyEvent = Annotated[
    ServerFailed
    | ServerRecovered
    | ServerSilent
    | StorageRepaired
    | FailbackConfirmed
    | CapacityChanged
    | ServerDrained
    | ServerUndrained
    | DrainCompleted
    | CameraMovePlanned
    | CameraMoved
    | CameraPending
    | CameraPreempted
    | FailbackStarted
    | FailbackCompleted
    | ClaimsConfirmed
    | ReleasesConfirmed
    | CommandRefused
    | FailoversHeld
    | SyncStarted
    | SyncProgress
    | SyncCompleted
    | SyncFailed,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def parse_event(data: bytes) -> AnyEvent:
    """Validate one event from its JSON bytes; raises pydantic.ValidationError."""
    return EVENT_ADAPTER.validate_json(data)


def encode(message: Message) -> bytes:
    """JSON bytes of any message, with wire names (``from``, not ``from_host``)."""
    return message.model_dump_json(by_alias=True).encode()
