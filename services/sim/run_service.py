"""One replicated service as its own process, for kill tests and benchmarks:
``python -m services.sim.run_service health|placement|sync CONFIG_JSON NATS_URL [REPLICA]``.

The config is the JSON form of ``ClusterConfig`` (what a test or benchmark built in
memory); deployments use ``python -m services.<name> --config FILE.toml`` instead."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.sim.local import REPLICATED
from shared.config import ClusterConfig
from shared.lifecycle import run_until_signalled
from shared.logs import setup_logging

if __name__ == "__main__":
    name, config_path, nats_url = sys.argv[1:4]
    replica = sys.argv[4] if len(sys.argv) > 4 else name
    setup_logging(f"{replica}-under-test")
    config = ClusterConfig.model_validate_json(Path(config_path).read_text())
    asyncio.run(run_until_signalled(REPLICATED[name](config, nats_url, replica)))
