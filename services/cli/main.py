"""``blaze``: the operator's command line.

    blaze up [--config FILE] [--data DIR] [--ha] [--tls]  run the embedded cluster
    blaze secrets --out DIR [--tls-host NAME]  NATS credentials for a deployment
    blaze status [--json]                      servers, cameras, services
    blaze events [--json] [--follow]           the durable event log, oldest first
    blaze failback SERVER                      confirm a storage repair (R7)
    blaze capacity SERVER N                    change a server's channel capacity
    blaze sim FAULT SERVER                     fault injection on the simulated cluster
    blaze sync [--json] [--follow]             footage on its way home, per server (R9)
    blaze timeline CAMERA [--json]             where a camera's footage is, and its gaps

Exit codes: 0 done; 1 refused by the cluster (with the reason); 2 bad arguments,
bad config or the cluster unreachable (one line on stderr).

Against ``blaze up``'s cluster, the commands that only read connect as its ``monitor``
identity and those that change something as ``admin`` (docs/security.md); elsewhere
``--creds`` / ``BLAZE_NATS_CREDS`` say who they are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from services.cli.datadir import CLUSTER_FILE
from shared.errors import (
    BlazeError,
    BusError,
    ClusterUnreachableError,
    ConfigError,
    RequestRefusedError,
)

if TYPE_CHECKING:
    from shared.bus import Access, Bus
    from shared.messages import Message

# Beyond this, what a command needs is imported when it runs: ``blaze status --json`` at
# 100,000 cameras has half a second in all, and imports were most of it (issue 8). It
# imports neither pydantic nor the metrics: not ``shared.messages``, ``shared.config``,
# ``shared.lifecycle`` nor ``Bus`` (tests/unit/test_cli_imports.py).

REQUEST_TIMEOUT_S = 5.0
ADMIN_COMMANDS = frozenset({"failback", "capacity", "drain", "undrain", "sim"})
"""Commands that change the cluster: only the ``admin`` identity may send them."""

FAULTS = ("net-down", "net-up", "storage-fail", "storage-repair", "kill", "start")
"""``Fault``'s values, ``blaze sim``'s choices: written out rather than read from the enum,
whose import brings every message and pydantic (a unit test holds the two equal)."""


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one clear line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"blaze: {message} (see blaze --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    with _no_websocket_transport():  # credentials -> permissions -> nats.micro
        from shared.bus.credentials import add_access_arguments  # noqa: PLC0415

    common = OneLineParser(add_help=False)
    common.add_argument(
        "--data", type=Path, default=Path(".blaze"), help="data dir (default .blaze)"
    )
    common.add_argument("--nats", help="NATS URL (default: the one blaze up wrote in --data)")
    add_access_arguments(common)
    parser = OneLineParser(
        prog="blaze", description="blaze-cluster: failover for recording servers"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    up = sub.add_parser("up", parents=[common], help="run the embedded cluster in the foreground")
    up.add_argument("--config", type=Path, help="cluster TOML (default: built-in demo)")
    up.add_argument(
        "--ha",
        action="store_true",
        help="3 clustered nats-server nodes and two replicas of each service (R12)",
    )
    up.add_argument(
        "--tls", action="store_true", help="TLS on every NATS connection, under a generated CA"
    )
    secrets = sub.add_parser(
        "secrets", help="generate NATS credentials (and TLS) for a deployment (docs/security.md)"
    )
    secrets.add_argument(
        "--config",
        type=Path,
        required=True,
        help="cluster TOML: one agent identity per [[server]] (auth.conf admits only these)",
    )
    secrets.add_argument("--out", type=Path, required=True, help="directory to write them to")
    secrets.add_argument(
        "--tls-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name or address the NATS nodes are reached by: generates a CA and a node "
        "certificate for all of them (repeatable)",
    )
    status = sub.add_parser("status", parents=[common], help="servers, cameras and services")
    status.add_argument("--json", action="store_true")
    events = sub.add_parser("events", parents=[common], help="the durable event log")
    events.add_argument("--json", action="store_true")
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    failback = sub.add_parser("failback", parents=[common], help="confirm a storage repair (R7)")
    failback.add_argument("server")
    capacity = sub.add_parser("capacity", parents=[common], help="change channel capacity")
    capacity.add_argument("server")
    capacity.add_argument("capacity", type=channel_count)
    drain = sub.add_parser(
        "drain", parents=[common], help="maintenance: move a server's cameras away"
    )
    drain.add_argument("server")
    undrain = sub.add_parser("undrain", parents=[common], help="end maintenance: cameras come home")
    undrain.add_argument("server")
    sim = sub.add_parser("sim", parents=[common], help="fault injection on a simulated server")
    sim.add_argument("fault", choices=FAULTS)
    sim.add_argument("server")
    sync = sub.add_parser("sync", parents=[common], help="footage on its way home (R9)")
    sync.add_argument("--json", action="store_true")
    sync.add_argument("--follow", action="store_true", help="refresh every second")
    timeline = sub.add_parser("timeline", parents=[common], help="a camera's recorded ranges")
    timeline.add_argument("camera")
    timeline.add_argument("--json", action="store_true")
    whatif = sub.add_parser(
        "whatif", parents=[common], help="what a failure of a server would do now"
    )
    whatif.add_argument("server")
    whatif.add_argument("--json", action="store_true")
    return parser


def channel_count(text: str) -> int:
    """A channel capacity from the command line: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"capacity must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"capacity must be 0 or more, not {value}")
    return value


@contextlib.contextmanager
def _no_websocket_transport() -> Iterator[None]:
    """Import the bus with nats-py seeing no aiohttp. nats-py imports aiohttp whenever it
    is installed (the console needs it), for websocket URLs only, which the command line
    never uses: a fifth of ``blaze status``'s start-up. aiohttp itself stays importable."""
    if "nats" in sys.modules or "aiohttp" in sys.modules:
        yield
        return
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # how Python spells "absent"
    try:
        yield
    finally:
        if "aiohttp" in sys.modules and sys.modules["aiohttp"] is None:
            del sys.modules["aiohttp"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code. Without ``argv`` it runs as the program
    (``blaze``, ``python -m services.cli.main``), which ends right after."""
    code = _run(build_parser().parse_args(argv))
    if argv is None:
        # Nothing is left to collect, yet Python's exit runs the collector over every
        # object still alive: a tenth of ``blaze status --json``'s time (issue 8).
        # Frozen objects are skipped; they are freed all the same.
        gc.freeze()
    return code


def _run(args: argparse.Namespace) -> int:
    local = {"up": _up, "secrets": _secrets}
    try:
        if args.command in local:
            return local[args.command](args)
        return asyncio.run(_client_command(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # blaze events | head: the reader had enough
        sys.stderr.close()
        return 0
    except TimeoutError:  # a JetStream read while the NATS cluster elects a leader
        print("blaze: the cluster did not answer in time; try again", file=sys.stderr)
        return 2
    except Exception as exc:
        explained = _explain(exc)
        if explained is None:
            raise
        print(f"blaze: {explained[0]}", file=sys.stderr)
        return explained[1]


def _explain(exc: Exception) -> tuple[str, int] | None:
    """One line and an exit code: 1 refused by the cluster, 2 anything else we expect;
    None for a bug."""
    if isinstance(exc, RequestRefusedError):
        return f"refused: {exc.reason}", 1
    if isinstance(exc, BlazeError):
        return str(exc), 2
    if _refused_by_pydantic(exc):
        return _explain_invalid(exc), 2
    return None


def _refused_by_pydantic(exc: Exception) -> bool:
    """A ``ValidationError``: an id or value the messages or the config refuse. Only a
    command that imported pydantic can raise one; ``blaze status`` never imports it."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(exc, pydantic.ValidationError)


def _explain_invalid(exc: Exception) -> str:
    """The first thing pydantic refused, e.g. the server id "rs 1", in one line."""
    from pydantic import ValidationError  # noqa: PLC0415 - imported already (see above)

    assert isinstance(exc, ValidationError)
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"bad {where}: {first['msg']} (see blaze --help)"


def _up(args: argparse.Namespace) -> int:
    if args.nats:
        raise ConfigError("blaze up starts its own nats-server; --nats is for the other commands")
    from services.cli.supervisor import Supervisor  # noqa: PLC0415
    from shared.config import load_config  # noqa: PLC0415
    from shared.lifecycle import run_until_signalled  # noqa: PLC0415
    from shared.logs import setup_logging  # noqa: PLC0415

    setup_logging("blaze-up")
    config = load_config(args.config)
    supervisor = Supervisor(config, args.config, args.data, ha=args.ha, tls=args.tls)
    asyncio.run(run_until_signalled(supervisor))
    return 0


def _secrets(args: argparse.Namespace) -> int:
    """``blaze secrets``: every identity's seed, nats-server's ``auth.conf``, TLS files."""
    from shared.bus import SecretsDir  # noqa: PLC0415
    from shared.bus.tls import generate as generate_tls  # noqa: PLC0415
    from shared.config import load_config  # noqa: PLC0415

    config = load_config(args.config)
    directory = SecretsDir(args.out)
    directory.generate([s.id for s in config.servers])
    if args.tls_host:
        generate_tls(args.out, tuple(args.tls_host))
    for path in sorted(args.out.iterdir()):
        print(path)
    return 0


def _cluster(args: argparse.Namespace) -> tuple[str, Access]:
    """Where the cluster is and who this command is to it: ``--nats`` and ``--creds``,
    else what ``blaze up`` wrote in ``--data``, as the read-only ``monitor`` identity, or
    as ``admin`` for the commands that change something (issue 7)."""
    from shared.bus.credentials import Access, SecretsDir, access_of  # noqa: PLC0415

    given = access_of(args)
    if args.nats:
        return str(args.nats), given
    path = args.data / CLUSTER_FILE
    try:
        written = json.loads(path.read_text())
        url = str(written["nats_url"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ClusterUnreachableError(
            str(path), "no running cluster there (start one with blaze up, or pass --nats)"
        ) from None
    ca = given.tls_ca or (Path(written["tls_ca"]) if written.get("tls_ca") else None)
    if given.creds is not None or not written.get("secrets"):
        return url, Access(given.creds, ca)
    identity = "admin" if args.command in ADMIN_COMMANDS else "monitor"
    return url, Access(SecretsDir(Path(written["secrets"])).creds(identity), ca)


async def _client_command(args: argparse.Namespace) -> int:
    import logging  # noqa: PLC0415

    # One clear line per failure: the library's warnings (a refusal, a retry) would repeat it.
    logging.basicConfig(level=logging.ERROR, format="blaze: %(message)s")
    if args.command == "status":
        return await _status(args)
    with _no_websocket_transport():
        from shared.bus import Bus  # noqa: PLC0415

    url, access = _cluster(args)
    bus = await Bus.connect(url, f"blaze-{args.command}", reconnect=False, access=access)
    try:
        return await _dispatch(bus, args)
    finally:
        await bus.close()


async def _status(args: argparse.Namespace) -> int:
    """``blaze status``: only reads, over a connection that brings nats-py alone."""
    with _no_websocket_transport():
        from shared.bus.reader import StateReader  # noqa: PLC0415

    from services.cli import views  # noqa: PLC0415

    url, access = _cluster(args)
    reader = await StateReader.connect(url, "blaze-status", access=access)
    try:
        return await views.status(reader, args.data, as_json=args.json)
    finally:
        await reader.close()


async def _dispatch(bus: Bus, args: argparse.Namespace) -> int:
    """One command against the running cluster."""
    from services.cli import views  # noqa: PLC0415 - the others' imports are theirs

    as_json = getattr(args, "json", False)
    match args.command:
        case "events":
            return await views.events(bus, as_json=as_json, follow=args.follow)
        case "sync":
            from services.cli import footage  # noqa: PLC0415

            return await footage.sync(bus, as_json=as_json, follow=args.follow)
        case "timeline":
            from services.cli import footage  # noqa: PLC0415

            return await footage.show_timeline(bus, args.camera, as_json=as_json)
        case "whatif":
            return await views.whatif(bus, args.server, as_json=as_json)
    return await _admin(bus, *_admin_request(args))


def operator() -> str:
    """Who runs this command, for the audit trail of admin events: ``user@host`` (the NATS
    user once identities exist, issue 7), cut to the 64 characters an event keeps."""
    import getpass  # noqa: PLC0415
    import socket  # noqa: PLC0415

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:64]


def _admin_request(args: argparse.Namespace) -> tuple[str, Message]:
    """The subject and request of an administrator's command."""
    from shared import subjects  # noqa: PLC0415
    from shared.messages import (  # noqa: PLC0415
        CapacityRequest,
        DrainRequest,
        FailbackRequest,
        Fault,
        FaultRequest,
    )

    by = operator()
    if args.command == "failback":
        return subjects.ADMIN_FAILBACK, FailbackRequest(server=args.server, by=by)
    if args.command == "capacity":
        request = CapacityRequest(server=args.server, capacity=args.capacity, by=by)
        return subjects.ADMIN_CAPACITY, request
    if args.command == "drain":
        return subjects.ADMIN_DRAIN, DrainRequest(server=args.server, by=by)
    if args.command == "undrain":
        return subjects.ADMIN_UNDRAIN, DrainRequest(server=args.server, by=by)
    return subjects.SIM_FAULT, FaultRequest(server=args.server, fault=Fault(args.fault))


async def _admin(bus: Bus, subject: str, request: Message) -> int:
    from shared.messages import Reply  # noqa: PLC0415

    try:
        reply = await bus.request(subject, request, Reply, timeout=REQUEST_TIMEOUT_S)
    except BusError as exc:
        raise ClusterUnreachableError(subject, str(exc)) from exc
    if not reply.ok:
        raise RequestRefusedError(reply.reason)
    print(reply.reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
