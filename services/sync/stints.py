"""Which footage is away from home, worked out from the durable event log alone (R9).

A *stint* is one camera recording on one server under one epoch. Most begin at the
``camera_moved`` that put the camera there and end at its next one. But an agent may
record under an epoch that never reaches ``camera_moved``: its claim's answer was lost
(the host was cut off just after it received the claim), or it confirmed after
placement had already decided again (placement ignores confirmations of superseded
epochs). So every ``camera_move_planned`` onto a server other than the camera's home
opens a *possible* stint too. A ``camera_moved`` of that epoch turns it into the
ordinary stint (no second job). The camera's next decision without one (a planned move
or ``camera_moved`` of a newer epoch, ``camera_pending``, ``camera_preempted``, or the
host's own ``releases_confirmed``) closes it as footage to bring home: the job lists
what the host holds of that camera and epoch, which may be nothing. A
``claims_confirmed`` of an epoch no stint knows (an agent's answer the fold has no
plan for) opens one the same way.

Every closed stint on a server other than the camera's home is footage to bring home;
it becomes a sync job once its home server has completed a failback (or is online
when sync starts). Moves onto the home itself never make a stint to bring home, so a
start-up of the whole fleet costs nothing here. Pure: no clock, no bus; the sync
service feeds it events in log order, and the same log always folds to the same
stints (a new leader replays it whole, R12).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.messages import (
    AnyEvent,
    CameraMoved,
    CameraMovePlanned,
    CameraPending,
    CameraPreempted,
    ClaimsConfirmed,
    FailbackCompleted,
    ReleasesConfirmed,
    ServerFailed,
)

StintKey = tuple[str, str, int]
"""(camera, host, epoch): what a sync job brings home, and what the host lists."""


@dataclass(frozen=True)
class Stint:
    """One camera on one server under one epoch."""

    camera: str
    home: str
    host: str
    epoch: int
    start: datetime
    end: datetime | None = None
    possible: bool = False
    """Only planned (or only confirmed by the agent): no ``camera_moved`` says the host
    recorded; its job finds out by listing what the host holds."""

    @property
    def away(self) -> bool:
        """Recorded somewhere other than home: its footage must travel."""
        return self.host != self.home

    @property
    def key(self) -> StintKey:
        """What identifies its footage on the host."""
        return (self.camera, self.host, self.epoch)


@dataclass
class StintLog:
    """Stints of every camera and whether each home server may receive footage now."""

    open: dict[str, Stint]
    closed: list[Stint]
    home_ready: dict[str, bool]
    planned: dict[str, Stint] = field(default_factory=dict)
    """Per camera, its newest planned move away from home not (yet) confirmed by a
    ``camera_moved``: at most one per camera, so memory stays bounded by the fleet."""
    homes: dict[str, str] = field(default_factory=dict)
    latest: dict[str, int] = field(default_factory=dict)
    """Per camera, the newest epoch placement decided for it."""
    closed_keys: set[StintKey] = field(default_factory=set)

    @classmethod
    def empty(cls) -> StintLog:
        """Before any event: servers are assumed ready until the log says otherwise."""
        return cls(open={}, closed=[], home_ready={})

    def apply(self, event: AnyEvent) -> str | None:
        """Fold one event in; return a home server whose footage may now move, if any."""
        closed: list[Stint | None] = []
        match event:
            case CameraMovePlanned():
                closed = [self._planned(event)]
            case CameraMoved():
                closed = [self._confirm_or_supersede(event), self._moved(event)]
            case CameraPending():
                closed = [self._supersede(event.camera, None, event.time)]
            case CameraPreempted():
                closed = [self._supersede(event.camera, event.epoch, event.time)]
            case ReleasesConfirmed(server=host, cameras=done):
                closed = [self._released(host, a.camera, a.epoch, event.time) for a in done]
            case ClaimsConfirmed(server=host, cameras=done):
                closed = [self._claimed(host, a.camera, a.epoch, event.time) for a in done]
            case ServerFailed():
                self.home_ready[event.server] = False
            case FailbackCompleted():
                self.home_ready[event.server] = True
                return event.server
        # A stint may close after its home's failback_completed: its footage may move now.
        return next((s.home for s in closed if s and s.away and self.ready(s.home)), None)

    def _decided(self, camera: str, home: str, epoch: int) -> None:
        self.homes[camera] = home
        self.latest[camera] = max(epoch, self.latest.get(camera, epoch))

    def _planned(self, event: CameraMovePlanned) -> Stint | None:
        """A newer plan supersedes an unconfirmed older one; a plan away opens a possible
        stint. A repeated or stale plan (a replayed decision) changes nothing."""
        camera = event.camera
        plan = self.planned.get(camera)
        stale = event.epoch < self.latest.get(camera, event.epoch)
        if stale or (plan is not None and plan.epoch == event.epoch):
            return None
        self._decided(camera, event.home, event.epoch)
        closed = self._supersede(camera, event.epoch, event.time)
        current = self.open.get(camera)
        if event.to != event.home and (current is None or current.epoch < event.epoch):
            self.planned[camera] = Stint(
                camera, event.home, event.to, event.epoch, event.time, possible=True
            )
        return closed

    def _confirm_or_supersede(self, event: CameraMoved) -> Stint | None:
        """``camera_moved`` of the planned epoch confirms it (the ordinary stint follows);
        of a newer epoch, the plan never got there: close it."""
        self._decided(event.camera, event.home, event.epoch)
        plan = self.planned.get(event.camera)
        if plan is not None and plan.epoch == event.epoch:
            del self.planned[event.camera]
            return None
        return self._supersede(event.camera, event.epoch, event.time)

    def _supersede(self, camera: str, epoch: int | None, when: datetime) -> Stint | None:
        """Close the camera's possible stint if a decision of ``epoch`` (None: one without
        an epoch, later in the log) replaces it."""
        plan = self.planned.get(camera)
        if plan is None or (epoch is not None and epoch <= plan.epoch):
            return None
        del self.planned[camera]
        return self._close(plan, when)

    def _released(self, server: str, camera: str, epoch: int, when: datetime) -> Stint | None:
        """The planned host stopped recording the camera: nothing more comes under the plan."""
        plan = self.planned.get(camera)
        if plan is None or plan.host != server or epoch < plan.epoch:
            return None
        del self.planned[camera]
        return self._close(plan, when)

    def _claimed(self, server: str, camera: str, epoch: int, when: datetime) -> Stint | None:
        """An agent's answer (on the log even when placement ignores it) is evidence that it
        recorded. Known stints need nothing more; an unknown one away from home opens a
        possible stint, closed at once if the camera has been decided again since."""
        home = self.homes.get(camera)
        if home is None or server == home or (camera, server, epoch) in self.closed_keys:
            return None
        plan, current = self.planned.get(camera), self.open.get(camera)
        if any(s is not None and s.key == (camera, server, epoch) for s in (plan, current)):
            return None
        stint = Stint(camera, home, server, epoch, when, possible=True)
        if epoch < self.latest.get(camera, epoch):
            return self._close(stint, when)
        closed = self._supersede(camera, epoch, when)
        self._decided(camera, home, epoch)
        self.planned[camera] = stint
        return closed

    def _moved(self, event: CameraMoved) -> Stint | None:
        """Open the new stint; return the one this move closed, if any."""
        previous = self.open.get(event.camera)
        if previous is not None and previous.epoch == event.epoch:
            return None  # a repeat of the same move: the stint goes on, from its start
        self.open[event.camera] = Stint(event.camera, event.home, event.to, event.epoch, event.time)
        if previous is None:
            return None
        return self._close(previous, event.time)

    def _close(self, stint: Stint, when: datetime) -> Stint | None:
        """Record a stint as closed, once per (camera, host, epoch)."""
        if stint.key in self.closed_keys:
            return None
        self.closed_keys.add(stint.key)
        closed = replace(stint, end=when)
        self.closed.append(closed)
        return closed

    def ready(self, home: str) -> bool:
        """Whether ``home`` may receive footage (not failed since its last failback)."""
        return self.home_ready.get(home, True)

    def away_stints(self, home: str) -> list[Stint]:
        """Closed stints of ``home``'s cameras recorded on other servers, in the order they
        closed (the sync service orders jobs by ``start``: oldest footage first)."""
        return [s for s in self.closed if s.home == home and s.away]
