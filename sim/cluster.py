"""The simulated cluster: recording servers' agents (``FleetAgent``'s epoch rules), the
health and placement leaders (``sim.shells``), the event log, and the invariants,
checked after every step that could break them."""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from services.health.detector import Liveness
from services.placement.state import CameraState, Notice, Placement, PlacementIndex, ServerState
from services.sim.fleet import FleetAgent
from shared.config import Priority
from shared.messages import (
    Action,
    AnyEvent,
    CameraMovePlanned,
    CameraPending,
    CameraPreempted,
    Command,
    CommandResult,
    FailbackConfirmed,
    FailureCause,
    Heartbeat,
    ServerFailed,
)
from sim.clock import Clock
from sim.log import EventLog
from sim.network import Link, Network
from sim.scenario import Scenario, Settings
from sim.shells import HealthShell, PlacementShell, _cameras
from sim.violations import Violation

FAILED = (ServerState.NETWORK_FAILED, ServerState.STORAGE_FAILED)
AGREES = {
    Liveness.UP: (ServerState.ONLINE, ServerState.FAILING_BACK),
    Liveness.PROBING: (ServerState.ONLINE, ServerState.FAILING_BACK),
    Liveness.NETWORK_FAILED: (ServerState.NETWORK_FAILED,),
    Liveness.STORAGE_FAILED: (ServerState.STORAGE_FAILED,),
}


@dataclass(frozen=True, slots=True)
class SimHeartbeat:
    """A heartbeat's fields that the detector and placement's repair read (R1)."""

    server: str
    boot_id: str
    sequence: int
    hosted: dict[str, int]
    storage_ok: bool
    storage_error: str | None


class Node:
    """One recording server: its agent, its link, whether its process runs."""

    def __init__(self, server: str, capacity: int) -> None:
        self.id = server
        self.agent = FleetAgent(server, capacity, boot_id=f"{server}/0")
        self.link = Link()
        self.up = True
        self.boots = 0

    def restart(self) -> dict[str, int]:
        """A new boot: sequence from zero, nothing recording; the epoch ledger is kept
        (SQLite in the real agent). Returns what it recorded."""
        self.boots += 1
        agent = self.agent
        recorded, agent.hosted, agent.claims = agent.hosted, {}, {}
        agent.boot_id, agent.sequence = f"{self.id}/{self.boots}", 0
        self.link.generation += 1
        return recorded


@dataclass
class Awaiting:
    """A storage-failed server waiting for the administrator (R7)."""

    index: int
    """The failure's place in the log."""
    floor: int | None = None
    """The first epoch placement handed out once it knew: no claim this new may reach it."""


class Cluster:
    """The whole simulated world of one seed."""

    def __init__(self, settings: Settings, scenario: Scenario, bus_rng: random.Random) -> None:
        self.settings, self.scenario, self.config = settings, scenario, scenario.config
        self.clock = Clock()
        self.net = Network(self.clock, bus_rng, scenario.bus)
        self.rng = random.Random(f"agents-{settings.seed}")  # noqa: S311 (a simulation)
        self.log = EventLog(lambda: self.clock.now)
        self.log.on_append.append(self._appended)
        self.nodes = {s.id: Node(s.id, s.capacity) for s in self.config.servers}
        self.recorders: dict[str, dict[str, int]] = {}
        """Camera -> server -> epoch it records under (the agents' view, kept in step)."""
        self.awaiting: dict[str, Awaiting] = {}
        self.health = HealthShell(self)
        self.placement: PlacementShell | None = None
        self.placement_term = 0
        self.snapshot: str | None = None
        self.steps: list[tuple[float, str, tuple[str, ...]]] = []
        self.tracing = settings.trace
        self.calm = False
        self.done = False
        self.findings: dict[str, int] = {}
        self.first_findings: dict[str, tuple[float, str]] = {}
        self.counts = {"claims": 0, "releases": 0, "refusals": 0, "leader_changes": 0}

    # ---- tracing ----

    def step(self, text: str, *entities: str) -> None:
        """One line of the trace (kept only when tracing)."""
        if self.tracing:
            self.steps.append((self.clock.now, text, entities))

    # ---- start ----

    def start(self) -> None:
        """Leaders are elected, agents heartbeat, placement claims every camera at home."""
        t = self.config.timing
        self.health.elect()
        self.elect_placement(from_log=False)
        clock = self.clock
        clock.every(t.heartbeat_interval, self.heartbeat_round, lambda: self.done)
        clock.every(0.5, self.health.tick, lambda: self.done)
        clock.every(0.25, self.wake_sender, lambda: self.done)
        clock.every(self.scenario.commit_every, self.commit_now, lambda: self.done)

    def elect_placement(self, *, from_log: bool) -> None:
        """A new placement leader, with a newer lease epoch (its fence, R12)."""
        self.placement_term += 1
        self.step(
            f"placement leader {self.placement_term} elected "
            f"({'replaying the whole log' if from_log else 'from the last snapshot'})"
        )
        old = self.placement
        shell = PlacementShell(self, self.placement_term, from_log)
        self.placement = shell
        if self.scenario.small and old is not None:
            self.check_replay(old, shell)
        shell.fold()

    def depose_placement(self) -> None:
        if self.placement is not None:
            self.step(f"placement leader {self.placement.term} deposed")
            self.placement.active = False
            self.placement = None
            self.counts["leader_changes"] += 1

    def commit(self, shell: PlacementShell) -> None:
        """The leader's snapshot, as it commits it to KV (defaults left out)."""
        self.snapshot = shell.state.model_dump_json(exclude_defaults=True)

    def commit_now(self) -> None:
        if self.placement is not None:
            self.commit(self.placement)

    def wake_sender(self) -> None:
        if self.placement is not None:
            self.placement.send_wanted()

    # ---- heartbeats ----

    def heartbeat_round(self) -> None:
        for node in self.nodes.values():
            if node.up:
                self.beat(node)

    def beat(self, node: Node) -> None:
        """R1: one heartbeat, unless the agent's heartbeats are lost on the way."""
        agent = node.agent
        # The fields the detector and placement read, without pydantic's cost per beat
        # (a million a virtual quarter hour at 1,000 servers).
        hb = cast(
            Heartbeat,
            SimHeartbeat(
                node.id,
                agent.boot_id,
                agent.sequence,
                dict(agent.hosted),
                agent.storage_ok,
                None if agent.storage_ok else "storage failure simulated",
            ),
        )
        agent.sequence += 1
        if not node.link.heartbeats_lost:
            self.net.send(node.link, functools.partial(self.heard, hb))

    def heard(self, hb: Heartbeat) -> None:
        self.health.heard(hb)
        if self.placement is not None:
            self.placement.heard(hb)

    # ---- agents ----

    def carry_out(self, node: Node, command: Command) -> CommandResult:
        """The agent's rules (``FleetAgent.carry_out``), and a make-before-break claim
        whose first segment is not written in time is left out of done."""
        agent = node.agent
        before = {a.camera: agent.hosted.get(a.camera) for a in command.cameras}
        result = agent.carry_out(command, self.clock.now)
        fails = self.scenario.first_segment_fails
        if fails and command.first_segment and command.action is Action.CLAIM and result.done:
            kept = tuple(a for a in result.done if self.rng.random() >= fails)
            if len(kept) != len(result.done):
                result = result.model_copy(update={"done": kept})
        self.counts["refusals"] += len(result.refused)
        if self.tracing and command.cameras:
            refused = f", refused {len(result.refused)}" if result.refused else ""
            self.step(
                f"{node.id} carries out {command.action} {_cameras(command)} "
                f"(fence {command.fence}){refused}",
                node.id,
                *(a.camera for a in command.cameras),
            )
        for camera, was in before.items():
            now = agent.hosted.get(camera)
            if now != was:
                self.recorded(node, camera, was, now)
        return result

    def recorded(self, node: Node, camera: str, was: int | None, now: int | None) -> None:
        """An agent started or stopped recording a camera: the agents' invariants."""
        holders = self.recorders.setdefault(camera, {})
        if now is None:
            holders.pop(node.id, None)
            self.counts["releases"] += 1
            return
        holders[node.id] = now
        self.counts["claims"] += 1
        same = sorted(s for s, e in holders.items() if e == now and s != node.id)
        if same:
            raise Violation(
                "one_recorder_per_epoch",
                f"{camera} recorded by {node.id} and by {same} under the same epoch {now}",
                (camera, node.id, *same),
            )
        agent = node.agent
        shell = self.placement
        if was is None and len(agent.hosted) > agent.capacity:
            self.check_agent_capacity(node, camera)
        waiting = self.awaiting.get(node.id)
        if waiting is not None and waiting.floor is not None and now >= waiting.floor:
            raise Violation(
                "storage_failed_gets_nothing_unconfirmed",
                f"{node.id}, storage-failed and not confirmed, claims {camera} under epoch "
                f"{now}, decided after its failure (epochs from {waiting.floor})",
                (node.id, camera),
            )
        if shell is not None:
            cam = shell.state.cameras.get(camera)
            if cam is not None and cam.state is CameraState.PENDING and cam.epoch == now:
                raise Violation(
                    "pending_and_recorded",
                    f"{camera} is Pending under epoch {now} and {node.id} records it under it",
                    (camera, node.id),
                )

    def check_agent_capacity(self, node: Node, camera: str) -> None:
        """A server that starts recording a camera records no more than its capacity, or
        than placement's load on it (a capacity lowered under the load leaves the cameras
        there). Placement counts what a failed server may still record (``left_on``)
        until it is released, so leftovers never excuse an excess: once they did (strays
        of a server back from a failure, released only at its next heartbeat, seeds 90
        and 199), and before that a camera made Pending kept its epoch (seed 4). The
        violation names the leftovers, to tell those cases apart."""
        agent, shell = node.agent, self.placement
        state = shell.state if shell is not None else None
        allowed = max(agent.capacity, state.load(node.id) if state is not None else 0)
        if len(agent.hosted) <= allowed:
            return
        leftovers: dict[str, list[str]] = {"stray": [], "pending": []}
        if state is not None:
            for cid, epoch in agent.hosted.items():
                cam = state.cameras.get(cid)
                if cam is None or node.id in (cam.host, cam.target):
                    continue
                if cam.state is CameraState.PENDING and cam.epoch == epoch:
                    leftovers["pending"].append(cid)
                elif cam.epoch > epoch:
                    leftovers["stray"].append(cid)
        raise Violation(
            "agent_capacity",
            f"{node.id} starts recording {camera} and records {len(agent.hosted)} cameras, "
            f"above its capacity {agent.capacity} (placement's load {allowed}); strays "
            f"{sorted(leftovers['stray'])[:4]}, Pending under the same epoch "
            f"{sorted(leftovers['pending'])[:4]}",
            (node.id, camera),
        )

    def known(self, kind: str, detail: str) -> None:
        """A known finding: counted, its first instance kept, the run goes on (with
        ``strict``, it is a violation like any other)."""
        if self.settings.strict:
            raise Violation(kind, detail)
        self.findings[kind] = self.findings.get(kind, 0) + 1
        self.first_findings.setdefault(kind, (self.clock.now, detail))
        self.step(f"known finding {kind}: {detail}")

    def restart(self, node: Node) -> None:
        for camera, epoch in sorted(node.restart().items()):
            self.recorded(node, camera, epoch, None)

    # ---- the log ----

    def _appended(self, index: int, event: AnyEvent) -> None:
        if self.tracing:
            self.step(f"log #{index}: {_describe(event)}", *_entities(event))
        if isinstance(event, ServerFailed) and event.cause is FailureCause.STORAGE:
            self.awaiting.setdefault(event.server, Awaiting(index))
        elif isinstance(event, FailbackConfirmed):
            self.awaiting.pop(event.server, None)
        if self.placement is not None:
            self.placement.schedule_fold()

    def before_fold(self, shell: PlacementShell, index: int, event: AnyEvent) -> None:
        if isinstance(event, ServerFailed):
            waiting = self.awaiting.get(event.server)
            if waiting is not None and waiting.index == index and waiting.floor is None:
                waiting.floor = shell.state.next_epoch

    def after_fold(
        self, shell: PlacementShell, index: int, event: AnyEvent, notices: list[Notice]
    ) -> None:
        """Placement's invariants after each event it folds."""
        state = shell.state
        for n in notices:
            if isinstance(n, CameraMovePlanned | CameraPreempted):
                if n.epoch <= shell.last_epoch:
                    raise Violation(
                        "epochs_grow",
                        f"{n.camera} given epoch {n.epoch} after {shell.last_epoch}",
                        (n.camera,),
                    )
                shell.last_epoch = n.epoch
            elif isinstance(n, CameraPending):
                cam = state.cameras[n.camera]
                if cam.release_from and cam.preempted_by is None:
                    raise Violation(
                        "pending_and_hosted",
                        f"{cam.id} Pending yet still released from {cam.release_from}",
                        (cam.id, *cam.release_from),
                    )
        if self.scenario.small or shell.state.cursor % 50 == 0:
            self.check_capacity(shell)
        else:
            gained = {n.to for n in notices if isinstance(n, CameraMovePlanned)}
            self.check_capacity(shell, sorted(gained))
        if isinstance(event, ServerFailed) and (held := _held_beyond_left(state, event.server)):
            raise Violation(
                "failed_server_holds_nothing",
                f"{event.server} failed ({event.cause}) yet holds {held[:5]}",
                (event.server, *held[:5]),
            )
        for sid, waiting in self.awaiting.items():
            if waiting.index < state.cursor:
                slot = state.servers[sid]
                if slot.state is not ServerState.STORAGE_FAILED or _held_beyond_left(state, sid):
                    raise Violation(
                        "storage_failed_gets_nothing_unconfirmed",
                        f"{sid} awaits confirmation yet is {slot.state} and holds "
                        f"{_held_beyond_left(state, sid)[:5]} in placement",
                        (sid,),
                    )
        self.check_pending(state)

    # ---- invariants ----

    def check_capacity(self, shell: PlacementShell, servers: list[str] | None = None) -> None:
        """R4: no fold puts a server above its capacity (one lowered under its load may
        stay there, never grow). ``servers``: only those (a large fleet checks every
        server every 50 events, and at each event those that were given a camera)."""
        state = shell.state
        holding, previous = state.index.holding, shell.previous_load
        for sid in state.servers if servers is None else servers:
            slot = state.servers[sid]
            load = len(holding.get(sid, ()))
            if load > slot.capacity and load > previous.get(sid, 0):
                raise Violation(
                    "placement_capacity",
                    f"{sid} holds {load} channels, capacity {slot.capacity} "
                    f"(was {previous.get(sid, 0)})",
                    (sid, *sorted(holding.get(sid, ()))[:5]),
                )
            previous[sid] = load

    def check_pending(self, state: Placement) -> None:
        """R5: a Pending camera means no channel within its reach is free."""
        pending = state.index.by_state[CameraState.PENDING]
        if not pending:
            return
        free = state.free_capacity()
        if not any(free.values()):
            return
        topology = state.topology()
        usable = sorted(s for s, n in free.items() if n > 0)
        for cid in sorted(pending):
            cam = state.cameras[cid]
            if cam.release_from:
                continue  # a preempted camera waits for its host's release first
            if cam.priority is Priority.NEVER:
                reach = [cam.home] if free.get(cam.home, 0) else []
            else:
                reach = [s for s in usable if topology.distance(cam.home, s) is not None]
            if reach:
                raise Violation(
                    "pending_while_capacity_free",
                    f"{cid} (home {cam.home}) Pending while {reach[:5]} have free channels",
                    (cid, cam.home, *reach[:3]),
                )

    def check_periodically(self) -> None:
        """What costs a pass over every server or camera: a few times a virtual minute."""
        shell = self.placement
        detector = self.health.detector
        if shell is None:
            return
        state = shell.state
        if detector is not None and state.cursor == len(self.log):
            for sid, slot in state.servers.items():
                liveness = detector.liveness(sid)
                if liveness is None or slot.state not in AGREES[liveness]:
                    raise Violation(
                        "detector_and_placement_agree",
                        f"{sid}: detector {liveness}, placement {slot.state}",
                        (sid,),
                    )
        for sid, slot in state.servers.items():
            if slot.state in FAILED and (held := _held_beyond_left(state, sid)):
                raise Violation(
                    "failed_server_holds_nothing",
                    f"{sid} is {slot.state} yet holds {held[:5]}",
                    (sid,),
                )
        if self.scenario.small:
            self.check_index(state)
            self.check_recorders()

    def check_index(self, state: Placement) -> None:
        """Issue 8: the index kept event by event is what a fresh pass builds."""
        kept = state.index
        fresh = PlacementIndex(state.cameras.values(), state.servers.values())
        same = (
            kept.position == fresh.position
            and kept.homed == fresh.homed
            and {s: c for s, c in kept.holding.items() if c} == fresh.holding
            and kept.by_state == fresh.by_state
            and kept.unsettled == fresh.unsettled
            and kept.drained == fresh.drained
            and kept.failing_back == fresh.failing_back
        )
        if not same:
            raise Violation("index_mirrors_state", "the placement index drifted from the state")

    def check_recorders(self) -> None:
        """The agents' view kept in step is what the agents hold."""
        held: dict[str, dict[str, int]] = {}
        for sid, node in self.nodes.items():
            for camera, epoch in node.agent.hosted.items():
                held.setdefault(camera, {})[sid] = epoch
        kept = {c: h for c, h in self.recorders.items() if h}
        if held != kept:
            raise Violation("simulator_bookkeeping", "the recorders map drifted from the agents")

    def check_replay(self, old: PlacementShell, new: PlacementShell) -> None:
        """R11: the new leader, replaying the log from the snapshot (or from the start) up
        to where the deposed one was, holds the same state."""
        target = old.state.cursor
        state = new.state
        if state.cursor > target:
            return
        events = self.log.events
        while state.cursor < target:
            state.apply(events[state.cursor])
            state.cursor += 1
        mine, theirs = state.model_dump(), old.state.model_dump()
        if mine != theirs:
            differ = sorted(
                c for c in theirs["cameras"] if mine["cameras"].get(c) != theirs["cameras"][c]
            )
            raise Violation(
                "replay_gives_the_same_state",
                f"a new leader replaying to log position {target} differs from the deposed "
                f"one on {len(differ)} cameras {differ[:5]} (next epoch "
                f"{mine['next_epoch']} vs {theirs['next_epoch']})",
                tuple(differ[:5]),
            )
        new.previous_load = state.loads()


def _describe(event: AnyEvent) -> str:
    fields = event.model_dump(exclude={"time", "schema_version", "type"}, by_alias=True)
    parts = []
    for k, v in fields.items():
        if k in ("cameras", "refusals") and isinstance(v, list | tuple):
            items = [
                f"{d['camera']}@{d['epoch']}"
                + (f"(seen {d['seen_epoch']})" if "seen_epoch" in d else "")
                for d in v[:6]
            ]
            more = f", +{len(v) - 6}" if len(v) > 6 else ""
            parts.append(f"{k}=[{', '.join(items)}{more}]")
        else:
            parts.append(f"{k}={v}")
    return f"{event.type} " + " ".join(parts)


def _entities(event: AnyEvent) -> Iterable[str]:
    found = [getattr(event, "server", None)]
    for a in getattr(event, "cameras", ()) or ():
        found.append(getattr(a, "camera", None))
    for r in getattr(event, "refusals", ()) or ():
        found.append(r.camera)
    return tuple(x for x in found if isinstance(x, str))


def _held_beyond_left(state: Placement, server: str) -> list[str]:
    """Cameras holding a channel on a server other than those left on it when it failed
    (``CameraSlot.left_on``: it may still record them, and releases them once back)."""
    index = state.index
    return sorted(index.holding_on(server) - index.left.get(server, set()))
