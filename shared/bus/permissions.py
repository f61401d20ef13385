"""Who may say what on the bus (issue 7): one NATS identity per role, each allowed only
the subjects its work needs, rendered into nats-server's ``authorization`` block and
into the permission matrix of ``docs/security.md``.

Roles: an ``agent-<server>`` per recording server, ``health``, ``placement``, ``sync``
(shared by a service's replicas), ``admin`` (the command line and the console), a
read-only ``monitor``, and ``sim`` (``blaze up``'s simulated cluster). Every identity
may also subscribe to its own inbox, ``_INBOX.<its public key>.>``, and to nothing of
anyone else's: no identity may publish to an inbox, except as the one answer to a
request it received (``allow_responses``), so nobody can forge a reply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from shared import subjects
from shared.bus.micro import STATUS_ROOT

AGENT_PREFIX = "agent-"
SERVICE_ROLES = ("health", "placement", "sync")
FIXED_ROLES = (*SERVICE_ROLES, "admin", "monitor", "sim")
SERVER = "{server}"
"""How the matrix writes an agent's own server id."""

_JS = "$JS.API"
_STREAMS = (
    subjects.EVENTS_STREAM,
    subjects.kv_stream(subjects.PLACEMENT_BUCKET),
    subjects.kv_stream(subjects.SYNC_BUCKET),
    subjects.kv_stream(subjects.LEASE_BUCKET),
)
_EVENTS_STREAM = subjects.EVENTS_STREAM


def _read_stream(stream: str) -> tuple[str, ...]:
    """Read a stream or bucket: its info, direct and stored gets, and the ordered
    consumers that follow it (created, looked at, deleted; flow control answered)."""
    return (
        f"{_JS}.STREAM.INFO.{stream}",
        f"{_JS}.STREAM.MSG.GET.{stream}",
        f"{_JS}.DIRECT.GET.{stream}",
        f"{_JS}.DIRECT.GET.{stream}.>",
        f"{_JS}.CONSUMER.CREATE.{stream}",
        f"{_JS}.CONSUMER.CREATE.{stream}.>",
        f"{_JS}.CONSUMER.INFO.{stream}.>",
        f"{_JS}.CONSUMER.DELETE.{stream}.>",
        f"$JS.FC.{stream}.>",
    )


READ = (
    f"{_JS}.INFO",
    f"{_JS}.STREAM.NAMES",
    f"{_JS}.STREAM.LIST",
    *(s for stream in _STREAMS for s in _read_stream(stream)),
    # An integrator's durable pull consumer on the event log (docs/events.md).
    f"{_JS}.CONSUMER.DURABLE.CREATE.{_EVENTS_STREAM}.>",
    f"{_JS}.CONSUMER.MSG.NEXT.{_EVENTS_STREAM}.>",
    f"$JS.ACK.{_EVENTS_STREAM}.>",
)
"""Follow the event log (live, or with a durable consumer of one's own) and read every
bucket (placement, sync progress, leases)."""

ASK_STATUS = ("$SRV.>", f"{STATUS_ROOT}.>")
"""Ask any process for its micro-service info, stats and status (R13)."""

CREATE_STREAMS = tuple(
    f"{_JS}.STREAM.{verb}.{stream}" for stream in _STREAMS for verb in ("CREATE", "UPDATE")
)
"""Create the event stream and buckets at start, or raise their replicas; never delete
or purge them (``Bus.ensure_streams``)."""


def _lease(service: str) -> tuple[str, ...]:
    """Write one's own key of the leader-lease bucket (R12)."""
    return (subjects.kv_subject(subjects.LEASE_BUCKET, service),)


def _announce(kind: str, instance: str = "*") -> tuple[str, ...]:
    """Be found by ``nats micro`` and answer one's own ``status`` endpoint."""
    return ("$SRV.>", f"{STATUS_ROOT}.{kind}.{instance}.>")


@dataclass(frozen=True)
class Grant:
    """What one identity may publish and subscribe to; ``responds``: it may answer the
    requests it receives (``allow_responses``), and publish to no other inbox."""

    role: str
    purpose: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responds: bool = True


def _service(
    role: str, purpose: str, publish: tuple[str, ...], subscribe: tuple[str, ...]
) -> Grant:
    """A replicated service: its own subjects, plus streams, reads, its lease, micro."""
    return Grant(
        role,
        purpose,
        (*publish, *CREATE_STREAMS, *READ, *_lease(role)),
        (*subscribe, *_announce(role)),
    )


def _agent(server: str) -> Grant:
    return Grant(
        f"{AGENT_PREFIX}{server}",
        "one recording server's agent: its heartbeats, answers to its own probes, "
        "commands and footage requests; fetches footage chunks from other agents",
        publish=(subjects.heartbeat(server), subjects.any_agent("sync.chunk")),
        subscribe=(subjects.agent_requests(server), *_announce("agent", server)),
    )


def _fixed_grants() -> dict[str, Grant]:
    evt, agent = subjects.events_about, subjects.any_agent
    # Reading: events, buckets, status, and which footage each agent holds (timeline).
    look = (*READ, *ASK_STATUS, agent("sync.list"))
    grants = [
        _service(
            "health",
            "failure detection: reads heartbeats, probes agents, takes failback confirmations",
            publish=(evt("server"), evt("alert"), agent("probe")),
            subscribe=(subjects.HEARTBEAT_ALL, subjects.ADMIN_FAILBACK),
        ),
        _service(
            "placement",
            "who records which camera: commands agents, takes capacity and drain requests",
            publish=(
                *(evt(area) for area in ("camera", "failback", "server", "agent", "admin")),
                agent("cmd"),
                subjects.kv_subject(subjects.PLACEMENT_BUCKET, subjects.PLACEMENT_STATE_KEY),
            ),
            subscribe=(
                subjects.HEARTBEAT_ALL,
                subjects.ADMIN_CAPACITY,
                subjects.ADMIN_DRAIN,
                subjects.ADMIN_UNDRAIN,
            ),
        ),
        _service(
            "sync",
            "footage home after failback: asks agents to list, fetch and drop footage",
            publish=(
                evt("sync"),
                *(agent(f"sync.{verb}") for verb in ("list", "fetch", "drop")),
                subjects.kv_subject(subjects.SYNC_BUCKET, ">"),
            ),
            subscribe=(),
        ),
        Grant(
            "admin",
            "the administrator (command line, console): confirms failback, changes "
            "capacity, drains, injects simulated faults; reads everything",
            publish=(subjects.ADMIN_ALL, subjects.SIM_FAULT, *look),
            subscribe=_announce("console"),
        ),
        Grant(
            "monitor",
            "read only: follows events, reads status, buckets and footage lists; changes nothing",
            publish=look,
            subscribe=_announce("console"),
        ),
        Grant(
            "sim",
            "blaze up's simulated cluster: carries out the administrator's fault requests",
            publish=(*CREATE_STREAMS, *READ),
            subscribe=(subjects.SIM_FAULT,),
        ),
    ]
    return {g.role: g for g in grants}


FIXED_GRANTS = _fixed_grants()


def grant(identity: str) -> Grant:
    """The grant of ``identity``: a fixed role, or ``agent-<server>``."""
    if identity.startswith(AGENT_PREFIX):
        return _agent(identity.removeprefix(AGENT_PREFIX))
    try:
        return FIXED_GRANTS[identity]
    except KeyError:
        raise ValueError(f"unknown identity {identity!r}") from None


def identities(servers: list[str]) -> list[str]:
    """Every identity of a cluster with these recording servers."""
    return [*FIXED_ROLES, *(f"{AGENT_PREFIX}{s}" for s in servers)]


def inbox_prefix(public_key: str) -> str:
    """Where an identity's requests get their answers: only it may subscribe there."""
    return f"_INBOX.{public_key}"


def render_user(identity: str, public_key: str) -> str:
    """One nats-server ``users`` entry: the identity's nkey and permissions."""
    g = grant(identity)
    permissions: dict[str, object] = {
        "publish": {"allow": list(g.publish)},
        "subscribe": {"allow": [*g.subscribe, f"{inbox_prefix(public_key)}.>"]},
    }
    if g.responds:
        permissions["allow_responses"] = True
    # JSON is valid nats-server config syntax, and quotes `$` and `>` safely.
    return f"# {identity}\n{{ nkey: {public_key}, permissions: {json.dumps(permissions)} }}"


def render_authorization(public_keys: dict[str, str]) -> str:
    """nats-server's ``authorization`` block for ``{identity: public key}``."""
    users = ",\n".join(render_user(i, k) for i, k in sorted(public_keys.items()))
    return f"authorization {{\n  users: [\n{users}\n  ]\n}}\n"


def matrix_markdown() -> str:
    """The permission matrix of docs/security.md: identity × subject × pub/sub."""
    rows = ["| identity | may publish | may subscribe | answers requests |", "|---|---|---|---|"]
    for g in [*FIXED_GRANTS.values(), _agent(SERVER)]:
        pub = _cell(tuple(s for s in g.publish if s not in READ + ASK_STATUS + CREATE_STREAMS))
        extras = [
            name
            for name, group in (
                ("READ", READ),
                ("ASK_STATUS", ASK_STATUS),
                ("CREATE_STREAMS", CREATE_STREAMS),
            )
            if set(group) <= set(g.publish)
        ]
        if extras:
            pub += "<br>" + ", ".join(f"**{e}**" for e in extras)
        sub = _cell((*g.subscribe, "_INBOX.{own public key}.>"))
        rows.append(f"| `{g.role}` | {pub} | {sub} | {'yes' if g.responds else 'no'} |")
    return "\n".join(rows) + "\n"


def _cell(items: tuple[str, ...]) -> str:
    return "<br>".join(f"`{s}`" for s in items) or "nothing"
