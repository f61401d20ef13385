"""Who hosts which camera, and how each event on the log changes that (R4, R5, R8, R10, R11).

``Placement`` is a pure fold: ``apply(event)`` mutates the state and returns
the events placement publishes about its decisions. It never reads the clock
and never touches the bus, so a replay of the same inputs makes the same
decisions, and the shell can persist it, kill it and resume it. An in-memory
``PlacementIndex`` (cameras by server and by state) keeps an event's cost to the
cameras it touches, at 100k cameras and beyond (issue 8).

A camera is *settled* on ``host``; while it moves it has a ``target`` and
possibly hosts that must confirm a release first (``release_from``, R8).
Every decision takes a fresh ``epoch`` (fencing token) from ``next_epoch``.

A make-before-break failback keeps the old host recording (``release_after``)
until home confirms its first segment; a preempted camera keeps its channel on
its host (``release_from``) until the host confirms the release, and only then
does the high camera that displaced it get that channel.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, Literal, cast

from pydantic import BaseModel, Field, PrivateAttr

from services.placement.planner import (
    PRIORITY_ORDER,
    Candidate,
    Guest,
    Topology,
    choose_victims,
    plan,
)
from shared.config import ClusterConfig, FailbackMode, PlacementPolicy, Priority
from shared.messages import (
    Action,
    AnyEvent,
    Assignment,
    CameraMoved,
    CameraMovePlanned,
    CameraPending,
    CameraPreempted,
    CapacityChanged,
    ClaimsConfirmed,
    Command,
    CommandRefused,
    DrainCompleted,
    FailbackCompleted,
    FailbackStarted,
    FailureCause,
    MoveReason,
    ReleasesConfirmed,
    ServerDrained,
    ServerFailed,
    ServerRecovered,
    ServerUndrained,
    StorageRepaired,
)

Notice = (
    CameraMovePlanned
    | CameraMoved
    | CameraPending
    | CameraPreempted
    | DrainCompleted
    | FailbackStarted
    | FailbackCompleted
)


MAX_PLAUSIBLE_EPOCH = 2**62
"""A refusal claiming an agent saw an epoch this high is not believed (issue 7): at a
million moves a second it takes 146,000 years to get there, and following it would
push every camera's next epoch to the 64-bit ceiling, where no command is valid."""

ROUNDS_TO_SETTLE = 4
"""Command rounds a what-if carries out: a release, then the claim it frees, and spare."""


class ServerState(StrEnum):
    """A server as the operator sees it."""

    ONLINE = "online"
    NETWORK_FAILED = "network_failed"
    STORAGE_FAILED = "storage_failed"
    FAILING_BACK = "failing_back"


class CameraState(StrEnum):
    """A camera as the operator sees it."""

    HOME = "home"
    FAILED_OVER = "failed_over"
    PENDING = "pending"
    MOVING = "moving"


ACCEPTS_CAMERAS = (ServerState.ONLINE, ServerState.FAILING_BACK)


class ServerSlot(BaseModel):
    """One recording server in the placement state."""

    id: str
    capacity: int
    site: str = "default"
    group: str = "default"
    state: ServerState = ServerState.ONLINE
    storage_ok: bool = True
    drained: bool = Field(False, description="Maintenance: nothing is placed here.")
    drain_reported: bool = Field(False, description="drain_completed published for it.")


class CameraSlot(BaseModel):
    """One camera: where it records, and where it is going."""

    id: str
    home: str
    priority: Priority = Priority.MEDIUM
    failback: FailbackMode | None = Field(None, description="None: the policy's failback.")
    host: str | None = Field(None, description="Where it records now (confirmed by the agent).")
    target: str | None = Field(None, description="Where it is moving, while a move is under way.")
    release_from: list[str] = Field(default_factory=list, description="Must release first (R8).")
    release_after: list[str] = Field(
        default_factory=list,
        description="Make-before-break: still recording; released once the target confirms.",
    )
    left_on: list[str] = Field(
        default_factory=list,
        description="Servers that failed while holding it and may still record it under an "
        "older epoch: each releases it once it is back, and its channel there counts until "
        "then (R4).",
    )
    preempted_by: str | None = Field(None, description="The high camera that displaced it.")
    epoch: int = 0
    moved_from: str | None = None
    reason: MoveReason = MoveReason.START

    @property
    def state(self) -> CameraState:
        """The operator's word for where this camera stands."""
        if self.target is not None:
            return CameraState.MOVING
        if self.host is None:
            return CameraState.PENDING
        return CameraState.HOME if self.host == self.home else CameraState.FAILED_OVER

    @property
    def shown_host(self) -> str | None:
        """The server whose channel this camera occupies."""
        return self.target if self.target is not None else self.host


class PlacementIndex:
    """Which cameras each server and each state concerns: a mirror of the cameras' home,
    host, target, release_from and release_after, and which servers are drained or
    failing back, so that an event costs what it touches and not a pass over every
    camera or server (issue 8). ``Placement`` builds it on first use and keeps it in
    step: every change of a camera's fields happens inside ``updating``, every change
    of a server's state or drain is followed by ``note_server``. It is never persisted,
    and ``tests/unit/test_state_machine.py`` checks it against a recomputation after
    every step."""

    def __init__(
        self, cameras: Iterable[CameraSlot] = (), servers: Iterable[ServerSlot] = ()
    ) -> None:
        self.server_position: dict[str, int] = {}
        """Server -> its place in ``Placement.servers``, whose order notices follow."""
        self.drained: set[str] = set()
        """Servers in maintenance (mirrors ``ServerSlot.drained``)."""
        self.failing_back: set[str] = set()
        """Servers failing back (mirrors ``ServerSlot.state``)."""
        for slot in servers:
            self.add_server(slot)
        self.position: dict[str, int] = {}
        """Camera -> its place in ``Placement.cameras``, whose order notices follow."""
        self.homed: dict[str, set[str]] = {}
        """Server -> cameras whose home it is (mirrors ``home``; kept by ``add_camera``)."""
        self.holding: dict[str, set[str]] = {}
        """Server -> cameras holding a channel on it (mirrors ``_channels``)."""
        self.left: dict[str, set[str]] = {}
        """Server -> cameras left on it when it failed (mirrors ``left_on``)."""
        self.by_state: dict[CameraState, set[str]] = {s: set() for s in CameraState}
        """State -> cameras in it (mirrors ``CameraSlot.state``)."""
        self.unsettled: set[str] = set()
        """Cameras agents still have steps for (mirrors ``_steps`` being non-empty)."""
        self.touched: set[str] = set()
        """Cameras whose steps or epoch may have changed since the outstanding commands
        were last derived (``Placement.outstanding_commands``)."""
        self.outstanding = OutstandingCommands()
        for cam in cameras:
            self.add_camera(cam)

    def add_server(self, slot: ServerSlot) -> None:
        """A server new to the state, placed after every server already there."""
        self.server_position[slot.id] = len(self.server_position)
        self.note_server(slot)

    def note_server(self, slot: ServerSlot) -> None:
        """After a change of a server's state or drain."""
        for members, now in (
            (self.drained, slot.drained),
            (self.failing_back, slot.state is ServerState.FAILING_BACK),
        ):
            if now:
                members.add(slot.id)
            else:
                members.discard(slot.id)

    def servers_in_order(self, servers: Iterable[str]) -> list[str]:
        """Server ids in the state's server order."""
        return sorted(servers, key=self.server_position.__getitem__)

    def add_camera(self, cam: CameraSlot) -> None:
        """A camera new to the state, placed after every camera already there."""
        self.position[cam.id] = len(self.position)
        self.homed.setdefault(cam.home, set()).add(cam.id)
        self.add(cam)

    def updating(self, cam: CameraSlot) -> _Change:
        """Around a change of a camera's host, target or releases (never nested)."""
        return _Change(self, cam)

    def in_order(self, cameras: Iterable[str]) -> list[str]:
        """Camera ids in the state's camera order (a full pass would meet them so)."""
        return sorted(cameras, key=self.position.__getitem__)

    def holding_on(self, server: str) -> set[str]:
        """Cameras holding a channel on ``server`` (a live view: copy it to change cameras)."""
        return self.holding.get(server, set())

    def add(self, cam: CameraSlot) -> None:
        """Index a camera under what it holds now."""
        for server in _channels(cam):
            self.holding.setdefault(server, set()).add(cam.id)
        for server in cam.left_on:
            self.left.setdefault(server, set()).add(cam.id)
        self.by_state[cam.state].add(cam.id)
        if cam.target is not None or cam.release_from or cam.release_after:  # _steps
            self.unsettled.add(cam.id)
        self.touched.add(cam.id)

    def remove(self, cam: CameraSlot) -> None:
        """Unindex a camera from what it holds now."""
        for server in _channels(cam):
            self.holding[server].discard(cam.id)
        for server in cam.left_on:
            self.left[server].discard(cam.id)
        self.by_state[cam.state].discard(cam.id)
        self.unsettled.discard(cam.id)


Step = tuple[str, Action, bool]
"""What an agent must still do for a camera: (server, action, wait for first segment)."""


class OutstandingCommands:
    """The outstanding commands, kept from one derivation to the next: only the cameras
    touched since are looked at again, and only the commands they are in are rebuilt. A
    failover re-derived every unsettled camera's command after each event folded: a
    fifth of placement's time in a 256-camera failover's profile (issue 8)."""

    def __init__(self) -> None:
        self.steps: dict[str, tuple[list[Step], Assignment]] = {}
        """Unsettled camera -> its steps and its assignment under its epoch."""
        self.members: dict[Step, set[str]] = {}
        """Step -> the cameras that have it."""
        self.commands: dict[Step, Command] = {}
        self.listed: list[Command] = []
        """``commands`` in order, as ``outstanding_commands`` returns them."""

    def update(
        self, cameras: Mapping[str, CameraSlot], unsettled: set[str], touched: Iterable[str]
    ) -> list[Command]:
        """Bring the commands up to date with the touched cameras; all of them in order."""
        changed: set[Step] = set()
        for camera in touched:
            was, _ = self.steps.pop(camera, ([], None))
            for step in was:
                self.members[step].discard(camera)
            changed.update(was)
            if camera in unsettled:
                cam = cameras[camera]
                now = _steps(cam)
                self.steps[camera] = (now, Assignment(camera=camera, epoch=cam.epoch))
                for step in now:
                    self.members.setdefault(step, set()).add(camera)
                changed.update(now)
        for step in changed:
            self._rebuild(step)
        if changed:
            self.listed = [self.commands[step] for step in sorted(self.commands)]
        return list(self.listed)

    def _rebuild(self, step: Step) -> None:
        members = self.members.get(step)
        if not members:
            self.members.pop(step, None)
            self.commands.pop(step, None)
            return
        server, action, first = step
        cams = tuple(self.steps[c][1] for c in sorted(members))
        self.commands[step] = Command(
            server=server, action=action, cameras=cams, first_segment=first
        )


class _Change:
    """``with index.updating(cam):`` unindexes the camera, then indexes it again."""

    __slots__ = ("cam", "index")

    def __init__(self, index: PlacementIndex, cam: CameraSlot) -> None:
        self.index, self.cam = index, cam

    def __enter__(self) -> None:
        self.index.remove(self.cam)

    def __exit__(self, *_: object) -> None:
        self.index.add(self.cam)


class FreeChannels(Mapping[str, int]):
    """Free channels of every server that may take cameras now, read from the state on
    demand: the planner asks about the servers it considers, not every server (issue 8).
    A live view: valid while the state does not change, as during one ``plan`` call."""

    def __init__(self, state: Placement) -> None:
        self.servers, self.holding = state.servers, state.index.holding

    def __getitem__(self, server: str) -> int:
        slot = self.servers[server]
        if not _takes_cameras(slot):
            raise KeyError(server)
        return max(0, slot.capacity - len(self.holding.get(server, ())))

    def get(self, server: str, default: int = 0) -> int:  # type: ignore[override]
        """Free channels of ``server``, or ``default``: what the planner asks, per server."""
        slot = self.servers.get(server)
        if slot is None or slot.drained or slot.state not in ACCEPTS_CAMERAS:
            return default
        return max(0, slot.capacity - len(self.holding.get(server, ())))

    def __iter__(self) -> Iterator[str]:
        return (sid for sid, s in self.servers.items() if _takes_cameras(s))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class CommandKey:
    """A command's identity (server, action, each camera under its epoch), hashed once:
    the sender looks every wanted command up at each wake, and a tuple of a hundred
    cameras is hashed again at every look-up (40 % of placement's time while it folded
    a 100,000-camera start-up)."""

    __slots__ = ("_hash", "action", "cameras", "server")

    def __init__(self, command: Command) -> None:
        self.server, self.action = command.server, command.action
        self.cameras = tuple((a.camera, a.epoch) for a in command.cameras)
        self._hash = hash((self.server, self.action, self.cameras))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CommandKey):
            return NotImplemented
        return self._hash == other._hash and (self.server, self.action, self.cameras) == (
            other.server,
            other.action,
            other.cameras,
        )


MISSES_BEFORE_RECLAIM = 2
"""Heartbeats in a row that must miss a camera settled on their server before it is
claimed there again: one may have been sent just before a claim was carried out."""


class MissedCameras:
    """Per server and camera, the heartbeats in a row that missed a camera the state
    has settled there (``Placement.missing``): which of them to claim again now."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def to_reclaim(self, server: str, missing: Iterable[Assignment]) -> list[Assignment]:
        """Count this heartbeat's misses; the cameras missed often enough (counts reset)."""
        again = []
        for a in missing:
            k = (server, a.camera)
            self.counts[k] = self.counts.get(k, 0) + 1
            if self.counts[k] >= MISSES_BEFORE_RECLAIM:
                again.append(a)
                del self.counts[k]
        return again


class Placement(BaseModel):
    """The whole placement state; persisted as one snapshot with the log cursor."""

    servers: dict[str, ServerSlot] = Field(default_factory=dict)
    cameras: dict[str, CameraSlot] = Field(default_factory=dict)
    policy: PlacementPolicy = Field(default_factory=PlacementPolicy)
    next_epoch: int = 1
    cursor: int = Field(0, description="Stream sequence of the last event folded in.")
    cluster_id: str = Field(
        "", description="Made once, with the first snapshot; stamped on every command."
    )
    _index: PlacementIndex | None = PrivateAttr(None)
    _topology: Topology | None = PrivateAttr(None)
    """Mirrors the servers' sites and groups and the policy; ``adopt``, the only place
    they change, drops it."""

    @property
    def index(self) -> PlacementIndex:
        """The cameras by server and by state, built from the cameras on first use."""
        # Read from pydantic's slot directly: ``self._index`` takes its slow __getattr__.
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        index: PlacementIndex | None = private["_index"]
        if index is None:
            index = private["_index"] = PlacementIndex(self.cameras.values(), self.servers.values())
        return index

    # ---- construction ----

    @classmethod
    def from_config(cls, config: ClusterConfig) -> tuple[Placement, list[Notice]]:
        """A fresh cluster: every camera is claimed at home."""
        state = cls()
        notices = state.adopt(config)
        return state, notices

    def adopt(self, config: ClusterConfig) -> list[Notice]:
        """Add servers and cameras of the config that the state does not know yet; take the
        policy and every server's site and group from the config."""
        self.policy = config.placement
        self._topology = None  # sites, groups and the policy may change here
        joined = [s for s in config.servers if s.id not in self.servers]
        for s in joined:
            slot = self.servers[s.id] = ServerSlot(id=s.id, capacity=s.capacity)
            if self._index is not None:
                self._index.add_server(slot)
        for s in config.servers:
            self.servers[s.id].site, self.servers[s.id].group = s.site, s.group
        new = [c for c in config.cameras if c.id not in self.cameras]
        for c in new:
            cam = CameraSlot(id=c.id, home=c.home, priority=c.priority, failback=c.failback)
            self.cameras[c.id] = cam
            if self._index is not None:
                self._index.add_camera(cam)
        notices = self._place([self.cameras[c.id] for c in new], MoveReason.START)
        return notices + (self._place_pending() if joined else [])  # R5: a server joins

    # ---- queries ----

    def load(self, server: str) -> int:
        """Channels in use or reserved on a server."""
        return len(self.index.holding_on(server)) if server in self.servers else 0

    def loads(self) -> dict[str, int]:
        """Channels in use or reserved on every server."""
        holding = self.index.holding
        return {sid: len(holding.get(sid, ())) for sid in self.servers}

    def cameras_by_state(self) -> dict[CameraState, int]:
        """How many cameras are home, failed over, Pending, moving."""
        return {s: len(cameras) for s, cameras in self.index.by_state.items()}

    def moving_off(self, server: str) -> bool:
        """Whether a camera that left ``server`` is still on its way to a new host."""
        moving = self.index.by_state[CameraState.MOVING]
        return any(self.cameras[c].moved_from == server for c in moving)

    def free_capacity(self) -> dict[str, int]:
        """Free channels of every server that may take cameras now."""
        holding = self.index.holding
        return {
            sid: max(0, s.capacity - len(holding.get(sid, ())))
            for sid, s in self.servers.items()
            if _takes_cameras(s)
        }

    def topology(self) -> Topology:
        """Sites, groups and the policy's reach, for the planner (made once per adopt)."""
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        topology: Topology | None = private["_topology"]
        if topology is None:
            topology = private["_topology"] = Topology(
                location={sid: (s.site, s.group) for sid, s in self.servers.items()},
                across_groups=self.policy.across_groups,
                across_sites=self.policy.across_sites,
            )
        return topology

    def outstanding_commands(self) -> list[Command]:
        """The commands the agents still have to carry out, derived from the state: one
        per step, its cameras in id order, in (server, action, first segment) order.
        Only the cameras touched since the last call are derived again. A server back
        from a failure also releases what was left on it (``left_on``)."""
        index = self.index
        touched, index.touched = index.touched, set()
        commands = index.outstanding.update(self.cameras, index.unsettled, touched)
        back = [s for s, cams in index.left.items() if cams and self._alive(s)]
        return _with_leftovers(commands, self._leftover_releases(back)) if back else commands

    def _leftover_releases(self, servers: Iterable[str]) -> list[Command]:
        """For each server, the release of the cameras left on it, under their epochs."""
        return [
            Command(
                server=sid,
                action=Action.RELEASE,
                cameras=tuple(
                    Assignment(camera=c, epoch=self.cameras[c].epoch)
                    for c in sorted(self.index.left[sid])
                ),
            )
            for sid in servers
        ]

    def strays(self, server: str, hosted: dict[str, int]) -> list[Assignment]:
        """Cameras a server records that it should not, with the epoch that releases them.

        Only cameras decided since (a newer epoch) count: a camera the protocol is
        releasing there already, or one it holds under the current epoch, is not a stray;
        nor, while the server is failed, one of its own cameras left Pending, which its
        failback brings home where it records (no gap) or leaves Pending (a stray then).
        """
        alive = self._alive(server)
        found = []
        for camera, epoch in hosted.items():
            cam = self.cameras.get(camera)
            if cam is None or cam.epoch <= epoch:
                continue
            if server in cam.release_from or server in cam.release_after:
                continue
            if server in cam.left_on and alive:
                continue  # its release is outstanding (``outstanding_commands``)
            if cam.target == server or (cam.host == server and cam.target is None):
                continue
            if cam.home == server and cam.host is None and cam.target is None and not alive:
                continue  # its own, Pending: failback decides (home, without a gap, or not)
            found.append(cam)
        return [Assignment(camera=c.id, epoch=c.epoch) for c in sorted(found, key=_by_id)]

    def missing(self, server: str, hosted: dict[str, int]) -> list[Assignment]:
        """Cameras settled on a server that it does not record (it restarted, or lost a claim)."""
        settled = (self.cameras[c] for c in self.index.holding_on(server) if c not in hosted)
        gone = [c for c in settled if c.host == server and c.target is None]
        return [Assignment(camera=c.id, epoch=c.epoch) for c in sorted(gone, key=_by_id)]

    def what_if(self, server: str) -> tuple[Placement, list[Notice]]:
        """What placement would decide if ``server``'s storage failed now, on a copy, with
        every agent carrying out every command (a preempted camera's release included):
        the copy shows where each camera would end up, the notices why."""
        after = self.model_copy(deep=True)
        notices = after.apply(ServerFailed(server=server, cause=FailureCause.STORAGE))
        return after, notices + after.agents_comply()

    def agents_comply(self, rounds: int = ROUNDS_TO_SETTLE) -> list[Notice]:
        """Fold in every agent carrying out every outstanding command, round after round
        (a release, then the claim it frees), as a what-if assumes they will."""
        notices: list[Notice] = []
        for _ in range(rounds):
            commands = self.outstanding_commands()
            if not commands:
                break
            for c in commands:
                done_type = ClaimsConfirmed if c.action is Action.CLAIM else ReleasesConfirmed
                notices += self.apply(done_type(server=c.server, cameras=c.cameras))
        return notices

    # ---- the fold ----

    def apply(self, event: AnyEvent) -> list[Notice]:
        """Fold one event of the log in; return placement's own events about it."""
        notices = self._fold(event)
        if any(not self.servers[s].drain_reported for s in self.index.drained):
            notices += self._drains_completed()
        return notices

    def _fold(self, event: AnyEvent) -> list[Notice]:  # noqa: PLR0911 (one arm per event type)
        match event:
            case ServerFailed():
                return self._server_failed(event.server, event.cause)
            case ServerRecovered():
                return self._server_recovered(event.server, event.cause)
            case ClaimsConfirmed():
                return self._claims_confirmed(event.server, event.cameras)
            case ReleasesConfirmed():
                return self._releases_confirmed(event.server, event.cameras)
            case CommandRefused():
                return self._refused(event)
            case CapacityChanged():
                return self._capacity_changed(event.server, event.capacity)
            case ServerDrained():
                return self._drain(event.server)
            case ServerUndrained():
                return self._undrain(event.server)
            case StorageRepaired():
                if event.server in self.servers:
                    self.servers[event.server].storage_ok = True
                return []
            case _:
                return []

    def _server_failed(self, server: str, cause: FailureCause) -> list[Notice]:
        slot = self.servers.get(server)
        if slot is None:
            return []
        slot.state = (
            ServerState.STORAGE_FAILED
            if cause is FailureCause.STORAGE
            else ServerState.NETWORK_FAILED
        )
        self.index.note_server(slot)
        slot.storage_ok = slot.storage_ok and cause is not FailureCause.STORAGE
        displaced: list[CameraSlot] = []
        reclaim: list[CameraSlot] = []
        for cam in self._cameras(self.index.holding_on(server)):
            with self.index.updating(cam):
                outcome = _lose_server(cam, server)
                if server not in cam.left_on:
                    cam.left_on.append(server)  # it may still record it, unseen
            match outcome:
                case "displaced":
                    displaced.append(cam)
                case "reclaim":
                    reclaim.append(cam)
        notices: list[Notice] = []
        for cam in reclaim:
            # It never left its host; re-claim there under a new epoch, since a
            # release under the cancelled epoch may already have reached it.
            notices.append(self._assign(cam, cam.host, cam.reason))  # type: ignore[arg-type]
        notices += self._place(displaced, MoveReason.FAILOVER)
        for cam in displaced:
            # Left Pending, it takes a fresh epoch: what the failed server records of it,
            # or a claim still on its way there, is then older than the state's, a stray
            # once the server is back, not a channel nobody counts (``strays``).
            if cam.target is None:
                self._new_epoch(cam)
        # Pending cameras get another try: a failing-back server's claims are gone, and a
        # high camera whose preemption victim was on this server may preempt again.
        notices += self._place_pending()
        return notices + self._failbacks_completed()  # an old host that failed mid-handover

    def _server_recovered(self, server: str, cause: FailureCause) -> list[Notice]:
        """R8: the home server is ready; every current host releases, then home claims."""
        slot = self.servers.get(server)
        if slot is None or slot.state in ACCEPTS_CAMERAS:
            return []
        slot.state, slot.storage_ok = ServerState.FAILING_BACK, True
        self.index.note_server(slot)
        notices: list[Notice] = [] if slot.drained else self._bring_home(server)
        moving = sum(1 for c in self.index.holding_on(server) if self.cameras[c].target == server)
        notices.insert(0, FailbackStarted(server=server, cameras=moving, cause=cause))
        notices += self._maybe_failback_completed(server)
        notices += self._place_pending()
        return notices

    def _claims_confirmed(self, server: str, done: Iterable[Assignment]) -> list[Notice]:
        notices: list[Notice] = []
        for a in done:
            cam = self.cameras.get(a.camera)
            if cam is None or cam.target != server or cam.epoch != a.epoch or cam.release_from:
                continue
            with self.index.updating(cam):
                cam.host, cam.target = server, None
            notices.append(
                CameraMoved(
                    camera=cam.id,
                    home=cam.home,
                    from_host=cam.moved_from,
                    to=server,
                    epoch=cam.epoch,
                    reason=cam.reason,
                )
            )
        if (slot := self.servers.get(server)) is not None and slot.drained:
            notices += self._move_off_drained()  # it was on its way there when drained
        return notices + self._failbacks_completed()

    def _releases_confirmed(self, server: str, done: Iterable[Assignment]) -> list[Notice]:
        freed = False
        for a in done:
            cam = self.cameras.get(a.camera)
            if cam is None or cam.epoch != a.epoch:
                continue
            if server not in (*cam.release_from, *cam.release_after, *cam.left_on):
                continue
            with self.index.updating(cam):
                if server in cam.release_from and cam.host == server:
                    cam.host = None
                _forget_host(cam, server)
                if server in cam.left_on:
                    cam.left_on.remove(server)
            freed = True
        if not freed or not self._alive(server):
            return []  # a failed server's channel is of no use yet
        return self._come_home(server) + self._place_pending() + self._failbacks_completed()

    def _refused(self, event: CommandRefused) -> list[Notice]:
        """An agent has seen a newer epoch: re-issue the same move above it."""
        notices: list[Notice] = []
        for r in event.refusals:
            cam = self.cameras.get(r.camera)
            if cam is None or cam.epoch != r.epoch or r.seen_epoch >= MAX_PLAUSIBLE_EPOCH:
                continue
            self.next_epoch = max(self.next_epoch, r.seen_epoch + 1)
            if cam.target is not None:
                notices.append(self._assign(cam, cam.target, cam.reason))
            elif cam.release_from or cam.release_after or cam.left_on:
                # A release with no move behind it (a preempted camera, or an old host
                # after a make-before-break): the same release under a newer epoch.
                self._new_epoch(cam)
        return notices

    def _drain(self, server: str) -> list[Notice]:
        """Maintenance: nothing is placed here any more; what records here moves away."""
        slot = self.servers.get(server)
        if slot is None or slot.drained:
            return []
        slot.drained, slot.drain_reported = True, False
        self.index.note_server(slot)
        return self._move_off_drained()

    def _undrain(self, server: str) -> list[Notice]:
        """Maintenance over: the server takes cameras again and its own come home (R8)."""
        slot = self.servers.get(server)
        if slot is None or not slot.drained:
            return []
        slot.drained = False
        self.index.note_server(slot)
        if slot.state not in ACCEPTS_CAMERAS:
            return []  # failed: its failback brings the cameras home
        leaving = [
            c
            for c in self._cameras(self.index.homed.get(server, ()))
            if c.host == server and c.target not in (None, server)
        ]  # on their way off it: they stay, claimed there again under a newer epoch
        notices = [self._move_deliberately(c, server, MoveReason.FAILBACK) for c in leaving]
        return notices + self._bring_home(server) + self._place_pending()

    def _capacity_changed(self, server: str, capacity: int) -> list[Notice]:
        slot = self.servers.get(server)
        if slot is None:
            return []
        slot.capacity = capacity
        return self._come_home(server) + self._place_pending()

    # ---- helpers ----

    def _cameras(self, ids: Iterable[str]) -> list[CameraSlot]:
        """These cameras in the state's order, as a pass over every camera would meet them."""
        return [self.cameras[c] for c in self.index.in_order(ids)]

    def _alive(self, server: str) -> bool:
        slot = self.servers.get(server)
        return slot is not None and slot.state in ACCEPTS_CAMERAS

    def _place_pending(self) -> list[Notice]:
        """R5: capacity appeared somewhere; place what waits (announcing nothing twice),
        then move on what still records on a drained server."""
        pending = self._cameras(self.index.by_state[CameraState.PENDING])
        notices = self._place(pending, MoveReason.CAPACITY_FREED, report_pending=False)
        return notices + self._move_off_drained()

    def _move_off_drained(self) -> list[Notice]:
        """Cameras settled on a drained server go where the planner finds a free channel
        (home first); one that fits nowhere keeps recording there until a channel frees."""
        on_drained = {c for sid in self.index.drained for c in self.index.holding_on(sid)}
        leaving = [
            c
            for c in self._cameras(on_drained)
            if c.host is not None
            and self.servers[c.host].drained
            and c.target is None
            and not (c.release_from or c.release_after)
        ]
        if not leaving:
            return []
        candidates = (Candidate(c.id, c.home, c.priority) for c in leaving)
        chosen = plan(candidates, FreeChannels(self), self.topology())
        notices: list[Notice] = []
        for cam in leaving:
            to = chosen.get(cam.id)
            if to is not None:
                self.servers[cam.host].drain_reported = False  # type: ignore[index]
                notices.append(self._move_deliberately(cam, to, MoveReason.DRAIN))
        return notices

    def _drains_completed(self) -> list[Notice]:
        """drain_completed, once nothing is on its way off a drained server any more: every
        camera that left it is claimed by its new host."""
        in_flight: set[str] = set()
        for cam in (self.cameras[c] for c in self.index.unsettled):
            in_flight.update(cam.release_from, cam.release_after)
            if cam.target is not None:  # still on its way: from where it recorded, to where
                in_flight.update(s for s in (cam.host, cam.moved_from, cam.target) if s)
        notices: list[Notice] = []
        for sid in self.index.servers_in_order(self.index.drained):
            slot = self.servers[sid]
            if not slot.drain_reported and sid not in in_flight:
                slot.drain_reported = True
                notices.append(DrainCompleted(server=sid, cameras_left=self.load(sid)))
        return notices

    def _come_home(self, server: str) -> list[Notice]:
        """R8: a home with room again (its capacity raised, a channel freed) takes back
        its own cameras still away: a failback that found it full left them there."""
        slot = self.servers.get(server)
        if slot is None or slot.drained or slot.state not in ACCEPTS_CAMERAS:
            return []
        return self._bring_home(server)

    def _bring_home(self, server: str) -> list[Notice]:
        """R8: the server's cameras away from home come back, as many as it has room for,
        in priority order. One left on it when it failed holds a channel there already:
        its claim takes no other (a Pending one records there still and comes home without
        a gap), and one that does not come home is released there. Any other takes a free
        channel now; one that finds none waits for those releases (``_come_home``), its
        place in the priority order kept."""
        going = self._going_home(server)
        free_now = self.servers[server].capacity - self.load(server)
        free_after = free_now + sum(1 for cam in going if server in cam.left_on)
        chosen = []
        for cam in going[: max(0, free_after)]:
            if server in cam.left_on:
                chosen.append(cam)
            elif free_now > 0:
                chosen.append(cam)
                free_now -= 1
        return [self._move_deliberately(cam, server, MoveReason.FAILBACK) for cam in chosen]

    def _move_deliberately(self, cam: CameraSlot, to: str, reason: MoveReason) -> CameraMovePlanned:
        """A move nothing forces (failback, drain): the current hosts release first, or,
        make-before-break, a settled camera's host records on until ``to`` has claimed."""
        releasing = {h for h in (cam.host, cam.target) if h is not None and self._alive(h)}
        with self.index.updating(cam):
            if self._hands_over(cam) and cam.target is None and cam.host in releasing:
                cam.release_after = [cam.host]
            else:
                cam.release_from = sorted(releasing.union(cam.release_from) - {to})
        return self._assign(cam, to, reason)

    def _going_home(self, server: str) -> list[CameraSlot]:
        """Cameras of this home server not at home and not heading there, in priority order."""
        away = [
            c
            for c in self._cameras(self.index.homed.get(server, ()))
            if server not in (c.host, c.target)
        ]
        return sorted(away, key=lambda c: (PRIORITY_ORDER[c.priority], c.id))

    def _new_epoch(self, cam: CameraSlot) -> None:
        """A new decision about the camera: a fresh epoch (R11), so its commands change."""
        cam.epoch, self.next_epoch = self.next_epoch, self.next_epoch + 1
        self.index.touched.add(cam.id)

    def _assign(self, cam: CameraSlot, server: str, reason: MoveReason) -> CameraMovePlanned:
        # It leaves where it records, or else the host of a claim being abandoned.
        leaving = {cam.host, cam.target} - {None, server}
        if leaving:
            cam.moved_from = cam.host if cam.host in leaving else cam.target
        with self.index.updating(cam):
            cam.target, cam.reason = server, reason
            if server in cam.left_on:
                cam.left_on.remove(server)  # its claim there, under a newer epoch, replaces it
        self._new_epoch(cam)
        return CameraMovePlanned(
            camera=cam.id,
            home=cam.home,
            from_host=cam.moved_from,
            to=server,
            epoch=cam.epoch,
            reason=reason,
        )

    def _hands_over(self, cam: CameraSlot) -> bool:
        """Make-before-break at failback, for this camera or by policy."""
        mode = cam.failback or self.policy.failback
        return mode is FailbackMode.MAKE_BEFORE_BREAK

    def _place(
        self, cams: list[CameraSlot], reason: MoveReason, *, report_pending: bool = True
    ) -> list[Notice]:
        """Plan hosts for cameras that have none; ``report_pending`` for newly Pending ones."""
        if not cams:
            return []
        notices: list[Notice] = []
        unplaced = cams
        while unplaced:
            candidates = (Candidate(c.id, c.home, c.priority) for c in unplaced)
            chosen = plan(candidates, FreeChannels(self), self.topology())
            todo, unplaced, spared = unplaced, [], False
            for cam in todo:
                server = chosen.get(cam.id)
                if server is None:
                    unplaced.append(cam)
                    continue
                # One left on that server holds a channel there already: the one the
                # plan counted for it is still free, for the cameras not placed yet.
                spared = spared or server in cam.left_on
                notices.append(self._assign(cam, server, reason))
            if not spared:
                break
        for cam in unplaced:
            cam.moved_from = None  # it records nowhere: a later move starts from nowhere
        preempted = self._preempt(unplaced) if self.policy.preemption else []
        waiting = {p.by for p in preempted}
        if report_pending:
            notices += [
                CameraPending(camera=c.id, home=c.home, reason=_why_pending(c))
                for c in unplaced
                if c.id not in waiting
            ]
        for p in preempted:
            why = f"preempted by {p.by}"
            notices += [p, CameraPending(camera=p.camera, home=p.home, reason=why)]
        return notices

    def _preempt(self, unplaced: list[CameraSlot]) -> list[CameraPreempted]:
        """High cameras left Pending displace low guests; each victim's host releases it
        first, then the next re-plan gives the freed channel to the high camera (R4)."""
        # A displaced camera names its displacer until its host has released it: until
        # then it has a step left, so it is among the unsettled.
        displaced = (self.cameras[c] for c in self.index.unsettled)
        waiting = {c.preempted_by for c in displaced if c.preempted_by}
        high = [
            Candidate(c.id, c.home, c.priority)
            for c in unplaced
            if c.priority is Priority.HIGH and c.id not in waiting
        ]
        if not high:
            return []
        guests = [
            Guest(c.id, c.home, c.priority, c.host)
            for c in self._cameras(self.index.by_state[CameraState.FAILED_OVER])
            if c.host is not None and not c.release_after
        ]
        preempted = []
        for by, guest in sorted(choose_victims(high, guests, self.topology()).items()):
            cam = self.cameras[guest.camera]
            with self.index.updating(cam):
                cam.host, cam.release_from, cam.preempted_by = None, [guest.host], by
            self._new_epoch(cam)
            preempted.append(
                CameraPreempted(
                    camera=cam.id,
                    home=cam.home,
                    server=guest.host,
                    epoch=cam.epoch,
                    by=by,
                    by_home=self.cameras[by].home,
                )
            )
        return preempted

    def _failbacks_completed(self) -> list[Notice]:
        notices: list[Notice] = []
        for sid in self.index.servers_in_order(self.index.failing_back):
            notices += self._maybe_failback_completed(sid)
        return notices

    def _maybe_failback_completed(self, server: str) -> list[Notice]:
        """Complete once nothing is on its way home and no old host still records one of
        its cameras (make-before-break): sync may then take the footage home (R9)."""
        homed = [self.cameras[c] for c in self.index.homed.get(server, ())]
        if any(c.release_after for c in homed) or any(
            self.cameras[c].target == server for c in self.index.holding_on(server)
        ):
            return []
        self.servers[server].state = ServerState.ONLINE
        self.index.note_server(self.servers[server])
        home = sum(1 for c in homed if c.host == server)
        return [FailbackCompleted(server=server, cameras=home)]


def _by_id(cam: CameraSlot) -> str:
    return cam.id


def _with_leftovers(commands: list[Command], leftovers: list[Command]) -> list[Command]:
    """The derived commands with the leftovers' releases merged in: one release per
    server, its cameras in id order, every command in (server, action, first) order."""
    by_step = {(c.server, c.action, c.first_segment): c for c in commands}
    for release in leftovers:
        step = (release.server, Action.RELEASE, False)
        if (same := by_step.get(step)) is not None:
            merged = {a.camera: a for a in (*same.cameras, *release.cameras)}
            cameras = tuple(merged[c] for c in sorted(merged))
            by_step[step] = release.model_copy(update={"cameras": cameras})
        else:
            by_step[step] = release
    return [by_step[step] for step in sorted(by_step)]


def _takes_cameras(slot: ServerSlot) -> bool:
    """A server the planner may give cameras to now (free_capacity lists it)."""
    return slot.state in ACCEPTS_CAMERAS and not slot.drained


def _channels(cam: CameraSlot) -> set[str]:
    """Servers on which a camera holds a channel: where it records, where it is going,
    every host that has not yet confirmed its release, and every server it was left on
    when that failed (R4: capacity is never exceeded)."""
    held = {cam.host, cam.target, *cam.release_from, *cam.release_after, *cam.left_on}
    held.discard(None)
    return cast(set[str], held)


def _steps(cam: CameraSlot) -> list[Step]:
    """What agents must still do for a camera: (server, action, wait for first segment).
    Releases before the claim (R8); a make-before-break claim first, and its host's
    release once the claim is confirmed."""
    if cam.release_from:
        return [(s, Action.RELEASE, False) for s in cam.release_from]
    if cam.target is not None:
        return [(cam.target, Action.CLAIM, bool(cam.release_after))]
    return [(s, Action.RELEASE, False) for s in cam.release_after]


def _lose_server(cam: CameraSlot, server: str) -> Literal["displaced", "reclaim"] | None:
    """A failed server takes no part in this camera's move any more. Returns "displaced"
    when the camera now records nowhere, "reclaim" when it records on a host that must
    claim it again under a new epoch, None when nothing changes for it."""
    _forget_host(cam, server)
    outcome: Literal["displaced", "reclaim"] | None = None
    if cam.host == server:
        cam.host, cam.moved_from = None, server
        if cam.target is None and cam.release_after:
            # Home failed right after a make-before-break: the old host records still.
            cam.host, cam.release_after = cam.release_after[0], []
            cam.reason = MoveReason.FAILOVER
            outcome = "reclaim"
        elif cam.target is None:
            outcome = "displaced"
    if cam.target == server:
        cam.target, cam.release_after = None, []
        if cam.preempted_by is None:
            cam.release_from = []  # a preempted camera's host still has to let it go
        outcome = "displaced" if cam.host is None else "reclaim"
    return outcome


def _forget_host(cam: CameraSlot, server: str) -> None:
    """The server records the camera no more (it released it, or it failed)."""
    if server in cam.release_from:
        cam.release_from.remove(server)
    if server in cam.release_after:
        cam.release_after.remove(server)
    if not cam.release_from:
        cam.preempted_by = None


def _why_pending(cam: CameraSlot) -> str:
    if cam.priority is Priority.NEVER:
        return "priority 'never': waits for its home server"
    return "no server has a free channel"
