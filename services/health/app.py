"""The health service: feeds heartbeats, probes and the clock to the detector and publishes
what it decides on the durable log; answers the administrator's failback confirmation (R7)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from services.health.detector import HEALTH_EVENT_TYPES, Decision, Detector, HealthEvent, Probe
from shared import subjects
from shared.bounded import cancel_all
from shared.bus import Access, Bus
from shared.config import ClusterConfig
from shared.errors import BusError, NoRespondersError, RequestTimeoutError
from shared.lease import ReplicatedService, Term
from shared.messages import (
    FailbackRequest,
    FailoversHeld,
    Heartbeat,
    Message,
    ProbeReply,
    ProbeRequest,
    Reply,
    ServerFailed,
    ServerRecovered,
)
from shared.messages.heartbeat_parser import HeartbeatParser
from shared.metrics import (
    FAILBACKS,
    FAILOVERS,
    HEARTBEATS_RECEIVED,
    HEARTBEATS_REJECTED,
    PROBES,
    REJECTED,
    SERVERS_BY_STATE,
)

log = logging.getLogger(__name__)


class HealthService(ReplicatedService):
    """Failure detection for the whole cluster: one replica of it leads (R12)."""

    SERVICE = "health"
    DESCRIPTION = "failure detection (R2, R3, R6, R7)"

    def __init__(
        self,
        config: ClusterConfig,
        nats_url: str,
        replica: str | None = None,
        access: Access | None = None,
    ) -> None:
        super().__init__(config, nats_url, replica, access)
        self.detector = self._new_detector()
        self._published: Counter[str] = Counter()
        self._publish_lock = asyncio.Lock()
        self._probes: set[asyncio.Task[None]] = set()
        self.heartbeat_parser = HeartbeatParser(())
        """This term's parser of heartbeats (a fresh one each term)."""
        # This replica's own counts since it started, for its ``status`` (R13).
        self.heartbeats_received = 0
        self.heartbeats_rejected: Counter[str] = Counter()
        self.failovers: Counter[str] = Counter()
        self.failbacks: Counter[str] = Counter()

    def _new_detector(self) -> Detector:
        return Detector.for_cluster(self.config)

    async def lead(self, term: Term) -> None:
        """One term as leader: a fresh detector restored from the log (R2, R12)."""
        assert self._bus is not None
        bus = self._bus
        subscriptions = []
        try:
            await self._restore(bus)
            # As strict as Heartbeat.model_validate_json, with a fast path for repeats
            # (issue 8: most of health's CPU at 1,000 servers went to validating the same
            # hosted cameras every second).
            self.heartbeat_parser = HeartbeatParser(self.detector.servers)
            parse = self.heartbeat_parser.model_validate_json
            subscriptions = [
                await bus.subscribe(
                    subjects.HEARTBEAT_ALL, Heartbeat, self._on_heartbeat, parse=parse
                ),
                await bus.serve(
                    subjects.ADMIN_FAILBACK, FailbackRequest, self._on_failback, _refusal
                ),
            ]
            watched = len(self.detector.servers)
            log.info("health watching %d servers (epoch %d)", watched, term.epoch)
            await self._tick_loop()
        finally:
            SERVERS_BY_STATE.clear()  # only a leader knows; a standby reports nothing
            await bus.unsubscribe_all(subscriptions)
            await cancel_all(self._probes)

    async def _restore(self, bus: Bus) -> None:
        """Rebuild each server's failure state from the log; watch every server afresh.

        A new leader has no heartbeat history, so every server gets a whole
        network timeout before any probe (a fresh view, R2); storage failures
        reported in heartbeats still act at once.
        """
        self.detector = self._new_detector()
        self._published.clear()
        # Only health's own areas: the camera moves around them are most of the log.
        logged = await bus.replay_about("server", "alert")
        events = [event for _seq, event in logged if event is not None]
        for event in events:
            if event.type in HEALTH_EVENT_TYPES:
                self._published[_about(event)] += 1
        servers = [s.id for s in self.config.servers]
        self.detector.restore(servers, events, time.monotonic())

    async def _on_heartbeat(self, subject: str, hb: Heartbeat) -> None:
        if subjects.server_of_heartbeat(subject) != hb.server:
            REJECTED.labels(subject="blaze.hb", reason="spoofed").inc()
            self._reject_heartbeat("spoofed")
            return
        refusal = self.detector.refusal(hb)
        if refusal is not None:
            self._reject_heartbeat(refusal)
            return
        HEARTBEATS_RECEIVED.inc()
        self.heartbeats_received += 1
        decisions = self.detector.heartbeat(hb, time.monotonic())
        if decisions:  # rarely: most heartbeats change nothing worth a coroutine
            await self._carry_out(decisions)

    def _reject_heartbeat(self, reason: str) -> None:
        HEARTBEATS_REJECTED.labels(reason=reason).inc()
        self.heartbeats_rejected[reason] += 1

    async def _tick_loop(self) -> None:
        period = min(0.1, self.config.timing.heartbeat_interval / 5)
        while True:
            await self._carry_out(self.detector.tick(time.monotonic()))
            self._count_servers()
            await asyncio.sleep(period)

    def _count_servers(self) -> None:
        """``blaze_servers{state}``: level-triggered, every tick."""
        for state, n in self.detector.count_by_liveness().items():
            SERVERS_BY_STATE.labels(state=state.value).set(n)

    def counters(self) -> dict[str, Any]:
        """Heartbeats, failovers and failbacks this replica handled; servers by state."""
        leading = self.leading
        return {
            "heartbeats_received": self.heartbeats_received,
            "heartbeats_rejected": dict(self.heartbeats_rejected),
            "failovers": dict(self.failovers),
            "failbacks": dict(self.failbacks),
            "servers": (
                {k.value: n for k, n in self.detector.count_by_liveness().items()}
                if leading
                else {}
            ),
        }

    async def _carry_out(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, Probe):
                task = asyncio.create_task(self._probe(decision.server))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)
            else:
                await self._publish(decision)

    async def _probe(self, server: str) -> None:
        """R2: up to ``probe_tries`` requests within ``probe_timeout``; no responders ends it."""
        assert self._bus is not None
        t = self.config.timing
        reachable = False
        for _ in range(t.probe_tries):
            try:
                await self._bus.request(
                    subjects.probe(server),
                    ProbeRequest(server=server),
                    ProbeReply,
                    timeout=t.probe_timeout / t.probe_tries,
                )
            except NoRespondersError:
                PROBES.labels(outcome="no_responders").inc()
                break
            except RequestTimeoutError:
                PROBES.labels(outcome="timeout").inc()
                continue
            except BusError:
                PROBES.labels(outcome="error").inc()
                continue
            PROBES.labels(outcome="answered").inc()
            reachable = True
            break
        await self._carry_out(self.detector.probe_answered(server, reachable, time.monotonic()))

    async def _publish(self, event: HealthEvent) -> bool:
        """Put one decision on the log; False (nothing published) once deposed.

        The Msg-Id is the decision's place among this server's health events and its
        type, the same for whichever leader makes it: a deposed leader's late copy of
        a decision the next leader makes again is dropped by the stream."""
        assert self._bus is not None
        key = _about(event)
        if isinstance(event, FailoversHeld):
            subject = subjects.alert_event(event.type)
        else:
            subject = subjects.server_event(event.server, event.type)
        async with self._publish_lock:
            if not self.leading:
                return False  # deposed: the next leader decides again from the log
            n = self._published[key]
            msg_id = f"health-{key}-{n}-{event.type}"
            appended = await self._bus.publish_event(subject, event, msg_id)
            self._published[key] = n + 1
        if appended:  # a repeat of an earlier leader's decision is counted by that leader
            self._count(event)
        if isinstance(event, FailoversHeld):
            log.warning(
                "%d of %d servers silent at once (%s): network failovers held",
                len(event.servers),
                event.total,
                ", ".join(event.servers),
            )
        elif isinstance(event, ServerFailed):
            log.warning(
                "server %s failed (%s): %s",
                event.server,
                event.cause,
                event.detail,
                extra={"server": event.server, "cause": event.cause.value},
            )
        else:
            log.info("%s %s", event.type, event.server, extra={"server": event.server})
        return True

    def _count(self, event: HealthEvent) -> None:
        """Failovers and failbacks by cause, once per decision on the log."""
        if isinstance(event, ServerFailed):
            FAILOVERS.labels(cause=event.cause.value).inc()
            self.failovers[event.cause.value] += 1
        elif isinstance(event, ServerRecovered):
            FAILBACKS.labels(cause=event.cause.value).inc()
            self.failbacks[event.cause.value] += 1

    async def _on_failback(self, request: FailbackRequest) -> Message:
        """R7: the administrator's confirmation, refused with the reason when premature."""
        if not self.leading:
            return Reply(ok=False, reason="this health replica no longer leads; try again")
        try:
            events = self.detector.confirm_failback(request.server, time.monotonic(), request.by)
        except ValueError as exc:
            log.info(
                "failback of %s refused: %s", request.server, exc, extra={"server": request.server}
            )
            return Reply(ok=False, reason=str(exc))
        for event in events:
            if not await self._publish(event):
                return Reply(ok=False, reason="this health replica no longer leads; try again")
        return Reply(ok=True, reason=f"failback of {request.server} confirmed")


FLEET = "fleet"
"""The msg-id key of health's events about the whole fleet rather than one server."""


def _about(event: object) -> str:
    server = getattr(event, "server", None)
    return server if isinstance(server, str) else FLEET


def _refusal(reason: str) -> Message:
    return Reply(ok=False, reason=reason)
