"""A whole cluster inside one event loop, on a real nats-server: agents behind black-hole
relays, health and placement as tasks. The tests and the benchmarks drive it; faults are
real (black-holed TCP, a recording directory that fails real I/O)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.cli.views import status_document_of_snapshot
from services.health.app import HealthService
from services.heartbeat.app import Agent, AgentSettings
from services.heartbeat.recorder import Recorder
from services.placement.app import PlacementService
from services.sim.faults import fail_storage, repair_storage
from services.sim.relay import RelayGroup, client_ports
from services.sync.app import SyncService
from shared import subjects
from shared.bus import Bus, NatsCluster, NatsServer, read_leases
from shared.config import ClusterConfig
from shared.lifecycle import Service
from shared.messages import AnyEvent, CapacityRequest, DrainRequest, FailbackRequest, Reply

Status = dict[str, Any]
REPLICATED: dict[str, Callable[[ClusterConfig, str, str], Service]] = {
    "health": HealthService,
    "placement": PlacementService,
    "sync": SyncService,
}
STOP_BOUND_S = 10.0
"""How long a stopping service may take before it is cancelled (and that is logged)."""
log = logging.getLogger(__name__)
RecorderFactory = Callable[[AgentSettings, Callable[[str], None]], Recorder]


class RunningService:
    """A service object running as a task, with its own stop event."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(service.run(self.stop))

    async def close(self) -> None:
        """Ask it to stop and wait (bounded) until it has; say where one that does not
        stop in time was stuck."""
        self.stop.set()
        done, _ = await asyncio.wait([self.task], timeout=STOP_BOUND_S)
        if not done:
            where = " <- ".join(
                f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(self.task.get_stack())
            )
            log.warning("%s did not stop within %s s: %s", self.name, STOP_BOUND_S, where)
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self.task, STOP_BOUND_S)

    @property
    def name(self) -> str:
        """The service's class, and its replica or server where it has one."""
        who = getattr(self.service, "replica", None) or getattr(
            getattr(self.service, "settings", None), "server_id", ""
        )
        return f"{type(self.service).__name__}({who})"


class LocalCluster:
    """Everything of one cluster, started and stopped by its owner."""

    def __init__(
        self,
        nats: NatsServer | NatsCluster,
        config: ClusterConfig,
        root: Path,
        recorder: RecorderFactory | None = None,
    ) -> None:
        self.nats = nats
        self.config = config
        self.root = root
        self.relays: dict[str, RelayGroup] = {}
        self.agents: dict[str, RunningService] = {}
        self.services: dict[str, RunningService] = {}
        self.bus: Bus | None = None
        self._recorder = recorder

    # ---- lifecycle ----

    async def start(
        self, *, with_placement: bool = True, with_sync: bool = True, with_health: bool = True
    ) -> LocalCluster:
        """Relays and agents for every server, then (unless told) health, placement, sync."""
        self.bus = await Bus.connect(self.nats.url, "local-cluster-observer")
        await self.bus.ensure_streams()
        for s in self.config.servers:
            relay = RelayGroup(client_ports(self.nats), s.id)
            await relay.start()
            self.relays[s.id] = relay
            self.start_agent(s.id)
        if with_health:
            self.services["health"] = RunningService(HealthService(self.config, self.nats.url))
        if with_placement:
            self.services["placement"] = RunningService(
                PlacementService(self.config, self.nats.url)
            )
        if with_sync:
            self.start_sync()
        return self

    async def start_replica(
        self, kind: str, replica: str, *, behind_relay: bool = False
    ) -> RunningService:
        """Another replica of ``health``, ``placement`` or ``sync`` (R12), under
        ``services[replica]``; ``behind_relay`` puts its NATS connection behind a relay
        (``relays[replica]``) that a test can black-hole."""
        url = self.nats.url
        if behind_relay:
            relay = RelayGroup(client_ports(self.nats), replica)
            await relay.start()
            self.relays[replica] = relay
            url = relay.url
        running = RunningService(REPLICATED[kind](self.config, url, replica))
        self.services[replica] = running
        return running

    def start_sync(self) -> None:
        """(Re)start the sync service."""
        self.services["sync"] = RunningService(SyncService(self.config, self.nats.url))

    def start_agent(self, server_id: str) -> Agent:
        """(Re)start one server's agent behind its relay."""
        s = self.config.server(server_id)
        settings = AgentSettings(
            server_id=s.id,
            capacity=s.capacity,
            recording_dir=self.recording_dir(s.id),
            state_dir=self.root / s.id / "state",
            nats_url=self.relays[s.id].url,
            timing=self.config.timing,
            sync=self.config.sync,
        )
        agent = Agent(settings)
        if self._recorder is not None:
            agent.recorder = self._recorder(settings, agent.storage.failed)
        self.agents[s.id] = RunningService(agent)
        return agent

    def agent(self, server_id: str) -> Agent:
        """The running agent of one server."""
        service = self.agents[server_id].service
        assert isinstance(service, Agent)
        return service

    def recording_dir(self, server_id: str) -> Path:
        """Where one server's recorder writes segments."""
        return self.root / server_id / "recordings"

    async def close(self) -> None:
        """Stop services and agents, then relays and the observer connection."""
        for running in [*self.services.values(), *self.agents.values()]:
            await running.close()
        for relay in self.relays.values():
            await relay.close()
        if self.bus is not None:
            await self.bus.close()

    # ---- faults and the administrator ----

    def fail_storage(self, server_id: str) -> None:
        """Make a server's recording directory fail real I/O."""
        fail_storage(self.recording_dir(server_id))

    def repair_storage(self, server_id: str) -> None:
        """Give a server its recording directory back."""
        repair_storage(self.recording_dir(server_id))

    async def confirm_failback(self, server_id: str) -> Reply:
        """The administrator's confirmation after a storage failure (R7)."""
        assert self.bus is not None
        request = FailbackRequest(server=server_id)
        return await self.bus.request(subjects.ADMIN_FAILBACK, request, Reply, timeout=5)

    async def drain(self, server_id: str, *, undrain: bool = False) -> Reply:
        """Maintenance mode on (or, ``undrain``, off) for one server."""
        assert self.bus is not None
        subject = subjects.ADMIN_UNDRAIN if undrain else subjects.ADMIN_DRAIN
        return await self.bus.request(subject, DrainRequest(server=server_id), Reply, timeout=5)

    async def set_capacity(self, server_id: str, capacity: int) -> Reply:
        """A license change at run time."""
        assert self.bus is not None
        request = CapacityRequest(server=server_id, capacity=capacity)
        return await self.bus.request(subjects.ADMIN_CAPACITY, request, Reply, timeout=5)

    # ---- observation ----

    async def status(self) -> Status:
        """The ``blaze status --json`` document, from the committed placement state."""
        assert self.bus is not None
        snapshot = await self.bus.read_state()
        if snapshot is None:
            return {"servers": [], "cameras": [], "services": []}
        leaders = await read_leases(self.bus)
        return status_document_of_snapshot(snapshot[0], [], leaders)

    async def events(self) -> list[tuple[int, AnyEvent]]:
        """The whole durable event log, oldest first."""
        assert self.bus is not None
        return [(seq, e) for seq, e in await self.bus.replay() if e is not None]

    def recorders(self) -> dict[str, dict[str, int]]:
        """What every running agent records right now: {server: {camera: epoch}}."""
        return {sid: self.agent(sid).recorder.recording() for sid in self.agents}

    async def recording_now(self) -> dict[str, dict[str, int]]:
        """``recorders()`` as an awaitable probe."""
        return self.recorders()


def all_home(doc: Status) -> bool:
    """Every camera records at home and every server is online."""
    return (
        bool(doc["cameras"])
        and all(c["state"] == "home" for c in doc["cameras"])
        and all(s["state"] == "online" for s in doc["servers"])
    )
