"""``blaze up``: the embedded default. One nats-server, every service as its own process,
one simulated recording server per ``[[server]]``, each behind a relay that can black-hole it,
and the web console on a loopback port printed at start.
With ``--ha``: three clustered nats-server nodes (R3 streams and buckets) and two
replicas of each service, one of which leads (R12); still one console.

Every process connects as its own NATS identity (issue 7): the credentials are
generated into ``<data>/secrets`` (kept across restarts) and nats-server admits those
identities only, each to its own subjects. With ``--tls`` every connection, client and
route, is TLS under a CA generated there too.

A process that dies is restarted (as a container runtime would) and the restart
is logged; an agent stopped with ``blaze sim kill`` stays down until ``sim start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.cli.datadir import CLUSTER_FILE, SERVICES_FILE
from services.sim import RelayGroup, fail_storage, repair_storage
from services.sim.relay import client_ports
from shared import subjects
from shared.bus import (
    Access,
    Bus,
    NatsCluster,
    NatsServer,
    SecretsDir,
    ServerSecurity,
    embedded_cluster,
    embedded_server,
    free_port,
)
from shared.bus.tls import generate as generate_tls
from shared.children import die_with_parent
from shared.config import ClusterConfig, ServerConfig
from shared.errors import ConfigError
from shared.messages import Fault, FaultRequest, Message, Reply

log = logging.getLogger("blaze.up")

STOP_GRACE_S = 5.0


@dataclass
class ManagedProcess:
    """A child process kept alive by the supervisor."""

    name: str
    argv: list[str]
    log_path: Path
    metrics_port: int
    process: asyncio.subprocess.Process | None = None
    held_down: bool = False
    restarts: int = 0
    wanted: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int | None:
        """The running pid, or None."""
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid


class Supervisor:
    """Runs the embedded cluster in the foreground until SIGINT/SIGTERM."""

    def __init__(
        self,
        config: ClusterConfig,
        config_path: Path | None,
        data_dir: Path,
        *,
        ha: bool = False,
        tls: bool = False,
        service_relays: bool = False,
        console: bool = True,
    ) -> None:
        self.config = config
        self.config_path = config_path.resolve() if config_path else None
        self.data_dir = data_dir.resolve()
        self.ha = ha
        self.tls = tls
        self.secrets = SecretsDir(self.data_dir / "secrets")
        self.ca: Path | None = None
        """The CA every process trusts, with ``--tls``."""
        self.nats: NatsServer | NatsCluster | None = None
        self.relays: dict[str, RelayGroup] = {}
        self.service_relays: dict[str, RelayGroup] | None = {} if service_relays else None
        """With ``service_relays`` (the chaos soak, issue 10): each service replica reaches
        NATS through a relay group of its own, by replica name, so it can be black-holed
        as a server can. None: replicas connect to the nodes directly."""
        self.console = console
        self.processes: dict[str, ManagedProcess] = {}
        self.console_port = 0
        self._stopping = False

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, keep it alive, stop it all in order."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        _refuse_if_running(self.data_dir)
        security = self._security()
        self.nats = (
            embedded_cluster(self.data_dir, security=security)
            if self.ha
            else embedded_server(self.data_dir, security=security)
        )
        self.nats.start()
        bus: Bus | None = None
        try:
            bus = await Bus.connect(self.nats.url, "supervisor", access=self._access("sim"))
            await bus.ensure_streams()
            await bus.serve(subjects.SIM_FAULT, FaultRequest, self._on_fault, _refusal)
            for server in self.config.servers:
                relay = RelayGroup(client_ports(self.nats), server.id)
                await relay.start()
                self.relays[server.id] = relay
            await self._start_service_relays()
            self._plan_processes()
            self._write_cluster_file()
            async with asyncio.TaskGroup() as tg:
                for proc in self.processes.values():
                    proc.wanted.set()
                    tg.create_task(self._keep_alive(proc))
                self._announce()
                await stop.wait()
                await self._stop_all()
        finally:
            self._stopping = True
            for relay in [*self.relays.values(), *(self.service_relays or {}).values()]:
                await relay.close()
            if bus is not None:
                await bus.close()
            self.nats.stop()
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / CLUSTER_FILE).unlink()

    def _security(self) -> ServerSecurity:
        """An identity per process, routes with a password, TLS if asked for."""
        authorization = self.secrets.generate([s.id for s in self.config.servers])
        node_tls = generate_tls(self.secrets.path) if self.tls else None
        self.ca = node_tls.ca if node_tls else None
        return ServerSecurity(
            authorization=authorization,
            route_secret=self.secrets.route_secret() if self.ha else "",
            tls=node_tls,
        )

    def _access(self, identity: str) -> Access:
        return Access(self.secrets.creds(identity), self.ca)

    def _access_argv(self, identity: str) -> list[str]:
        argv = ["--creds", str(self.secrets.creds(identity))]
        return [*argv, "--tls-ca", str(self.ca)] if self.ca else argv

    # ---- processes ----

    def _replicas(self) -> list[tuple[str, str]]:
        """Every service replica to run: (service, replica name)."""
        suffixes = ("a", "b") if self.ha else ("",)
        return [
            (name, f"{name}-{suffix}" if suffix else name)
            for name in ("health", "placement", "sync")
            for suffix in suffixes
        ]

    async def _start_service_relays(self) -> None:
        """With ``service_relays``: a relay group per replica, listening before it starts."""
        if self.service_relays is None:
            return
        assert self.nats is not None
        for _, replica in self._replicas():
            relay = RelayGroup(client_ports(self.nats), replica)
            await relay.start()
            self.service_relays[replica] = relay

    def _service_url(self, replica: str) -> str:
        """Where a replica reaches NATS: its relay group's URLs, or the nodes themselves."""
        assert self.nats is not None
        if self.service_relays is not None:
            return self.service_relays[replica].url
        return self.nats.url

    def _plan_processes(self) -> None:
        assert self.nats is not None
        common = ["--data", str(self.data_dir)]
        if self.config_path is not None:
            common += ["--config", str(self.config_path)]
        for name, replica in self._replicas():
            argv = [f"services.{name}", "--nats", self._service_url(replica), "--replica", replica]
            self._add(replica, [*argv, *self._access_argv(name), *common])
        for server in self.config.servers:
            argv = [
                "services.heartbeat",
                "--server",
                server.id,
                "--nats",
                self.relays[server.id].url,
                *self._access_argv(f"agent-{server.id}"),
            ]
            self._add(f"agent-{server.id}", [*argv, *common])
        if not self.console:
            return
        # Stateless: one console, in HA too. Its port is kept across its restarts, so the
        # URL printed at start stays good.
        self.console_port = self._free_port()
        # The console confirms failbacks: it is the administrator's (docs/security.md).
        argv = ["services.console", "--nats", self.nats.url, "--port", str(self.console_port)]
        self._add("console", [*argv, *self._access_argv("admin"), *common])

    @property
    def console_url(self) -> str:
        """Where the web console is."""
        return f"http://127.0.0.1:{self.console_port}/"

    def _free_port(self) -> int:
        """A free loopback port that no process of ours has been given yet."""
        taken = {p.metrics_port for p in self.processes.values()} | {self.console_port}
        port = free_port()
        while port in taken:  # the OS may hand the same free port out twice
            port = free_port()
        return port

    def _add(self, name: str, module_argv: list[str]) -> None:
        port = self._free_port()
        argv = [sys.executable, "-m", *module_argv, "--metrics-port", str(port)]
        log_path = self.data_dir / "logs" / f"{name}.log"
        self.processes[name] = ManagedProcess(name, argv, log_path, port)

    async def _keep_alive(self, proc: ManagedProcess) -> None:
        """Start the process whenever it is wanted; restart it when it dies."""
        backoff = 0.5
        while not self._stopping:
            await proc.wanted.wait()
            if self._stopping:
                return
            started = time.monotonic()
            with proc.log_path.open("ab") as out:
                proc.process = await asyncio.create_subprocess_exec(
                    *proc.argv,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent,  # only prctl runs in the child
                )
            self._write_services_file()
            code = await proc.process.wait()
            self._write_services_file()
            if self._stopping:
                return
            if proc.held_down:
                log.info(
                    "%s stopped (pid %d, exit %d); held down", proc.name, proc.process.pid, code
                )
                continue
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 5.0)
            proc.restarts += 1
            log.warning(
                "%s (pid %d) exited with code %d; restart #%d in %.1f s",
                proc.name,
                proc.process.pid,
                code,
                proc.restarts,
                backoff,
            )
            await asyncio.sleep(backoff)

    async def _stop_all(self) -> None:
        self._stopping = True
        for proc in self.processes.values():
            proc.wanted.set()
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.processes.values():
            if proc.process is None:
                continue
            try:
                await asyncio.wait_for(proc.process.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()
                await proc.process.wait()
        log.info("every process stopped")

    # ---- fault injection ----

    async def _on_fault(self, request: FaultRequest) -> Message:
        server = self._server(request.server)
        if server is None:
            return Reply(ok=False, reason=f"unknown server {request.server!r}")
        relay = self.relays[server.id]
        agent = self.processes[f"agent-{server.id}"]
        match request.fault:
            case Fault.NET_DOWN:
                relay.cut()
            case Fault.NET_UP:
                relay.restore()
            case Fault.STORAGE_FAIL:
                fail_storage(self._recording_dir(server))
            case Fault.STORAGE_REPAIR:
                repair_storage(self._recording_dir(server))
            case Fault.KILL:
                agent.held_down = True
                agent.wanted.clear()
                if agent.pid is not None:
                    os.kill(agent.pid, signal.SIGKILL)
            case Fault.START:
                if agent.pid is not None:
                    return Reply(ok=False, reason=f"agent of {server.id} is already running")
                agent.held_down = False
                agent.wanted.set()
        log.info("sim %s %s", request.fault, server.id)
        return Reply(ok=True, reason=f"{request.fault} {server.id}")

    def _server(self, server_id: str) -> ServerConfig | None:
        try:
            return self.config.server(server_id)
        except KeyError:
            return None

    def _recording_dir(self, server: ServerConfig) -> Path:
        if server.recording_dir:
            return Path(server.recording_dir)
        return self.data_dir / "servers" / server.id / "recordings"

    # ---- files other commands read ----

    def _write_cluster_file(self) -> None:
        assert self.nats is not None
        _write_json(
            self.data_dir / CLUSTER_FILE,
            {
                "nats_url": self.nats.url,
                "monitor_url": self.nats.monitor_url,
                "supervisor_pid": os.getpid(),
                "console_url": self.console_url,
                "config": str(self.config_path) if self.config_path else None,
                "secrets": str(self.secrets.path),
                "tls_ca": str(self.ca) if self.ca else None,
            },
        )

    def _write_services_file(self) -> None:
        _write_json(
            self.data_dir / SERVICES_FILE,
            [
                {
                    "name": p.name,
                    "pid": p.pid,
                    "metrics": f"http://127.0.0.1:{p.metrics_port}/metrics",
                    "restarts": p.restarts,
                }
                for p in self.processes.values()
            ],
        )

    def _announce(self) -> None:
        assert self.nats is not None
        nodes = "3 clustered nodes, " if self.ha else ""
        replicas = "two replicas of each service" if self.ha else "one replica of each service"
        print(
            f"blaze up: {len(self.config.servers)} servers, {len(self.config.cameras)} cameras, "
            f"{replicas}\n"
            f"  NATS        {nodes}{self.nats.url} (monitoring {self.nats.monitor_url})\n"
            f"  console     {self.console_url}\n"
            f"  data        {self.data_dir} (logs in {self.data_dir / 'logs'})\n"
            f"  try         blaze status --data {self.data_dir}\n"
            "  stop        Ctrl-C",
            flush=True,
        )


def _refuse_if_running(data_dir: Path) -> None:
    """Two clusters on one JetStream store would corrupt it: refuse a second ``blaze up``."""
    try:
        pid = int(json.loads((data_dir / CLUSTER_FILE).read_text())["supervisor_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # a cluster that was killed: its file is stale
    except PermissionError:
        pass
    raise ConfigError(f"{data_dir} is in use by another blaze up (pid {pid}); stop it first")


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    tmp.replace(path)


def _refusal(reason: str) -> Message:
    return Reply(ok=False, reason=reason)
