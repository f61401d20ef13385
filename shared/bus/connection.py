"""The bus: a NATS connection with JetStream, typed publish/subscribe/request, events and KV.

Only ``shared.bus`` imports ``nats``. Every inbound message is size-checked and
validated with its pydantic model; a bad one is counted, logged once per
interval and dropped, never raised into a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import time
import zlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from http import HTTPStatus
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api
from pydantic import BaseModel, ValidationError

from shared import subjects
from shared.bounded import raise_if_cancelled
from shared.bus.credentials import Access
from shared.bus.micro import StatusSource, add_status_service
from shared.bus.reader import (
    cluster_urls,
    connect_nats,
    lease_holders,
    snapshot_in,
    unpack_snapshot,
)
from shared.errors import (
    BlazeError,
    ConfigError,
    MalformedReplyError,
    NoRespondersError,
    NotABlazeClusterError,
    PermissionDeniedError,
    RequestTimeoutError,
    WriteConflictError,
)
from shared.logs import OncePerInterval
from shared.messages import MAX_MESSAGE_BYTES, AnyEvent, Message, encode, parse_event
from shared.metrics import EVENTS_PUBLISHED, PERMISSION_DENIED, READINESS, REJECTED

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=Message)

MAX_CONCURRENT_REQUESTS = 32
"""Requests of one subscription answered at once when it serves them concurrently."""

CLOSE_STEP_S = 2.0
"""Longest wait for each step of closing a connection."""

CONSUMER_CHECK_S = 5
"""Quiet seconds after which the event consumer checks the stream for events it missed."""

REPLAY_MSG_TIMEOUT_S = 5.0
"""A replay waits this long for the next stored event at most: they are all there, so a
longer wait means the stream's node is gone (the caller's term begins again)."""

TRANSIENT_NATS_ERRORS = (
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.FlushTimeoutError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)
"""nats-py errors that a moment later, or on another node, may not happen again."""

DENIED = re.compile(r'permissions violation for (publish|subscription) to "([^"]+)"', re.IGNORECASE)
"""How nats-py reports a publish or subscription NATS refused this identity (issue 7)."""

NONCE_HEADER = "Blaze-Nonce"
"""A request's random nonce, which its answer must echo (issue 7): an answer forged into
the requester's inbox without having seen the request is refused."""

MAX_DENIED_REMEMBERED = 1000
"""Refused subjects a connection remembers (forgotten all at once past this)."""

STREAM_EXISTS = 10058
"""JetStream's error code for a stream (or bucket) that exists with another config."""

DUPLICATE_IN_PROCESS = 10158
"""JetStream's error code for a publish whose Msg-Id an earlier try is still storing."""

EVENT_DUPLICATE_WINDOW_S = 7200.0
"""Re-publishing a decision within this window after a crash is de-duplicated (R11)."""


def rejection_label(subscribed: str) -> str:
    """``blaze_rejected_messages_total``'s ``subject`` for a subscription: the subject
    subscribed to without its last token (``blaze.hb``, ``blaze.agent.rs-1``). Never the
    subject a message came on: under a wildcard (``blaze.hb.*``, ``blaze.evt.>``) its
    sender chooses that freely, and a label per forged subject would grow without bound."""
    return subscribed.rsplit(".", 1)[0]


EVENTS_LABEL = rejection_label(subjects.EVENTS_ALL)
"""``blaze.evt``: every event that does not validate, whatever its subject."""


class Bus:
    """One service's connection to the cluster."""

    def __init__(
        self,
        nc: Any,
        name: str,
        reconnects: list[int] | None = None,
        denied: dict[str, float] | None = None,
    ) -> None:
        self.nc = nc
        self.reconnects = reconnects if reconnects is not None else [0]
        """How often the connection came back (``events`` rebuilds its consumer then)."""
        self.denied = denied if denied is not None else {}
        """Subjects NATS refused this identity (lower case, as NATS reports them) and when
        (monotonic): a request on one that gets no answer was never delivered."""
        self.js = nc.jetstream(timeout=5.0)
        self.name = name
        self._rejections = OncePerInterval(log)
        self._buckets: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._service: Any = None
        self._readiness_key = ""
        self.stream_replicas = 1
        """Replicas of the event stream and the buckets (R12): one per NATS node, up to 3."""

    # ---- connection ----

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        *,
        reconnect: bool = True,
        connect_timeout: float = 2.0,
        ping_interval: float = 1.0,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        access: Access | None = None,
    ) -> Bus:
        """Connect; with ``reconnect`` it keeps trying forever after the first success.
        ``access`` says who this process is to NATS and which CA it trusts (issue 7);
        without it, no credentials and no TLS."""
        options = access.connect_options() if access is not None else {}
        denials = OncePerInterval(log)
        denied: dict[str, float] = {}

        async def error_cb(exc: Exception) -> None:
            refused = DENIED.search(str(exc))
            if refused is None:
                log.debug("nats: %s", exc)
                return
            PERMISSION_DENIED.inc()
            denials.warning(str(exc), "NATS refused %s: %s", name, exc)
            if len(denied) >= MAX_DENIED_REMEMBERED:
                denied.clear()
            if refused.group(1).lower() == "publish":
                denied[refused.group(2)] = time.monotonic()

        async def disconnected_cb() -> None:
            log.info("disconnected from %s", url)

        reconnects = [0]

        async def reconnected_cb() -> None:
            reconnects[0] += 1
            log.info("reconnected to %s", url)
            if on_reconnect is not None:
                await on_reconnect()

        nc = await connect_nats(
            url,
            name=name,
            error_cb=error_cb,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
            allow_reconnect=reconnect,
            connect_timeout=connect_timeout,
            ping_interval=ping_interval,
            max_outstanding_pings=2,
            **options,
        )
        if reconnect:
            nc.options["max_reconnect_attempts"] = -1  # once connected, never give up
        bus = cls(nc, name, reconnects, denied)
        bus.stream_replicas = stream_replicas(url)
        return bus

    async def announce(
        self,
        name: str,
        description: str,
        *,
        instance: str | None = None,
        status: StatusSource | None = None,
        **metadata: str,
    ) -> None:
        """Register as the NATS micro service ``name`` (``blaze-<kind>``), so ``nats micro
        ls|info|stats`` describe it, with a ``status`` endpoint answering ``status()``
        for ``instance`` (a replica or server; default: the connection's name) (R13).

        From now on the process counts as ready (``/readyz``) while connected."""
        kind = name.removeprefix("blaze-")
        self._service = await add_status_service(
            self.nc,
            name=name,
            description=description,
            kind=kind,
            instance=instance or self.name,
            status=status or dict,
            metadata=metadata,
        )
        self._readiness_key = f"{name}:{self._service.id}"
        READINESS.add(self._readiness_key, lambda: bool(self.nc.is_connected))

    async def close(self) -> None:
        """Drain and close; safe to call twice."""
        for task in self._tasks:
            task.cancel()
        READINESS.remove(self._readiness_key)
        if self.nc.is_closed:
            return
        # Each step is bounded: on a connection that was black-holed a moment ago,
        # nats-py can wait on its socket for a long time.
        if self._service is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._service.stop(), timeout=CLOSE_STEP_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.drain(), timeout=CLOSE_STEP_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.close(), timeout=CLOSE_STEP_S)

    @staticmethod
    async def unsubscribe_all(subscriptions: list[Any]) -> None:
        """Drop subscriptions, each bounded: a disconnected client may not answer."""
        for sub in subscriptions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sub.unsubscribe(), timeout=CLOSE_STEP_S)

    # ---- JetStream set-up ---------------------------------------------------------------------

    async def ensure_streams(self) -> None:
        """Create the event stream and the buckets if missing (idempotent), each with
        ``stream_replicas`` replicas. A fresh NATS cluster may not have elected its
        JetStream meta leader yet: retried with back-off until it answers."""
        config = api.StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[subjects.EVENTS_ALL],
            storage=api.StorageType.FILE,
            duplicate_window=EVENT_DUPLICATE_WINDOW_S,
            max_msg_size=MAX_MESSAGE_BYTES,
            num_replicas=self.stream_replicas,
        )
        await _until_jetstream_answers(lambda: self._add_or_update(config))
        await _until_jetstream_answers(self._ensure_buckets)

    async def _add_or_update(self, config: api.StreamConfig) -> None:
        """Create the stream, or update it, never to fewer replicas than it has: one
        service given a single URL must not shrink a cluster's R3 stream to R1."""
        try:
            await self.js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != STREAM_EXISTS:
                raise
            current = await self.js.stream_info(config.name)
            config.num_replicas = max(config.num_replicas or 1, current.config.num_replicas or 1)
            await self.js.update_stream(config)

    async def _ensure_buckets(self) -> None:
        await self._ensure_bucket(
            api.KeyValueConfig(
                bucket=subjects.PLACEMENT_BUCKET, history=1, direct=True, max_value_size=8 << 20
            )
        )
        await self._ensure_bucket(
            api.KeyValueConfig(bucket=subjects.SYNC_BUCKET, history=1, max_value_size=64 << 10)
        )
        await self.ensure_lease_bucket()

    async def ensure_lease_bucket(self) -> None:
        """The leader-lease bucket: per-message TTLs, direct gets (reads during a
        stream-leader change)."""
        await self._ensure_bucket(
            api.KeyValueConfig(
                bucket=subjects.LEASE_BUCKET, history=1, direct=True, limit_marker_ttl=1.0
            )
        )

    async def _ensure_bucket(self, config: api.KeyValueConfig) -> None:
        config.replicas = self.stream_replicas
        try:
            await self.js.create_key_value(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != STREAM_EXISTS:
                raise
            # It exists with another configuration (another replica count): keep it.
            log.info("bucket %s kept as it is: %s", config.bucket, exc.description)

    # ---- core NATS ----------------------------------------------------------------------------

    async def publish(self, subject: str, message: Message) -> None:
        """Fire and forget on a core subject."""
        await self.nc.publish(subject, encode(message))

    async def request(self, subject: str, message: Message, reply: type[R], timeout: float) -> R:
        """Request/reply with a typed answer; NoRespondersError, RequestTimeoutError, or
        MalformedReplyError for an answer that does not validate (counted and logged as a
        rejected message under the request's subject: anyone may answer a request)."""
        data, _ = await self.request_bytes(subject, message, timeout)
        try:
            return reply.model_validate_json(data)
        except ValidationError as exc:
            detail = str(exc.errors()[0]["msg"])
            self._reject(rejection_label(subject), subject, "invalid", f"answer: {detail}")
            raise MalformedReplyError(subject, detail) from exc

    async def request_bytes(
        self, subject: str, message: Message, timeout: float
    ) -> tuple[bytes, dict[str, str]]:
        """Request/reply whose answer is raw bytes with headers (footage chunks); an
        answer that does not echo the request's nonce is refused as forged."""
        nonce = secrets.token_hex(16)
        try:
            msg = await self.nc.request(
                subject, encode(message), timeout=timeout, headers={NONCE_HEADER: nonce}
            )
        except nats.errors.NoRespondersError as exc:
            raise NoRespondersError(subject) from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            if subject.lower() in self.denied:
                raise PermissionDeniedError(subject) from exc
            raise RequestTimeoutError(subject, timeout) from exc
        headers = dict(msg.headers or {})
        if headers.pop(NONCE_HEADER, None) != nonce:
            self._reject(rejection_label(subject), subject, "forged", "answer without the nonce")
            raise MalformedReplyError(subject, "the answer does not echo the request's nonce")
        return bytes(msg.data), headers

    async def serve_bytes(
        self,
        subject: str,
        model: type[M],
        handler: Callable[[M], Awaitable[tuple[bytes, dict[str, str]]]],
        *,
        concurrent: bool = False,
    ) -> Any:
        """Answer requests with raw bytes and headers; a malformed request gets an
        empty body with an ``error`` header."""

        label = rejection_label(subject)

        async def on_request(msg: Msg) -> None:
            parsed = self._validate(label, msg.subject, msg.data, model.model_validate_json)
            if parsed is None:
                body, headers = b"", {"error": "malformed request: see blaze's event catalog"}
            else:
                try:
                    body, headers = await handler(parsed)
                except Exception as exc:  # noqa: BLE001 (answered, never silent)
                    self._handler_failed(label, msg.subject, exc)
                    body, headers = b"", {"error": f"internal error: {type(exc).__name__}"}
            if msg.reply:
                await self.nc.publish(msg.reply, body, headers={**headers, **_echo(msg)})

        callback = self._in_task(on_request) if concurrent else on_request
        return await self.nc.subscribe(subject, cb=callback)

    async def subscribe(
        self,
        subject: str,
        model: type[M],
        handler: Callable[[str, M], Awaitable[None]],
        queue: str = "",
        *,
        parse: Callable[[bytes], M] | None = None,
    ) -> Any:
        """Deliver validated messages to ``handler(subject, message)``; reject the rest.
        ``parse`` replaces ``model.model_validate_json``: as strict, raising its
        ``ValidationError`` alike (health's parser of repeated heartbeats)."""

        label = rejection_label(subject)
        validate = parse or model.model_validate_json

        async def on_message(msg: Msg) -> None:
            parsed = self._validate(label, msg.subject, msg.data, validate)
            if parsed is None:
                return
            try:
                await handler(msg.subject, parsed)
            except Exception as exc:  # noqa: BLE001 (nats-py would drop it at debug level)
                self._handler_failed(label, msg.subject, exc)

        return await self.nc.subscribe(subject, queue=queue, cb=on_message)

    async def serve(
        self,
        subject: str,
        model: type[M],
        handler: Callable[[M], Awaitable[Message]],
        error_reply: Callable[[str], Message],
        queue: str = "",
        *,
        concurrent: bool = False,
    ) -> Any:
        """Answer requests; a malformed request gets ``error_reply(reason)`` back.

        nats-py runs one subscription's callbacks one at a time; with ``concurrent``
        each request is answered in its own task instead (footage transfers)."""

        label = rejection_label(subject)

        async def on_request(msg: Msg) -> None:
            parsed = self._validate(label, msg.subject, msg.data, model.model_validate_json)
            if parsed is None:
                answer = error_reply("malformed request: see blaze's event catalog")
            else:
                answer = await self._answer(label, msg.subject, handler, parsed, error_reply)
            if msg.reply:
                await self.nc.publish(msg.reply, encode(answer), headers=_echo(msg) or None)

        callback = self._in_task(on_request) if concurrent else on_request
        return await self.nc.subscribe(subject, queue=queue, cb=callback)

    async def _answer(
        self,
        label: str,
        subject: str,
        handler: Callable[[M], Awaitable[Message]],
        request: M,
        error_reply: Callable[[str], Message],
    ) -> Message:
        """The handler's answer; a handler that fails answers with the error, never crashes."""
        try:
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 (a bug or I/O error must not silence a responder)
            self._handler_failed(label, subject, exc)
            return error_reply(f"internal error: {type(exc).__name__}: {exc}"[:400])

    def _handler_failed(self, label: str, subject: str, exc: Exception) -> None:
        """A valid message its handler failed on: counted, logged once per interval."""
        REJECTED.labels(subject=label, reason="handler_failed").inc()
        self._rejections.warning(
            f"{subject}:handler", "handling a message on %s failed: %r", subject, exc
        )

    def _in_task(
        self, callback: Callable[[Msg], Coroutine[Any, Any, None]]
    ) -> Callable[[Msg], Awaitable[None]]:
        """Run each message's callback as its own task, kept until it ends."""

        room = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)

        async def spawn(msg: Msg) -> None:
            await room.acquire()  # back-pressure: nats-py waits, then counts a slow consumer
            task = asyncio.create_task(callback(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _: room.release())

        return spawn

    def _validate(
        self, label: str, subject: str, data: bytes, parse: Callable[[bytes], M]
    ) -> M | None:
        if len(data) > MAX_MESSAGE_BYTES:
            self._reject(label, subject, "oversized", f"{len(data)} bytes")
            return None
        try:
            return parse(data)
        except ValidationError as exc:
            self._reject(label, subject, "invalid", str(exc.errors()[0]["msg"]))
            return None

    def _reject(self, label: str, subject: str, reason: str, detail: str) -> None:
        REJECTED.labels(subject=label, reason=reason).inc()
        self._rejections.warning(
            f"{subject}:{reason}", "rejected a message on %s: %s (%s)", subject, reason, detail
        )

    # ---- the durable event log (R11) --------------------------------------------------------

    async def publish_event(self, subject: str, event: Message, msg_id: str) -> bool:
        """Append an event; a repeat of ``msg_id`` is de-duplicated. Returns False for such a
        repeat (the stream already held it), True when this call appended it."""
        delay = 0.05
        while True:
            try:
                ack = await self.js.publish(subject, encode(event), headers={"Nats-Msg-Id": msg_id})
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError) as exc:
                # No stream leader, or a lost ack: the Msg-Id makes the retry safe.
                log.warning("event publish on %s failed (%s); retrying", subject, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except nats.js.errors.APIError as exc:
                if exc.err_code != DUPLICATE_IN_PROCESS:
                    raise
                # An earlier try of this very message is still being stored (a new
                # stream leader): ask again, and get its ack as a duplicate.
                log.info("event %s still being stored; asking again", msg_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if not ack.duplicate:
                EVENTS_PUBLISHED.labels(type=getattr(event, "type", "unknown")).inc()
            return not ack.duplicate

    async def last_event_seq(self) -> int:
        """Sequence of the newest event in the log (0 when empty)."""
        try:
            info = await self.js.stream_info(subjects.EVENTS_STREAM)
        except nats.js.errors.NotFoundError as exc:
            raise NotABlazeClusterError(f"stream {subjects.EVENTS_STREAM}") from exc
        last: int = info.state.last_seq
        return last

    async def events(self, after: int = 0) -> AsyncGenerator[tuple[int, AnyEvent | None]]:
        """Every event after stream sequence ``after``, in order, forever.

        Yields ``(seq, event)``; ``event`` is None for a message that does not
        validate (counted and logged), so the caller can still advance past it.
        nats-py's ordered consumer can stop silently across a reconnect or a server
        restart, and it lives on one node of a cluster, which may die while our own
        connection stays up. So it is rebuilt from the last sequence seen after a
        reconnect (at the next quiet second), and whenever it has been quiet for
        ``CONSUMER_CHECK_S`` while the stream holds newer events (level-triggered).
        """
        last = after
        while True:
            sub = await self._ordered_consumer(last)
            seen = self.reconnects[0]
            quiet = 0
            try:
                while True:
                    try:
                        msg = await sub.next_msg(timeout=1.0)
                    except nats.errors.TimeoutError:
                        raise_if_cancelled()  # a cancel lost in next_msg's wait_for
                        quiet += 1
                        if self.reconnects[0] != seen or await self._stalled(quiet, last):
                            log.info("rebuilding the event consumer (at %d)", last)
                            break
                        continue
                    quiet = 0
                    seq: int = msg.metadata.sequence.stream
                    if seq <= last:
                        continue  # a rebuilt consumer may start where we were
                    last = seq
                    yield seq, self._parse_event(msg.subject, msg.data)
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _stalled(self, quiet_s: int, last: int) -> bool:
        """True when the consumer has been quiet a while though newer events exist."""
        if quiet_s % CONSUMER_CHECK_S:
            return False
        try:
            return await self.last_event_seq() > last
        except (TimeoutError, nats.errors.Error):
            return False  # no stream leader right now: look again later

    async def _ordered_consumer(self, after: int) -> Any:
        """An ordered consumer from ``after + 1``; retried while JetStream is not back."""
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
        )
        if after == 0:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        delay = 0.1
        while True:
            try:
                return await self.js.subscribe(
                    subjects.EVENTS_ALL,
                    stream=subjects.EVENTS_STREAM,
                    ordered_consumer=True,
                    config=config,
                    idle_heartbeat=1.0,
                )
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("event consumer not available yet (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def replay(self) -> list[tuple[int, AnyEvent | None]]:
        """Every event in the log now, oldest first."""
        last = await self.last_event_seq()
        if last == 0:
            return []
        found: list[tuple[int, AnyEvent | None]] = []
        async with contextlib.aclosing(self.events()) as stream:
            async for seq, event in stream:
                found.append((seq, event))
                if seq >= last:
                    break
        return found

    async def replay_about(self, *areas: str) -> list[tuple[int, AnyEvent | None]]:
        """The events of some areas only (``server``, ``alert`` …, as in
        ``subjects.events_about``) in the log now, oldest first. The stream filters them,
        so a takeover that needs the few hundred events about servers does not read and
        parse the tens of thousands of camera moves around them (the soak's seed 10: a
        health leader's whole-log replay took 20 s after 30 minutes of faults)."""
        found: list[tuple[int, AnyEvent | None]] = []
        for area in areas:
            found += await self._replay_filtered(subjects.events_about(area))
        return sorted(found, key=lambda item: item[0])

    async def _replay_filtered(self, subject: str) -> list[tuple[int, AnyEvent | None]]:
        """Every event on ``subject`` (a wildcard) now: an ordered consumer read until its
        last message says nothing more is pending."""
        sub = await self.js.subscribe(
            subject,
            stream=subjects.EVENTS_STREAM,
            ordered_consumer=True,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
            idle_heartbeat=1.0,
        )
        found: list[tuple[int, AnyEvent | None]] = []
        try:
            info = await sub.consumer_info()
            if info.num_pending + (info.delivered.consumer_seq or 0) == 0:
                return found  # nothing on that subject
            while True:
                msg = await sub.next_msg(timeout=REPLAY_MSG_TIMEOUT_S)
                found.append(
                    (msg.metadata.sequence.stream, self._parse_event(msg.subject, msg.data))
                )
                if msg.metadata.num_pending == 0:
                    return found
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _parse_event(self, subject: str, data: bytes) -> AnyEvent | None:
        try:
            return parse_event(data)
        except ValidationError as exc:
            self._reject(EVENTS_LABEL, subject, "invalid", str(exc.errors()[0]["msg"]))
            return None

    # ---- placement state (KV, compare-and-set) ------------------------------------------------

    async def _bucket(self, bucket: str = subjects.PLACEMENT_BUCKET) -> Any:
        if bucket not in self._buckets:
            try:
                self._buckets[bucket] = await self.js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError as exc:
                raise NotABlazeClusterError(f"bucket {bucket}") from exc
        return self._buckets[bucket]

    async def read_state(self, *, latest: bool = False) -> tuple[bytes, int] | None:
        """The placement snapshot (JSON, decompressed) and its revision, or None if never
        written.

        By default a direct get, which any replica answers (during a leader change
        too) but which may lag. With ``latest`` the stream leader answers: what a new
        leader must build on, since its next compare-and-set is against the newest."""
        if latest:
            found = await self._read_latest(subjects.PLACEMENT_BUCKET, subjects.PLACEMENT_STATE_KEY)
            return None if found is None else (unpack_snapshot(found[0]), found[1])
        return await snapshot_in(await self._bucket())

    async def _read_latest(self, bucket: str, key: str) -> tuple[bytes, int] | None:
        entry = await self.last_entry(bucket, key)
        if entry is None:
            return None
        data, revision, headers = entry
        if headers.get("KV-Operation") in ("DEL", "PURGE") or not data:
            return None
        return data, revision

    async def last_entry(self, bucket: str, key: str) -> tuple[bytes, int, dict[str, str]] | None:
        """The newest message stored under a KV key, as the stream leader has it (not a
        possibly lagging replica): (value, revision, headers), markers and deletes included."""
        try:
            msg = await self.js.get_last_msg(
                subjects.kv_stream(bucket), subjects.kv_subject(bucket, key)
            )
        except nats.js.errors.NotFoundError:
            return None
        return bytes(msg.data or b""), int(msg.seq), dict(msg.headers or {})

    async def write_state(self, value: bytes, revision: int | None) -> int:
        """Write the snapshot (JSON; stored compressed) if nobody else did since
        ``revision`` (None: must not exist)."""
        packed = await pack_snapshot(value)
        return await _compare_and_set(
            await self._bucket(), subjects.PLACEMENT_STATE_KEY, packed, revision
        )

    # ---- keyed records (sync jobs; KV, compare-and-set per key) -------------------------------

    async def read_records(self, prefix: str) -> dict[str, tuple[bytes, int]]:
        """Every record whose key starts with ``prefix``: {key: (value, revision)}."""
        kv = await self._bucket(subjects.SYNC_BUCKET)
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return {}
        found: dict[str, tuple[bytes, int]] = {}
        for key in (k for k in keys if k.startswith(prefix)):
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                entry = await kv.get(key)
                if entry.value is not None:
                    found[key] = (bytes(entry.value), int(entry.revision))
        return found

    async def write_record(self, key: str, value: bytes, revision: int | None) -> int:
        """Write a record if nobody else did since ``revision`` (None: must not exist)."""
        return await _compare_and_set(
            await self._bucket(subjects.SYNC_BUCKET), key, value, revision
        )


async def read_leases(bus: Bus) -> dict[str, str]:
    """Which replica holds each service's leader lease now: {service: replica}."""
    return await lease_holders(bus.js)


SNAPSHOT_ZLIB_LEVEL = 1
"""The placement snapshot is one KV value, about 80 bytes of JSON per camera: 100,000
cameras are 8 MB, the bucket's largest value. zlib at level 1 makes it 10-20 times
smaller (the JSON repeats itself), in about 3 ms per MB; higher levels gain a few per
cent for several times the CPU. One value keeps the compare-and-set of the whole state
with its log cursor atomic, which shards in several keys would lose."""
PACK_IN_THREAD_BYTES = 256 << 10
"""Larger snapshots are compressed in a thread (zlib releases the GIL): the event loop
keeps handling heartbeats meanwhile."""


async def pack_snapshot(value: bytes) -> bytes:
    """A placement snapshot as stored: zlib (RFC 1950)."""
    if len(value) < PACK_IN_THREAD_BYTES:
        return zlib.compress(value, SNAPSHOT_ZLIB_LEVEL)
    return await asyncio.to_thread(zlib.compress, value, SNAPSHOT_ZLIB_LEVEL)


def is_transient(error: BaseException) -> bool:
    """An error that trying again from a fresh read can cure: the bus unreachable for a
    moment, JetStream without a leader, a compare-and-set lost to a deposed writer.
    An exception group is transient when everything in it is."""
    if isinstance(error, BaseExceptionGroup):
        return all(is_transient(e) for e in error.exceptions)
    if isinstance(error, (WriteConflictError, TimeoutError, *TRANSIENT_NATS_ERRORS)):
        return True
    if isinstance(error, nats.js.errors.APIError):
        return bool(error.code == HTTPStatus.SERVICE_UNAVAILABLE)
    return isinstance(error, BlazeError) and error.retryable


def _echo(request: Msg) -> dict[str, str]:
    """The headers an answer carries back: the request's nonce, if it had one."""
    nonce = (request.headers or {}).get(NONCE_HEADER)
    return {NONCE_HEADER: nonce} if nonce else {}


def stream_replicas(url: str) -> int:
    """Replicas for the stream and buckets: ``BLAZE_STREAM_REPLICAS``, else one per URL
    given (a cluster's clients are given every node), at most 3."""
    chosen = os.environ.get("BLAZE_STREAM_REPLICAS", "")
    if chosen:
        if chosen not in ("1", "3", "5"):
            raise ConfigError(f"BLAZE_STREAM_REPLICAS={chosen!r}: must be 1, 3 or 5")
        return int(chosen)
    return 3 if len(cluster_urls(url)) >= 3 else 1


JETSTREAM_SETUP_S = 30.0
"""How long set-up waits for a (fresh, electing) JetStream to answer before giving up."""


async def _until_jetstream_answers(step: Callable[[], Awaitable[None]]) -> None:
    delay, deadline = 0.1, asyncio.get_running_loop().time() + JETSTREAM_SETUP_S
    while True:
        try:
            await step()
        except (
            TimeoutError,
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            nats.js.errors.ServiceUnavailableError,
        ) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("JetStream not ready (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        else:
            return


async def _compare_and_set(kv: Any, key: str, value: bytes, revision: int | None) -> int:
    """Create (``revision`` None) or update at ``revision``; WriteConflictError if stale."""
    try:
        if revision is None:
            return int(await kv.create(key, value))
        return int(await kv.update(key, value, last=revision))
    except nats.js.errors.KeyWrongLastSequenceError as exc:
        raise WriteConflictError(key, str(exc)) from exc
