"""How every service process starts and stops: parse arguments, run until a signal, drain.

A service is an object with ``async run(stop)``: it works until ``stop`` is set
(SIGINT/SIGTERM set it), then returns after draining. A fatal error in any of
its loops propagates out of its TaskGroup and the process exits non-zero, so
the supervisor (``blaze up`` or a container runtime) restarts it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from shared.bus.credentials import add_access_arguments
from shared.config import ClusterConfig, load_config
from shared.errors import BlazeError
from shared.logs import setup_logging
from shared.metrics import serve_metrics

log = logging.getLogger(__name__)


class Service(Protocol):
    """Anything ``service_main`` can run."""

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then drain and return."""


def service_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every service process takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, help="cluster TOML (default: built-in demo)")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL")
    add_access_arguments(parser)
    parser.add_argument("--data", type=Path, default=Path(".blaze"), help="data directory")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics here")
    parser.add_argument("--log-level", default="INFO")
    return parser


def replicated_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments of a replicated service (health, placement, sync; R12)."""
    parser = service_arguments(description)
    parser.add_argument(
        "--replica",
        default=default_replica_name(),
        help="this replica's name in the leader lease (default: HOST-PID)",
    )
    return parser


def default_replica_name() -> str:
    """Unique enough on one host and across hosts; only shown, never relied on."""
    return f"{socket.gethostname()}-{os.getpid()}"


def service_main(
    name: str,
    parser: argparse.ArgumentParser,
    build: Callable[[argparse.Namespace, ClusterConfig], Service],
    argv: Sequence[str] | None = None,
) -> int:
    """Entry point of a service process; returns the exit code."""
    args = parser.parse_args(argv)
    setup_logging(name, args.log_level)
    try:
        config = load_config(args.config)
        service = build(args, config)
        serve_metrics(args.metrics_port)
        asyncio.run(run_until_signalled(service))
    except BlazeError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


async def run_until_signalled(service: Service) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    await service.run(stop)


def _dump_tasks() -> None:
    """SIGUSR1: log where every task waits (for a service that looks stuck)."""
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=8)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        logging.getLogger("blaze.tasks").warning("task %s: %s", task.get_name(), where)
