"""The floor a failover is held against (issue 8): one message relayed agent -> health ->
placement -> host by three bare nats-py subscribers on the same nats-server, timed from
the agent's publish to the host's callback.

Nothing of blaze-cluster runs in it (no validation, no JetStream, no state), so it is
what three hops over NATS cost on this machine at this moment; ``bench.failover``
measures it between its own runs, on the same server and event loop, so the ratio holds
on a noisy machine. It imports ``nats`` itself, on purpose: it is the library bare.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

HOP_TIMEOUT_S = 5.0


class BareRelay:
    """Four plain connections (agent, health, placement, host) and three forwarding hops."""

    def __init__(self, connections: list[Client], subjects: tuple[str, str, str]) -> None:
        self._connections = connections
        self._subjects = subjects
        self._arrived: asyncio.Future[float] | None = None

    @classmethod
    async def open(cls, url: str) -> BareRelay:
        """Connect the four and subscribe the three hops."""
        token = uuid.uuid4().hex[:8]
        # Not blaze subjects: this relay is deliberately outside shared/subjects.py.
        to_health, to_placement, to_host = (
            f"bench.bare.{token}.{hop}" for hop in ("health", "placement", "host")
        )
        agent, health, placement, host = [
            await nats.connect(url, name=f"bare-{who}", allow_reconnect=False)
            for who in ("agent", "health", "placement", "host")
        ]
        relay = cls([agent, health, placement, host], (to_health, to_placement, to_host))

        async def health_forwards(msg: Msg) -> None:
            await health.publish(to_placement, msg.data)

        async def placement_forwards(msg: Msg) -> None:
            await placement.publish(to_host, msg.data)

        await health.subscribe(to_health, cb=health_forwards)
        await placement.subscribe(to_placement, cb=placement_forwards)
        await host.subscribe(to_host, cb=relay._host_receives)
        for c in relay._connections:
            await c.flush()
        return relay

    async def _host_receives(self, _msg: Msg) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(time.monotonic())

    async def once(self) -> float:
        """Seconds from the agent's publish to the host's callback, for one message."""
        self._arrived = asyncio.get_running_loop().create_future()
        sent = time.monotonic()
        await self._connections[0].publish(self._subjects[0], b"storage failed")
        arrived = await asyncio.wait_for(self._arrived, HOP_TIMEOUT_S)
        return arrived - sent

    async def samples(self, n: int) -> list[float]:
        """``n`` messages relayed one after another."""
        return [await self.once() for _ in range(n)]

    async def close(self) -> None:
        for c in self._connections:
            await c.close()

    async def __aenter__(self) -> BareRelay:
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.close()
