"""What the benchmarks that drive a whole ``LocalCluster`` share: waiting for a status,
and recorders that note the instant each camera starts recording on a server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.heartbeat.app import AgentSettings
from services.heartbeat.recorder import SimulatedRecorder
from services.sim.local import LocalCluster, Status
from shared import subjects
from shared.messages import Heartbeat, ServerFailed


async def wait_for(
    cluster: LocalCluster, pred: Callable[[Status], bool], within: float, every: float = 0.05
) -> None:
    """Poll the status every ``every`` seconds until ``pred`` holds (each read parses the
    whole placement state, in the cluster's own process: poll a large one less often); a
    read that fails (JetStream electing a leader after a node died) is tried again."""
    deadline = time.monotonic() + within
    while True:
        try:
            if pred(await cluster.status()):
                return
        except Exception:  # noqa: BLE001 (any read may fail while NATS elects)
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster did not settle within {within} s")
        await asyncio.sleep(every)


async def confirm_failback(cluster: LocalCluster, server: str, within: float) -> None:
    """The administrator's confirmation (R7), asked again while health refuses it because
    it has not yet heard the heartbeat that says the storage was repaired."""
    deadline = time.monotonic() + within
    while not (reply := await cluster.confirm_failback(server)).ok:
        if time.monotonic() > deadline:
            raise TimeoutError(f"failback of {server} refused for {within} s: {reply.reason}")
        await asyncio.sleep(0.02)


def server_status(doc: Status, server: str) -> dict[str, Any]:
    """One server's entry in a status document."""
    return next(s for s in doc["servers"] if s["id"] == server)


class TimedRecorder(SimulatedRecorder):
    """The simulated recorder, noting when each camera starts recording under a new epoch."""

    def __init__(self, settings: AgentSettings, on_write_error: Callable[[str], None]) -> None:
        super().__init__(
            settings.recording_dir,
            settings.timing.segment_seconds,
            on_write_error,
            settings.server_id,
        )
        self.started: dict[str, float] = {}

    async def start(self, camera: str, epoch: int) -> None:
        if self.recording().get(camera) != epoch:
            self.started[camera] = time.monotonic()
        await super().start(camera, epoch)


@dataclass
class Watch:
    """One server's heartbeats and failures as the benchmark's own connection receives
    them, and every server's recorder."""

    server: str
    last_heartbeat: float = 0.0
    storage_ok: bool = True
    storage_report: float | None = None
    storage_error: str | None = None
    server_failed: float | None = None
    recorders: dict[str, TimedRecorder] = field(default_factory=dict)

    def recorder(self, settings: AgentSettings, on_error: Callable[[str], None]) -> TimedRecorder:
        """The ``LocalCluster`` recorder factory: a timed recorder per server, kept here."""
        self.recorders[settings.server_id] = TimedRecorder(settings, on_error)
        return self.recorders[settings.server_id]

    async def listen(self, cluster: LocalCluster) -> None:
        """Subscribe, on the cluster's observer connection, to the server's heartbeats and
        to health's verdict that it failed."""
        assert cluster.bus is not None
        await cluster.bus.subscribe(subjects.heartbeat(self.server), Heartbeat, self.on_heartbeat)
        failed = subjects.server_event(self.server, "server_failed")
        await cluster.bus.subscribe(failed, ServerFailed, self.on_server_failed)

    async def on_heartbeat(self, _subject: str, hb: Heartbeat) -> None:
        self.last_heartbeat, self.storage_ok = time.monotonic(), hb.storage_ok
        if not hb.storage_ok and self.storage_report is None:
            self.storage_report, self.storage_error = self.last_heartbeat, hb.storage_error

    async def on_server_failed(self, _subject: str, _event: ServerFailed) -> None:
        if self.server_failed is None:
            self.server_failed = time.monotonic()

    async def until_storage_ok(self, within: float) -> None:
        """Wait for a heartbeat that says the server's storage works again."""
        deadline = time.monotonic() + within
        while not self.storage_ok:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.server} still reports failed storage after {within} s")
            await asyncio.sleep(0.01)

    def forget(self) -> None:
        """Before a run: no failure seen, no camera started."""
        self.storage_report = self.storage_error = self.server_failed = None
        for recorder in self.recorders.values():
            recorder.started.clear()

    def rehosted_at(self, cameras: list[str]) -> float | None:
        """When the last of ``cameras`` started recording on another server, if all have."""
        latest = 0.0
        for cam in cameras:
            elsewhere = [
                r.started[cam]
                for sid, r in self.recorders.items()
                if sid != self.server and cam in r.started and cam in r.recording()
            ]
            if not elsewhere:
                return None
            latest = max(latest, *elsewhere)
        return latest

    def epochs_elsewhere(self, cameras: list[str]) -> dict[str, int]:
        """The epoch each of ``cameras`` records under away from the watched server."""
        return {
            cam: epoch
            for sid, r in self.recorders.items()
            if sid != self.server
            for cam, epoch in r.recording().items()
            if cam in cameras
        }

    async def until_rehosted(self, cameras: list[str], within: float) -> float:
        """Wait until every one of ``cameras`` records elsewhere; the instant the last began."""
        deadline = time.monotonic() + within
        while (done := self.rehosted_at(cameras)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cameras not re-hosted within {within} s")
            await asyncio.sleep(0.005)
        return done
