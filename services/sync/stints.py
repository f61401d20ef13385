"""Which footage is away from home, worked out from the durable event log alone (R9).

A *stint* is one camera recording on one server under one epoch, from the
``camera_moved`` that put it there to the next one. Every closed stint on a server
other than the camera's home is footage to bring home; it becomes a sync job once
its home server has completed a failback (or is online when sync starts).
Pure: no clock, no bus; the sync service feeds it events in log order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.messages import AnyEvent, CameraMoved, FailbackCompleted, ServerFailed


@dataclass(frozen=True)
class Stint:
    """One camera on one server under one epoch."""

    camera: str
    home: str
    host: str
    epoch: int
    start: datetime
    end: datetime | None = None

    @property
    def away(self) -> bool:
        """Recorded somewhere other than home: its footage must travel."""
        return self.host != self.home


@dataclass
class StintLog:
    """Stints of every camera and whether each home server may receive footage now."""

    open: dict[str, Stint]
    closed: list[Stint]
    home_ready: dict[str, bool]

    @classmethod
    def empty(cls) -> StintLog:
        """Before any event: servers are assumed ready until the log says otherwise."""
        return cls(open={}, closed=[], home_ready={})

    def apply(self, event: AnyEvent) -> str | None:
        """Fold one event in; return a home server whose footage may now move, if any."""
        match event:
            case CameraMoved():
                closed = self._moved(event)
                if closed is not None and closed.away and self.ready(closed.home):
                    return closed.home  # it may close after its home's failback_completed
            case ServerFailed():
                self.home_ready[event.server] = False
            case FailbackCompleted():
                self.home_ready[event.server] = True
                return event.server
        return None

    def _moved(self, event: CameraMoved) -> Stint | None:
        """Open the new stint; return the one this move closed, if any."""
        previous = self.open.get(event.camera)
        if previous is not None and previous.epoch == event.epoch:
            return None  # a repeat of the same move: the stint goes on, from its start
        self.open[event.camera] = Stint(event.camera, event.home, event.to, event.epoch, event.time)
        if previous is None:
            return None
        closed = Stint(
            previous.camera,
            previous.home,
            previous.host,
            previous.epoch,
            previous.start,
            event.time,
        )
        self.closed.append(closed)
        return closed

    def ready(self, home: str) -> bool:
        """Whether ``home`` may receive footage (not failed since its last failback)."""
        return self.home_ready.get(home, True)

    def away_stints(self, home: str) -> list[Stint]:
        """Closed stints of ``home``'s cameras recorded on other servers, oldest first."""
        return [s for s in self.closed if s.home == home and s.away]
