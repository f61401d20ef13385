"""The failure detector: a pure state machine over heartbeats, probe answers and the clock.

It owns each server's liveness view (R2, R3, R6, R7). It does no I/O: the shell
passes ``now`` (the receiver's monotonic clock, never the sender's) and carries
out the decisions it returns: probe a server, publish an event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import get_args

from shared.config import ClusterConfig
from shared.messages import (
    FailbackConfirmed,
    FailoversHeld,
    FailureCause,
    Heartbeat,
    ServerFailed,
    ServerRecovered,
    ServerSilent,
    StorageRepaired,
)

HealthEvent = (
    ServerFailed
    | ServerRecovered
    | ServerSilent
    | StorageRepaired
    | FailbackConfirmed
    | FailoversHeld
)
HEALTH_EVENT_TYPES = frozenset(m.model_fields["type"].default for m in get_args(HealthEvent))
"""The ``type`` of every event health publishes (``HealthEvent``)."""


class Liveness(StrEnum):
    """The detector's view of one server."""

    UP = "up"
    PROBING = "probing"
    NETWORK_FAILED = "network_failed"
    STORAGE_FAILED = "storage_failed"


@dataclass(frozen=True)
class Probe:
    """Decision: probe this server directly and report with ``probe_answered``."""

    server: str


Decision = Probe | HealthEvent


@dataclass
class ServerView:
    """What the detector knows of one server."""

    liveness: Liveness = Liveness.UP
    last_seen: float = 0.0
    boot_id: str | None = None
    sequence: int = -1
    storage_ok: bool = True
    probe_in_flight: bool = False
    next_probe_at: float = 0.0
    silent_reported: bool = False
    healthy_since: float | None = None
    failovers: list[float] = field(default_factory=list)


@dataclass
class Detector:
    """Declares network failure only on silence *and* a failed probe; storage at once."""

    network_timeout: float
    reprobe_interval: float = 1.0
    hold_down: float = 0.0
    """Seconds a network-failed server must stay reachable before automatic failback."""
    max_failovers: int = 0
    """Failovers of one server within ``failover_window`` after which automatic failback
    waits until the oldest of them ages out (0: no limit)."""
    failover_window: float = 600.0
    mass_silence_share: float = 1.0
    """Hold network failovers while more than this share of servers is silent."""
    mass_silence_max_hold: float = 60.0
    """After holding this long, failovers go ahead: a real mass failure must not be held
    for ever."""
    servers: dict[str, ServerView] = field(default_factory=dict)
    holding_since: float | None = None

    @classmethod
    def for_cluster(cls, config: ClusterConfig) -> Detector:
        """A detector with the cluster's timing and detection guards (R2, R6)."""
        guard = config.detection
        return cls(
            network_timeout=config.timing.network_timeout,
            reprobe_interval=1.0,
            hold_down=guard.failback_hold_down,
            max_failovers=guard.max_failovers,
            failover_window=guard.failover_window,
            mass_silence_share=guard.mass_silence_share,
            mass_silence_max_hold=guard.mass_silence_max_hold,
        )

    def watch(self, server: str, now: float, liveness: Liveness = Liveness.UP) -> None:
        """Start watching a server; a fresh view waits a whole timeout before any probe."""
        self.servers[server] = ServerView(liveness=liveness, last_seen=now)

    def restore(self, servers: Iterable[str], log: Iterable[object], now: float) -> None:
        """Watch ``servers`` afresh, each failed or up as the event log last said. A
        restarted detector has no heartbeat history: every server gets a whole timeout."""
        liveness = dict.fromkeys(servers, Liveness.UP)
        for event in log:
            if isinstance(event, ServerFailed) and event.server in liveness:
                storage = event.cause is FailureCause.STORAGE
                liveness[event.server] = (
                    Liveness.STORAGE_FAILED if storage else Liveness.NETWORK_FAILED
                )
            elif isinstance(event, ServerRecovered) and event.server in liveness:
                liveness[event.server] = Liveness.UP
        for server, state in liveness.items():
            self.watch(server, now, state)
            if state is Liveness.STORAGE_FAILED:
                self.servers[server].storage_ok = False

    def refusal(self, hb: Heartbeat) -> str | None:
        """Why ``heartbeat`` would ignore ``hb`` (``unknown_server``, ``stale``), or None."""
        view = self.servers.get(hb.server)
        if view is None:
            return "unknown_server"
        return None if _is_newer(view, hb) else "stale"

    def heartbeat(self, hb: Heartbeat, now: float) -> list[Decision]:
        """Fold one heartbeat in. Stale or replayed heartbeats change nothing."""
        view = self.servers.get(hb.server)
        if view is None or not _is_newer(view, hb):
            return []
        if now - view.last_seen >= self.network_timeout / 2:
            view.healthy_since = None  # a gap: the hold-down starts again
        view.boot_id, view.sequence, view.last_seen = hb.boot_id, hb.sequence, now
        view.silent_reported = False
        was_ok, view.storage_ok = view.storage_ok, hb.storage_ok
        if not hb.storage_ok and view.liveness is not Liveness.STORAGE_FAILED:
            view.liveness = Liveness.STORAGE_FAILED
            view.failovers.append(now)
            detail = hb.storage_error or "storage reported failed"
            return [ServerFailed(server=hb.server, cause=FailureCause.STORAGE, detail=detail)]
        if view.liveness is Liveness.STORAGE_FAILED and hb.storage_ok and not was_ok:
            return [StorageRepaired(server=hb.server)]
        if view.liveness is Liveness.NETWORK_FAILED and not view.probe_in_flight:
            # R6: heartbeats resumed; the probe must answer too before failback.
            view.probe_in_flight = True
            return [Probe(hb.server)]
        if view.liveness is Liveness.PROBING and not view.probe_in_flight:
            view.liveness = Liveness.UP
        return []

    def tick(self, now: float) -> list[Decision]:
        """Ask for a probe of every server silent for the whole timeout."""
        if self.holding_since is not None and not self._too_many_silent(now):
            self.holding_since = None  # the episode is over: the next one alerts again
        decisions: list[Decision] = []
        for server, view in self.servers.items():
            if view.liveness not in (Liveness.UP, Liveness.PROBING) or view.probe_in_flight:
                continue
            if now - view.last_seen >= self.network_timeout and now >= view.next_probe_at:
                view.liveness, view.probe_in_flight = Liveness.PROBING, True
                decisions.append(Probe(server))
        return decisions

    def probe_answered(self, server: str, reachable: bool, now: float) -> list[Decision]:  # noqa: PLR0911
        """Fold in the probe's outcome: R2 needs silence and a failed probe; R6 both back."""
        view = self.servers.get(server)
        if view is None:
            return []
        view.probe_in_flight = False
        if view.liveness is Liveness.NETWORK_FAILED:
            return self._maybe_recovered(server, view, reachable, now)
        if view.liveness is not Liveness.PROBING:
            return []
        silent_for = now - view.last_seen
        if silent_for < self.network_timeout:
            view.liveness = Liveness.UP
            return []
        if not reachable:
            return self._network_failed(server, view, silent_for, now)
        view.next_probe_at = now + self.reprobe_interval
        if view.silent_reported:
            return []
        view.silent_reported = True
        return [ServerSilent(server=server, silent_for=round(silent_for, 3))]

    def _maybe_recovered(
        self, server: str, view: ServerView, reachable: bool, now: float
    ) -> list[Decision]:
        """R6 with anti-flapping: back only after ``hold_down`` s of health, and not while
        the server has used up its failovers for the window."""
        if not reachable or now - view.last_seen >= self.network_timeout:
            view.healthy_since = None
            return []
        if view.healthy_since is None:
            view.healthy_since = now
        if now - view.healthy_since < self.hold_down or self._flapping(view, now):
            return []
        view.liveness, view.healthy_since = Liveness.UP, None
        return [ServerRecovered(server=server, cause=FailureCause.NETWORK)]

    def _flapping(self, view: ServerView, now: float) -> bool:
        view.failovers = [t for t in view.failovers if now - t < self.failover_window]
        return 0 < self.max_failovers <= len(view.failovers)

    def _network_failed(
        self, server: str, view: ServerView, silent_for: float, now: float
    ) -> list[Decision]:
        """R2's verdict, unless so many servers are silent that the observer is the likelier
        culprit: then the failover is held and an alert raised once per episode."""
        silent = self._silent_servers(now)
        too_many = len(silent) > self.mass_silence_share * len(self.servers)
        held_for = now - self.holding_since if self.holding_since is not None else 0.0
        if too_many and held_for < self.mass_silence_max_hold:
            view.next_probe_at = now + self.reprobe_interval
            if self.holding_since is not None:
                return []
            self.holding_since = now
            return [
                FailoversHeld(
                    servers=tuple(sorted(silent)),
                    total=len(self.servers),
                    share=self.mass_silence_share,
                )
            ]
        if not too_many:
            self.holding_since = None
        view.liveness = Liveness.NETWORK_FAILED
        view.failovers.append(now)
        detail = f"no heartbeat for {silent_for:.1f} s and the probe failed"
        return [ServerFailed(server=server, cause=FailureCause.NETWORK, detail=detail)]

    def _too_many_silent(self, now: float) -> bool:
        return len(self._silent_servers(now)) > self.mass_silence_share * len(self.servers)

    def _silent_servers(self, now: float) -> list[str]:
        """Servers silent for a whole timeout: not yet declared, or declared within it."""
        return [
            sid
            for sid, v in self.servers.items()
            if now - v.last_seen >= self.network_timeout
            and (
                v.liveness in (Liveness.UP, Liveness.PROBING)
                or (
                    v.liveness is Liveness.NETWORK_FAILED
                    and v.failovers
                    and now - v.failovers[-1] < self.network_timeout
                )
            )
        ]

    def confirm_failback(self, server: str, now: float, by: str = "admin") -> list[HealthEvent]:
        """R7: the administrator's confirmation; raises ValueError with the reason if refused."""
        view = self.servers.get(server)
        if view is None:
            raise ValueError(f"unknown server {server!r}")
        if view.liveness is not Liveness.STORAGE_FAILED:
            raise ValueError(f"server {server!r} is not storage-failed (it is {view.liveness})")
        if not view.storage_ok:
            raise ValueError(f"server {server!r} still reports failed storage")
        if now - view.last_seen >= self.network_timeout:
            raise ValueError(f"server {server!r} is not heartbeating; its network looks down")
        view.liveness = Liveness.UP
        return [
            FailbackConfirmed(server=server, by=by),
            ServerRecovered(server=server, cause=FailureCause.STORAGE),
        ]

    def count_by_liveness(self) -> dict[Liveness, int]:
        """How many watched servers are in each state (every state, 0 included)."""
        counts = dict.fromkeys(Liveness, 0)
        for view in self.servers.values():
            counts[view.liveness] += 1
        return counts

    def liveness(self, server: str) -> Liveness | None:
        """The current view of one server, or None if it is not watched."""
        view = self.servers.get(server)
        return view.liveness if view else None


def _is_newer(view: ServerView, hb: Heartbeat) -> bool:
    """A heartbeat of a new boot, or a higher sequence of the same boot."""
    return hb.boot_id != view.boot_id or hb.sequence > view.sequence
