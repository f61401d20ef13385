"""The placement service: folds the event log into the placement state, persists it with
compare-and-set, publishes its decisions and drives agents' claim/release commands (R4-R11).

Order of work for every event: fold (pure) -> publish decisions (de-duplicated by
Msg-Id) -> commit the snapshot with the log cursor (compare-and-set) -> send
commands. A SIGKILL between any two steps replays the same event from the
committed cursor, makes the same decisions, and the log drops the repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from services.placement.state import CameraState, Notice, Placement
from shared import subjects
from shared.bounded import cancel_all, raise_if_cancelled
from shared.bus import Access, Bus
from shared.config import ClusterConfig
from shared.errors import BusError
from shared.lease import ReplicatedService, Term
from shared.messages import (
    Action,
    AnyEvent,
    Assignment,
    CapacityChanged,
    CapacityRequest,
    ClaimsConfirmed,
    Command,
    CommandRefused,
    CommandResult,
    DrainCompleted,
    DrainRequest,
    FailbackCompleted,
    FailbackStarted,
    Heartbeat,
    Message,
    ReleasesConfirmed,
    Reply,
    ServerDrained,
    ServerFailed,
    ServerUndrained,
)
from shared.messages.events import utc_now
from shared.metrics import (
    CAMERAS_BY_STATE,
    COMMAND_SECONDS,
    COMMANDS,
    FAILOVER_SECONDS,
    PENDING_CAMERAS,
    REJECTED,
)

log = logging.getLogger(__name__)

CommandKey = tuple[str, Action, tuple[Assignment, ...]]
MISSES_BEFORE_RECLAIM = 2
RECENT_FAILURE = timedelta(seconds=60)


class PlacementService(ReplicatedService):
    """The single decider of who records which camera: one replica of it leads (R12)."""

    SERVICE = "placement"
    DESCRIPTION = "who records which camera (R4-R8, R10)"

    def __init__(
        self,
        config: ClusterConfig,
        nats_url: str,
        replica: str | None = None,
        access: Access | None = None,
    ) -> None:
        super().__init__(config, nats_url, replica, access)
        self.state = Placement()
        self._revision: int | None = None
        self._wake_sender = asyncio.Event()
        self._in_flight: set[CommandKey] = set()
        self._next_try: dict[CommandKey, tuple[float, float]] = {}
        self._misses: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._unannounced: set[str] = set()
        self._failovers: dict[str, ServerFailed] = {}

    async def lead(self, term: Term) -> None:
        """One term as leader: rebuild everything from JetStream, then decide (R11, R12)."""
        assert self._bus is not None
        bus = self._bus
        self._forget()
        subscriptions = []
        try:
            await self._load(bus)
            self._unannounced = set(self.state.servers)
            subscriptions = [
                await bus.subscribe(subjects.HEARTBEAT_ALL, Heartbeat, self._on_heartbeat),
                await bus.serve(
                    subjects.ADMIN_CAPACITY, CapacityRequest, self._on_capacity, _refusal
                ),
                await bus.serve(subjects.ADMIN_DRAIN, DrainRequest, self._on_drain, _refusal),
                await bus.serve(subjects.ADMIN_UNDRAIN, DrainRequest, self._on_undrain, _refusal),
            ]
            log.info(
                "placement resumed at log position %d, epoch %d, %d cameras (fence %d)",
                self.state.cursor,
                self.state.next_epoch,
                len(self.state.cameras),
                term.epoch,
            )
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._fold_loop())
                tg.create_task(self._sender_loop())
                self._wake_sender.set()
        finally:
            await bus.unsubscribe_all(subscriptions)
            await cancel_all(self._tasks)
            CAMERAS_BY_STATE.clear()  # only a leader knows; a standby reports nothing
            PENDING_CAMERAS.set(0)

    def counters(self) -> dict[str, Any]:
        """Cameras by state, Pending, drained servers and the log position (leader only)."""
        if not self.leading:
            return {}
        return {
            "cameras": {s.value: n for s, n in self.state.cameras_by_state().items()},
            "servers": len(self.state.servers),
            "drained": sorted(sid for sid, s in self.state.servers.items() if s.drained),
            "log_position": self.state.cursor,
            "next_epoch": self.state.next_epoch,
        }

    def _forget(self) -> None:
        """Nothing from an earlier term is trusted: the state comes from KV again."""
        self.state = Placement()
        self._revision = None
        self._in_flight.clear()
        self._next_try.clear()
        self._misses.clear()
        self._unannounced.clear()
        self._failovers.clear()

    # ---- state: load, fold, commit ----

    async def _load(self, bus: Bus) -> None:
        """Resume from the committed snapshot, or start a fresh cluster from the config."""
        snapshot = await bus.read_state(latest=True)
        if snapshot is None:
            self.state, notices = Placement.from_config(self.config)
            await self._publish(notices, "start")
        else:
            raw, self._revision = snapshot
            self.state = Placement.model_validate_json(raw)
            notices = self.state.adopt(self.config)
            await self._publish(notices, f"adopt-{self.state.cursor}")
        if not self.state.cluster_id:  # random, so here and not in the deterministic fold
            self.state.cluster_id = uuid.uuid4().hex
        await self._commit()

    async def _fold_loop(self) -> None:
        assert self._bus is not None
        async with contextlib.aclosing(self._bus.events(after=self.state.cursor)) as log_events:
            async for seq, event in log_events:
                notices = self.state.apply(event) if event is not None else []
                self.state.cursor = seq
                await self._publish(notices, str(seq))
                await self._commit()
                self._time_failovers(event)

    def _time_failovers(self, event: AnyEvent | None) -> None:
        """blaze_failover_seconds: from health's failure report (its event time) until no
        camera of that failure is still moving. Only failures reported in the last minute
        are timed, so a replay of old events at a takeover measures nothing."""
        now = utc_now()
        if isinstance(event, ServerFailed) and now - event.time < RECENT_FAILURE:
            self._failovers[event.server] = event
        for server, failure in list(self._failovers.items()):
            if not self.state.moving_off(server):
                seconds = (now - failure.time).total_seconds()
                FAILOVER_SECONDS.labels(cause=failure.cause.value).observe(seconds)
                del self._failovers[server]

    async def _publish(self, notices: list[Notice], origin: str) -> None:
        assert self._bus is not None
        bus = self._bus
        await asyncio.gather(
            *(
                bus.publish_event(_notice_subject(n), n, f"placement-{origin}-{i}")
                for i, n in enumerate(notices)
            )
        )
        for n in notices:
            if n.type in (
                "camera_pending",
                "camera_preempted",
                "failback_started",
                "failback_completed",
            ):
                log.info("%s", n.model_dump_json(exclude={"schema_version", "time"}))

    async def _commit(self) -> None:
        """Compare-and-set the snapshot; losing the race is fatal (someone else decides)."""
        assert self._bus is not None
        self._revision = await self._bus.write_state(
            self.state.model_dump_json().encode(), self._revision
        )
        counts = self.state.cameras_by_state()
        for s, n in counts.items():
            CAMERAS_BY_STATE.labels(state=s.value).set(n)
        PENDING_CAMERAS.set(counts[CameraState.PENDING])
        self._wake_sender.set()

    # ---- commands to agents ----

    async def _sender_loop(self) -> None:
        """Send every outstanding command; retry with back-off until the state moves on."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_sender.wait(), timeout=0.25)
            raise_if_cancelled()
            self._wake_sender.clear()
            now = time.monotonic()
            commands = [*self.state.outstanding_commands(), *self._announcements()]
            wanted = {(c.server, c.action, c.cameras): c for c in commands}
            self._next_try = {k: v for k, v in self._next_try.items() if k in wanted}
            for key, command in wanted.items():
                if key in self._in_flight or self._next_try.get(key, (0.0, 0.0))[0] > now:
                    continue
                self._spawn(self._send(key, command))

    def _announcements(self) -> list[Command]:
        """An empty command to every agent that has not answered one of this term yet:
        it learns this term's epoch at once, so a deposed leader's command still on its
        way is refused everywhere, not only where this leader has moved a camera.
        Retried with the same back-off as any command until the agent answers."""
        return [Command(server=s, action=Action.CLAIM, cameras=()) for s in self._unannounced]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, key: CommandKey, command: Command) -> None:
        assert self._bus is not None
        term = self.term
        if term is None or not term.valid:
            return  # deposed: the new leader sends what is still wanted
        command = command.model_copy(update={"fence": term.epoch, "cluster": self.state.cluster_id})
        self._in_flight.add(key)
        t0 = time.monotonic()
        try:
            result = await self._bus.request(
                subjects.command(command.server),
                command,
                CommandResult,
                timeout=self.config.timing.command_timeout,
            )
        except BusError as exc:
            COMMANDS.labels(action=command.action, outcome="unanswered").inc()
            delay = min(2.0, self._next_try.get(key, (0.0, 0.125))[1] * 2)
            self._next_try[key] = (time.monotonic() + delay, delay)
            log.debug(
                "%s to %s unanswered (%s); retry in %.2f s",
                command.action,
                command.server,
                exc,
                delay,
            )
            return
        finally:
            self._in_flight.discard(key)
        COMMAND_SECONDS.observe(time.monotonic() - t0)
        COMMANDS.labels(action=command.action, outcome="answered").inc()
        self._unannounced.discard(command.server)
        if result.fence_seen > term.epoch:
            # Not a refusal to re-plan: a newer leader exists, and this one is deposed.
            log.warning(
                "%s has seen placement epoch %d, newer than ours (%d): deposed",
                command.server,
                result.fence_seen,
                term.epoch,
            )
        elif term.valid:
            await self._publish_outcome(result)

    async def _publish_outcome(self, result: CommandResult) -> None:
        """The agent's answer goes on the log; the fold picks it up in order."""
        assert self._bus is not None
        server = result.server
        if result.done:
            done_type = ClaimsConfirmed if result.action is Action.CLAIM else ReleasesConfirmed
            event = done_type(server=server, cameras=result.done)
            await self._bus.publish_event(
                subjects.command_outcome_event(server, event.type),
                event,
                f"ack-{server}-{result.action}-{_digest(result.done)}",
            )
        if result.refused:
            refused = CommandRefused(server=server, refusals=result.refused)
            await self._bus.publish_event(
                subjects.command_outcome_event(server, refused.type),
                refused,
                f"refused-{server}-{_digest(result.refused)}",
            )

    # ---- reconciliation from heartbeats ----

    async def _on_heartbeat(self, subject: str, hb: Heartbeat) -> None:
        """Level-triggered repair: release strays, re-claim what a restarted agent forgot."""
        if subjects.server_of_heartbeat(subject) != hb.server:
            REJECTED.labels(subject="blaze.hb", reason="spoofed").inc()
            return
        slot = self.state.servers.get(hb.server)
        if slot is None:
            return
        strays = self.state.strays(hb.server, hb.hosted)
        if strays:
            log.info("releasing %d stray cameras on %s", len(strays), hb.server)
            self._send_once(Command(server=hb.server, action=Action.RELEASE, cameras=tuple(strays)))
        missing = self.state.missing(hb.server, hb.hosted)
        again = []
        for a in missing:
            k = (hb.server, a.camera)
            self._misses[k] = self._misses.get(k, 0) + 1
            if self._misses[k] >= MISSES_BEFORE_RECLAIM:
                again.append(a)
                self._misses.pop(k)
        if again:
            log.info("re-claiming %d cameras %s does not record", len(again), hb.server)
            self._send_once(Command(server=hb.server, action=Action.CLAIM, cameras=tuple(again)))

    def _send_once(self, command: Command) -> None:
        """A repair from a heartbeat; what the agent did goes on the log like any other
        answer (R11), where the fold recognises it as no move of its own."""
        key = (command.server, command.action, command.cameras)
        if key not in self._in_flight:
            self._spawn(self._send(key, command))

    # ---- the administrator ----

    async def _on_capacity(self, request: CapacityRequest) -> Message:
        """A license change: the new capacity goes on the log, the fold re-places Pending (R5)."""
        assert self._bus is not None
        slot = self.state.servers.get(request.server)
        if slot is None:
            return Reply(ok=False, reason=f"unknown server {request.server!r}")
        was = slot.capacity  # read now: the fold may apply the change before we answer
        await self._log_admin(
            CapacityChanged(server=request.server, capacity=request.capacity, by=request.by)
        )
        return Reply(
            ok=True,
            reason=f"capacity of {request.server} set to {request.capacity} (was {was})",
        )

    async def _on_drain(self, request: DrainRequest) -> Message:
        """Maintenance mode: refused for an unknown or already drained server; otherwise
        on the log, where the fold moves its cameras away."""
        slot = self.state.servers.get(request.server)
        if slot is None:
            return Reply(ok=False, reason=f"unknown server {request.server!r}")
        if slot.drained:
            return Reply(ok=False, reason=f"{request.server} is already drained")
        hosting = self.state.load(request.server)
        await self._log_admin(ServerDrained(server=request.server, by=request.by))
        return Reply(
            ok=True,
            reason=f"drain of {request.server} started: {hosting} cameras to move where "
            "channels are free (the rest keep recording there until one frees)",
        )

    async def _on_undrain(self, request: DrainRequest) -> Message:
        """End of maintenance: refused unless the server is drained."""
        slot = self.state.servers.get(request.server)
        if slot is None:
            return Reply(ok=False, reason=f"unknown server {request.server!r}")
        if not slot.drained:
            return Reply(ok=False, reason=f"{request.server} is not drained")
        await self._log_admin(ServerUndrained(server=request.server, by=request.by))
        return Reply(ok=True, reason=f"{request.server} undrained: its cameras come home")

    async def _log_admin(self, event: CapacityChanged | ServerDrained | ServerUndrained) -> None:
        """An administrator's action goes on the log, with who asked; the fold acts on it."""
        assert self._bus is not None
        await self._bus.publish_event(
            subjects.admin_event(event.type), event, f"{event.type}-{uuid.uuid4().hex}"
        )


def _notice_subject(notice: Notice) -> str:
    if isinstance(notice, FailbackStarted | FailbackCompleted):
        return subjects.failback_event(notice.server, notice.type)
    if isinstance(notice, DrainCompleted):
        return subjects.server_event(notice.server, notice.type)
    return subjects.camera_event(notice.camera, notice.type)


def _digest(items: tuple[Message, ...]) -> str:
    text = "|".join(item.model_dump_json() for item in items)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _refusal(reason: str) -> Message:
    return Reply(ok=False, reason=reason)
