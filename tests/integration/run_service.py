"""Run one service as a real process for kill tests: ``placement|sync CONFIG_JSON NATS_URL``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.placement.app import PlacementService
from services.sync.app import SyncService
from shared.config import ClusterConfig
from shared.lifecycle import Service, run_until_signalled
from shared.logs import setup_logging


def build(name: str, config: ClusterConfig, nats_url: str) -> Service:
    if name == "sync":
        return SyncService(config, nats_url)
    return PlacementService(config, nats_url)


if __name__ == "__main__":
    name, config_path, nats_url = sys.argv[1:4]
    setup_logging(f"{name}-under-test")
    config = ClusterConfig.model_validate_json(Path(config_path).read_text())
    asyncio.run(run_until_signalled(build(name, config, nats_url)))
