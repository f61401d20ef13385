"""The in-test cluster: ``LocalCluster`` plus the operator-visible invariants checked at
every status read, and placement as a real process (to kill it with SIGKILL)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from services.sim.local import LocalCluster, RunningService, Status, all_home
from services.sim.processes import ServiceProcesses
from shared.bus import NatsCluster, NatsServer
from shared.config import (
    CameraConfig,
    ClusterConfig,
    Detection,
    Priority,
    ServerConfig,
    SyncSettings,
    Timing,
)
from shared.messages import CameraMoved, CameraMovePlanned, Reply, ServerFailed
from tests.helpers import eventually

__all__ = [
    "RunningService",
    "Status",
    "TestCluster",
    "all_home",
    "assert_failed_over_once",
    "camera",
    "cameras_of",
    "check_invariants",
    "failed_over",
    "make_config",
    "recorded_twice",
    "server",
    "settled",
    "with_sync",
]


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
        # No hold-down or flapping limit by default here: tests cut the same server often.
        detection=Detection(failback_hold_down=0.0, max_failovers=0),
    )


def with_sync(config: ClusterConfig, **settings: Any) -> ClusterConfig:
    """The same config with other ``[sync]`` settings."""
    return config.model_copy(update={"sync": SyncSettings.model_validate(settings)})


class TestCluster(LocalCluster):
    """A ``LocalCluster`` whose every status read checks the invariants."""

    __test__ = False

    def __init__(self, nats: NatsServer | NatsCluster, config: ClusterConfig, root: Path) -> None:
        super().__init__(nats, config, root)
        self.processes = ServiceProcesses(config, nats.url, root)
        self.lowered: set[str] = set()  # capacity lowered below load: over capacity by design

    async def start(  # type: ignore[override]
        self,
        *,
        placement_as_process: bool = False,
        sync_as_process: bool = False,
        health_as_process: bool = False,
        with_placement: bool = True,
    ) -> TestCluster:
        await super().start(
            with_placement=with_placement and not placement_as_process,
            with_sync=not sync_as_process,
            with_health=not health_as_process,
        )
        if health_as_process:
            self.start_process("health")
        if placement_as_process:
            self.start_process("placement")
        if sync_as_process:
            self.start_process("sync")
        return self

    def start_process(self, name: str, replica: str | None = None) -> None:
        """Run ``health``, ``placement`` or ``sync`` as its own OS process, kept under its
        replica name (default: ``name``)."""
        self.processes.start(name, replica)

    def kill_process(self, name: str) -> None:
        """SIGKILL a service process and reap it."""
        self.processes.kill(name)

    def start_placement_process(self) -> None:
        self.start_process("placement")

    def kill_placement_process(self) -> None:
        self.kill_process("placement")

    async def close(self) -> None:
        await super().close()
        stubborn = self.processes.stop()
        assert not stubborn, f"ignored SIGTERM for 10 s: {stubborn}"

    async def status(self) -> Status:
        doc = await super().status()
        check_invariants(doc, self.lowered)
        return doc

    async def wait_status(self, pred: Callable[[Status], bool], within: float, what: str) -> Status:
        return await eventually(self.status, pred, within, what)

    async def set_capacity(self, server_id: str, capacity: int) -> Reply:
        before = {s["id"]: s["capacity"] for s in (await self.status())["servers"]}
        if capacity < before.get(server_id, 0):
            self.lowered.add(server_id)
        return await super().set_capacity(server_id, capacity)


async def assert_failed_over_once(
    cluster: TestCluster, doc: Status, cameras: Iterable[str], home: str
) -> None:
    """R11: one failure of ``home`` in the log, no decision or move repeated, every camera
    moved exactly once away from home under a higher epoch, and the recorders agree with
    the status: nobody records a camera twice, ``home`` records nothing."""
    log = await cluster.events()
    failures = [e for _, e in log if isinstance(e, ServerFailed) and e.server == home]
    assert len(failures) == 1, failures
    planned = [e for _, e in log if isinstance(e, CameraMovePlanned)]
    moved = [e for _, e in log if isinstance(e, CameraMoved)]
    assert len({(e.camera, e.epoch) for e in planned}) == len(planned), "a decision repeated"
    assert len({(e.camera, e.epoch) for e in moved}) == len(moved), "a move repeated"
    for cam in cameras:
        path = [e for e in moved if e.camera == cam]
        assert [(e.from_host, e.to) for e in path[:1]] == [(None, home)], path
        failover = path[1:]
        assert len(failover) == 1, f"{cam} moved {len(failover)} times: {failover}"
        assert failover[0].from_host == home
        assert path[0].epoch < failover[0].epoch
    recorders = await eventually(
        cluster.recording_now, lambda r: not recorded_twice(r) and not r[home], 10, "home let go"
    )
    by_host = {c["id"]: c["host"] for c in doc["cameras"]}
    for sid in recorders:
        assert set(recorders[sid]) == {c for c, h in by_host.items() if h == sid}, sid


def recorded_twice(recorders: dict[str, dict[str, int]]) -> dict[str, list[str]]:
    """Cameras that more than one server records at this instant."""
    where: dict[str, list[str]] = {}
    for sid, cams in recorders.items():
        for cam in cams:
            where.setdefault(cam, []).append(sid)
    return {cam: sids for cam, sids in where.items() if len(sids) > 1}


def check_invariants(doc: Status, lowered: AbstractSet[str] = frozenset()) -> None:
    """The operator-visible invariants, checked at every status read (R4).

    A server whose capacity was lowered at run time may stay above it: lowering
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


def failed_over(victim: str, state: str) -> Callable[[Status], bool]:
    """A predicate: ``victim`` is in ``state`` and every camera of it records elsewhere."""

    def pred(doc: Status) -> bool:
        cams = cameras_of(doc, victim)
        return server(doc, victim)["state"] == state and all(
            c["state"] == "failed_over" and c["host"] not in (None, victim) for c in cams
        )

    return pred


def settled(doc: Status, home: str) -> bool:
    """No camera of ``home`` is still moving."""
    return all(c["state"] != "moving" for c in cameras_of(doc, home))


def cameras_of(doc: Status, home: str) -> list[dict[str, Any]]:
    return [c for c in doc["cameras"] if c["home"] == home]
