"""Fuzz (issue 7, hostile input): a running cluster flooded with generated malformed
messages on every subject that a blaze process subscribes to or serves. Afterwards every
service still runs, every request has had an answer, every refusal is counted where the
docs say, the log stays short, and a storage failure still fails over.

The messages come from ``tests/junk.py``: hypothesis, derandomized, so the same
messages come every run. They go out on a plain nats-py connection, as a hostile client
would send them. ``make test`` sends ``DEFAULT_MESSAGES``. The full run is
``BLAZE_FUZZ_MESSAGES=100000 .venv/bin/python -m pytest tests/integration/test_fuzz.py -s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from services.cli.supervisor import Supervisor
from services.health.app import HealthService
from shared import subjects
from shared.bus import Bus, NatsServer
from shared.bus.micro import status_subject
from shared.logs import LOG_INTERVAL_S, LOG_MAX_KEYS
from shared.messages import (
    CapacityRequest,
    Command,
    CommandResult,
    DrainRequest,
    DropResult,
    DropSegment,
    FailbackRequest,
    FaultRequest,
    FetchResult,
    FetchSegment,
    Heartbeat,
    ListSegments,
    Message,
    ProbeReply,
    ProbeRequest,
    ReadChunk,
    Reply,
    SegmentList,
)
from shared.messages.channels import EVENT_ROUTES
from shared.messages.events import EVENT_ADAPTER
from tests.helpers import eventually, holds
from tests.integration.cluster import (
    RunningService,
    Status,
    TestCluster,
    all_home,
    failed_over,
    make_config,
)
from tests.integration.conftest import StartCluster
from tests.junk import (
    ID_CHARACTERS,
    INVALID,
    OVERSIZED,
    Junk,
    Target,
    documents,
    encode_doc,
    generate,
    generate_oversized,
    unknown_ids,
)

MESSAGES_ENV = "BLAZE_FUZZ_MESSAGES"
DEFAULT_MESSAGES = 12_000
MESSAGES = int(os.environ.get(MESSAGES_ENV) or DEFAULT_MESSAGES)
FAN = 3
"""Subjects each generated payload goes to (say, the three agents)."""
SPARE = 1.15
"""Payloads drawn per message sent: about 7 % come out well-formed and are left out."""
OVERSIZED_EACH = 2
"""Messages above MAX_MESSAGE_BYTES, up to the NATS max payload, per target."""
IN_FLIGHT = 400
"""Requests sent and not answered yet, at most: a fast client, not an unbounded one."""
FLUSH_EVERY = 200

SERVERS = {"rs-1": 3, "rs-2": 3, "rs-3": 3}
CAMERAS = {"c11": "rs-1", "c12": "rs-1", "c21": "rs-2", "c31": "rs-3"}
KNOWN = (*SERVERS, *CAMERAS)
REPLICAS = ("health", "placement", "sync")
"""Each service's one replica, which ``LocalCluster`` names after it."""

REJECTED = "blaze_rejected_messages_total"
HEARTBEATS_REJECTED = "blaze_heartbeats_rejected_total"
REJECTING_BUSES = 7
"""Connections that refuse input here: health, placement, sync, three agents, the fault
responder. Each logs at most ``max_keys`` rejections per interval."""
MOST_READERS = 2
"""Services that parse one message at most: heartbeats (health, placement), events
(placement, sync)."""


# ---- what is sent where, and who reads it ----


@dataclass(frozen=True)
class Readers:
    """How many services parse each message of a target, and what answers it."""

    count: int
    reply: type[Message] | str | None
    """The answer's model; ``"bytes"`` (a chunk), ``"json"`` (micro, JetStream's ack), or
    None (a publication)."""


ADMIN: list[tuple[str, str, type[Message]]] = [
    ("admin_failback", subjects.ADMIN_FAILBACK, FailbackRequest),
    ("admin_capacity", subjects.ADMIN_CAPACITY, CapacityRequest),
    ("admin_drain", subjects.ADMIN_DRAIN, DrainRequest),
    ("admin_undrain", subjects.ADMIN_UNDRAIN, DrainRequest),
    ("sim_fault", subjects.SIM_FAULT, FaultRequest),
]
"""Requests of the administrator (and of ``blaze sim``): one subject each."""


def targets() -> tuple[list[Target], dict[str, Readers]]:
    """Every subject family that a process of this cluster subscribes to or serves."""
    agents = st.sampled_from(list(SERVERS))
    strangers = unknown_ids(KNOWN)
    tokens = st.text(ID_CHARACTERS, min_size=1, max_size=10)
    ids = st.one_of(st.sampled_from(KNOWN), strangers)
    event_types = st.one_of(st.sampled_from(sorted(EVENT_ROUTES)), tokens)

    def on_agents(builder: Callable[[str], str]) -> st.SearchStrategy[str]:
        return agents.map(builder)

    def sync(verb: str) -> st.SearchStrategy[str]:
        return on_agents(partial(_sync_request, verb=verb))

    status = [status_subject(kind, kind) for kind in REPLICAS]
    status += [status_subject("agent", sid) for sid in SERVERS]
    status += ["$SRV.PING", "$SRV.INFO", "$SRV.STATS"]
    status += [f"$SRV.INFO.blaze-{kind}" for kind in (*REPLICAS, "agent")]
    heartbeats = st.one_of(
        st.sampled_from([subjects.heartbeat(s) for s in SERVERS]),
        strangers.map(subjects.heartbeat),
    )
    events = st.one_of(
        st.builds(subjects.server_event, ids, event_types),
        st.builds(subjects.camera_event, ids, event_types),
        st.builds(subjects.failback_event, ids, event_types),
        st.builds(subjects.command_outcome_event, ids, event_types),
        st.builds(subjects.sync_event, ids, event_types),
        event_types.map(subjects.admin_event),
        event_types.map(subjects.alert_event),
        st.lists(tokens, min_size=1, max_size=5).map(lambda t: "blaze.evt." + ".".join(t)),
    )
    stranger_heartbeats = documents(Heartbeat, strangers).map(
        lambda d: ([subjects.heartbeat(d["server"])], encode_doc(d))
    )
    found: list[tuple[Target, Readers]] = [
        (
            Target("heartbeat", heartbeats, Heartbeat, _heartbeat, (stranger_heartbeats,)),
            Readers(2, None),  # health and placement
        ),
        (Target("probe", on_agents(subjects.probe), ProbeRequest, _any), Readers(1, ProbeReply)),
        (
            Target("command", on_agents(subjects.command), Command, _misaddressed),
            Readers(1, CommandResult),
        ),
        (Target("sync_list", sync("list"), ListSegments, _any), Readers(1, SegmentList)),
        (Target("sync_chunk", sync("chunk"), ReadChunk, _any), Readers(1, "bytes")),
        (
            Target("sync_fetch", sync("fetch"), FetchSegment, _from_a_stranger),
            Readers(1, FetchResult),
        ),
        (Target("sync_drop", sync("drop"), DropSegment, _any), Readers(1, DropResult)),
        *(
            (Target(name, st.just(subject), model, _about_strangers), Readers(1, Reply))
            for name, subject, model in ADMIN
        ),
        (Target("status", st.sampled_from(status), None), Readers(0, "json")),
        (
            Target("event", events, EVENT_ADAPTER, _about_strangers),
            Readers(2, "json"),  # placement and sync fold it; the answer is JetStream's ack
        ),
    ]
    return [t for t, _ in found], {t.name: r for t, r in found}


def _sync_request(server_id: str, verb: str) -> str:
    return subjects.sync_request(server_id, verb)


def _heartbeat(subject: str, hb: Heartbeat) -> str | None:
    """Spoofed (the body names another server) or a stranger's; never a real server's."""
    claimed = subjects.server_of_heartbeat(subject)
    if hb.server != claimed:
        return "spoofed"
    return None if claimed in SERVERS else "unknown_server"


def _misaddressed(subject: str, command: Command) -> str | None:
    """A command naming another server than its subject's is refused; a real one never sent."""
    return "misaddressed" if command.server != subject.split(".")[2] else None


def _from_a_stranger(_subject: str, fetch: FetchSegment) -> str | None:
    """A fetch from a real source would pull footage: never sent."""
    return None if fetch.source in SERVERS else "from_a_stranger"


def _any(_subject: str, _message: Any) -> str:
    return "answered"


def _about_strangers(_subject: str, message: Any) -> str | None:
    """Harmless when it names no server or camera of the cluster."""
    return None if _mentions_known(message.model_dump(mode="json")) else "about_strangers"


def _mentions_known(value: Any) -> bool:
    if isinstance(value, str):
        return value in KNOWN
    if isinstance(value, dict):
        return any(_mentions_known(k) or _mentions_known(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_mentions_known(v) for v in value)
    return False


def rejection_label(subject: str) -> str:
    """``blaze_rejected_messages_total``'s ``subject`` for a message on ``subject``: the
    subscription's subject without its last token (``blaze.evt`` for the event log)."""
    if subject.startswith("blaze.evt."):
        return "blaze.evt"
    return subject.rsplit(".", 1)[0]


# ---- the flood ----


@dataclass
class Flood:
    """What was sent and what came back."""

    sent: Sequence[Junk]
    replies: dict[int, list[tuple[bytes, dict[str, str]]]]
    seconds: float


async def flood(
    url: str, junk: Sequence[Junk], readers: dict[str, Readers], barrier: Sequence[str]
) -> Flood:
    """Send every message on a plain nats-py connection; a request's answer comes to
    ``fuzz.reply.<index>``. At most ``IN_FLIGHT`` requests wait for an answer at once.

    After each oversized message every answer is awaited, then a request to every
    ``barrier`` subject (each connection's status endpoint). nats-server drops a client
    with more than 64 MB waiting to be read (a slow consumer), and a burst of 8 MB
    messages on a subject every process hears (``$SRV.PING``) gets there: a limit of
    NATS, for its permissions to close (issue 7), not what this test is about."""
    nc = await nats.connect(url, name="fuzzer", max_reconnect_attempts=0)
    replies: dict[int, list[tuple[bytes, dict[str, str]]]] = {}
    answered = asyncio.Event()
    outstanding = 0

    async def on_reply(msg: Any) -> None:
        nonlocal outstanding
        index = int(msg.subject.rsplit(".", 1)[-1])
        if index not in replies:
            outstanding -= 1
            answered.set()
        replies.setdefault(index, []).append((bytes(msg.data), dict(msg.headers or {})))

    async def answers(at_most: int, within: float) -> None:
        deadline = time.monotonic() + within
        while outstanding > at_most and time.monotonic() < deadline:
            answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), 1)

    sub = await nc.subscribe("fuzz.reply.>", cb=on_reply, pending_bytes_limit=1 << 30)
    t0 = time.monotonic()
    try:
        for i, message in enumerate(junk):
            wants_reply = readers[message.target].reply is not None
            await answers(IN_FLIGHT - 1, 30)
            outstanding += wants_reply
            reply = f"fuzz.reply.{i}" if wants_reply else ""
            await nc.publish(message.subject, message.data, reply=reply)
            if message.verdict == OVERSIZED:
                await answers(0, 30)
                for subject in barrier:
                    await nc.request(subject, b"", timeout=10)
            elif i % FLUSH_EVERY == 0:
                await nc.flush()
        await nc.flush()
        await answers(0, 60)
        seconds = time.monotonic() - t0
    finally:
        await sub.unsubscribe()
        await nc.close()
    return Flood(junk, replies, seconds)


# ---- accounting ----


def rejected_samples() -> Counter[tuple[str, str]]:
    """Every ``blaze_rejected_messages_total`` sample in this process, by (subject, reason)."""
    found: Counter[tuple[str, str]] = Counter()  # values are floats, as Prometheus has them
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == REJECTED:
                found[(sample.labels["subject"], sample.labels["reason"])] += int(sample.value)
    return found


def expected_rejections(sent: Sequence[Junk], readers: dict[str, Readers]) -> Counter[Any]:
    """What the readers must count: every invalid or oversized message and every spoofed
    heartbeat, once per service that parses it. No reader sees an oversized event: the
    stream refuses it (``max_msg_size``)."""
    want: Counter[Any] = Counter()
    for m in sent:
        if m.target == "event" and m.verdict == OVERSIZED:
            continue
        if m.verdict in (INVALID, OVERSIZED, "spoofed") and readers[m.target].count:
            want[(rejection_label(m.subject), m.verdict)] += readers[m.target].count
    return want


def since(before: Counter[tuple[str, str]]) -> dict[tuple[str, str], float]:
    now = rejected_samples()
    return {k: now[k] - before[k] for k in now if now[k] != before[k]}


def metric(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels or None)
    return value if value is not None else 0.0


MALFORMED = "malformed request"


def check_answers(sent: Flood, readers: dict[str, Readers]) -> Counter[str]:
    """Every request answered: a malformed one with its model's refusal that says so, a
    harmless well-formed one with a refusal or an answer that changes nothing."""
    seen: Counter[str] = Counter()
    for i, m in enumerate(sent.sent):
        kind = readers[m.target].reply
        if kind is None:
            continue
        answers = sent.replies.get(i)
        assert answers, f"no answer to message {i} on {m.subject} ({m.verdict}): {m.data[:80]!r}"
        data, headers = answers[0]
        what = f"{m.target} {m.verdict} {m.data[:60]!r}: {data[:200]!r} {headers}"
        malformed = m.verdict in (INVALID, OVERSIZED)
        if m.target == "event":
            ack = json.loads(data)
            assert ("error" in ack) == (m.verdict == OVERSIZED), what  # max_msg_size
            assert "error" in ack or ack["stream"] == subjects.EVENTS_STREAM, what
        elif kind == "bytes":
            assert data == b"", what
            assert (MALFORMED in headers.get("error", "")) == malformed, what
        elif kind == "json":
            assert isinstance(json.loads(data), dict), what
        else:
            assert isinstance(kind, type)
            assert_refusal(kind.model_validate_json(data), malformed, what)
        seen[m.target] += 1
    return seen


def assert_refusal(answer: Message, malformed: bool, what: str) -> None:
    if isinstance(answer, Reply):
        assert not answer.ok, what
        assert (MALFORMED in answer.reason) == malformed, what
    elif isinstance(answer, CommandResult):
        assert answer.done == (), what
        reasons = [r.reason for r in answer.refused]
        if malformed:
            assert reasons == ["malformed request: see blaze's event catalog"], what
        else:
            assert all(r.startswith("addressed to") for r in reasons), what
    elif isinstance(answer, SegmentList | FetchResult | DropResult):
        reason = answer.error if isinstance(answer, SegmentList) else answer.reason
        assert (MALFORMED in reason) == malformed, what
        assert not isinstance(answer, FetchResult) or not answer.ok, what
    else:
        assert isinstance(answer, ProbeReply), what  # any probe is answered, by design


# ---- the cluster ----


def _healthy(doc: Status) -> bool:
    return all_home(doc) and all(s["storage"] == "ok" for s in doc["servers"])


def _assert_nothing_crashed(cluster: TestCluster) -> None:
    for name, running in [*cluster.services.items(), *cluster.agents.items()]:
        if running.task.done():
            crash = None if running.task.cancelled() else running.task.exception()
            raise AssertionError(f"{name} stopped: {crash!r}")


@pytest.fixture
async def fault_responder(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Bus]:
    """The fault-injection endpoint of ``blaze up``'s supervisor, without its processes."""
    supervisor = Supervisor(make_config(SERVERS, CAMERAS), None, tmp_path / "supervisor")
    bus = await Bus.connect(nats_server.url, "supervisor")
    await bus.serve(
        subjects.SIM_FAULT,
        FaultRequest,
        supervisor._on_fault,
        lambda reason: Reply(ok=False, reason=reason),
    )
    try:
        yield bus
    finally:
        await bus.close()


@pytest.mark.slow
@pytest.mark.timeout(max(180, MESSAGES // 250))
async def test_a_flood_of_malformed_messages_is_refused_counted_and_survived(
    start_cluster: StartCluster,
    fault_responder: Bus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 7: ``MESSAGES`` generated malformed messages on every subscribed subject.
    Every service stays up, every refusal is counted, the log stays short, a new health
    leader skips the junk in the log, and a storage failure still fails over (R3)."""
    # Before anything runs: generating keeps the event loop busy for seconds.
    t0 = time.monotonic()
    target_list, readers = targets()
    oversized = generate_oversized(target_list, KNOWN, OVERSIZED_EACH)
    # Some of what is generated is well-formed and not harmless, so left out: draw more.
    examples = math.ceil(MESSAGES * SPARE / len(target_list) / FAN)
    junk = generate(target_list, KNOWN, examples, FAN)
    assert len(junk) >= MESSAGES - len(oversized)
    junk = junk[: MESSAGES - len(oversized)] + oversized
    random.Random(7).shuffle(junk)  # the oversized ones among the rest, the same every run
    generated_s = time.monotonic() - t0

    cluster = await start_cluster(make_config(SERVERS, CAMERAS, network_timeout=5.0))
    await cluster.wait_status(_healthy, 20, "every camera recording at home")
    before = rejected_samples()
    strangers_before = metric(HEARTBEATS_REJECTED, reason="unknown_server")
    caplog.set_level(logging.INFO)
    caplog.clear()  # what the flood makes the cluster log, from here on
    barrier = [status_subject(k, k) for k in REPLICAS]
    barrier += [status_subject("agent", sid) for sid in SERVERS]
    flood_started = time.monotonic()
    sent = await flood(cluster.nats.url, junk, readers, barrier)

    # Every refusal counted, once per service that parses the message, and nothing else
    # (no ``handler_failed``).
    want = {k: float(n) for k, n in expected_rejections(junk, readers).items()}

    async def counted() -> dict[tuple[str, str], float]:
        return since(before)

    got = await eventually(
        counted,
        lambda now: all(now.get(k, 0) >= n for k, n in want.items()),
        30,
        f"every refusal counted: {want}",
    )
    assert got == want
    strangers = sum(1 for m in junk if m.verdict == "unknown_server")
    assert metric(HEARTBEATS_REJECTED, reason="unknown_server") - strangers_before == strangers
    answered = check_answers(sent, readers)
    _assert_nothing_crashed(cluster)

    # The log: at most ``max_keys`` rejections per connection and interval, and each
    # sender (subject) and reason at most once per reader and interval.
    windows = math.ceil((time.monotonic() - flood_started) / LOG_INTERVAL_S) + 1
    logged = [r for r in caplog.records if r.getMessage().startswith("rejected a message")]
    assert len(logged) <= REJECTING_BUSES * LOG_MAX_KEYS * windows
    per_sender = Counter(tuple(r.args[:2]) for r in logged if isinstance(r.args, tuple))
    assert max(per_sender.values(), default=0) <= MOST_READERS * windows, per_sender
    others = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r not in logged
    ]
    assert others == []
    print(
        f"\nfuzz: {len(junk)} messages generated in {generated_s:.1f} s, sent and answered "
        f"in {sent.seconds:.1f} s; verdicts {dict(Counter(m.verdict for m in junk))}; "
        f"answers {dict(answered)}; {len(logged)} rejections logged"
    )
    await holds(cluster.status, _healthy, 1.0, "every server online, every camera at home")

    # Health reads the events about servers and fleet alerts when a term begins
    # (Bus.replay_about): a new health leader skips the junk stored among them.
    read_by_health = tuple(subjects.events_about(a).removesuffix(">") for a in ("server", "alert"))
    stored = sum(
        1
        for m in junk
        if m.target == "event" and m.verdict == INVALID and m.subject.startswith(read_by_health)
    )
    events_before = rejected_samples()[("blaze.evt", INVALID)]
    await cluster.services["health"].close()
    cluster.services["health"] = RunningService(HealthService(cluster.config, cluster.nats.url))

    async def skipped() -> float:
        return rejected_samples()[("blaze.evt", INVALID)] - events_before

    assert await eventually(skipped, lambda n: n >= stored, 30, "health read the log") == stored

    # And the cluster still decides: a storage failure fails over at once (R3).
    failed_at = time.monotonic()
    cluster.fail_storage("rs-2")
    await cluster.wait_status(
        failed_over("rs-2", "storage_failed"),
        10,
        "rs-2 storage_failed and its cameras failed over",
    )
    print(
        f"fuzz: the storage failure afterwards failed over in {time.monotonic() - failed_at:.2f} s"
    )
    _assert_nothing_crashed(cluster)
