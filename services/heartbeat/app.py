"""The agent on one recording server: heartbeats (R1), storage probe (R3), probe answers (R2),
and claim/release commands carried out through the recorder, fenced by epoch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.heartbeat.footage import FootageStore
from services.heartbeat.ledger import EpochLedger
from services.heartbeat.recorder import Recorder, SimulatedRecorder
from services.heartbeat.storage import StorageHealth
from shared import subjects
from shared.bus import Access, Bus
from shared.config import SyncSettings, Timing
from shared.errors import ClusterUnreachableError
from shared.logs import bind_log_context
from shared.messages import (
    Action,
    Assignment,
    Command,
    CommandResult,
    Heartbeat,
    Message,
    ProbeReply,
    ProbeRequest,
    Refusal,
)
from shared.metrics import HEARTBEATS_SENT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSettings:
    """Who this agent is and where it keeps things."""

    server_id: str
    capacity: int
    recording_dir: Path
    state_dir: Path
    nats_url: str
    timing: Timing
    sync: SyncSettings = field(default_factory=SyncSettings)
    access: Access | None = None
    """This server's own NATS identity (issue 7); None: no credentials."""


class Agent:
    """One recording server's agent."""

    def __init__(self, settings: AgentSettings, recorder: Recorder | None = None) -> None:
        self.settings = settings
        self.boot_id = uuid.uuid4().hex[:16]
        self.sequence = 0
        self.capacity = settings.capacity
        self._beat_now = asyncio.Event()
        self.storage = StorageHealth(settings.recording_dir, self._beat_now.set)
        self.recorder: Recorder = recorder or SimulatedRecorder(
            settings.recording_dir,
            settings.timing.segment_seconds,
            self.storage.failed,
            settings.server_id,
        )
        self.footage = FootageStore(settings.server_id, settings.recording_dir, settings.sync)
        self.heartbeats_paused = False  # tests: silence with a live connection (R2)
        self._ledger: EpochLedger | None = None
        self._bus: Bus | None = None
        self._command_lock = asyncio.Lock()
        self.counts: Counter[str] = Counter(claims=0, releases=0, refused=0)
        """Cameras claimed, released and refused since this agent started (its ``status``)."""

    @property
    def placement_fence(self) -> int:
        """The newest placement leader epoch this agent has seen (0 before any)."""
        return self._ledger.fence("placement") if self._ledger is not None else 0

    def status(self) -> dict[str, Any]:
        """What the ``status`` endpoint answers (R13): this server, its load and counters."""
        return {
            "server": self.settings.server_id,
            "boot_id": self.boot_id,
            "capacity": self.capacity,
            "hosting": len(self.recorder.recording()),
            "storage_ok": self.storage.ok,
            "storage_error": self.storage.error,
            "placement_epoch_seen": self.placement_fence,
            "counters": {"heartbeats_sent": self.sequence, **self.counts},
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat, probe storage and answer commands until ``stop``."""
        s = self.settings
        bind_log_context(server=s.server_id)
        try:
            s.recording_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.storage.failed(f"cannot create {s.recording_dir}: {exc.strerror or exc}")
        # Every resource is released even if another one's close fails or is cancelled.
        async with contextlib.AsyncExitStack() as resources:
            self._ledger = await EpochLedger.open(s.state_dir / "agent.db")
            resources.push_async_callback(self._ledger.close)
            await self.footage.open(s.state_dir / "footage.db")
            resources.push_async_callback(self.footage.close)
            resources.push_async_callback(self.recorder.close)
            self._bus = await _connect_until(s, stop)
            if self._bus is None:
                return
            resources.push_async_callback(self._bus.close)
            await self._serve(self._bus, stop)

    async def _serve(self, bus: Bus, stop: asyncio.Event) -> None:
        s = self.settings
        await bus.serve(
            subjects.probe(s.server_id), ProbeRequest, self._answer_probe, self._probe_error
        )
        await bus.serve(
            subjects.command(s.server_id), Command, self._on_command, self._command_error
        )
        await self.footage.serve(bus)
        await bus.announce(
            "blaze-agent",
            "recording server agent: heartbeats, storage probe, claim/release (R1-R3)",
            instance=s.server_id,
            status=self.status,
            server=s.server_id,
        )
        log.info("agent %s up (boot %s)", s.server_id, self.boot_id)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._heartbeat_loop(stop))
            tg.create_task(self._storage_loop(stop))
            await stop.wait()

    # ---- heartbeats and storage ----

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        interval = self.settings.timing.heartbeat_interval
        while not stop.is_set():
            if not self.heartbeats_paused:
                await self.publish_heartbeat()
            self._beat_now.clear()
            # Wake at the next tick, or at once when storage health changes (R3).
            waiters = {
                asyncio.ensure_future(self._beat_now.wait()),
                asyncio.ensure_future(stop.wait()),
            }
            _, pending = await asyncio.wait(
                waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED
            )
            for w in pending:
                w.cancel()

    async def publish_heartbeat(self) -> None:
        """Publish one heartbeat now (R1)."""
        assert self._bus is not None
        hb = Heartbeat(
            server=self.settings.server_id,
            boot_id=self.boot_id,
            sequence=self.sequence,
            capacity=self.capacity,
            hosted=self.recorder.recording(),
            storage_ok=self.storage.ok,
            storage_error=self.storage.error,
        )
        self.sequence += 1
        await self._bus.publish(subjects.heartbeat(self.settings.server_id), hb)
        HEARTBEATS_SENT.inc()

    async def _storage_loop(self, stop: asyncio.Event) -> None:
        interval = self.settings.timing.storage_probe_interval
        while not stop.is_set():
            await self.storage.probe_once(limit=max(interval, 1.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    # ---- requests ----

    async def _answer_probe(self, _request: ProbeRequest) -> Message:
        return ProbeReply(server=self.settings.server_id, boot_id=self.boot_id)

    def _probe_error(self, _reason: str) -> Message:
        return ProbeReply(server=self.settings.server_id, boot_id=self.boot_id)

    def _command_error(self, reason: str) -> Message:
        return CommandResult(
            server=self.settings.server_id,
            action=Action.CLAIM,
            refused=(Refusal(camera="unknown", epoch=0, seen_epoch=0, reason=reason),),
        )

    async def _on_command(self, command: Command) -> Message:
        """Carry out a claim or release; refuse anything older than an epoch already seen."""
        assert self._ledger is not None
        async with self._command_lock:
            if command.server != self.settings.server_id:
                return self._refuse_all(command, f"addressed to {command.server}")
            deposed = await self._check_fence(command)
            if deposed is not None:
                return deposed
            fresh = [a for a in command.cameras if a.epoch >= self._ledger.seen(a.camera)]
            refused = [
                Refusal(
                    camera=a.camera,
                    epoch=a.epoch,
                    seen_epoch=self._ledger.seen(a.camera),
                    reason="a newer epoch was already seen",
                )
                for a in command.cameras
                if a.epoch < self._ledger.seen(a.camera)
            ]
            await self._ledger.record({a.camera: a.epoch for a in fresh})
            before = self.recorder.recording()
            for a in fresh:
                if command.action is Action.CLAIM:
                    await self.recorder.start(a.camera, a.epoch)
                else:
                    await self.recorder.stop(a.camera)
            if command.first_segment and command.action is Action.CLAIM:
                fresh = await self._first_segments_written(fresh)
        claim = command.action is Action.CLAIM
        # A repeated command (placement re-sends until confirmed) changes nothing: not logged.
        changed = [
            a for a in fresh if (before.get(a.camera) != a.epoch if claim else a.camera in before)
        ]
        for a in changed:
            ids = {"camera": a.camera, "epoch": a.epoch}
            log.info("%s %s under epoch %d", command.action, a.camera, a.epoch, extra=ids)
        self.counts[f"{command.action}s"] += len(changed)
        self.counts["refused"] += len(refused)
        if refused:
            log.warning(
                "refused %d stale %s assignments",
                len(refused),
                command.action,
                extra={"cameras": [r.camera for r in refused][:20]},
            )
        return CommandResult(
            server=self.settings.server_id,
            action=command.action,
            done=tuple(Assignment(camera=a.camera, epoch=a.epoch) for a in fresh),
            refused=tuple(refused),
        )

    async def _first_segments_written(self, claimed: list[Assignment]) -> list[Assignment]:
        """Make-before-break: only cameras whose first segment is on disk count as claimed;
        the others stay with their old host, and placement asks again."""
        waits = asyncio.gather(*(self.recorder.first_segment(a.camera) for a in claimed))
        try:
            written = await asyncio.wait_for(waits, self.settings.timing.command_timeout)
        except TimeoutError:
            written = [False] * len(claimed)
        failed = [a.camera for a, ok in zip(claimed, written, strict=True) if not ok]
        if failed:
            log.warning("first segment not written for %s: claim not confirmed", failed)
        return [a for a, ok in zip(claimed, written, strict=True) if ok]

    async def _check_fence(self, command: Command) -> CommandResult | None:
        """R12: the whole command refused if its leader is older than one already seen;
        else its epoch remembered (durably) before anything is done."""
        assert self._ledger is not None
        if command.cluster and command.cluster != self._ledger.cluster:
            await self._join_cluster(command.cluster)
        fence = self._ledger.fence("placement")
        if command.fence < fence:
            log.warning(
                "refused a %s from a deposed placement leader (epoch %d < %d)",
                command.action,
                command.fence,
                fence,
                extra={"epoch": command.fence},
            )
            self.counts["refused"] += len(command.cameras)
            refused = self._refuse_all(
                command, f"from a deposed placement leader (epoch {command.fence} < {fence})"
            )
            return refused.model_copy(update={"fence_seen": fence})
        await self._ledger.record_fence("placement", command.fence)
        return None

    async def _join_cluster(self, cluster: str) -> None:
        assert self._ledger is not None
        if self._ledger.cluster:
            log.warning(
                "commands come from a new cluster %s (was %s): its epochs start afresh",
                cluster,
                self._ledger.cluster,
            )
        await self._ledger.start_cluster(cluster)

    def _refuse_all(self, command: Command, reason: str) -> CommandResult:
        assert self._ledger is not None
        return CommandResult(
            server=self.settings.server_id,
            action=command.action,
            refused=tuple(
                Refusal(
                    camera=a.camera,
                    epoch=a.epoch,
                    seen_epoch=self._ledger.seen(a.camera),
                    reason=reason,
                )
                for a in command.cameras
            ),
        )


async def _connect_until(settings: AgentSettings, stop: asyncio.Event) -> Bus | None:
    """Keep trying to connect until it works or we are stopped."""
    delay = 0.2
    name = f"agent-{settings.server_id}"
    while not stop.is_set():
        try:
            return await Bus.connect(settings.nats_url, name, access=settings.access)
        except ClusterUnreachableError as exc:
            log.warning("%s; retrying in %.1f s", exc, delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                delay = min(delay * 2, 2.0)
    return None
