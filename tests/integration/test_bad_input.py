"""Broken and hostile input on a real nats-server: refused, answered, counted, survived.

Every message here is raw bytes on the test's own connection, as a buggy or
malicious client would send them. After each batch the cluster must still handle
a real fault, and no service task may have died.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from shared import subjects
from shared.bus import Bus
from shared.bus.connection import NONCE_HEADER
from shared.messages import (
    MAX_MESSAGE_BYTES,
    Action,
    Assignment,
    CameraMoved,
    Command,
    CommandResult,
    Heartbeat,
    MoveReason,
    ProbeReply,
    ProbeRequest,
    Reply,
    ServerFailed,
    ServerSilent,
    encode,
)
from tests.helpers import eventually, holds, metric
from tests.integration.cluster import (
    Status,
    TestCluster,
    all_home,
    camera,
    cameras_of,
    failed_over,
    make_config,
    server,
)
from tests.integration.conftest import StartCluster

THREE = {"rs-1": 3, "rs-2": 3, "rs-3": 3}
CAMS = {"c11": "rs-1", "c12": "rs-1", "c21": "rs-2", "c31": "rs-3"}

REJECTED = "blaze_rejected_messages_total"
HEARTBEAT_READERS = 2  # health and placement both subscribe to every heartbeat
OVERSIZED = MAX_MESSAGE_BYTES + 1024
HUGE_EPOCH = 10**9


# ---- the payloads ----


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _forged_heartbeat(**changes: Any) -> dict[str, Any]:
    """A heartbeat of rs-1 that reports failed storage: harmful if it were ever accepted."""
    base: dict[str, Any] = {
        "server": "rs-1",
        "boot_id": "forged-boot",
        "sequence": 10**12,
        "capacity": 3,
        "hosted": {},
        "storage_ok": False,
        "storage_error": "forged",
    }
    return {**base, **changes}


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


BROKEN_JSON: dict[str, bytes] = {
    "truncated JSON": b'{"server": "rs-1", ',
    "empty payload": b"",
    "not JSON at all": b"\x00\xff garbage \xfe",
    "a JSON array": b"[1, 2, 3]",
    "JSON null": b"null",
}

BAD_HEARTBEATS: dict[str, bytes] = {
    **BROKEN_JSON,
    "sequence is text": _json(_forged_heartbeat(sequence="many")),
    "sequence is a numeric string": _json(_forged_heartbeat(sequence="7")),
    "storage_ok is the number 0": _json(_forged_heartbeat(storage_ok=0)),
    "storage_ok is the text 'no'": _json(_forged_heartbeat(storage_ok="no")),
    "negative capacity": _json(_forged_heartbeat(capacity=-1)),
    "hosted is a list": _json(_forged_heartbeat(hosted=["c11"])),
    "negative epoch": _json(_forged_heartbeat(hosted={"c11": -1})),
    "camera id with a dot": _json(_forged_heartbeat(hosted={"c.11": 1})),
    "storage_ok missing": _json(_without(_forged_heartbeat(), "storage_ok")),
    "unknown field": _json(_forged_heartbeat(firmware="9.9")),
    "future schema version": _json(_forged_heartbeat(schema_version=2)),
}


def _claim(**changes: Any) -> dict[str, Any]:
    """A claim of rs-2's camera on rs-1 with a huge epoch: harmful if ever accepted."""
    base: dict[str, Any] = {
        "server": "rs-1",
        "action": "claim",
        "cameras": [{"camera": "c21", "epoch": HUGE_EPOCH}],
    }
    return {**base, **changes}


BAD_COMMANDS: dict[str, bytes] = {
    **BROKEN_JSON,
    "epoch is text": _json(_claim(cameras=[{"camera": "c21", "epoch": "soon"}])),
    "epoch is a numeric string": _json(_claim(cameras=[{"camera": "c21", "epoch": "7"}])),
    "negative epoch": _json(_claim(cameras=[{"camera": "c21", "epoch": -1}])),
    "unknown action": _json(_claim(action="steal")),
    "cameras is a string": _json(_claim(cameras="c21")),
    "camera id with a wildcard": _json(_claim(cameras=[{"camera": "c>", "epoch": 1}])),
    "action missing": _json(_without(_claim(), "action")),
    "unknown field": _json(_claim(priority="urgent")),
    "unknown field in an assignment": _json(
        _claim(cameras=[{"camera": "c21", "epoch": HUGE_EPOCH, "force": True}])
    ),
}

BAD_PROBES: dict[str, bytes] = {
    **BROKEN_JSON,
    "server is a number": _json({"server": 1}),
    "server missing": _json({}),
    "unknown field": _json({"server": "rs-1", "deep": True}),
}

BAD_FAILBACKS: dict[str, bytes] = {
    **BROKEN_JSON,
    "server is a list": _json({"server": ["rs-1"]}),
    "by is a number": _json({"server": "rs-1", "by": 7}),
    "server id with a dot": _json({"server": "rs.1"}),
    "server missing": _json({"by": "admin"}),
    "unknown field": _json({"server": "rs-1", "force": True}),
    "by is too long": _json({"server": "rs-1", "by": "x" * 65}),
}

BAD_CAPACITIES: dict[str, bytes] = {
    **BROKEN_JSON,
    "capacity is text": _json({"server": "rs-1", "capacity": "lots"}),
    "capacity is a numeric string": _json({"server": "rs-1", "capacity": "4"}),
    "capacity is a boolean": _json({"server": "rs-1", "capacity": True}),
    "negative capacity": _json({"server": "rs-1", "capacity": -1}),
    "fractional capacity": _json({"server": "rs-1", "capacity": 2.5}),
    "capacity above the limit": _json({"server": "rs-1", "capacity": 10**6}),
    "capacity missing": _json({"server": "rs-1"}),
    "unknown field": _json({"server": "rs-1", "capacity": 1, "until": "tomorrow"}),
    "future schema version": _json({"server": "rs-1", "capacity": 1, "schema_version": 9}),
}


def _oversized(doc: dict[str, Any], field: str) -> bytes:
    """``doc`` padded past MAX_MESSAGE_BYTES through one of its own string fields."""
    data = _json({**doc, field: "x" * OVERSIZED})
    assert len(data) > MAX_MESSAGE_BYTES
    return data


# ---- helpers ----


def _rejected(subject: str, reason: str) -> float:
    """REJECTED for one core subject (its label: the subject without its last token)."""
    return metric(REJECTED, subject=subject.rsplit(".", 1)[0], reason=reason)


async def _ready(start_cluster: StartCluster, servers: dict[str, int] = THREE) -> TestCluster:
    cluster = await start_cluster(make_config(servers, CAMS, network_timeout=1.5))
    await cluster.wait_status(all_home, 20, "every camera recording at home")
    return cluster


async def _publish(cluster: TestCluster, subject: str, data: bytes) -> None:
    assert cluster.bus is not None
    await cluster.bus.nc.publish(subject, data)
    await cluster.bus.nc.flush()


async def _request(cluster: TestCluster, subject: str, data: bytes) -> bytes:
    assert cluster.bus is not None
    msg = await cluster.bus.nc.request(subject, data, timeout=5)
    return bytes(msg.data)


def _assert_nothing_crashed(cluster: TestCluster) -> None:
    for name, running in [*cluster.services.items(), *cluster.agents.items()]:
        if running.task.done():
            crash = None if running.task.cancelled() else running.task.exception()
            raise AssertionError(f"{name} stopped: {crash!r}")


async def _storage_fault_still_fails_over(cluster: TestCluster, victim: str) -> Status:
    """The later real fault: the victim's storage fails and its cameras move at once (R3)."""
    cluster.fail_storage(victim)
    doc = await cluster.wait_status(
        lambda s: (
            server(s, victim)["state"] == "storage_failed"
            and all(c["state"] == "failed_over" for c in cameras_of(s, victim))
        ),
        10,
        f"{victim} storage_failed and its cameras failed over",
    )
    _assert_nothing_crashed(cluster)
    return doc


def _healthy(doc: Status) -> bool:
    return all(s["state"] == "online" and s["storage"] == "ok" for s in doc["servers"])


async def _server_failures(cluster: TestCluster) -> list[ServerFailed]:
    return [e for _, e in await cluster.events() if isinstance(e, ServerFailed)]


# ---- heartbeats ----


async def test_malformed_heartbeats_are_counted_and_declare_nothing(
    start_cluster: StartCluster,
) -> None:
    """R1, R3: broken, wrongly typed, unknown-field and oversized heartbeats fail nothing."""
    cluster = await _ready(start_cluster)
    subject = subjects.heartbeat("rs-1")
    invalid_before = _rejected(subject, "invalid")
    oversized_before = _rejected(subject, "oversized")

    for data in BAD_HEARTBEATS.values():
        await _publish(cluster, subject, data)
    await _publish(cluster, subject, _oversized(_forged_heartbeat(), "storage_error"))

    async def counted() -> tuple[float, float]:
        return (
            _rejected(subject, "invalid") - invalid_before,
            _rejected(subject, "oversized") - oversized_before,
        )

    want = (len(BAD_HEARTBEATS) * HEARTBEAT_READERS, 1 * HEARTBEAT_READERS)
    seen = await eventually(
        counted,
        lambda c: c[0] >= want[0] and c[1] >= want[1],
        5,
        "every bad heartbeat counted by each reader",
    )
    assert seen == want
    await holds(cluster.status, _healthy, 1.0, "every server online with storage ok")
    assert await _server_failures(cluster) == []
    await _storage_fault_still_fails_over(cluster, "rs-1")


async def test_spoofed_heartbeat_on_another_servers_subject_is_rejected(
    start_cluster: StartCluster,
) -> None:
    """R3: a heartbeat of rs-2 on rs-1's subject, reporting failed storage, fails nobody."""
    cluster = await _ready(start_cluster)
    before = metric(REJECTED, subject="blaze.hb", reason="spoofed")
    # rs-2's real boot id and a sequence far ahead: accepted, it would also make every
    # real heartbeat of rs-2 look stale, hiding the real storage fault below.
    spoof = Heartbeat(
        server="rs-2",
        boot_id=cluster.agent("rs-2").boot_id,
        sequence=10**12,
        capacity=0,
        hosted={},
        storage_ok=False,
        storage_error="spoofed",
    )
    await _publish(cluster, subjects.heartbeat("rs-1"), encode(spoof))

    async def spoofed() -> float:
        return metric(REJECTED, subject="blaze.hb", reason="spoofed") - before

    assert await eventually(spoofed, lambda n: n >= HEARTBEAT_READERS, 5, "spoof counted") == (
        HEARTBEAT_READERS
    )
    await holds(cluster.status, _healthy, 1.0, "rs-1 and rs-2 online with storage ok")
    doc = await cluster.status()
    assert server(doc, "rs-2")["capacity"] == 3
    assert await _server_failures(cluster) == []
    await _storage_fault_still_fails_over(cluster, "rs-2")


async def test_heartbeat_of_a_server_not_in_the_cluster_changes_nothing(
    start_cluster: StartCluster,
) -> None:
    """R1: a well-formed heartbeat from an unknown server adds no server and fails none."""
    cluster = await _ready(start_cluster)
    stranger = Heartbeat(
        server="rs-9", boot_id="stranger", sequence=0, capacity=64, hosted={}, storage_ok=False
    )
    await _publish(cluster, subjects.heartbeat("rs-9"), encode(stranger))
    await holds(
        cluster.status,
        lambda s: _healthy(s) and [x["id"] for x in s["servers"]] == ["rs-1", "rs-2", "rs-3"],
        1.0,
        "the cluster still has exactly its three healthy servers",
    )
    await _storage_fault_still_fails_over(cluster, "rs-3")


# ---- agent commands and probes ----


async def test_malformed_commands_to_an_agent_get_an_error_reply_and_claim_nothing(
    start_cluster: StartCluster,
) -> None:
    """R4: a broken claim gets a refusal naming the problem; the agent's epochs stay clean."""
    # rs-3 is full, so when rs-2's storage fails c21 can only go to rs-1: had a forged
    # claim of c21 at a huge epoch reached rs-1's ledger, that real claim would be refused.
    cluster = await _ready(start_cluster, {"rs-1": 3, "rs-2": 3, "rs-3": 1})
    subject = subjects.command("rs-1")
    recording_before = cluster.agent("rs-1").recorder.recording()
    assert set(recording_before) == {"c11", "c12"}

    payloads = {**BAD_COMMANDS, "oversized": _oversized(_claim(), "action")}
    for what, data in payloads.items():
        reason = "oversized" if what == "oversized" else "invalid"
        before = _rejected(subject, reason)
        result = CommandResult.model_validate_json(await _request(cluster, subject, data))
        assert result.server == "rs-1", what
        assert result.done == (), what
        assert [r.reason for r in result.refused] == [
            "malformed request: see blaze's event catalog"
        ], what
        assert _rejected(subject, reason) - before == 1, what

    misaddressed = Command(
        server="rs-2",
        action=Action.CLAIM,
        cameras=(Assignment(camera="c21", epoch=HUGE_EPOCH),),
    )
    result = CommandResult.model_validate_json(
        await _request(cluster, subject, encode(misaddressed))
    )
    assert result.done == ()
    assert [(r.camera, r.reason) for r in result.refused] == [("c21", "addressed to rs-2")]
    assert cluster.agent("rs-1").recorder.recording() == recording_before

    doc = await _storage_fault_still_fails_over(cluster, "rs-2")
    assert camera(doc, "c21")["host"] == "rs-1"

    async def recording_on_rs1() -> dict[str, int]:
        return cluster.agent("rs-1").recorder.recording()

    await eventually(recording_on_rs1, lambda r: "c21" in r, 5, "rs-1 records c21")


async def test_malformed_probes_are_counted_and_the_probe_still_proves_liveness(
    start_cluster: StartCluster,
) -> None:
    """R2: bad probes are counted; afterwards silence with a live connection is no failure."""
    cluster = await _ready(start_cluster)
    subject = subjects.probe("rs-1")
    payloads = {**BAD_PROBES, "oversized": _oversized({"server": "rs-1"}, "server")}
    for what, data in payloads.items():
        reason = "oversized" if what == "oversized" else "invalid"
        before = _rejected(subject, reason)
        # By design the agent answers any probe: the answer only proves its connection
        # lives, and ProbeReply has no error field.
        answer = ProbeReply.model_validate_json(await _request(cluster, subject, data))
        assert answer.server == "rs-1", what
        assert _rejected(subject, reason) - before == 1, what

    real = ProbeReply.model_validate_json(
        await _request(cluster, subject, encode(ProbeRequest(server="rs-1")))
    )
    assert real.boot_id == cluster.agent("rs-1").boot_id

    # The detector's own probe still gets through: silence alone is not a failure (R2).
    cluster.agent("rs-1").heartbeats_paused = True

    async def silent() -> list[ServerSilent]:
        return [e for _, e in await cluster.events() if isinstance(e, ServerSilent)]

    await eventually(silent, lambda found: len(found) >= 1, 10, "rs-1 reported silent")
    assert server(await cluster.status(), "rs-1")["state"] == "online"
    cluster.agent("rs-1").heartbeats_paused = False
    await _storage_fault_still_fails_over(cluster, "rs-1")


# ---- administrator requests ----


async def test_malformed_admin_requests_get_a_refusal_and_change_nothing(
    start_cluster: StartCluster,
) -> None:
    """R5, R7: broken failback and capacity requests are refused with a reason and counted."""
    cluster = await _ready(start_cluster)
    cases: list[tuple[str, dict[str, bytes], dict[str, Any], str]] = [
        (subjects.ADMIN_FAILBACK, BAD_FAILBACKS, {"server": "rs-1"}, "by"),
        (subjects.ADMIN_CAPACITY, BAD_CAPACITIES, {"server": "rs-1", "capacity": 9}, "by"),
    ]
    for subject, bad, valid, pad_field in cases:
        payloads = {**bad, "oversized": _oversized(valid, pad_field)}
        for what, data in payloads.items():
            reason = "oversized" if what == "oversized" else "invalid"
            before = _rejected(subject, reason)
            reply = Reply.model_validate_json(await _request(cluster, subject, data))
            assert not reply.ok, (subject, what)
            assert "malformed request" in reply.reason, (subject, what)
            assert _rejected(subject, reason) - before == 1, (subject, what)
        # Without a reply subject: still counted, nothing answers, nothing breaks.
        before = _rejected(subject, "invalid")
        await _publish(cluster, subject, BROKEN_JSON["truncated JSON"])

        async def counted(subject: str = subject, before: float = before) -> float:
            return _rejected(subject, "invalid") - before

        await eventually(counted, lambda n: n == 1, 5, f"a published bad request on {subject}")

    doc = await cluster.status()
    assert _healthy(doc)
    assert [s["capacity"] for s in doc["servers"]] == [3, 3, 3]
    assert not [e for _, e in await cluster.events() if e.type == "capacity_changed"]

    # The real requests still work afterwards.
    raised = await cluster.set_capacity("rs-3", 4)
    assert raised.ok, raised.reason
    await cluster.wait_status(
        lambda s: server(s, "rs-3")["capacity"] == 4, 5, "rs-3's capacity raised to 4"
    )
    await _storage_fault_still_fails_over(cluster, "rs-1")
    too_early = await cluster.confirm_failback("rs-1")
    assert not too_early.ok
    assert "still reports failed storage" in too_early.reason


async def test_admin_requests_for_unknown_servers_are_refused_with_the_reason(
    start_cluster: StartCluster,
) -> None:
    """R5, R7: failback or capacity for a server not in the cluster names it in the refusal."""
    cluster = await _ready(start_cluster)
    failback = await cluster.confirm_failback("rs-9")
    assert not failback.ok
    assert failback.reason == "unknown server 'rs-9'"
    capacity = await cluster.set_capacity("rs-9", 5)
    assert not capacity.ok
    assert capacity.reason == "unknown server 'rs-9'"
    doc = await cluster.status()
    assert [s["id"] for s in doc["servers"]] == ["rs-1", "rs-2", "rs-3"]
    assert not [e for _, e in await cluster.events() if e.type == "capacity_changed"]
    await _storage_fault_still_fails_over(cluster, "rs-2")


# ---- the durable event log ----


async def test_invalid_events_on_the_log_are_counted_and_skipped(
    start_cluster: StartCluster,
) -> None:
    """R11: a forged, invalid event on the durable log is skipped; later events still fold."""
    cluster = await _ready(start_cluster)
    assert cluster.bus is not None
    subject = subjects.server_event("rs-1", "server_failed")
    before = metric(REJECTED, subject="blaze.evt", reason="invalid")
    forged = [
        _json({"type": "server_failed", "server": "rs-1"}),  # no cause
        _json({"type": "server_exploded", "server": "rs-1", "cause": "storage"}),
        _json({"type": "server_failed", "server": "rs-1", "cause": "gremlins"}),
        b"{ not json",
    ]
    for data in forged:
        await cluster.bus.js.publish(subject, data)

    async def counted() -> float:
        return metric(REJECTED, subject="blaze.evt", reason="invalid") - before

    await eventually(counted, lambda n: n >= len(forged), 5, "placement skipped every forgery")
    await holds(cluster.status, _healthy, 1.0, "rs-1 still online")
    await _storage_fault_still_fails_over(cluster, "rs-1")


async def test_moves_of_a_camera_not_in_the_config_open_no_sync_job(
    start_cluster: StartCluster,
) -> None:
    """R9, R11: two forged ``camera_moved`` of a camera nobody configured, away from a home
    nobody configured, must not become footage to bring home."""
    cluster = await _ready(start_cluster)
    assert cluster.bus is not None
    for epoch, host in [(1, "x9"), (2, "y9")]:
        moved = CameraMoved(
            camera="zz9", home="h9", to=host, epoch=epoch, reason=MoveReason.FAILOVER
        )
        await cluster.bus.js.publish(subjects.camera_event("zz9", moved.type), encode(moved))

    async def jobs() -> dict[str, tuple[bytes, int]]:
        assert cluster.bus is not None
        return await cluster.bus.read_records("job.")

    await holds(jobs, lambda found: found == {}, 3.0, "no sync job for a stranger camera")


# ---- answers to the cluster's own requests ----


FORGED_ALIVE = ProbeReply(server="rs-1", boot_id="forged").model_dump_json().encode()


@pytest.mark.parametrize(
    ("reason", "echo_nonce", "body"),
    [("invalid", True, b'{"server": 1}'), ("forged", False, FORGED_ALIVE)],
    ids=["junk", "forged-alive"],
)
async def test_malformed_or_forged_answers_to_the_detectors_probe_prove_nothing(
    start_cluster: StartCluster, reason: str, echo_nonce: bool, body: bytes
) -> None:
    """R2, issue 7: someone answers the probe of a cut-off server with junk, or with a
    well-formed "alive" that does not echo the probe's nonce (it never saw the probe).
    Neither proves anything: the probe counts it as failed and the server fails over
    (junk once killed the probe, which then never ended)."""
    cluster = await _ready(start_cluster)
    assert cluster.bus is not None
    nc = cluster.bus.nc
    subject = subjects.probe("rs-1")
    before = _rejected(subject, reason)

    async def answer_junk(msg: Any) -> None:
        echo = {NONCE_HEADER: msg.headers[NONCE_HEADER]} if echo_nonce else None
        await nc.publish(msg.reply, body, headers=echo)

    hostile = await nc.subscribe(subject, cb=answer_junk)
    try:
        cluster.relays["rs-1"].cut()
        doc = await cluster.wait_status(
            failed_over("rs-1", "network_failed"),
            15,
            "rs-1 network_failed and its cameras re-hosted",
        )
    finally:
        await hostile.unsubscribe()
    assert _rejected(subject, reason) - before >= 1
    failures = await _server_failures(cluster)
    assert [(f.server, f.cause) for f in failures] == [("rs-1", "network")]
    assert all(c["host"] in ("rs-2", "rs-3") for c in cameras_of(doc, "rs-1"))
    _assert_nothing_crashed(cluster)


# ---- the bus itself: bounded however hostile ----


def _series(name: str) -> set[tuple[tuple[str, str], ...]]:
    """The label sets of every sample of one metric in this process."""
    return {
        tuple(sorted(sample.labels.items()))
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name
    }


async def test_junk_from_ever_new_subjects_adds_no_metric_series_and_few_log_lines(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    """Under a wildcard a sender picks any subject. Junk on 500 new subjects is counted
    under the subscription's own label (it once made a series per subject: unbounded
    memory and scrapes) and logs at most ``max_keys`` lines, not one per subject."""
    root = f"test.{uuid.uuid4().hex}"
    seen: list[str] = []

    async def deliver(subject: str, _hb: Heartbeat) -> None:
        seen.append(subject)

    await bus.subscribe(f"{root}.>", Heartbeat, deliver)  # as the event log's ``blaze.evt.>``
    series_before = _series(REJECTED)
    caplog.set_level(logging.WARNING, logger="shared.bus.connection")
    for n in range(500):
        await bus.nc.publish(f"{root}.stranger-{n}.junk", b"{ junk")
    await bus.nc.flush()

    async def counted() -> float:
        return metric(REJECTED, subject=root, reason="invalid")

    assert await eventually(counted, lambda n: n >= 500, 10, "every junk counted") == 500
    assert _series(REJECTED) - series_before == {(("reason", "invalid"), ("subject", root))}
    logged = [r for r in caplog.records if r.getMessage().startswith("rejected a message")]
    assert 1 <= len(logged) <= 20
    assert seen == []


async def test_a_subscriber_whose_handler_fails_counts_it_and_keeps_delivering(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid message its handler fails on is counted (``handler_failed``) and logged;
    the next messages still arrive (nats-py used to swallow it, at debug level)."""
    root = f"test.{uuid.uuid4().hex}"
    delivered: list[int] = []

    async def deliver(_subject: str, hb: Heartbeat) -> None:
        if hb.sequence == 1:
            raise RuntimeError("a bug in the handler")
        delivered.append(hb.sequence)

    await bus.subscribe(f"{root}.*", Heartbeat, deliver)
    caplog.set_level(logging.WARNING, logger="shared.bus.connection")
    for sequence in range(3):
        hb = Heartbeat(server="rs-1", boot_id="b", sequence=sequence, capacity=1, storage_ok=True)
        await bus.nc.publish(f"{root}.rs-1", encode(hb))
    await bus.nc.flush()

    async def got() -> list[int]:
        return delivered

    assert await eventually(got, lambda d: len(d) >= 2, 5, "the later messages delivered") == [
        0,
        2,
    ]
    assert metric(REJECTED, subject=root, reason="handler_failed") == 1
    assert any("a bug in the handler" in r.getMessage() for r in caplog.records)
