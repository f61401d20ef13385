"""The sync service (R9): brings footage recorded elsewhere back home after a failback.

For now a shell: it joins the bus and announces itself, so deployments and
``nats micro ls`` already see it. The jobs arrive with the sync issue.
"""

from __future__ import annotations

import asyncio
import logging

from shared.bus import Bus
from shared.config import ClusterConfig

log = logging.getLogger(__name__)


class SyncService:
    """Placeholder until footage sync lands: connected, announced, idle."""

    def __init__(self, config: ClusterConfig, nats_url: str) -> None:
        self.config = config
        self.nats_url = nats_url

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop``."""
        bus = await Bus.connect(self.nats_url, "sync")
        try:
            await bus.announce("blaze-sync", "footage back home after failback (R9)")
            log.info("sync service up (footage sync not implemented yet)")
            await stop.wait()
        finally:
            await bus.close()
