"""``python -m services.placement``: the placement service."""

from __future__ import annotations

import argparse
import sys

from services.placement.app import PlacementService
from shared.bus.credentials import access_of
from shared.config import ClusterConfig
from shared.lifecycle import replicated_arguments, service_main


def build(args: argparse.Namespace, config: ClusterConfig) -> PlacementService:
    """The placement service for this cluster."""
    return PlacementService(config, args.nats, args.replica, access_of(args))


def main() -> int:
    """Run the placement service."""
    return service_main(
        "placement", replicated_arguments("blaze placement (who records what)"), build
    )


if __name__ == "__main__":
    sys.exit(main())
