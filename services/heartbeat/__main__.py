"""``python -m services.heartbeat --server ID``: the agent of one recording server."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from services.heartbeat.app import Agent, AgentSettings
from shared.bus.credentials import access_of
from shared.config import ClusterConfig
from shared.errors import ConfigError
from shared.lifecycle import service_arguments, service_main


def build(args: argparse.Namespace, config: ClusterConfig) -> Agent:
    """The agent for ``--server``, configured from the cluster config."""
    try:
        server = config.server(args.server)
    except KeyError:
        raise ConfigError(f"server {args.server!r} is not in the config") from None
    data: Path = args.data
    recording_dir = (
        Path(server.recording_dir)
        if server.recording_dir
        else data / "servers" / server.id / "recordings"
    )
    return Agent(
        AgentSettings(
            server_id=server.id,
            capacity=server.capacity,
            recording_dir=recording_dir,
            state_dir=data / "servers" / server.id / "state",
            nats_url=args.nats,
            timing=config.timing,
            sync=config.sync,
            access=dataclasses.replace(access_of(args), agent=True),
        )
    )


def main() -> int:
    """Run one agent."""
    parser = service_arguments("blaze heartbeat agent (one per recording server)")
    parser.add_argument("--server", required=True, help="this recording server's id")
    return service_main("heartbeat", parser, build)


if __name__ == "__main__":
    sys.exit(main())
