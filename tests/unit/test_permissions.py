"""The permission matrix (issue 7) says what the issue asks, read as nats-server reads it:
subject patterns with ``*`` (one token) and ``>`` (the rest)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from shared import subjects
from shared.bus import permissions
from shared.bus.credentials import new_seed, public_key, seed_file_is_private

SERVERS = ["rs-1", "rs-2"]
IDENTITIES = permissions.identities(SERVERS)
ADMIN_ONLY = (
    subjects.ADMIN_FAILBACK,
    subjects.ADMIN_CAPACITY,
    subjects.ADMIN_DRAIN,
    subjects.ADMIN_UNDRAIN,
    subjects.SIM_FAULT,
)


def matches(pattern: str, subject: str) -> bool:
    """nats-server's wildcard rule."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def may_publish(identity: str, subject: str) -> bool:
    return any(matches(p, subject) for p in permissions.grant(identity).publish)


def may_subscribe(identity: str, subject: str) -> bool:
    return any(matches(p, subject) for p in permissions.grant(identity).subscribe)


def test_the_matcher_reads_wildcards_as_nats_does() -> None:
    assert matches("blaze.hb.*", "blaze.hb.rs-1")
    assert not matches("blaze.hb.*", "blaze.hb.rs-1.x")
    assert matches("blaze.agent.rs-1.>", "blaze.agent.rs-1.sync.chunk")
    assert not matches("blaze.agent.rs-1.>", "blaze.agent.rs-1")


def test_issue7_an_agent_speaks_only_for_its_own_server() -> None:
    assert may_publish("agent-rs-1", subjects.heartbeat("rs-1"))
    assert not may_publish("agent-rs-1", subjects.heartbeat("rs-2"))
    for request in (subjects.command, subjects.probe):
        assert may_subscribe("agent-rs-1", request("rs-1"))
        assert not may_subscribe("agent-rs-1", request("rs-2"))
    assert not may_subscribe("agent-rs-1", subjects.sync_request("rs-2", "fetch"))
    # Footage goes home agent to agent: a home asks the host for chunks.
    assert may_publish("agent-rs-1", subjects.sync_request("rs-2", "chunk"))
    assert not may_publish("agent-rs-1", subjects.sync_request("rs-2", "drop"))
    assert not any(may_publish("agent-rs-1", s) for s in ADMIN_ONLY)


@pytest.mark.parametrize("subject", ADMIN_ONLY)
def test_issue7_only_the_administrator_changes_anything(subject: str) -> None:
    assert [i for i in IDENTITIES if may_publish(i, subject)] == ["admin"]


def test_issue7_the_monitor_publishes_only_reads() -> None:
    blaze = [s for s in permissions.grant("monitor").publish if s.startswith("blaze.")]
    assert blaze == ["blaze.svc.>", subjects.any_agent("sync.list")]
    assert not any(s.startswith("$KV.") for s in permissions.grant("monitor").publish)
    assert not may_publish("monitor", subjects.server_event("rs-1", "server_failed"))
    assert not may_publish("monitor", subjects.heartbeat("rs-1"))


@pytest.mark.parametrize("identity", IDENTITIES)
def test_issue7_nobody_deletes_or_purges_the_log_or_a_bucket(identity: str) -> None:
    for verb in ("DELETE", "PURGE", "MSG.DELETE"):
        for stream in (subjects.EVENTS_STREAM, subjects.kv_stream(subjects.PLACEMENT_BUCKET)):
            assert not may_publish(identity, f"$JS.API.STREAM.{verb}.{stream}"), (identity, verb)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_issue7_nobody_publishes_into_an_inbox(identity: str) -> None:
    """Replies only as responses (allow_responses): a forged answer has no way in."""
    assert not may_publish(identity, "_INBOX.UABC.xyz")
    assert not may_subscribe(identity, "_INBOX.UABC.xyz")  # its own is added per key


def test_issue7_each_service_writes_only_its_own_lease_and_state() -> None:
    for service in permissions.SERVICE_ROLES:
        for other in permissions.SERVICE_ROLES:
            lease = subjects.kv_subject(subjects.LEASE_BUCKET, other)
            assert may_publish(service, lease) == (service == other)
    state = subjects.kv_subject(subjects.PLACEMENT_BUCKET, subjects.PLACEMENT_STATE_KEY)
    assert [i for i in IDENTITIES if may_publish(i, state)] == ["placement"]


def _rendered(identity: str, keys: dict[str, str]) -> dict[str, Any]:
    body = re.search(r"permissions: (\{.*\}) \}$", permissions.render_user(identity, keys))
    assert body is not None
    perms: dict[str, Any] = json.loads(body.group(1))
    return perms


def test_issue7_answers_go_only_into_the_inboxes_of_whom_one_answers() -> None:
    """No ``allow_responses`` (it lets a client answer to any subject a message names):
    each identity publishes answers into the inboxes of its askers only, and reads its
    own inbox only."""
    keys = {i: public_key(new_seed()) for i in IDENTITIES}
    for identity in IDENTITIES:
        perms = _rendered(identity, keys)
        assert "allow_responses" not in perms
        own = [s for s in perms["subscribe"]["allow"] if s.startswith("_INBOX.")]
        assert own == [
            f"{permissions.inbox_prefix(keys[identity], agent=permissions.is_agent(identity))}.>"
        ]
    agent = _rendered("agent-rs-1", keys)["publish"]["allow"]
    assert agent[: len(permissions.grant("agent-rs-1").publish)] == list(
        permissions.grant("agent-rs-1").publish
    )
    answers = {s for s in agent if s.startswith("_INBOX.")}
    asked_by = ("health", "placement", "sync", "admin", "monitor")
    assert answers == {f"_INBOX.{keys[r]}.>" for r in asked_by} | {"_INBOX.agents.>"}
    monitor = {s for s in _rendered("monitor", keys)["publish"]["allow"] if "_INBOX" in s}
    assert monitor == {f"_INBOX.{keys['admin']}.>", f"_INBOX.{keys['monitor']}.>"}
    sim = {s for s in _rendered("sim", keys)["publish"]["allow"] if "_INBOX" in s}
    assert sim == {f"_INBOX.{keys['admin']}.>"}


def test_issue7_an_unknown_identity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown identity"):
        permissions.grant("root")


@pytest.mark.parametrize(
    ("mode", "owner_is_root", "accepted"),
    [
        (0o600, False, True),
        (0o400, False, True),
        (0o640, False, False),
        (0o440, True, True),  # a Kubernetes Secret mounted for the pod's fsGroup
        (0o460, True, False),
        (0o604, True, False),
        (0o644, False, False),
    ],
)
def test_issue7_a_seed_must_be_private(mode: int, owner_is_root: bool, accepted: bool) -> None:
    info = os.stat_result((0o100000 | mode, 0, 0, 1, 0 if owner_is_root else 10001, 0, 0, 0, 0, 0))
    assert seed_file_is_private(info) is accepted
