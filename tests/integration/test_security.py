"""Issue 7 on a real nats-server with auth on: nobody speaks for a server but that server,
only the administrator changes anything, the monitor only reads, and TLS is checked
against the generated CA.

Refusals are NATS's own: a publish outside an identity's permissions is dropped by the
server and reported to the client as a permissions violation, which these tests see both
ways: the client is told, and the would-be receiver never gets the message.
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest

from shared import subjects
from shared.bus import Access, Bus, NatsServer, SecretsDir, ServerSecurity, embedded_server
from shared.bus.credentials import new_seed
from shared.bus.permissions import is_agent
from shared.bus.tls import generate as generate_tls
from shared.errors import (
    ClusterUnreachableError,
    ConfigError,
    LoginRefusedError,
    MalformedReplyError,
    PermissionDeniedError,
)
from shared.messages import FailbackRequest, ProbeReply, ProbeRequest, Reply
from tests.helpers import eventually
from tests.unit.test_permissions import may_publish

SERVERS = ["rs-1", "rs-2"]


@dataclass
class Secured:
    """A nats-server admitting only the identities generated for SERVERS."""

    server: NatsServer
    secrets: SecretsDir
    ca: Path | None = None

    def access(self, identity: str) -> Access:
        return Access(self.secrets.creds(identity), self.ca, agent=is_agent(identity))


@dataclass
class Client:
    """A raw nats-py connection as one identity, keeping the errors NATS sends it."""

    nc: Any
    errors: list[str] = field(default_factory=list)

    async def refused(self, subject: str) -> None:
        """Wait until NATS has reported a permissions violation naming ``subject``."""
        await self.nc.flush()

        async def errors() -> list[str]:
            return list(self.errors)

        await eventually(  # loose: only to catch a hang; fails showing the errors seen
            errors,
            lambda seen: any(subject.lower() in e.lower() for e in seen),
            20,
            f"a permissions violation for {subject}",
        )


async def _wait(condition: Callable[[], bool], what: str) -> None:
    async def probe() -> bool:
        return condition()

    await eventually(probe, bool, 20, what)  # loose: only to catch a hang


def _secured(tmp_path: Path, *, tls: bool = False) -> Secured:
    secrets = SecretsDir(tmp_path / "secrets")
    node_tls = generate_tls(secrets.path) if tls else None
    security = ServerSecurity(authorization=secrets.generate(SERVERS), tls=node_tls)
    server = embedded_server(tmp_path / "nats-data", security=security)
    server.start()
    return Secured(server, secrets, node_tls.ca if node_tls else None)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    s = _secured(tmp_path)
    try:
        yield s
    finally:
        s.server.stop()


@pytest.fixture
async def connect(secured: Secured) -> AsyncIterator[Any]:
    """Open raw connections as any identity; all closed at the end."""
    opened: list[Any] = []

    async def as_identity(identity: str) -> Client:
        client = Client(nc=None)

        async def error_cb(exc: Exception) -> None:
            client.errors.append(str(exc))

        options = secured.access(identity).connect_options()
        client.nc = await nats.connect(secured.server.url, error_cb=error_cb, **options)
        opened.append(client.nc)
        return client

    yield as_identity
    for nc in opened:
        await nc.close()


async def test_issue7_an_agent_cannot_publish_another_servers_heartbeat(connect: Any) -> None:
    """A heartbeat on rs-2's subject sent with rs-1's credentials never reaches health."""
    health = await connect("health")
    heard: list[str] = []

    async def on_heartbeat(msg: Any) -> None:
        heard.append(msg.subject)

    await health.nc.subscribe(subjects.HEARTBEAT_ALL, cb=on_heartbeat)
    await health.nc.flush()
    rs1 = await connect("agent-rs-1")
    await rs1.nc.publish(subjects.heartbeat("rs-2"), b"{}")  # forged
    await rs1.nc.publish(subjects.heartbeat("rs-1"), b"{}")  # its own
    await rs1.refused(subjects.heartbeat("rs-2"))
    await _wait(lambda: subjects.heartbeat("rs-1") in heard, "rs-1's own heartbeat")
    assert heard == [subjects.heartbeat("rs-1")]


async def test_issue7_an_agent_cannot_read_another_servers_commands(connect: Any) -> None:
    """rs-1's credentials cannot subscribe to rs-2's commands: the command placement sends
    to rs-2 finds no responder there."""
    rs1 = await connect("agent-rs-1")
    seen: list[bytes] = []

    async def on_command(msg: Any) -> None:
        seen.append(msg.data)

    await rs1.nc.subscribe(subjects.command("rs-2"), cb=on_command)
    await rs1.refused(subjects.command("rs-2"))
    placement = await connect("placement")
    with pytest.raises(nats.errors.NoRespondersError):
        await placement.nc.request(subjects.command("rs-2"), b"{}", timeout=2)
    assert seen == []


REFLECTED_TO = (
    subjects.heartbeat("rs-2"),
    subjects.ADMIN_FAILBACK,
    subjects.command("rs-2"),
    subjects.kv_subject(subjects.PLACEMENT_BUCKET, subjects.PLACEMENT_STATE_KEY),
    f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}",
)


@pytest.mark.parametrize("identity", ["agent-rs-1", "monitor", "admin", "sync", "health"])
async def test_issue7_nobody_answers_its_own_request_into_another_subject(
    connect: Any, identity: str
) -> None:
    """A request one identity sends to a subject it also serves, naming as its reply
    subject one it may not publish on, cannot be answered there: answers go only into
    the inboxes of those one answers (nats-server's allow_responses, which would have
    allowed it, is not used). Nor can an honest responder be made to answer there."""
    attacker = await connect(identity)
    requester = await connect("agent-rs-2" if identity == "agent-rs-1" else "admin")
    targets = [t for t in REFLECTED_TO if not may_publish(identity, t)]
    own = {
        "agent-rs-1": subjects.sync_request("rs-1", "chunk"),
        "monitor": "$SRV.PING",
        "admin": "$SRV.PING",
        "sync": "$SRV.PING",
        "health": subjects.ADMIN_FAILBACK,
    }[identity]

    reflected: list[str] = []

    async def reflect(msg: Any) -> None:
        reflected.append(msg.reply)
        await attacker.nc.publish(msg.reply, b"{}")

    async def ask_until_reflected(asker: Client, target: str) -> None:
        """Send the request until the attacker has seen it (once is enough; a resend
        only guards the test against a request lost on a loaded machine)."""

        async def seen() -> bool:
            if target not in reflected:
                await asker.nc.publish(own, b"{}", reply=target)
                await asker.nc.flush()
            return target in reflected

        await eventually(seen, bool, 20, f"{identity} got the request naming {target}", 1)

    await attacker.nc.subscribe(own, cb=reflect)
    await attacker.nc.flush()
    for target in targets:  # an honest requester's message, naming a reply it chose
        await ask_until_reflected(requester, target)
        await attacker.refused(target)
    if identity in ("health", "sync"):
        return  # they may not send a request to what they serve themselves
    attacker.errors.clear()
    reflected.clear()
    for target in targets:  # the attacker asks itself
        await ask_until_reflected(attacker, target)
        await attacker.refused(target)


async def test_issue7_an_answer_forged_into_a_requesters_inbox_is_refused(
    secured: Secured, connect: Any
) -> None:
    """Agents may publish into health's inbox (they answer its probes). Even one that
    knows the reply subject of health's probe of rs-2 cannot answer it: the answer must
    echo the probe's nonce, which only rs-2 saw. The monitor, which answers only the
    console's and the command line's requests, may not publish there at all."""
    leaked: asyncio.Queue[str] = asyncio.Queue()
    rs2 = await connect("agent-rs-2")

    async def leak(msg: Any) -> None:  # rs-2 is silent; its reply subject leaks
        await leaked.put(msg.reply)

    await rs2.nc.subscribe(subjects.probe("rs-2"), cb=leak)
    await rs2.nc.flush()
    rs1 = await connect("agent-rs-1")
    monitor = await connect("monitor")
    forged = ProbeReply(server="rs-2", boot_id="alive").model_dump_json().encode()

    async def forge() -> None:
        reply = await leaked.get()
        await monitor.nc.publish(reply, forged)
        await rs1.nc.publish(reply, forged)

    health = await Bus.connect(secured.server.url, "health", access=secured.access("health"))
    forger = asyncio.create_task(forge())
    try:
        with pytest.raises(MalformedReplyError, match="nonce"):
            await health.request(subjects.probe("rs-2"), ProbeRequest(server="rs-2"), ProbeReply, 5)
        await forger
        await monitor.refused("_INBOX.")
    finally:
        await health.close()


@pytest.mark.parametrize("identity", ["monitor", "agent-rs-1", "placement", "sync", "sim"])
async def test_issue7_only_the_administrator_confirms_failback(
    secured: Secured, connect: Any, identity: str
) -> None:
    """Health (the only subscriber) hears the admin's confirmation and no one else's;
    the command line's request says clearly that NATS refused it."""
    health = await connect("health")
    confirmations: list[bytes] = []

    async def on_failback(msg: Any) -> None:
        confirmations.append(msg.data)
        answer = Reply(ok=True, reason="heard").model_dump_json().encode()
        await health.nc.publish(msg.reply, answer, headers=dict(msg.headers))

    await health.nc.subscribe(subjects.ADMIN_FAILBACK, cb=on_failback)
    await health.nc.flush()
    request = FailbackRequest(server="rs-1", by="test")
    other = await Bus.connect(secured.server.url, identity, access=secured.access(identity))
    try:
        with pytest.raises(PermissionDeniedError, match=subjects.ADMIN_FAILBACK):
            await other.request(subjects.ADMIN_FAILBACK, request, Reply, timeout=1)
    finally:
        await other.close()
    assert confirmations == []
    admin = await Bus.connect(secured.server.url, "admin", access=secured.access("admin"))
    try:
        reply = await admin.request(subjects.ADMIN_FAILBACK, request, Reply, timeout=5)
    finally:
        await admin.close()
    assert reply.reason == "heard"
    assert len(confirmations) == 1


async def test_issue7_the_monitor_follows_events_but_cannot_publish(
    secured: Secured, connect: Any
) -> None:
    """The monitor replays the event log and reads the buckets; it can neither append an
    event, write the placement state, nor delete the stream."""
    health = await Bus.connect(secured.server.url, "health", access=secured.access("health"))
    monitor_bus = await Bus.connect(secured.server.url, "m", access=secured.access("monitor"))
    try:
        await health.ensure_streams()
        await health.js.publish(subjects.server_event("rs-1", "server_silent"), b"{}")
        replayed = await monitor_bus.replay()
        assert [seq for seq, _event in replayed] == [1]
        assert await monitor_bus.read_state() is None  # the bucket is readable, and empty
    finally:
        await health.close()
        await monitor_bus.close()
    monitor = await connect("monitor")
    for subject in (
        subjects.server_event("rs-1", "server_failed"),
        subjects.kv_subject(subjects.PLACEMENT_BUCKET, subjects.PLACEMENT_STATE_KEY),
        f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}",
        subjects.heartbeat("rs-1"),
    ):
        await monitor.nc.publish(subject, b"{}")
        await monitor.refused(subject)


async def test_issue7_no_or_unknown_credentials_cannot_connect(
    secured: Secured, tmp_path: Path
) -> None:
    """Anonymous clients and seeds the server does not know are turned away."""
    with pytest.raises(LoginRefusedError, match="--creds"):
        await Bus.connect(secured.server.url, "anonymous", reconnect=False)
    stranger = tmp_path / "stranger.nk"
    stranger.write_text(new_seed())
    stranger.chmod(0o600)
    with pytest.raises(LoginRefusedError, match="--creds"):
        await Bus.connect(secured.server.url, "stranger", reconnect=False, access=Access(stranger))


def test_issue7_credentials_are_private_and_refused_when_they_are_not(secured: Secured) -> None:
    """blaze up's secrets directory is 0700 and every seed 0600; a seed others can read
    is refused before it is used."""
    assert stat.S_IMODE(secured.secrets.path.stat().st_mode) == 0o700
    seeds = sorted(secured.secrets.path.glob("*.nk"))
    assert len(seeds) == 6 + len(SERVERS)
    assert {stat.S_IMODE(p.stat().st_mode) for p in seeds} == {0o600}
    leaked = secured.secrets.creds("monitor")
    leaked.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        secured.access("monitor").connect_options()


def test_issue7_generating_again_keeps_every_existing_identity(secured: Secured) -> None:
    """A restart of blaze up (or a new server in the config) keeps the seeds processes
    already run with, and adds the new server's."""
    before = {p.name: p.read_text() for p in secured.secrets.path.glob("*.nk")}
    secured.secrets.generate([*SERVERS, "rs-3"])
    after = {p.name: p.read_text() for p in secured.secrets.path.glob("*.nk")}
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"agent-rs-3.nk"}


async def test_issue7_tls_with_a_generated_ca_on_loopback(tmp_path: Path) -> None:
    """With TLS, a client trusting the generated CA connects and works; a client that
    does not trust it, or speaks plain text, does not get in."""
    secured = _secured(tmp_path, tls=True)
    try:
        bus = await Bus.connect(secured.server.url, "health", access=secured.access("health"))
        try:
            assert bus.nc.connected_url is not None
            await bus.ensure_streams()
            assert await bus.last_event_seq() == 0
        finally:
            await bus.close()
        plain = Access(secured.secrets.creds("health"))  # no CA: the system's trust store
        with pytest.raises(ClusterUnreachableError):
            await Bus.connect(secured.server.url, "untrusting", reconnect=False, access=plain)
        other_ca = generate_tls(tmp_path / "other-ca").ca
        wrong = Access(secured.secrets.creds("health"), other_ca)
        with pytest.raises(ClusterUnreachableError):
            await Bus.connect(secured.server.url, "wrong-ca", reconnect=False, access=wrong)
        log = (tmp_path / "nats-data" / "nats-server.log").read_text()
        assert "TLS" in log
    finally:
        secured.server.stop()


async def test_issue7_a_denied_publish_is_counted_and_logged_by_the_bus(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    """A service that publishes outside its permissions says so: a warning naming the
    subject, and the refusal remembered for its requests."""
    sync = await Bus.connect(secured.server.url, "sync", access=secured.access("sync"))
    try:
        await sync.nc.publish(subjects.heartbeat("rs-1"), b"{}")
        await sync.nc.flush()
        await _wait(lambda: bool(sync.denied), "the refusal")
        assert subjects.heartbeat("rs-1") in sync.denied
        await asyncio.sleep(0)
        assert any("NATS refused sync" in r.getMessage() for r in caplog.records)
    finally:
        await sync.close()
