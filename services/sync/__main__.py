"""``python -m services.sync``: the sync service, footage back home after failback (R9)."""

from __future__ import annotations

import argparse
import sys

from services.sync.app import SyncService
from shared.bus.credentials import access_of
from shared.config import ClusterConfig
from shared.lifecycle import replicated_arguments, service_main


def build(args: argparse.Namespace, config: ClusterConfig) -> SyncService:
    """The sync service for this cluster."""
    return SyncService(config, args.nats, args.replica, access_of(args))


def main() -> int:
    """Run the sync service."""
    return service_main("sync", replicated_arguments("blaze sync (footage back home)"), build)


if __name__ == "__main__":
    sys.exit(main())
