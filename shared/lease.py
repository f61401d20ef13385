"""Leader lease on a JetStream KV key, and the loop that runs a replica's work only while
it holds it (R12).

One key per service in the ``blaze_leases`` bucket. A replica acquires it with
``create`` (only if absent) carrying a per-message TTL, and renews it about three
times per TTL with ``update(last=revision)``: compare-and-set, so two replicas can
never both renew. The revision at acquisition is the replica's *fencing epoch*.

A replica counts itself leader only while its last successful renewal is younger
than ``ttl - margin`` on its own monotonic clock, so a replica cut off from NATS
stops acting before the key can expire and another replica take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar

import nats.errors
import nats.js.errors
from nats.js import api

from shared import subjects
from shared.bus import Access, Bus, is_transient
from shared.config import ClusterConfig
from shared.logs import bind_log_context
from shared.metrics import LEADER_TERMS, LEADING

log = logging.getLogger(__name__)

LEASE_BUCKET = subjects.LEASE_BUCKET


@dataclass
class LeaseState:
    """What one replica knows about its lease."""

    leading: bool = False
    epoch: int = 0
    renewed_at: float = 0.0


class Lease:
    """One replica's view of one service's leader lease."""

    def __init__(self, bus: Bus, service: str, holder: str, ttl: float = 3.0) -> None:
        if ttl < 1.0:
            raise ValueError(f"lease ttl {ttl} s is too short for NATS TTLs (1 s minimum)")
        self.bus = bus
        self.key = service
        self.holder = holder
        self.ttl = ttl
        self.margin = ttl / 3
        self.state = LeaseState()
        self.changed = asyncio.Event()
        self._revision: int | None = None
        self._kv: Any = None
        self._value = f"{holder} {uuid.uuid4().hex[:12]}".encode()
        """The key's value: the holder's name (shown) and a token unique to this process."""
        self._key_ttl = math.ceil(ttl)
        """The key's TTL: NATS counts whole seconds (nats-py truncates), so round up; a
        key that lives longer than ``ttl`` keeps the leader's verdict the shorter one."""
        self._call_timeout = self.margin / 2
        """One try may take this long: a slow renewal must not outlast the verdict."""

    @property
    def leading(self) -> bool:
        """True only while a renewal succeeded within ``ttl - margin`` (local clock)."""
        fresh = time.monotonic() - self.state.renewed_at < self.ttl - self.margin
        return self.state.leading and fresh

    async def _bucket(self) -> Any:
        if self._kv is None:
            try:
                self._kv = await self.bus.js.key_value(LEASE_BUCKET)
            except nats.js.errors.BucketNotFoundError:
                await self.bus.ensure_lease_bucket()
                self._kv = await self.bus.js.key_value(LEASE_BUCKET)
        return self._kv

    async def step(self) -> bool:
        """Renew if leading, else try to acquire; return whether this replica leads."""
        started = time.monotonic()
        try:
            kv = await self._bucket()
            if self.state.leading and self._revision is not None:
                self._revision = await self._renew(self._revision)
            else:
                revision = await asyncio.wait_for(self._create(kv), self._call_timeout)
                self._revision = self.state.epoch = revision
            self._set(leading=True, renewed_at=started)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            if not await self._adopt_own_write():
                self._set(leading=False)  # someone else holds it
        except (TimeoutError, nats.errors.Error) as exc:
            log.debug("lease %s: %s", self.key, exc)  # unreachable: keep the old verdict,
            # which expires by itself through ``leading``'s freshness check
        return self.leading

    async def _create(self, kv: Any) -> int:
        """Take the key if nobody holds it. An expired key leaves a marker behind for a
        second, which nats-py's ``create`` takes for a live value: a compare-and-set on
        the marker takes the key at once instead."""
        try:
            return int(await kv.create(self.key, self._value, msg_ttl=self._key_ttl))
        except nats.js.errors.KeyWrongLastSequenceError:
            last = await self.bus.last_entry(LEASE_BUCKET, self.key)
            if last is None or not _gone(last[2]):
                raise
            return await self._renew(last[1])

    async def _renew(self, last: int) -> int:
        """Compare-and-set the key with a fresh TTL (nats-py's ``update`` takes no TTL)."""
        try:
            ack = await self.bus.js.publish(
                subjects.kv_subject(LEASE_BUCKET, self.key),
                self._value,
                timeout=self._call_timeout,
                headers={api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)},
                msg_ttl=self._key_ttl,
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code in (10071, 10164):  # wrong last sequence: someone else holds it
                raise nats.js.errors.KeyWrongLastSequenceError(description=exc.description) from exc
            raise
        revision: int = ack.seq
        return revision

    async def _adopt_own_write(self) -> bool:
        """A renewal that timed out may still have been stored, so the next one fails its
        compare-and-set against our own write. If the key (read from the stream leader)
        still carries this process's token, carry on from its revision; the last
        confirmed renewal time stays as it was, so nothing is assumed fresher than it is."""
        if not self.state.leading:
            return False
        try:
            read = self.bus.last_entry(LEASE_BUCKET, self.key)
            current = await asyncio.wait_for(read, self._call_timeout)
        except (TimeoutError, nats.errors.Error):
            return False
        if current is None or current[0] != self._value:
            return False
        self._revision = current[1]
        return True

    def _set(
        self, *, leading: bool, renewed_at: float | None = None, released: bool = False
    ) -> None:
        was = self.state.leading
        self.state.leading = leading
        if renewed_at is not None:
            self.state.renewed_at = renewed_at
        if not leading:
            self._revision = None
        if was != leading:
            if released:
                log.info("%s released the lease of %s", self.holder, self.key)
            elif not leading:
                log.warning("%s lost the lease of %s", self.holder, self.key)
            self.changed.set()

    async def keep(self, stop: asyncio.Event) -> None:
        """Acquire and renew at a fixed rate, three times per TTL, until ``stop``;
        release on the way out."""
        period = self.ttl / 3
        try:
            next_at = time.monotonic()
            while not stop.is_set():
                await self.step()
                next_at = max(next_at + period, time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=next_at - time.monotonic())
        finally:
            await self.release()

    async def release(self) -> None:
        """Give the lease up at once (a graceful stop), so a standby need not wait the TTL."""
        if not self.state.leading or self._revision is None:
            return
        kv = await self._bucket()
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await kv.delete(self.key, last=self._revision)
        self._set(leading=False, released=True)


def _gone(headers: dict[str, str]) -> bool:
    """An expiry marker or a delete: nobody holds the key."""
    return "Nats-Marker-Reason" in headers or headers.get("KV-Operation") in ("DEL", "PURGE")


@dataclass(frozen=True)
class Term:
    """One replica's time as leader: its fencing epoch, valid while the lease is fresh."""

    epoch: int
    lease: Lease

    @property
    def valid(self) -> bool:
        """True while this replica still leads under this epoch (check before every act)."""
        return self.lease.leading and self.lease.state.epoch == self.epoch


Leader = Callable[[Term], Coroutine[Any, Any, None]]
"""What a replica does while it leads; it runs until cancelled."""

TERM_RESTART_S = 0.5
MAX_RESTARTS = 10
RESTART_WINDOW_S = 60.0
"""More than ``MAX_RESTARTS`` stumbles within this window end the replica."""
"""Pause before a leader whose term stumbled on a transient bus error begins it again."""

WATCH_PERIOD_S = 0.05
"""How often a replica checks that its lease is still fresh while it leads."""


async def lead_while_elected(lease: Lease, lead: Leader, stop: asyncio.Event) -> None:
    """Keep the lease; whenever this replica leads, run ``lead(term)``; cancel it the moment
    the lease is no longer fresh (before it can expire for the others, R12).

    ``lead`` must rebuild its state from JetStream every time it starts: a replica that
    led before and lost the lease knows nothing it can trust. A transient bus error in
    ``lead`` begins the term again; any other error ends the replica (the process
    exits, its supervisor restarts it)."""
    LEADING.labels(service=lease.key, replica=lease.holder).set(0)  # a standby shows 0 too
    keeping = asyncio.Event()
    keeper = asyncio.create_task(lease.keep(keeping))
    restarts: list[float] = []
    try:
        while not stop.is_set():
            if not await _until_leading(lease, stop, keeper):
                break
            if await _serve_term(Term(lease.state.epoch, lease), lead, stop):
                _count_restart(restarts, lease.key)
    finally:
        keeping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(keeper, timeout=lease.ttl)
        LEADING.labels(service=lease.key, replica=lease.holder).set(0)


async def _until_leading(lease: Lease, stop: asyncio.Event, keeper: asyncio.Task[None]) -> bool:
    """Wait until the lease is ours (True) or we are stopped (False)."""
    while not lease.leading:
        if keeper.done():
            keeper.result()  # the keeper died: raise why
            raise RuntimeError("lease keeper ended")
        lease.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_either(lease.changed, stop), timeout=WATCH_PERIOD_S * 4)
        if stop.is_set():
            return False
    return True


def _count_restart(restarts: list[float], service: str) -> None:
    """A term that keeps stumbling is not transient after all: end the replica."""
    now = time.monotonic()
    restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
    if len(restarts) > MAX_RESTARTS:
        raise RuntimeError(
            f"the {service} term stumbled {len(restarts)} times in {RESTART_WINDOW_S:.0f} s"
        )


async def _serve_term(term: Term, lead: Leader, stop: asyncio.Event) -> bool:
    """Run one term of leadership until the lease lapses or ``stop``; True when it
    stumbled on a transient error and must begin again."""
    service, holder = term.lease.key, term.lease.holder
    LEADING.labels(service=service, replica=holder).set(1)
    LEADER_TERMS.labels(service=service).inc()
    log.info("%s leads %s under epoch %d", holder, service, term.epoch, extra={"epoch": term.epoch})
    task = asyncio.create_task(lead(term))
    task.add_done_callback(_retrieve)  # read even if this replica is cancelled meanwhile
    try:
        while not task.done() and term.valid and not stop.is_set():
            await asyncio.wait([task], timeout=WATCH_PERIOD_S)
    finally:
        if not task.done():
            task.cancel()
        await asyncio.wait([task])
        LEADING.labels(service=service, replica=holder).set(0)
    if task.cancelled():
        if not stop.is_set():
            log.warning(
                "%s stopped leading %s (epoch %d): lease lapsed", holder, service, term.epoch
            )
        return False
    error = task.exception()
    if error is not None and not term.valid:
        log.warning("%s ended its term of %s after losing the lease: %r", holder, service, error)
        return False
    if error is not None and is_transient(error):
        # JetStream without a stream leader for a moment, or a deposed leader's late
        # write: begin again from what JetStream holds (level-triggered), still leading.
        log.warning(
            "%s: the term of %s (epoch %d) stumbled (%r); starting it again",
            holder,
            service,
            term.epoch,
            error,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=TERM_RESTART_S)
        return True
    task.result()  # an error of a valid leader ends the replica (its supervisor restarts it)
    if not stop.is_set():
        raise RuntimeError(f"the {service} leader returned while still leading")
    return False


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


async def _either(event: asyncio.Event, stop: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class ReplicatedService:
    """A service that stands by and acts only while this replica leads (R12).

    Subclasses name the service (``SERVICE``, also its lease key), describe it for
    ``nats micro`` and implement ``lead(term)``, which runs for as long as the term
    lasts and must rebuild its state from JetStream each time. They may override
    ``counters()``: the key counters its ``status`` endpoint and ``$SRV.STATS`` show."""

    SERVICE: ClassVar[str]
    DESCRIPTION: ClassVar[str]

    def __init__(
        self,
        config: ClusterConfig,
        nats_url: str,
        replica: str | None = None,
        access: Access | None = None,
    ) -> None:
        self.config = config
        self.nats_url = nats_url
        self.access = access
        """Who this replica is to NATS (issue 7); None: no credentials."""
        self.replica = replica or self.SERVICE
        self.term: Term | None = None
        self.terms = 0
        """Terms this replica began as leader since it started."""
        self._bus: Bus | None = None

    @property
    def leading(self) -> bool:
        """True while this replica leads under its current term (check before acting)."""
        return self.term is not None and self.term.valid

    def status(self) -> dict[str, Any]:
        """What the ``status`` endpoint answers (R13): who, whether it leads, counters."""
        term = self.term
        leading = term is not None and term.valid
        return {
            "service": self.SERVICE,
            "replica": self.replica,
            "leading": leading,
            "epoch": term.epoch if term is not None and leading else None,
            "terms": self.terms,
            "counters": self.counters(),
        }

    def counters(self) -> dict[str, Any]:
        """This replica's key counters (numbers, or small dicts of them), for ``status``."""
        return {}

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, stand by, and lead whenever this replica holds the lease, until ``stop``."""
        bind_log_context(service=self.SERVICE, replica=self.replica)
        self._bus = bus = await Bus.connect(
            self.nats_url, f"{self.SERVICE}-{self.replica}", access=self.access
        )
        try:
            await bus.ensure_streams()
            await bus.announce(
                f"blaze-{self.SERVICE}",
                self.DESCRIPTION,
                instance=self.replica,
                status=self.status,
                replica=self.replica,
            )
            lease = Lease(bus, self.SERVICE, self.replica, self.config.timing.lease_ttl)
            await lead_while_elected(lease, self._serve, stop)
        finally:
            await bus.close()

    async def _serve(self, term: Term) -> None:
        self.term = term
        self.terms += 1
        try:
            await self.lead(term)
        finally:
            self.term = None

    async def lead(self, term: Term) -> None:
        """One term as leader; runs until cancelled."""
        raise NotImplementedError
