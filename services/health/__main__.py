"""``python -m services.health``: the failure detector service."""

from __future__ import annotations

import argparse
import sys

from services.health.app import HealthService
from shared.bus.credentials import access_of
from shared.config import ClusterConfig
from shared.lifecycle import replicated_arguments, service_main


def build(args: argparse.Namespace, config: ClusterConfig) -> HealthService:
    """The health service for this cluster."""
    return HealthService(config, args.nats, args.replica, access_of(args))


def main() -> int:
    """Run the health service."""
    return service_main("health", replicated_arguments("blaze health (failure detection)"), build)


if __name__ == "__main__":
    sys.exit(main())
