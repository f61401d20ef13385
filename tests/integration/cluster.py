"""An in-test cluster on a real nats-server: agents behind black-hole relays, health and
placement as tasks of the test's event loop (or placement as a real process, to kill it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from services.cli.views import status_document
from services.health.app import HealthService
from services.heartbeat.app import Agent, AgentSettings
from services.placement.app import PlacementService
from services.placement.state import Placement
from services.sim import BlackHoleRelay, fail_storage, repair_storage
from shared import subjects
from shared.bus import Bus, NatsServer
from shared.config import CameraConfig, ClusterConfig, Priority, ServerConfig, Timing
from shared.lifecycle import Service
from shared.messages import AnyEvent, CapacityRequest, FailbackRequest, Reply
from tests.helpers import eventually

Status = dict[str, Any]


def make_config(
    servers: dict[str, int],
    cameras: dict[str, tuple[str, Priority]] | dict[str, str],
    **timing: float,
) -> ClusterConfig:
    """Servers as {id: capacity}; cameras as {id: home} or {id: (home, priority)}."""
    cams = []
    for cid, spec in cameras.items():
        home, prio = (spec, Priority.MEDIUM) if isinstance(spec, str) else spec
        cams.append(CameraConfig(id=cid, home=home, priority=prio))
    base = {"heartbeat_interval": 0.2, "network_timeout": 2.0, "storage_probe_interval": 0.2}
    return ClusterConfig(
        timing=Timing.model_validate({**base, **timing}),
        servers=tuple(ServerConfig(id=s, capacity=c) for s, c in servers.items()),
        cameras=tuple(cams),
    )


class RunningService:
    """A service object running as a task, with its own stop event."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(service.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)


class TestCluster:
    """Everything of one cluster, started and stopped by the test."""

    __test__ = False

    def __init__(self, nats: NatsServer, config: ClusterConfig, root: Path) -> None:
        self.nats = nats
        self.config = config
        self.root = root
        self.relays: dict[str, BlackHoleRelay] = {}
        self.agents: dict[str, RunningService] = {}
        self.services: dict[str, RunningService] = {}
        self.placement_process: subprocess.Popen[bytes] | None = None
        self.bus: Bus | None = None
        self.lowered: set[str] = set()  # capacity lowered below load: over capacity by design

    # ---- lifecycle ----

    async def start(self, *, placement_as_process: bool = False) -> TestCluster:
        self.bus = await Bus.connect(self.nats.url, "test-observer")
        await self.bus.ensure_streams()
        for s in self.config.servers:
            relay = BlackHoleRelay("127.0.0.1", self.nats.config.port, s.id)
            await relay.start()
            self.relays[s.id] = relay
            self.start_agent(s.id)
        self.services["health"] = RunningService(HealthService(self.config, self.nats.url))
        if placement_as_process:
            self.start_placement_process()
        else:
            self.services["placement"] = RunningService(
                PlacementService(self.config, self.nats.url)
            )
        return self

    def start_agent(self, server_id: str) -> Agent:
        s = self.config.server(server_id)
        agent = Agent(
            AgentSettings(
                server_id=s.id,
                capacity=s.capacity,
                recording_dir=self.recording_dir(s.id),
                state_dir=self.root / s.id / "state",
                nats_url=self.relays[s.id].url,
                timing=self.config.timing,
            )
        )
        self.agents[s.id] = RunningService(agent)
        return agent

    def agent(self, server_id: str) -> Agent:
        service = self.agents[server_id].service
        assert isinstance(service, Agent)
        return service

    def recording_dir(self, server_id: str) -> Path:
        return self.root / server_id / "recordings"

    def start_placement_process(self) -> None:
        config_path = self.root / "cluster.json"
        config_path.write_text(self.config.model_dump_json(by_alias=True))
        with (self.root / "placement.log").open("ab") as log:
            self.placement_process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.integration.run_placement",
                    str(config_path),
                    self.nats.url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill_placement_process(self) -> None:
        assert self.placement_process is not None
        os.kill(self.placement_process.pid, signal.SIGKILL)
        self.placement_process.wait()

    async def close(self) -> None:
        for running in [*self.services.values(), *self.agents.values()]:
            await running.close()
        if self.placement_process is not None and self.placement_process.poll() is None:
            self.placement_process.terminate()
            try:
                self.placement_process.wait(10)
            except subprocess.TimeoutExpired:
                self.placement_process.kill()
                self.placement_process.wait()
                raise AssertionError("placement ignored SIGTERM for 10 s") from None
        for relay in self.relays.values():
            await relay.close()
        if self.bus is not None:
            await self.bus.close()

    # ---- faults ----

    def fail_storage(self, server_id: str) -> None:
        fail_storage(self.recording_dir(server_id))

    def repair_storage(self, server_id: str) -> None:
        repair_storage(self.recording_dir(server_id))

    # ---- observation ----

    async def status(self) -> Status:
        assert self.bus is not None
        snapshot = await self.bus.read_state()
        if snapshot is None:
            return {"servers": [], "cameras": [], "services": []}
        doc = status_document(Placement.model_validate_json(snapshot[0]), [])
        check_invariants(doc, self.lowered)
        return doc

    async def events(self) -> list[tuple[int, AnyEvent]]:
        assert self.bus is not None
        return [(seq, e) for seq, e in await self.bus.replay() if e is not None]

    async def wait_status(self, pred: Callable[[Status], bool], within: float, what: str) -> Status:
        return await eventually(self.status, pred, within, what)

    async def confirm_failback(self, server_id: str) -> Reply:
        assert self.bus is not None
        return await self.bus.request(
            subjects.ADMIN_FAILBACK, FailbackRequest(server=server_id), Reply, timeout=5
        )

    async def set_capacity(self, server_id: str, capacity: int) -> Reply:
        assert self.bus is not None
        before = {s["id"]: s["capacity"] for s in (await self.status())["servers"]}
        if capacity < before.get(server_id, 0):
            self.lowered.add(server_id)
        return await self.bus.request(
            subjects.ADMIN_CAPACITY,
            CapacityRequest(server=server_id, capacity=capacity),
            Reply,
            timeout=5,
        )

    def recorders(self) -> dict[str, dict[str, int]]:
        """What every running agent's recorder records right now: {server: {camera: epoch}}."""
        return {sid: self.agent(sid).recorder.recording() for sid in self.agents}

    async def recording_now(self) -> dict[str, dict[str, int]]:
        """``recorders()`` as an awaitable probe for ``eventually``."""
        return self.recorders()


def recorded_twice(recorders: dict[str, dict[str, int]]) -> dict[str, list[str]]:
    """Cameras that more than one server records at this instant."""
    where: dict[str, list[str]] = {}
    for sid, cams in recorders.items():
        for cam in cams:
            where.setdefault(cam, []).append(sid)
    return {cam: sids for cam, sids in where.items() if len(sids) > 1}


def check_invariants(doc: Status, lowered: AbstractSet[str] = frozenset()) -> None:
    """The operator-visible invariants, checked at every status read (R4).

    A server whose capacity was changed at run time may stay above it: lowering
    capacity moves nothing (its own test checks that nothing new is placed there).
    """
    capacity = {s["id"]: s["capacity"] for s in doc["servers"]}
    state = {s["id"]: s["state"] for s in doc["servers"]}
    load: dict[str, int] = {}
    for cam in doc["cameras"]:
        assert (cam["state"] == "pending") == (cam["host"] is None), cam
        if cam["host"]:
            load[cam["host"]] = load.get(cam["host"], 0) + 1
            assert state[cam["host"]] in ("online", "failing_back"), (cam, state)
    for sid, n in load.items():
        assert sid in lowered or n <= capacity[sid], f"{sid} hosts {n} > capacity {capacity[sid]}"


def server(doc: Status, sid: str) -> dict[str, Any]:
    return next(s for s in doc["servers"] if s["id"] == sid)


def camera(doc: Status, cid: str) -> dict[str, Any]:
    return next(c for c in doc["cameras"] if c["id"] == cid)


def cameras_of(doc: Status, home: str) -> list[dict[str, Any]]:
    return [c for c in doc["cameras"] if c["home"] == home]


def all_home(doc: Status) -> bool:
    return (
        bool(doc["cameras"])
        and all(c["state"] == "home" for c in doc["cameras"])
        and all(s["state"] == "online" for s in doc["servers"])
    )
