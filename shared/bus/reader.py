"""Reading the placement state without the rest of the bus: the snapshot as stored, the
leader leases, and ``StateReader``, the read-only connection ``blaze status`` uses.

``Bus`` brings pydantic, the messages and the metrics with it; at 100,000 cameras
``blaze status --json`` has half a second in all, and those imports were a fifth of it
(issue 8). This module imports nats-py and nothing heavier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from typing import Any

import nats
import nats.errors
import nats.js.errors

from shared import subjects
from shared.bus.credentials import Access
from shared.errors import ClusterUnreachableError, LoginRefusedError, NotABlazeClusterError

log = logging.getLogger(__name__)

INITIAL_CONNECT_ATTEMPTS = 2
"""Tries of the first connection before the cluster counts as unreachable."""

CLOSE_STEP_S = 2.0
"""Longest wait for each step of closing a connection."""


def unpack_snapshot(stored: bytes) -> bytes:
    """The JSON of a stored placement snapshot. One written before snapshots were
    compressed is JSON already (it starts with ``{``; a zlib stream never does)."""
    if stored[:1] in (b"{", b" ", b"\n", b"\t", b"\r"):
        return stored
    return zlib.decompress(stored)


async def lease_holders(js: Any) -> dict[str, str]:
    """Which replica holds each service's leader lease now: {service: replica}.
    Direct gets of the known keys: they answer during a stream-leader change too."""
    try:
        kv = await js.key_value(subjects.LEASE_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        return {}
    holders: dict[str, str] = {}
    for service in subjects.REPLICATED_SERVICES:
        # Not found, or no answer during an election: shown without a leader.
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            entry = await kv.get(service)
            if entry.value:  # "<replica> <token>": the name is what people need
                holders[service] = bytes(entry.value).decode(errors="replace").split(" ")[0]
    return holders


async def read_snapshot(js: Any) -> tuple[bytes, int] | None:
    """The placement snapshot (JSON, decompressed) and its revision by a direct get, which
    any replica answers (during a leader change too) but which may lag; None if never
    written."""
    try:
        kv = await js.key_value(subjects.PLACEMENT_BUCKET)
    except nats.js.errors.BucketNotFoundError as exc:
        raise NotABlazeClusterError(f"bucket {subjects.PLACEMENT_BUCKET}") from exc
    return await snapshot_in(kv)


async def snapshot_in(kv: Any) -> tuple[bytes, int] | None:
    """The placement snapshot (decompressed) and its revision in the placement bucket
    ``kv``, by a direct get; None if never written."""
    try:
        entry = await kv.get(subjects.PLACEMENT_STATE_KEY)
    except nats.js.errors.KeyNotFoundError:
        return None
    if entry.value is None:
        return None
    return unpack_snapshot(bytes(entry.value)), int(entry.revision)


def cluster_urls(url: str) -> list[str]:
    """``nats://a:4222,nats://b:4222`` as a list: the client fails over between them."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls:
        raise ClusterUnreachableError(url, "no NATS URL given")
    return urls


def close_socket(nc: Any) -> None:
    """nats-py leaves the socket of a refused login or TLS handshake open, and its
    ``close()`` waits forever in that state: close the transport itself."""
    transport = getattr(nc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()


async def connect_nats(url: str, **options: Any) -> Any:
    """A first connection to ``url`` (comma-separated nodes), tried
    ``INITIAL_CONNECT_ATTEMPTS`` times: ClusterUnreachableError if it fails, or
    LoginRefusedError if the credentials were refused (issue 7)."""
    nc = nats.NATS()
    try:
        await nc.connect(
            servers=cluster_urls(url),
            reconnect_time_wait=0.25,
            # nats-py retries a refused first connection forever unless attempts are
            # bounded; bound them for the first connection only.
            max_reconnect_attempts=INITIAL_CONNECT_ATTEMPTS,
            **options,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        close_socket(nc)
        if "authorization violation" in str(exc).lower():
            raise LoginRefusedError(url) from exc
        raise ClusterUnreachableError(url, str(exc) or type(exc).__name__) from exc
    return nc


class StateReader:
    """A connection that only reads the placement state and the leases: no reconnects,
    no subscriptions, nothing to drain."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=5.0)

    @classmethod
    async def connect(
        cls, url: str, name: str, *, access: Access | None = None, connect_timeout: float = 2.0
    ) -> StateReader:
        """Connect once (two tries); ClusterUnreachableError or LoginRefusedError if not."""

        async def error_cb(exc: Exception) -> None:  # without one, nats-py prints tracebacks
            log.debug("nats: %s", exc)

        nc = await connect_nats(
            url,
            name=name,
            error_cb=error_cb,
            allow_reconnect=False,
            connect_timeout=connect_timeout,
            **(access.connect_options() if access is not None else {}),
        )
        return cls(nc)

    async def read_state(self) -> tuple[bytes, int] | None:
        """The placement snapshot and its revision (``read_snapshot``)."""
        return await read_snapshot(self.js)

    async def read_leases(self) -> dict[str, str]:
        """Each replicated service's leader (``lease_holders``)."""
        return await lease_holders(self.js)

    async def close(self) -> None:
        """Close, bounded; safe to call twice."""
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout=CLOSE_STEP_S)
