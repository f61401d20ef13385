"""``python -m services.console``: the web console (``blaze up`` starts one; deployments run
it as a service of its own)."""

from __future__ import annotations

import argparse
import sys

from services.console.app import ConsoleService
from shared.bus.credentials import access_of
from shared.config import ClusterConfig
from shared.lifecycle import service_arguments, service_main

DEFAULT_PORT = 8080


def arguments() -> argparse.ArgumentParser:
    """The options every service takes, and where to listen."""
    parser = service_arguments("blaze console (the operator's web page)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; no authentication yet, issue 7)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the page is reached by, besides loopback and --host (repeatable; "
        "other Host headers are refused, against DNS rebinding)",
    )
    return parser


def build(args: argparse.Namespace, _: ClusterConfig) -> ConsoleService:
    """The console of the cluster at ``--nats``; ``--data`` is where ``blaze up`` lists
    its processes."""
    return ConsoleService(
        args.nats,
        host=args.host,
        port=args.port,
        data_dir=args.data,
        allowed_hosts=tuple(args.allow_host),
        access=access_of(args),
    )


def main() -> int:
    """Run the console."""
    return service_main("console", arguments(), build)


if __name__ == "__main__":
    sys.exit(main())
