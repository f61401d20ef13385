"""The health and placement services' shells, as ``services/health/app.py`` and
``services/placement/app.py`` wrap the pure core, without NATS: the same decisions
about what to probe, what to publish, which commands to send and when to send them
again, how a new leader rebuilds its state, and how heartbeats repair strays.

Time is the simulation's; requests, replies and heartbeats go over ``sim.network``.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.health.detector import (
    HEALTH_EVENT_TYPES,
    Decision,
    Detector,
    HealthEvent,
    Probe,
)
from services.placement.state import CommandKey, MissedCameras, Placement, ServerState
from shared.messages import (
    Action,
    ClaimsConfirmed,
    Command,
    CommandRefused,
    CommandResult,
    Heartbeat,
    Message,
    ReleasesConfirmed,
)

if TYPE_CHECKING:
    from sim.cluster import Cluster, Node

# As services/placement/app.py.
RECHECK_S = 2.0
ANSWERED_HOLD_S = 2.0
ANSWERED_HOLD_MAX_S = 30.0


def _about(event: object) -> str:
    server = getattr(event, "server", None)
    return server if isinstance(server, str) else "fleet"


class HealthShell:
    """The health leader: a detector fed heartbeats, probe answers and the clock."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.detector: Detector | None = None
        self.term = 0
        self.published: Counter[str] = Counter()

    def elect(self) -> None:
        """A new leader: a fresh detector restored from the log (as ``HealthService._restore``)."""
        c = self.c
        self.term += 1
        detector = Detector.for_cluster(c.config)
        events = c.log.events
        self.published = Counter(_about(e) for e in events if e.type in HEALTH_EVENT_TYPES)
        detector.restore([s.id for s in c.config.servers], events, c.clock.now)
        self.detector = detector

    def depose(self) -> None:
        """The leader is gone: its probes' answers go nowhere."""
        self.detector = None
        self.term += 1

    def tick(self) -> None:
        if self.detector is not None:
            self.carry_out(self.detector.tick(self.c.clock.now))

    def heard(self, hb: Heartbeat) -> None:
        if self.detector is not None:
            decisions = self.detector.heartbeat(hb, self.c.clock.now)
            if decisions:
                self.carry_out(decisions)

    def carry_out(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if isinstance(d, Probe):
                self.probe(d.server)
            else:
                self.publish(d)

    def publish(self, event: HealthEvent) -> None:
        """On the log under the Msg-Id ``HealthService._publish`` uses."""
        key = _about(event)
        n = self.published[key]
        self.c.log.append(event, f"health-{key}-{n}-{event.type}")
        self.published[key] = n + 1

    def probe(self, server: str) -> None:
        """R2: up to ``probe_tries`` requests within ``probe_timeout``; a restarting agent
        has no responders (the probe ends at once), a cut one times out."""
        c, term = self.c, self.term
        node = c.nodes[server]
        t = c.config.timing
        per = t.probe_timeout / t.probe_tries
        elapsed, reachable = 0.0, False
        net = c.net
        for _ in range(t.probe_tries):
            if node.link.cut:
                elapsed += per
                continue
            if not node.up:
                elapsed += 0.002
                break
            rt = net.latency() + net.latency()
            drop = net.faults.drop
            if (drop and (net.rng.random() < drop or net.rng.random() < drop)) or rt > per:
                elapsed += per
                continue
            elapsed, reachable = elapsed + rt, True
            break
        c.clock.after(elapsed, functools.partial(self.answered, term, server, reachable))

    def answered(self, term: int, server: str, reachable: bool) -> None:
        if term != self.term or self.detector is None:
            return
        self.c.step(f"probe of {server}: {'answered' if reachable else 'no answer'}", server)
        self.carry_out(self.detector.probe_answered(server, reachable, self.c.clock.now))

    def confirm(self, server: str) -> str | None:
        """R7: the administrator's confirmation; the refusal's reason, or None if accepted."""
        if self.detector is None:
            return "no health leader"
        try:
            events = self.detector.confirm_failback(server, self.c.clock.now, by="sim-admin")
        except ValueError as exc:
            return str(exc)
        for event in events:
            self.publish(event)
        return None


@dataclass
class _Request:
    """One command request: settled by its reply or by its time-out, whichever is first."""

    settled: bool = False


class PlacementShell:
    """One placement leader's term: its state, the commands it sends and re-sends."""

    def __init__(self, cluster: Cluster, term: int, from_log: bool) -> None:
        c = self.c = cluster
        self.term = term
        self.active = True
        if c.snapshot is None or from_log:
            state, _ = Placement.from_config(c.config)
        else:
            state = Placement.model_validate_json(c.snapshot)
            state.adopt(c.config)
        _ = state.index  # built now, as ``_load`` does
        if not state.cluster_id:
            state.cluster_id = f"sim-cluster-{c.settings.seed}"
        self.state = state
        self.replayed_at = len(c.log)
        self.unannounced = set(c.nodes)
        self.in_flight: set[CommandKey] = set()
        self.next_try: dict[CommandKey, tuple[float, float]] = {}
        self.missed = MissedCameras()
        self.in_order: dict[str, tuple[int, dict[str, int], float]] = {}
        self.keys: dict[int, tuple[Command, CommandKey]] = {}
        self.last_epoch = 0
        self.fold_due = False
        self.previous_load = state.loads()
        c.commit(self)

    # ---- the fold ----

    def schedule_fold(self) -> None:
        """The log has a new event: fold it after the log's read latency."""
        if self.active and not self.fold_due:
            self.fold_due = True
            self.c.clock.after(self.c.net.rng.uniform(0.001, 0.02), self.fold)

    def fold(self) -> None:
        """Fold every event not folded yet, in order; then send what is wanted."""
        self.fold_due = False
        if not self.active:
            return
        state, events = self.state, self.c.log.events
        while state.cursor < len(events):
            index = state.cursor
            event = events[index]
            self.c.before_fold(self, index, event)
            notices = state.apply(event)
            state.cursor = index + 1
            self.c.after_fold(self, index, event, notices)
        self.send_wanted()

    # ---- commands ----

    def send_wanted(self) -> None:
        """Every outstanding command not on its way or waiting for a retry
        (``PlacementService._send_wanted``), and this term's announcements."""
        if not self.active:
            return
        commands = self.state.outstanding_commands()
        known = self.keys
        self.keys = {id(c): known.get(id(c)) or (c, CommandKey(c)) for c in commands}
        wanted = {key: c for c, key in self.keys.values()}
        for s in sorted(self.unannounced):
            announce = Command(server=s, action=Action.CLAIM, cameras=())
            wanted[CommandKey(announce)] = announce
        now = self.c.clock.now
        self.next_try = {k: v for k, v in self.next_try.items() if k in wanted}
        for key, command in wanted.items():
            if key in self.in_flight or self.next_try.get(key, (0.0, 0.0))[0] > now:
                continue
            self.send(key, command)

    def send(self, key: CommandKey, command: Command) -> None:
        """A request to the agent, answered or timed out (``PlacementService._send``)."""
        c = self.c
        node = c.nodes[command.server]
        command = command.model_copy(update={"fence": self.term, "cluster": self.state.cluster_id})
        self.in_flight.add(key)
        request = _Request()
        c.clock.after(
            c.config.timing.command_timeout, functools.partial(self.unanswered, key, request)
        )
        if not node.up and not node.link.cut:  # no responders: an error at once
            c.clock.after(0.002, functools.partial(self.unanswered, key, request))
            return
        c.net.send(node.link, functools.partial(self.arrive, node, command, key, request))

    def arrive(self, node: Node, command: Command, key: CommandKey, request: _Request) -> None:
        if not node.up:
            return
        result = self.c.carry_out(node, command)
        answer = functools.partial(self.answered, key, request, command, result)
        self.c.net.send(node.link, answer)

    def unanswered(self, key: CommandKey, request: _Request) -> None:
        if request.settled:
            return
        request.settled = True
        if not self.active:
            return
        self.in_flight.discard(key)
        delay = min(2.0, self.next_try.get(key, (0.0, 0.125))[1] * 2)
        self.next_try[key] = (self.c.clock.now + delay, delay)

    def answered(
        self, key: CommandKey, request: _Request, command: Command, result: CommandResult
    ) -> None:
        if request.settled:
            return  # a late or repeated reply: the requester stopped listening
        request.settled = True
        if not self.active:
            return  # deposed: what it learnt goes nowhere
        self.in_flight.discard(key)
        if len(result.done) + len(result.refused) == len(command.cameras):
            hold = min(ANSWERED_HOLD_MAX_S, 2 * self.next_try.get(key, (0.0, 0.0))[1])
            hold = max(ANSWERED_HOLD_S, hold)
            self.next_try[key] = (self.c.clock.now + hold, hold)
        self.unannounced.discard(command.server)
        if result.fence_seen > self.term:
            self.c.step(f"placement term {self.term} learns it is deposed", command.server)
            return
        self.publish_outcome(result)

    def publish_outcome(self, result: CommandResult) -> None:
        """The agent's answer on the log (``PlacementService._publish_outcome``)."""
        server, log = result.server, self.c.log
        if result.done:
            done_type = ClaimsConfirmed if result.action is Action.CLAIM else ReleasesConfirmed
            event = done_type(server=server, cameras=result.done)
            log.append(event, f"ack-{server}-{result.action}-{_digest(result.done)}")
        if result.refused:
            refused = CommandRefused(server=server, refusals=result.refused)
            log.append(refused, f"refused-{server}-{_digest(result.refused)}")

    # ---- reconciliation from heartbeats ----

    def heard(self, hb: Heartbeat) -> None:
        """Level-triggered repair: release strays, re-claim what a restarted agent forgot
        (``PlacementService._on_heartbeat``)."""
        if not self.active:
            return
        state = self.state
        slot = state.servers.get(hb.server)
        if slot is None or state.cursor < self.replayed_at:
            return
        now = self.c.clock.now
        checked = self.in_order.get(hb.server)
        if checked is not None and checked[1] == hb.hosted:
            version, _, at = checked
            steady = slot.state is ServerState.ONLINE and now - at < RECHECK_S
            if version == state.cursor or steady:
                return
        strays = state.strays(hb.server, hb.hosted)
        missing = state.missing(hb.server, hb.hosted)
        if not strays and not missing:
            self.in_order[hb.server] = (state.cursor, hb.hosted, now)
            return
        if strays:
            self.send_once(Command(server=hb.server, action=Action.RELEASE, cameras=tuple(strays)))
        again = self.missed.to_reclaim(hb.server, missing)
        if again:
            self.send_once(Command(server=hb.server, action=Action.CLAIM, cameras=tuple(again)))

    def send_once(self, command: Command) -> None:
        key = CommandKey(command)
        if key in self.in_flight:
            return
        if self.c.tracing:
            self.c.step(
                f"repair from a heartbeat: {command.action} {_cameras(command)} on "
                f"{command.server}",
                command.server,
                *(a.camera for a in command.cameras),
            )
        self.send(key, command)


def _digest(items: tuple[Message, ...]) -> str:
    text = "|".join(item.model_dump_json() for item in items)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cameras(command: Command, most: int = 6) -> str:
    shown = ", ".join(f"{a.camera}@{a.epoch}" for a in command.cameras[:most])
    more = len(command.cameras) - most
    return f"[{shown}{f', +{more}' if more > 0 else ''}]"
