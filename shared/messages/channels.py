"""Which subject carries which message, and who sends it: what the event catalog is made of (R13).

Addresses are built by the builders of ``shared.subjects`` with ``{server}``, ``{camera}`` and
``{event_type}`` in place of the ids. ``shared.messages.catalog`` renders docs/events.md and
docs/asyncapi.yaml from this module; a new event type needs a line in ``EVENT_ROUTES``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from shared import messages as m
from shared import subjects
from shared.messages.base import Message
from shared.messages.events import AnyEvent, Event

SERVER = "{server}"
CAMERA = "{camera}"
EVENT_TYPE = "{event_type}"

PARAMETERS = {
    "server": "A server id from the cluster config: letters, digits, `-` and `_`.",
    "camera": "A camera id from the cluster config: letters, digits, `-` and `_`.",
}
"""What each placeholder of an address stands for."""


@dataclass(frozen=True)
class EventRoute:
    """Where one event type is published on the log, and who publishes it."""

    subject_of: Callable[[str], str]
    """The subject builder, given the event type, with placeholders for the ids."""
    publisher: str

    def subject(self, event_type: str) -> str:
        """The address of this event type, e.g. ``blaze.evt.server.{server}.server_failed``."""
        return self.subject_of(event_type)

    @property
    def family(self) -> str:
        """The address of its family, e.g. ``blaze.evt.server.{server}.{event_type}``."""
        return self.subject_of(EVENT_TYPE)


_server = partial(subjects.server_event, SERVER)
_camera = partial(subjects.camera_event, CAMERA)
_failback = partial(subjects.failback_event, SERVER)
_agent = partial(subjects.command_outcome_event, SERVER)
_sync = partial(subjects.sync_event, SERVER)
_AGENT_ANSWER = "placement, carrying the agent's answer to a command"
_SYNC = "sync (`<server>` is the home server receiving footage)"

EVENT_ROUTES: dict[str, EventRoute] = {
    "server_failed": EventRoute(_server, "health"),
    "server_recovered": EventRoute(_server, "health"),
    "server_silent": EventRoute(_server, "health"),
    "storage_repaired": EventRoute(_server, "health"),
    "failback_confirmed": EventRoute(_server, "health"),
    "drain_completed": EventRoute(_server, "placement"),
    "capacity_changed": EventRoute(subjects.admin_event, "placement, on `blaze capacity`"),
    "server_drained": EventRoute(subjects.admin_event, "placement, on `blaze drain`"),
    "server_undrained": EventRoute(subjects.admin_event, "placement, on `blaze undrain`"),
    "camera_move_planned": EventRoute(_camera, "placement"),
    "camera_moved": EventRoute(_camera, "placement"),
    "camera_pending": EventRoute(_camera, "placement"),
    "camera_preempted": EventRoute(_camera, "placement"),
    "failback_started": EventRoute(_failback, "placement"),
    "failback_completed": EventRoute(_failback, "placement"),
    "claims_confirmed": EventRoute(_agent, _AGENT_ANSWER),
    "releases_confirmed": EventRoute(_agent, _AGENT_ANSWER),
    "command_refused": EventRoute(_agent, _AGENT_ANSWER),
    "failovers_held": EventRoute(subjects.alert_event, "health"),
    "sync_started": EventRoute(_sync, _SYNC),
    "sync_progress": EventRoute(_sync, _SYNC),
    "sync_completed": EventRoute(_sync, _SYNC),
    "sync_failed": EventRoute(_sync, _SYNC),
}
"""Every event type of ``AnyEvent``, by its ``type``, in the order the catalog lists families."""


def event_models() -> tuple[type[Event], ...]:
    """Every event type of the log, in the order of ``AnyEvent``."""
    return typing.get_args(typing.get_args(AnyEvent)[0])


def event_type(model: type[Event]) -> str:
    """The ``type`` an event model carries, which also ends its subject."""
    default = model.model_fields["type"].default
    assert isinstance(default, str), f"{model.__name__} has no type literal"
    return default


def event_route(model: type[Event]) -> EventRoute:
    """Where the event is published; fails for an event type nobody routed yet."""
    route = EVENT_ROUTES.get(event_type(model))
    if route is None:
        raise LookupError(
            f"event type {event_type(model)!r} ({model.__name__}) has no subject in "
            "EVENT_ROUTES of shared/messages/channels.py: add it there"
        )
    return route


RAW_CHUNK_REPLY = "raw bytes, header `sha256` (or header `error` and an empty body)"


@dataclass(frozen=True)
class CoreChannel:
    """A core NATS subject (not stored): a publication, or a request and its reply."""

    name: str
    subject: str
    sender: str
    receiver: str
    message: type[Message]
    reply: type[Message] | None = None
    """The answer's model; None for a publication, or for the raw bytes of ``raw_reply``."""
    raw_reply: bool = False
    """The answer is ``RAW_CHUNK_REPLY``, not JSON."""
    sent_by_client: bool = False
    """Sent by a client of the cluster (the ``blaze`` command line, another system); otherwise
    both sides are parts of the cluster."""
    note: str = ""

    @property
    def request_reply(self) -> bool:
        """Whether the sender waits for an answer."""
        return self.reply is not None or self.raw_reply


_sync_request = partial(subjects.sync_request, SERVER)
_HOST_AGENT = "the failover host's agent"

CORE_CHANNELS: tuple[CoreChannel, ...] = (
    CoreChannel(
        "heartbeat",
        subjects.heartbeat(SERVER),
        "the agent",
        "health and placement",
        m.Heartbeat,
        note="About once per `heartbeat_interval`, and at once when storage health changes "
        "(R1, R3). Health and placement refuse one whose `server` differs from the subject.",
    ),
    CoreChannel(
        "probe",
        subjects.probe(SERVER),
        "health",
        "the agent",
        m.ProbeRequest,
        m.ProbeReply,
        note="The detector's direct probe of a silent server (R2): no responders means its "
        "connection is gone.",
    ),
    CoreChannel(
        "command",
        subjects.command(SERVER),
        "placement",
        "the agent",
        m.Command,
        m.CommandResult,
        note="Claim or release cameras, fenced by epoch and by the placement leader's fence.",
    ),
    CoreChannel(
        "sync_list",
        _sync_request("list"),
        "sync and `blaze timeline`",
        "any agent",
        m.ListSegments,
        m.SegmentList,
        note="Which segments a server holds of a camera (R9).",
    ),
    CoreChannel(
        "sync_fetch",
        _sync_request("fetch"),
        "sync",
        "the home agent",
        m.FetchSegment,
        m.FetchResult,
        note="The home server pulls one segment from the failover host and verifies it (R9).",
    ),
    CoreChannel(
        "sync_chunk",
        _sync_request("chunk"),
        "the home agent",
        _HOST_AGENT,
        m.ReadChunk,
        raw_reply=True,
        note="One chunk of a segment, checked by SHA-256 at the home agent (R9).",
    ),
    CoreChannel(
        "sync_drop",
        _sync_request("drop"),
        "sync",
        _HOST_AGENT,
        m.DropSegment,
        m.DropResult,
        note="The home server verified a segment: the host deletes its copy (R9).",
    ),
    CoreChannel(
        "admin_failback",
        subjects.ADMIN_FAILBACK,
        "`blaze failback`",
        "health",
        m.FailbackRequest,
        m.Reply,
        sent_by_client=True,
        note="Confirm a storage repair (R7); refused while storage still fails.",
    ),
    CoreChannel(
        "admin_capacity",
        subjects.ADMIN_CAPACITY,
        "`blaze capacity`",
        "placement",
        m.CapacityRequest,
        m.Reply,
        sent_by_client=True,
        note="Change a server's channel capacity at run time (R5).",
    ),
    CoreChannel(
        "admin_drain",
        subjects.ADMIN_DRAIN,
        "`blaze drain`",
        "placement",
        m.DrainRequest,
        m.Reply,
        sent_by_client=True,
        note="Maintenance: move a server's cameras away and place nothing there.",
    ),
    CoreChannel(
        "admin_undrain",
        subjects.ADMIN_UNDRAIN,
        "`blaze undrain`",
        "placement",
        m.DrainRequest,
        m.Reply,
        sent_by_client=True,
        note="End of maintenance: the server's cameras come home.",
    ),
    CoreChannel(
        "sim_fault",
        subjects.SIM_FAULT,
        "`blaze sim`",
        "the `blaze up` supervisor",
        m.FaultRequest,
        m.Reply,
        sent_by_client=True,
        note="Fault injection into the simulated cluster of `blaze up` only.",
    ),
)
"""Every core subject, in the order the catalog lists them."""


@dataclass(frozen=True)
class Bucket:
    """A JetStream key-value bucket of the cluster."""

    name: str
    keys: str
    writer: str
    content: str
    value: type[Message] | None = None


BUCKETS: tuple[Bucket, ...] = (
    Bucket(
        subjects.PLACEMENT_BUCKET,
        f"`{subjects.PLACEMENT_STATE_KEY}`",
        "placement",
        "The whole placement state as one JSON snapshot: servers (capacity, state, storage, "
        "drained), cameras (home, priority, host, target, release_from, epoch), `next_epoch`, "
        "and `cursor`, the stream sequence of the last event folded in. `blaze status` reads "
        "it.",
    ),
    Bucket(
        subjects.SYNC_BUCKET,
        "`job.<home>.<camera>.<source>.e<epoch>`",
        "sync",
        "One job per stint of footage to bring home. `blaze sync` reads them.",
        m.SyncJob,
    ),
    Bucket(
        subjects.LEASE_BUCKET,
        ", ".join(f"`{service}`" for service in subjects.REPLICATED_SERVICES),
        "the leading replica of each",
        "The leader lease (R12): the value is the leader's replica name, each write carries a "
        "per-message TTL of `lease_ttl`, and the key's revision at acquisition is the leader's "
        "epoch (placement stamps it on every command as `fence`). `blaze status` reads it.",
    ),
)
"""Every key-value bucket; each is a stream ``KV_<bucket>`` under ``$KV.<bucket>.<key>``."""
