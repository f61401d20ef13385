"""Hypothesis drives the detector and the placement fold together through random histories.

Rules: storage fails or is repaired, the network drops or returns, heartbeats are
lost while the probe still answers, agents restart, time passes, the administrator
confirms, capacity changes, agents confirm or refuse any subset of the outstanding
commands. After every step the invariants of R4, R5, R7, R8, R10 and R11 must hold.

The placement policy is drawn too (issue 5): servers in sites and failover groups,
cross-group and cross-site failover allowed or not, preemption on or off, failback
release-first or make-before-break. Then also: no camera leaves its reach, only a
``low`` guest is preempted and only by a ``high`` camera, and a camera recording on a
healthy server is never moved unless failback or preemption asks for it (stickiness).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import hypothesis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from services.health.detector import Decision, Detector, Liveness, Probe
from services.placement.state import (
    ACCEPTS_CAMERAS,
    CameraState,
    Notice,
    Placement,
    PlacementIndex,
    ServerState,
    _steps,
)
from shared.config import (
    CameraConfig,
    ClusterConfig,
    FailbackMode,
    PlacementPolicy,
    Priority,
    ServerConfig,
)
from shared.messages import (
    Action,
    AnyEvent,
    Assignment,
    CameraMovePlanned,
    CameraPreempted,
    CapacityChanged,
    ClaimsConfirmed,
    Command,
    CommandRefused,
    FailureCause,
    Heartbeat,
    MoveReason,
    Refusal,
    ReleasesConfirmed,
    ServerDrained,
    ServerFailed,
    ServerUndrained,
)

TIMEOUT = 10.0
DELIBERATE = (MoveReason.FAILBACK, MoveReason.DRAIN)
"""Moves that may take a camera off a healthy server: going home, maintenance."""
FAILED = (ServerState.NETWORK_FAILED, ServerState.STORAGE_FAILED)
AGREES = {
    Liveness.UP: (ServerState.ONLINE, ServerState.FAILING_BACK),
    Liveness.PROBING: (ServerState.ONLINE, ServerState.FAILING_BACK),
    Liveness.NETWORK_FAILED: (ServerState.NETWORK_FAILED,),
    Liveness.STORAGE_FAILED: (ServerState.STORAGE_FAILED,),
}
which = st.integers(min_value=0, max_value=7)


@dataclass
class Agent:
    """What one simulated recording server does, seen from outside."""

    boot: int = 0
    sequence: int = 0
    net_up: bool = True
    heartbeats_lost: bool = False
    storage_ok: bool = True

    @property
    def heard(self) -> bool:
        """Its heartbeats reach the detector."""
        return self.net_up and not self.heartbeats_lost


class FailoverCluster(RuleBasedStateMachine):
    """The pure core of a whole cluster, with agents and an administrator played by rules."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.detector = Detector(network_timeout=TIMEOUT, reprobe_interval=1.0)
        self.config = ClusterConfig()
        self.placement = Placement()
        self.agents: dict[str, Agent] = {}
        self.log: list[AnyEvent] = []
        self.awaiting_confirmation: set[str] = set()
        self.previous_load: dict[str, int] = {}
        self.last_epoch = 0
        self.held: dict[str, tuple[str | None, ...]] = {}
        """Every camera's host, target and hosts still recording it until handed over
        (make-before-break), before the event being folded in: where it may be re-claimed."""
        self.ledger: dict[tuple[str, str], int] = {}
        """(server, camera) -> the newest epoch that agent has seen, as its SQLite ledger."""

    # ---- plumbing: the shells of health and placement, without a bus ----

    def server(self, index: int) -> str:
        return sorted(self.agents)[index % len(self.agents)]

    def apply(self, event: AnyEvent) -> None:
        """Log an event and fold it into placement; check the decisions it returns."""
        self.log.append(event)
        if isinstance(event, ServerFailed) and event.cause is FailureCause.STORAGE:
            self.awaiting_confirmation.add(event.server)
        settled = self.settled_on_healthy_servers()
        self.held = {
            c.id: (c.host, c.target, *c.release_after) for c in self.placement.cameras.values()
        }
        notices = self.placement.apply(event)
        self.track(notices)
        self.check_stickiness(settled, notices)

    def track(self, notices: list[Notice]) -> None:
        """R11: every move decision takes an epoch above every earlier one; a preemption
        displaces only a low guest, for a high camera (issue 5)."""
        for n in notices:
            if isinstance(n, CameraMovePlanned | CameraPreempted):
                assert n.epoch > self.last_epoch, f"epoch {n.epoch} after {self.last_epoch}"
                self.last_epoch = n.epoch
            if isinstance(n, CameraMovePlanned) and n.to not in self.held.get(n.camera, ()):
                # A move decided before a drain may be re-issued, and a camera re-claimed
                # where it still records; no new one goes to a drained server.
                assert not self.placement.servers[n.to].drained, f"{n.camera} sent to drained"
            if isinstance(n, CameraPreempted):
                hypothesis.event("a camera was preempted")
                assert self.placement.policy.preemption, "preemption while it is off"
                assert self.placement.cameras[n.camera].priority is Priority.LOW
                assert self.placement.cameras[n.by].priority is Priority.HIGH
                assert n.server != n.home, "a camera at home was preempted"

    def settled_on_healthy_servers(self) -> dict[str, str]:
        """Camera -> host, for cameras recording on a healthy server with no move under way."""
        return {
            cam.id: cam.host
            for cam in self.placement.cameras.values()
            if cam.host is not None
            and cam.target is None
            and not cam.release_from
            and self.placement.servers[cam.host].state is ServerState.ONLINE
        }

    def check_stickiness(self, settled: dict[str, str], notices: list[Notice]) -> None:
        """Issue 5: a re-plan never moves a camera recording on a healthy server unless
        failback or preemption asks for it (or that server has just failed)."""
        asked = {
            n.camera
            for n in notices
            if isinstance(n, CameraPreempted)
            or (isinstance(n, CameraMovePlanned) and n.reason in DELIBERATE)
        }
        for camera, host in settled.items():
            cam = self.placement.cameras[camera]
            if camera in asked or self.placement.servers[host].state is not ServerState.ONLINE:
                continue
            assert (cam.host, cam.target, cam.release_from) == (host, None, []), (
                f"{camera} moved off healthy {host} unasked"
            )

    def carry_out(self, decisions: list[Decision]) -> None:
        """Probe answers come from the agent's real reachability; events go to placement."""
        for d in decisions:
            if isinstance(d, Probe):
                reachable = self.agents[d.server].net_up
                self.carry_out(self.detector.probe_answered(d.server, reachable, self.now))
            else:
                self.apply(d)

    def beat(self, server: str) -> None:
        """The agent publishes a heartbeat; it reaches the detector only if it is heard."""
        agent = self.agents[server]
        agent.sequence += 1
        if not agent.heard:
            return
        hb = Heartbeat(
            server=server,
            boot_id=f"boot-{agent.boot}",
            sequence=agent.sequence,
            capacity=self.placement.servers[server].capacity,
            storage_ok=agent.storage_ok,
            storage_error=None if agent.storage_ok else "EIO",
        )
        self.carry_out(self.detector.heartbeat(hb, self.now))

    def advance(self, seconds: float) -> None:
        """Time passes; every agent heartbeats at the new time; the detector ticks."""
        self.now += seconds
        for server in sorted(self.agents):
            self.beat(server)
        self.carry_out(self.detector.tick(self.now))

    def agents_where(self, test: Callable[[Agent], bool]) -> list[str]:
        return [sid for sid, agent in sorted(self.agents.items()) if test(agent)]

    def storage_failed(self) -> list[str]:
        return sorted(
            sid for sid in self.agents if self.detector.liveness(sid) is Liveness.STORAGE_FAILED
        )

    def reachable_commands(self) -> list[Command]:
        return [c for c in self.placement.outstanding_commands() if self.agents[c.server].net_up]

    # ---- rules ----

    @initialize(
        capacities=st.lists(st.integers(min_value=0, max_value=4), min_size=2, max_size=4),
        policy=st.builds(
            PlacementPolicy,
            across_groups=st.booleans(),
            across_sites=st.booleans(),
            preemption=st.booleans(),
            failback=st.sampled_from(FailbackMode),
        ),
        data=st.data(),
    )
    def start(self, capacities: list[int], policy: PlacementPolicy, data: st.DataObject) -> None:
        servers = []
        cameras = []
        for i, capacity in enumerate(capacities):
            sid = f"rs-{i + 1}"
            site, group = data.draw(st.sampled_from([("a", "1"), ("a", "2"), ("b", "1")]))
            servers.append(ServerConfig(id=sid, capacity=capacity, site=site, group=group))
            full_or_not = st.one_of(st.just(capacity), st.integers(0, capacity))
            for k in range(data.draw(full_or_not, label=f"cameras of {sid}")):
                cameras.append(
                    CameraConfig(
                        id=f"cam-{sid}-{k}",
                        home=sid,
                        priority=data.draw(st.sampled_from(Priority)),
                        failback=data.draw(st.sampled_from([None, *FailbackMode])),
                    )
                )
        self.config = ClusterConfig(
            servers=tuple(servers), cameras=tuple(cameras), placement=policy
        )
        self.placement, notices = Placement.from_config(self.config)
        self.track(notices)
        for sid in self.placement.servers:
            self.agents[sid] = Agent()
            self.detector.watch(sid, self.now)
            self.beat(sid)

    @rule(i=which)
    def storage_fails(self, i: int) -> None:
        """R3: the agent sends the failing heartbeat at once."""
        server = self.server(i)
        self.agents[server].storage_ok = False
        self.beat(server)

    @precondition(lambda self: bool(self.agents_where(lambda a: not a.storage_ok)))
    @rule(data=st.data())
    def storage_is_repaired(self, data: st.DataObject) -> None:
        server = data.draw(st.sampled_from(self.agents_where(lambda a: not a.storage_ok)))
        self.agents[server].storage_ok = True
        self.beat(server)

    @rule(i=which, wait=st.booleans())
    def network_drops(self, i: int, wait: bool) -> None:
        """R2: the connection is gone; optionally wait the whole timeout."""
        self.agents[self.server(i)].net_up = False
        if wait:
            self.advance(TIMEOUT)

    @precondition(lambda self: bool(self.agents_where(lambda a: not a.net_up)))
    @rule(data=st.data())
    def network_returns(self, data: st.DataObject) -> None:
        """R6: heartbeats resume and the probe answers."""
        server = data.draw(st.sampled_from(self.agents_where(lambda a: not a.net_up)))
        self.agents[server].net_up = True
        self.advance(1.0)

    @rule(i=which, wait=st.booleans())
    def heartbeats_are_lost(self, i: int, wait: bool) -> None:
        """R2: silence while the probe still answers is not a failure."""
        self.agents[self.server(i)].heartbeats_lost = True
        if wait:
            self.advance(TIMEOUT)

    @precondition(lambda self: bool(self.agents_where(lambda a: a.heartbeats_lost)))
    @rule(data=st.data())
    def heartbeats_get_through(self, data: st.DataObject) -> None:
        server = data.draw(st.sampled_from(self.agents_where(lambda a: a.heartbeats_lost)))
        self.agents[server].heartbeats_lost = False
        self.beat(server)

    @rule(i=which)
    def agent_restarts(self, i: int) -> None:
        """R1: a new boot id, sequence from zero."""
        server = self.server(i)
        agent = self.agents[server]
        agent.boot, agent.sequence = agent.boot + 1, 0
        self.beat(server)

    @rule(seconds=st.sampled_from([0.5, 1.0, 5.0, TIMEOUT]))
    def time_passes(self, seconds: float) -> None:
        self.advance(seconds)

    @rule(i=which)
    def administrator_confirms_any_server(self, i: int) -> None:
        """R7: mostly refused (healthy, network-failed, still failing); each refusal says why."""
        self.confirm(self.server(i))

    @precondition(lambda self: bool(self.storage_failed()))
    @rule(data=st.data())
    def administrator_confirms_a_storage_failed_server(self, data: st.DataObject) -> None:
        """R7: accepted once storage is repaired and the server heartbeats."""
        self.confirm(data.draw(st.sampled_from(self.storage_failed())))

    def confirm(self, server: str) -> None:
        """R7: refused with a reason while storage still fails; else failback starts."""
        agent = self.agents[server]
        liveness = self.detector.liveness(server)
        try:
            events = self.detector.confirm_failback(server, self.now, by="test")
        except ValueError as exc:
            reason = str(exc)
            if liveness is not Liveness.STORAGE_FAILED:
                assert "is not storage-failed" in reason
            elif agent.heard and not agent.storage_ok:
                assert "still reports failed storage" in reason
            return
        assert liveness is Liveness.STORAGE_FAILED
        assert agent.storage_ok or not agent.heard, "confirmed while storage still fails"
        assert server in self.awaiting_confirmation
        self.awaiting_confirmation.discard(server)
        for event in events:
            self.apply(event)

    @rule(i=which)
    def administrator_drains(self, i: int) -> None:
        """Issue 6: maintenance; the server's cameras move away where channels are free."""
        self.apply(ServerDrained(server=self.server(i)))

    @precondition(lambda self: any(s.drained for s in self.placement.servers.values()))
    @rule(data=st.data())
    def administrator_undrains(self, data: st.DataObject) -> None:
        drained = sorted(sid for sid, s in self.placement.servers.items() if s.drained)
        self.apply(ServerUndrained(server=data.draw(st.sampled_from(drained))))

    @rule(i=which, capacity=st.integers(min_value=0, max_value=5))
    def capacity_changes(self, i: int, capacity: int) -> None:
        self.apply(CapacityChanged(server=self.server(i), capacity=capacity))

    @precondition(lambda self: bool(self.reachable_commands()))
    @rule(data=st.data())
    def agents_confirm_some_commands(self, data: st.DataObject) -> None:
        """Any subset of the commands, any subset of each, in any order."""
        commands = data.draw(st.permutations(self.reachable_commands()), label="commands")
        count = data.draw(st.integers(1, len(commands)), label="how many")
        for command in commands[:count]:
            picked = data.draw(
                st.lists(st.sampled_from(command.cameras), min_size=1, unique=True),
                label=f"{command.action} on {command.server}",
            )
            self.answer(command, tuple(picked))

    @rule()
    def agents_confirm_everything(self) -> None:
        """Every reachable agent carries out everything, until nothing is left for them."""
        for _ in range(10):
            commands = self.reachable_commands()
            if not commands:
                return
            for c in commands:
                self.answer(c, c.cameras)
        raise AssertionError(f"commands never settle: {self.reachable_commands()}")

    @precondition(lambda self: bool(self.reachable_commands()))
    @rule(data=st.data(), ahead=st.integers(min_value=1, max_value=3))
    def agent_refuses_a_stale_command(self, data: st.DataObject, ahead: int) -> None:
        """R11: an agent has seen a newer epoch; placement reissues above it."""
        command = data.draw(st.sampled_from(self.reachable_commands()), label="refused")
        a = data.draw(st.sampled_from(command.cameras), label="assignment")
        self.ledger[command.server, a.camera] = a.epoch + ahead
        self.answer(command, (a,))

    def answer(self, command: Command, cameras: tuple[Assignment, ...]) -> None:
        """The agent carries out ``cameras`` of the command as the real one does: an
        assignment older than its ledger is refused (and stays refused), the others are
        done and remembered."""
        seen = {a.camera: self.ledger.get((command.server, a.camera), 0) for a in cameras}
        done = tuple(a for a in cameras if a.epoch >= seen[a.camera])
        refused = tuple(
            Refusal(camera=a.camera, epoch=a.epoch, seen_epoch=seen[a.camera], reason="older")
            for a in cameras
            if a.epoch < seen[a.camera]
        )
        for a in done:
            self.ledger[command.server, a.camera] = a.epoch
        if done:
            kind = ClaimsConfirmed if command.action is Action.CLAIM else ReleasesConfirmed
            self.apply(kind(server=command.server, cameras=done))
        if refused:
            self.apply(CommandRefused(server=command.server, refusals=refused))

    # ---- invariants ----

    @invariant()
    def r4_no_server_exceeds_its_capacity(self) -> None:
        """R4: no step puts a server above its capacity (one lowered under its load may stay)."""
        for sid, slot in self.placement.servers.items():
            load = self.placement.load(sid)
            allowed = max(slot.capacity, self.previous_load.get(sid, 0))
            assert load <= allowed, f"{sid}: load {load}, capacity {slot.capacity}"
            self.previous_load[sid] = load

    @invariant()
    def r4_r10_every_camera_is_on_one_server_or_pending(self) -> None:
        """R4/R10: each configured camera is somewhere or Pending, and keeps its home."""
        homes = {c.id: c.home for c in self.config.cameras}
        assert {c: cam.home for c, cam in self.placement.cameras.items()} == homes
        channels = 0
        for cam in self.placement.cameras.values():
            used = {cam.host, cam.target, *cam.release_from, *cam.release_after, *cam.left_on}
            used -= {None}
            assert used <= set(self.placement.servers)
            channels += len(used)
            if cam.state is CameraState.PENDING and cam.preempted_by is None:
                assert cam.release_from == [], f"{cam.id} Pending yet releasing"
            if cam.release_from and cam.preempted_by is None:
                assert cam.reason in DELIBERATE, "only failback or drain releases first (R8)"
            if cam.release_after:
                assert cam.reason in DELIBERATE, "only failback or drain hands over (R8)"
        assert sum(self.placement.load(s) for s in self.placement.servers) == channels

    @invariant()
    def r4_nothing_is_hosted_or_targeted_by_a_failed_server(self) -> None:
        """R4: a failed server hosts nothing, is sent nothing, and is not waited on; what
        was left on it when it failed keeps its channel there, released once it is back."""
        for sid, slot in self.placement.servers.items():
            if slot.state not in FAILED:
                continue
            assert sid not in self.placement.free_capacity()
            for cam in self.placement.cameras.values():
                assert sid not in (cam.host, cam.target), f"{cam.id} on failed {sid}"
                assert sid not in cam.release_from, f"{cam.id} waits on failed {sid}"
                assert sid not in cam.release_after, f"{cam.id} hands over from failed {sid}"
            assert all(c.server != sid for c in self.placement.outstanding_commands())

    @invariant()
    def r7_a_storage_failed_server_gets_nothing_back_without_confirmation(self) -> None:
        """R7: until the administrator confirms, it stays storage-failed and empty."""
        for sid in self.awaiting_confirmation:
            assert self.detector.liveness(sid) is Liveness.STORAGE_FAILED
            assert self.placement.servers[sid].state is ServerState.STORAGE_FAILED
            assert self.placement.load(sid) == len(self.placement.index.left.get(sid, ()))

    @invariant()
    def r2_r6_detector_and_placement_agree_on_every_server(self) -> None:
        """R2/R6: placement's view of a server follows the detector's decisions."""
        for sid, slot in self.placement.servers.items():
            liveness = self.detector.liveness(sid)
            assert liveness is not None
            assert slot.state in AGREES[liveness], f"{sid}: {liveness} vs {slot.state}"

    @invariant()
    def r5_nothing_is_pending_while_a_channel_it_may_use_is_free(self) -> None:
        """R5: a Pending camera means no channel within its reach is free (issue 5: the
        reach is its group, its site or everywhere, as the policy says)."""
        free = self.placement.free_capacity()
        topology = self.placement.topology()
        for cam in self.placement.cameras.values():
            if cam.state is not CameraState.PENDING or cam.release_from:
                continue  # a preempted camera waits for its host's release first
            if cam.priority is Priority.NEVER:
                assert free.get(cam.home, 0) == 0, f"{cam.id} waits though home is free"
                continue
            usable = {s: n for s, n in free.items() if topology.distance(cam.home, s) is not None}
            assert not any(usable.values()), f"{cam.id} Pending with {usable} free"

    @invariant()
    def issue5_no_camera_leaves_its_reach(self) -> None:
        """Issue 5: a camera records or moves only within its group, or its site, or
        across sites, as far as the policy allows."""
        topology = self.placement.topology()
        for cam in self.placement.cameras.values():
            for server in (s for s in (cam.host, cam.target) if s is not None):
                assert topology.distance(cam.home, server) is not None, (
                    f"{cam.id} of {cam.home} on {server} out of reach"
                )

    @invariant()
    def issue8_the_index_mirrors_the_cameras_and_servers(self) -> None:
        """Issue 8: the index the fold keeps in step, event by event, is what a fresh pass
        over the cameras and servers builds; and a preempted camera's host has still to
        release it (the fold looks for the high cameras waiting on one among the
        unsettled only)."""
        state = self.placement
        kept = state.index
        fresh = PlacementIndex(state.cameras.values(), state.servers.values())
        assert (kept.server_position, kept.drained) == (fresh.server_position, fresh.drained)
        assert kept.failing_back == fresh.failing_back
        assert kept.position == fresh.position
        assert kept.homed == fresh.homed
        assert {s: c for s, c in kept.holding.items() if c} == fresh.holding
        assert kept.by_state == fresh.by_state
        assert kept.unsettled == fresh.unsettled
        for cam in self.placement.cameras.values():
            assert cam.preempted_by is None or cam.release_from, f"{cam.id} waits on nothing"

    @invariant()
    def issue8_the_kept_commands_are_what_a_full_pass_derives(self) -> None:
        """Issue 8: the outstanding commands, derived again only for the cameras touched
        since the last derivation, are those of a pass over every unsettled camera."""
        state = self.placement
        assert state.outstanding_commands() == _every_command(state)

    @invariant()
    def r11_epochs_only_grow(self) -> None:
        """R11: the next epoch is above every epoch handed out."""
        epochs = [c.epoch for c in self.placement.cameras.values()]
        assert self.placement.next_epoch > max(epochs, default=0)

    def teardown(self) -> None:
        """R11: replaying the log, or resuming from a snapshot, gives the same state."""
        if not self.agents:
            return
        replayed, _ = Placement.from_config(self.config)
        for event in self.log:
            replayed.apply(event)
        assert replayed.model_dump() == self.placement.model_dump()
        restored = Placement.model_validate_json(self.placement.model_dump_json())
        assert restored.model_dump() == self.placement.model_dump()
        assert list(restored.cameras) == list(self.placement.cameras), "camera order is state"


# database=None: no example database written into the repository.
FailoverCluster.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, database=None
)
test_r4_r5_r7_r8_r10_r11_random_histories_keep_every_invariant = FailoverCluster.TestCase


def _every_command(state: Placement) -> list[Command]:
    """``outstanding_commands`` as a pass over every camera derives it: its steps, and
    the release of each camera left on a server that is back."""
    alive = {s for s, slot in state.servers.items() if slot.state in ACCEPTS_CAMERAS}
    by_step: dict[tuple[str, Action, bool], list[Assignment]] = {}
    for cam in sorted(state.cameras.values(), key=lambda c: c.id):
        steps = _steps(cam) + [(s, Action.RELEASE, False) for s in cam.left_on if s in alive]
        for step in steps:
            by_step.setdefault(step, []).append(Assignment(camera=cam.id, epoch=cam.epoch))
    return [
        Command(server=server, action=action, cameras=tuple(cams), first_segment=first)
        for (server, action, first), cams in sorted(by_step.items())
    ]
