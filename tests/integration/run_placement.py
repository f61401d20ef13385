"""Run the placement service as a real process for kill tests: ``CONFIG_JSON NATS_URL``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.placement.app import PlacementService
from shared.config import ClusterConfig
from shared.lifecycle import run_until_signalled
from shared.logs import setup_logging

if __name__ == "__main__":
    setup_logging("placement-under-test")
    config = ClusterConfig.model_validate_json(Path(sys.argv[1]).read_text())
    asyncio.run(run_until_signalled(PlacementService(config, sys.argv[2])))
