"""A TCP relay between an agent and nats-server that can black-hole traffic.

``cut()`` silently drops every byte in both directions and holds every socket
open (no FIN, no RST), exactly like a dead switch port: the server notices only
through its ping timeout, so detection takes the real R2 path. ``restore()``
forwards again; connections that died during the cut are closed then, and the
client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from shared.bus import NatsCluster, NatsServer

log = logging.getLogger(__name__)


class BlackHoleRelay:
    """Listens on loopback and forwards to ``upstream``; can be cut and restored."""

    def __init__(self, upstream_host: str, upstream_port: int, name: str = "") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self.port = 0
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def is_cut(self) -> bool:
        """True while traffic is black-holed."""
        return not self._open.is_set()

    @property
    def url(self) -> str:
        """The NATS URL clients use to go through this relay."""
        return f"nats://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:port (0: any free port); return the port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def cut(self) -> None:
        """Black-hole all traffic from now on."""
        log.info("relay %s: cut", self.name)
        self._open.clear()

    def restore(self) -> None:
        """Forward traffic again."""
        log.info("relay %s: restored", self.name)
        self._open.set()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self._open.set()
        if self._server is not None:
            self._server.close()
        writers = list(self._writers)
        for w in writers:
            w.close()
        for w in writers:
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, up_w}
        try:
            await asyncio.gather(self._pump(client_r, up_w), self._pump(up_r, client_w))
        finally:
            self._writers -= {client_w, up_w}
            for w in (client_w, up_w):
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self._open.is_set():
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        # The other side ended. During a cut nothing may reach the peer, not even a FIN.
        await self._open.wait()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


class RelayGroup:
    """One party's paths to every node of the NATS cluster, cut and restored together:
    a black-holed server must not escape by reconnecting to another node."""

    def __init__(self, upstream_ports: list[int], name: str = "") -> None:
        self.relays = [BlackHoleRelay("127.0.0.1", port, name) for port in upstream_ports]
        self.name = name

    @property
    def url(self) -> str:
        """Every relay's URL, comma-separated, as ``Bus.connect`` takes them."""
        return ",".join(r.url for r in self.relays)

    @property
    def is_cut(self) -> bool:
        """True while traffic is black-holed."""
        return all(r.is_cut for r in self.relays)

    async def start(self) -> None:
        """Listen on a free loopback port per node."""
        for relay in self.relays:
            await relay.start()

    def cut(self) -> None:
        """Black-hole all traffic to every node from now on."""
        for relay in self.relays:
            relay.cut()

    def restore(self) -> None:
        """Forward traffic again."""
        for relay in self.relays:
            relay.restore()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        for relay in self.relays:
            await relay.close()


def client_ports(nats: NatsServer | NatsCluster) -> list[int]:
    """The client port of every NATS node (a relay group forwards to each)."""
    nodes = nats.nodes if isinstance(nats, NatsCluster) else [nats]
    return [node.config.port for node in nodes]
