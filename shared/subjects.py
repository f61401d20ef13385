"""Every NATS subject, stream and bucket name of blaze-cluster, built here and nowhere else.

Layout (all under ``blaze.``):

- ``blaze.hb.<server>``: heartbeats, core NATS, 1 Hz per server (R1).
- ``blaze.agent.<server>.probe``: the detector's direct probe, request/reply (R2).
- ``blaze.agent.<server>.cmd``: claim/release commands to one agent, request/reply.
- ``blaze.evt.…``: the durable event log (JetStream stream ``BLAZE_EVENTS``, R11).
- ``blaze.admin.…``: administrator requests (failback confirmation, capacity).
- ``blaze.sim.fault``: fault injection into the simulated cluster of ``blaze up``.
"""

from __future__ import annotations

ROOT = "blaze"

EVENTS_STREAM = "BLAZE_EVENTS"
EVENTS_ALL = f"{ROOT}.evt.>"
PLACEMENT_BUCKET = "blaze_placement"
PLACEMENT_STATE_KEY = "state"
SYNC_BUCKET = "blaze_sync"
LEASE_BUCKET = "blaze_leases"
"""One key per replicated service (``health``, ``placement``, ``sync``): its leader (R12)."""
REPLICATED_SERVICES = ("health", "placement", "sync")

ADMIN_FAILBACK = f"{ROOT}.admin.failback"
ADMIN_CAPACITY = f"{ROOT}.admin.capacity"
ADMIN_DRAIN = f"{ROOT}.admin.drain"
ADMIN_UNDRAIN = f"{ROOT}.admin.undrain"
ADMIN_ALL = f"{ROOT}.admin.>"
SIM_FAULT = f"{ROOT}.sim.fault"

HEARTBEAT_ALL = f"{ROOT}.hb.*"


def _token(name: str) -> str:
    """Refuse ids that would change the shape of a subject."""
    if not name or any(ch in name for ch in " .*>\t\r\n"):
        raise ValueError(f"not usable in a subject: {name!r}")
    return name


def heartbeat(server_id: str) -> str:
    """Where one recording server publishes its heartbeat."""
    return f"{ROOT}.hb.{_token(server_id)}"


def server_of_heartbeat(subject: str) -> str:
    """The server id a heartbeat subject names (the last token)."""
    return subject.rsplit(".", 1)[-1]


def probe(server_id: str) -> str:
    """The agent's probe responder, used to confirm a dropped connection."""
    return f"{ROOT}.agent.{_token(server_id)}.probe"


def agent_requests(server_id: str) -> str:
    """Everything addressed to one agent (probe, commands, footage requests): a wildcard
    for its permissions (issue 7)."""
    return f"{ROOT}.agent.{_token(server_id)}.>"


def any_agent(request: str) -> str:
    """One kind of request to every agent, e.g. ``cmd`` or ``sync.chunk``: a wildcard for
    the permissions of whoever sends it (issue 7)."""
    return f"{ROOT}.agent.*.{request}"


def events_about(area: str) -> str:
    """Every event of one area (``server``, ``camera``, ``sync`` …): a wildcard for the
    permissions of the service that publishes them (issue 7)."""
    return f"{ROOT}.evt.{_token(area)}.>"


def command(server_id: str) -> str:
    """Claim/release commands to one agent."""
    return f"{ROOT}.agent.{_token(server_id)}.cmd"


def server_event(server_id: str, event_type: str) -> str:
    """Health's events about one server: failed, recovered, silent, storage repaired."""
    return f"{ROOT}.evt.server.{_token(server_id)}.{event_type}"


def camera_event(camera_id: str, event_type: str) -> str:
    """Placement's events about one camera: move planned, moved, pending."""
    return f"{ROOT}.evt.camera.{_token(camera_id)}.{event_type}"


def all_cameras_event(event_type: str) -> str:
    """Subscribe to one event type for every camera (a wildcard, for subscribers)."""
    return f"{ROOT}.evt.camera.*.{_token(event_type)}"


def failback_event(server_id: str, event_type: str) -> str:
    """Failback progress of one home server."""
    return f"{ROOT}.evt.failback.{_token(server_id)}.{event_type}"


def command_outcome_event(server_id: str, event_type: str) -> str:
    """What an agent answered to a command: claims and releases confirmed or refused."""
    return f"{ROOT}.evt.agent.{_token(server_id)}.{event_type}"


def admin_event(event_type: str) -> str:
    """Administrator changes that placement folds in: capacity changes."""
    return f"{ROOT}.evt.admin.{event_type}"


def alert_event(event_type: str) -> str:
    """Alerts about the whole fleet, e.g. network failovers held (mass silence)."""
    return f"{ROOT}.evt.alert.{_token(event_type)}"


def sync_request(server_id: str, verb: str) -> str:
    """Footage requests to one agent: ``list``, ``chunk``, ``fetch``, ``drop`` (R9)."""
    return f"{ROOT}.agent.{_token(server_id)}.sync.{_token(verb)}"


def sync_event(server_id: str, event_type: str) -> str:
    """Sync progress of footage going home to one server (R9)."""
    return f"{ROOT}.evt.sync.{_token(server_id)}.{event_type}"


def kv_stream(bucket: str) -> str:
    """The JetStream stream behind a KV bucket."""
    return f"KV_{bucket}"


def kv_subject(bucket: str, key: str) -> str:
    """The subject a KV bucket stores ``key`` under."""
    return f"$KV.{bucket}.{key}"
