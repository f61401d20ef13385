"""Who may say what on the bus (issue 7): one NATS identity per role, each allowed only
the subjects its work needs, rendered into nats-server's ``authorization`` block and
into the permission matrix of ``docs/security.md``.

Roles: an ``agent-<server>`` per recording server, ``health``, ``placement``, ``sync``
(shared by a service's replicas), ``admin`` (the command line and the console), a
read-only ``monitor``, and ``sim`` (``blaze up``'s simulated cluster).

Answers: every identity subscribes to its own inbox only (``_INBOX.<its public key>.>``;
an agent's is ``_INBOX.agents.<its key>.>``), and may publish into the inboxes of the
identities whose requests it answers, and nowhere else. nats-server's
``allow_responses`` is NOT used: it lets a client answer to whatever reply subject a
message names, unchecked, so an agent could publish a request to itself with the reply
``blaze.hb.rs-2`` (or ``$JS.API.STREAM.DELETE…``) and answer it. A forged answer inside
the inboxes it may reach would need the request's random reply token, and ``Bus``
checks a 128-bit nonce the answer must echo besides.
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
AGENTS = "agents"
"""In ``Grant.answers``: every agent (their inboxes share ``_INBOX.agents.>``)."""
STATUS_ASKERS = ("admin", "monitor")
"""Who asks for ``status`` and ``nats micro`` info: the console and the command line."""

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
    """What one identity may publish and subscribe to, and whose requests it answers
    (roles, or ``AGENTS``): it may publish into their inboxes, and into no other."""

    role: str
    purpose: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    answers: tuple[str, ...] = STATUS_ASKERS


def _service(
    role: str,
    purpose: str,
    publish: tuple[str, ...],
    subscribe: tuple[str, ...],
    answers: tuple[str, ...] = STATUS_ASKERS,
) -> Grant:
    """A replicated service: its own subjects, plus streams, reads, its lease, micro."""
    return Grant(
        role,
        purpose,
        (*publish, *CREATE_STREAMS, *READ, *_lease(role)),
        (*subscribe, *_announce(role)),
        answers,
    )


def _agent(server: str) -> Grant:
    return Grant(
        f"{AGENT_PREFIX}{server}",
        "one recording server's agent: its heartbeats, answers to its own probes, "
        "commands and footage requests; fetches footage chunks from other agents",
        publish=(subjects.heartbeat(server), subjects.any_agent("sync.chunk")),
        subscribe=(subjects.agent_requests(server), *_announce("agent", server)),
        answers=("health", "placement", "sync", *STATUS_ASKERS, AGENTS),
    )


def _fixed_grants() -> dict[str, Grant]:
    evt, agent = subjects.events_about, subjects.any_agent
    # Reading: events, buckets, status, and which footage each agent holds (timeline);
    # the live events and heartbeats too (a core subscription, docs/events.md).
    look = (*READ, *ASK_STATUS, agent("sync.list"))
    listen = (subjects.EVENTS_ALL, subjects.HEARTBEAT_ALL, *_announce("console"))
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
            subscribe=listen,
        ),
        Grant(
            "monitor",
            "read only: follows events, reads status, buckets and footage lists; changes nothing",
            publish=look,
            subscribe=listen,
        ),
        Grant(
            "sim",
            "blaze up's simulated cluster: carries out the administrator's fault requests",
            publish=(*CREATE_STREAMS, *READ),
            subscribe=(subjects.SIM_FAULT,),
            answers=("admin",),
        ),
    ]
    return {g.role: g for g in grants}


FIXED_GRANTS = _fixed_grants()


def is_agent(identity: str) -> bool:
    """Whether ``identity`` is a recording server's agent (``agent-<server>``)."""
    return identity.startswith(AGENT_PREFIX)


def grant(identity: str) -> Grant:
    """The grant of ``identity``: a fixed role, or ``agent-<server>``."""
    if is_agent(identity):
        return _agent(identity.removeprefix(AGENT_PREFIX))
    try:
        return FIXED_GRANTS[identity]
    except KeyError:
        raise ValueError(f"unknown identity {identity!r}") from None


def identities(servers: list[str]) -> list[str]:
    """Every identity of a cluster with these recording servers."""
    return [*FIXED_ROLES, *(f"{AGENT_PREFIX}{s}" for s in servers)]


def inbox_prefix(public_key: str, *, agent: bool = False) -> str:
    """Where an identity's requests get their answers: only it may subscribe there.
    Agents' inboxes share one branch, so agents answer each other with one permission."""
    return f"_INBOX.{AGENTS}.{public_key}" if agent else f"_INBOX.{public_key}"


def answer_inboxes(g: Grant, public_keys: dict[str, str]) -> list[str]:
    """The inboxes ``g`` may publish its answers into: those of whom it answers."""
    inboxes = [f"{inbox_prefix(public_keys[r])}.>" for r in g.answers if r in public_keys]
    if AGENTS in g.answers:
        inboxes.append(f"_INBOX.{AGENTS}.>")
    return inboxes


def render_user(identity: str, public_keys: dict[str, str]) -> str:
    """One nats-server ``users`` entry: the identity's nkey and permissions."""
    g, key = grant(identity), public_keys[identity]
    own = inbox_prefix(key, agent=is_agent(identity))
    permissions = {
        "publish": {"allow": [*g.publish, *answer_inboxes(g, public_keys)]},
        "subscribe": {"allow": [*g.subscribe, f"{own}.>"]},
    }
    # JSON is valid nats-server config syntax, and quotes `$` and `>` safely.
    return f"# {identity}\n{{ nkey: {key}, permissions: {json.dumps(permissions)} }}"


def render_authorization(public_keys: dict[str, str]) -> str:
    """nats-server's ``authorization`` block for ``{identity: public key}``."""
    users = ",\n".join(render_user(i, public_keys) for i in sorted(public_keys))
    return f"authorization {{\n  users: [\n{users}\n  ]\n}}\n"


def matrix_markdown() -> str:
    """The permission matrix of docs/security.md: identity × subject × pub/sub."""
    rows = ["| identity | may publish | may subscribe | answers requests of |", "|---|---|---|---|"]
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
        own = inbox_prefix("{own public key}", agent=is_agent(g.role))
        sub = _cell((*g.subscribe, f"{own}.>"))
        answers = ", ".join(f"`{r}`" for r in g.answers)
        rows.append(f"| `{g.role}` | {pub} | {sub} | {answers} |")
    return "\n".join(rows) + "\n"


def _cell(items: tuple[str, ...]) -> str:
    return "<br>".join(f"`{s}`" for s in items) or "nothing"
