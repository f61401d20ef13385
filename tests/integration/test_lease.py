"""The leader lease on a real nats-server (groundwork for R12): one leader at a time, a
standby takes over after the TTL, a cut-off leader stops acting before that."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from services.sim import BlackHoleRelay
from shared.bus import Bus, NatsServer
from shared.errors import WriteConflictError
from shared.lease import Lease, Term, lead_while_elected
from tests.helpers import eventually

TTL = 1.5


async def _replicas(url: str, *names: str) -> list[tuple[Bus, Lease]]:
    out = []
    for name in names:
        bus = await Bus.connect(url, name)
        out.append((bus, Lease(bus, "placement", name, ttl=TTL)))
    return out


async def test_r12_exactly_one_replica_leads_and_a_standby_takes_over_after_the_ttl(
    nats_server: NatsServer,
) -> None:
    """R12: of two replicas one leads; when it stops renewing, the other leads within
    about one TTL, under a higher fencing epoch."""
    (bus_a, a), (bus_b, b) = await _replicas(nats_server.url, "a", "b")
    try:
        assert await a.step()
        assert not await b.step()
        first_epoch = a.state.epoch
        for _ in range(3):  # renewals keep it
            await asyncio.sleep(TTL / 3)
            assert await a.step()
            assert not await b.step()
        stopped = time.monotonic()  # a stops renewing (as if killed)

        async def b_leads() -> bool:
            return await b.step()

        await eventually(b_leads, bool, TTL * 4, "b takes over")
        assert time.monotonic() - stopped >= TTL - 0.5, "took over before the lease expired"
        assert b.state.epoch > first_epoch
        assert not a.leading
    finally:
        await bus_a.close()
        await bus_b.close()


async def test_r12_a_leader_cut_off_from_nats_stops_acting_before_another_takes_over(
    nats_server: NatsServer,
) -> None:
    """R12: the leader's own verdict lapses (ttl - margin) before the key expires (ttl)."""
    relay = BlackHoleRelay("127.0.0.1", nats_server.config.port, "leader-link")
    await relay.start()
    bus_a = await Bus.connect(relay.url, "a")
    a = Lease(bus_a, "placement", "a", ttl=TTL)
    ((bus_b, b),) = await _replicas(nats_server.url, "b")
    try:
        assert await a.step()
        relay.cut()
        lapsed_at = took_over_at = 0.0
        deadline = time.monotonic() + TTL * 5
        while not took_over_at and time.monotonic() < deadline:
            step = asyncio.create_task(a.step())  # blocks on the dead link: do not wait
            if not a.leading and not lapsed_at:
                lapsed_at = time.monotonic()
            if await b.step():
                took_over_at = time.monotonic()
            step.cancel()
            await asyncio.sleep(0.05)
        assert took_over_at, "the standby never took over"
        assert lapsed_at, "the cut-off leader kept believing it leads"
        assert lapsed_at < took_over_at
    finally:
        relay.restore()
        await relay.close()
        await bus_a.close()
        await bus_b.close()


async def test_r12_a_graceful_stop_hands_over_without_waiting_for_the_ttl(
    nats_server: NatsServer,
) -> None:
    """A replica stopped cleanly releases its lease; the standby leads at its next try."""
    (bus_a, a), (bus_b, b) = await _replicas(nats_server.url, "a", "b")
    try:
        stop = asyncio.Event()
        keeper = asyncio.create_task(a.keep(stop))
        await eventually(_leading(a), bool, 5, "a leads")
        stop.set()
        await keeper
        released = time.monotonic()
        assert await b.step()
        assert time.monotonic() - released < TTL
    finally:
        await bus_a.close()
        await bus_b.close()


def _leading(lease: Lease) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return lease.leading

    return probe


async def test_r12_a_term_that_stumbles_on_a_bus_error_starts_again_and_a_bug_ends_the_replica(
    nats_server: NatsServer,
) -> None:
    """R12: a leader's work that fails on a transient bus error (a lost compare-and-set)
    is begun again from scratch under the same epoch; one that fails on a bug ends
    ``lead_while_elected`` with that error, for the supervisor to restart the process."""
    ((bus, lease),) = await _replicas(nats_server.url, "a")
    terms: list[int] = []

    async def stumbles_once(term: Term) -> None:
        terms.append(term.epoch)
        if len(terms) == 1:
            raise WriteConflictError("state", "a deposed leader wrote last")
        await asyncio.Event().wait()  # leads until cancelled

    stop = asyncio.Event()
    try:
        running = asyncio.create_task(lead_while_elected(lease, stumbles_once, stop))
        await eventually(_count(terms), lambda n: n >= 2, 10, "the term begun again")
        assert terms[0] == terms[1]
        assert not running.done()
        stop.set()
        await asyncio.wait_for(running, 10)
        assert not lease.state.leading, "a stopped replica must release its lease"

        async def buggy(_term: Term) -> None:
            raise ValueError("a bug")

        with pytest.raises(ValueError, match="a bug"):
            await asyncio.wait_for(lead_while_elected(lease, buggy, asyncio.Event()), 10)
    finally:
        await bus.close()


def _count(items: list[int]) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return len(items)

    return probe
