"""The checker's rules: what the soak holds the cluster to, judged on what an outside
observer sees (the event log, the status, the recording directories) against the fault
log (what the injector really did). Pure: every observation comes with its time, and
the unit tests feed made-up ones (tests/e2e/test_soak.py).

Each violation names the rule, what was seen, and the event sequence numbers (or the
placement state's log cursor) to find it again with ``blaze events``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.messages import (
    AnyEvent,
    CameraMoved,
    CameraMovePlanned,
    ClaimsConfirmed,
    FailbackCompleted,
    FailbackConfirmed,
    FailbackStarted,
    FailoversHeld,
    ReleasesConfirmed,
    ServerFailed,
    ServerRecovered,
)
from soak.faultlog import ENDED, FAULTS_STOPPED, REPAIRING, STARTED, FaultRecord
from soak.faults import NODE_FAULTS, REPLICA_FAULTS, SERVER_FAULTS, FaultKind
from soak.observations import HOME, Bounds, SegmentSeen, StatusSeen, Tally

OVER_CAPACITY = "over_capacity"
RECORDED_TWICE = "recorded_twice_same_epoch"
FAILED_SERVER_HOSTS = "failed_server_hosts_cameras"
STORAGE_GATE = "storage_failed_given_cameras"
NOT_HOME = "not_home_after_faults"
NOT_RECORDING_AT_HOME = "not_recording_at_home"
PENDING_WITH_FREE = "pending_with_free_channel"
EVENT_HOLE = "event_sequence_hole"
EVENT_INVALID = "event_invalid"
EVENT_NOT_REPLAYED = "event_not_replayable"
MOVE_REPEATED = "move_repeated"
SEGMENT_LOST = "segment_lost"
SEGMENT_NOT_HOME = "segment_not_home"
SYNC_NOT_SETTLED = "sync_not_settled"
FAULT_NOT_REPAIRED = "fault_not_repaired"
CHECKER_INCOMPLETE = "checker_incomplete"
"""Not the cluster's: the checker ran out of time, so the run is not judged whole."""

RULES = (
    OVER_CAPACITY,
    RECORDED_TWICE,
    FAILED_SERVER_HOSTS,
    STORAGE_GATE,
    NOT_HOME,
    NOT_RECORDING_AT_HOME,
    PENDING_WITH_FREE,
    EVENT_HOLE,
    EVENT_INVALID,
    EVENT_NOT_REPLAYED,
    MOVE_REPEATED,
    SEGMENT_LOST,
    SEGMENT_NOT_HOME,
    SYNC_NOT_SETTLED,
    FAULT_NOT_REPAIRED,
    CHECKER_INCOMPLETE,
)

FAILING = frozenset({FaultKind.SERVER_NETWORK_CUT, FaultKind.STORAGE_FAILURE, FaultKind.AGENT_KILL})
"""Server faults after which the server must hold no cameras (R2, R3, R4)."""
LEADING = ("leader", "unknown")
"""Replica faults that may have hit a leader: ``unknown`` when the lease could not be read
at that moment (a NATS node down), so the checker counts it as one."""
LISTED = 20
"""Cameras (or segments) named in one violation at most; the count says the rest."""


@dataclass(frozen=True)
class Violation:
    """One rule broken, with what reproduces it."""

    rule: str
    at: float
    """When it was seen (monotonic seconds; the report also gives seconds into the run)."""
    detail: str
    events: tuple[int, ...] = ()
    """Event sequence numbers (``blaze events --json`` prints them as ``seq``)."""
    cursor: int | None = None
    """The placement state's log position in the status read that showed it."""
    servers: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    fault: int | None = None
    """The number of the fault (in the fault log) it is about."""

    def to_json(self) -> dict[str, Any]:
        """As JSON, empty fields left out."""
        return {k: v for k, v in asdict(self).items() if v not in ((), None, "")}


@dataclass
class ActiveFault:
    """A fault the injector started, until it ended."""

    record: FaultRecord
    repair_at: float | None = None
    """When its repair began (the fault log's ``repairing``)."""
    ended_at: float | None = None
    judged: bool = False
    """Its failed-server rule has fired (once per fault)."""
    settled_after: float | None = None
    """Seconds from its end until the cluster had every camera it could home again."""

    @property
    def kind(self) -> FaultKind:
        return FaultKind(self.record.kind)

    def active_at(self, at: float) -> bool:
        """Whether it had begun and not ended at ``at``."""
        return self.record.at <= at and (self.ended_at is None or at < self.ended_at)

    def failing_at(self, at: float) -> bool:
        """Whether it had begun and its repair had not at ``at``: the target is down."""
        end = self.repair_at if self.repair_at is not None else self.ended_at
        return self.record.at <= at and (end is None or at < end)


@dataclass(frozen=True)
class Disturbance:
    """Something that legitimately delays a failover: a leader replaced, a NATS node lost
    or back, a mass-silence hold."""

    at: float
    delays_network: float
    """Latest moment, from ``at``, a network failover can then be due."""
    delays_storage: float


@dataclass
class Checker:
    """Every rule, fed observations in the order they were made."""

    bounds: Bounds
    violations: list[Violation] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    faults: dict[int, ActiveFault] = field(default_factory=dict)
    disturbances: list[Disturbance] = field(default_factory=list)
    faults_stopped_at: float | None = None
    converged_at: float | None = None
    last_seq: int = 0
    digests: dict[int, str] = field(default_factory=dict)
    storage_gates: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)
    """Server -> each time it was closed to cameras, in log order: the sequence of its
    storage failure and of the administrator's confirmation that ended it (None until
    then)."""
    claimed: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    """(camera, epoch) -> {server: seq of its claims_confirmed}."""
    moved: dict[tuple[str, int], int] = field(default_factory=dict)
    history: dict[tuple[str, int], list[tuple[int, str, str]]] = field(default_factory=dict)
    """(camera, epoch) -> the events about it: (seq, type, server), to explain a finding."""
    recorders: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    """(camera, epoch) -> {recording server: a segment it wrote}."""
    segments: dict[tuple[str, str], str] = field(default_factory=dict)
    """(camera, segment name) -> the server that recorded it: every segment seen."""
    ceilings: dict[str, int] = field(default_factory=dict)
    """A server whose capacity was lowered below its load: the load it may not exceed."""
    last_status: StatusSeen | None = None
    pending_seen: tuple[float, int, tuple[str, ...]] | None = None
    pending_reported: bool = False
    fired: set[tuple[str, str]] = field(default_factory=set)

    # ---- ground truth: the fault log ----

    def on_fault(self, record: FaultRecord) -> None:
        """A line of the fault log."""
        if record.record == STARTED:
            self.faults[record.number] = ActiveFault(record)
            self._maybe_disturbed(record, record.at)
        elif record.record == REPAIRING and record.number in self.faults:
            self.faults[record.number].repair_at = record.at
        elif record.record == ENDED and record.number in self.faults:
            fault = self.faults[record.number]
            fault.ended_at = record.at
            if fault.kind in NODE_FAULTS:
                self._maybe_disturbed(fault.record, record.at)
            if not record.ok:
                self._violate(
                    FAULT_NOT_REPAIRED,
                    record.at,
                    f"{record.kind} of {record.target} did not end within its bound: "
                    f"{record.detail}",
                    fault=record.number,
                )
        elif record.record == FAULTS_STOPPED:
            self.faults_stopped_at = record.at

    def _maybe_disturbed(self, record: FaultRecord, at: float) -> None:
        b = self.bounds
        kind = FaultKind(record.kind)
        if kind in REPLICA_FAULTS and record.role in LEADING:
            service = record.target.rsplit("-", 1)[0]
            if service == "health":
                grace = b.takeover + b.network_timeout
                self._disturbed(at, grace + b.network_failover, b.takeover + b.storage_failover)
            elif service == "placement":
                self._disturbed(
                    at, b.takeover + b.storage_failover, b.takeover + b.storage_failover
                )
        elif kind in NODE_FAULTS:
            # Leases may lapse while JetStream elects: any leader may change.
            lapse = b.nats_election + b.takeover
            self._disturbed(
                at, lapse + b.network_timeout + b.network_failover, lapse + b.storage_failover
            )

    def _disturbed(self, at: float, network: float, storage: float) -> None:
        self.disturbances.append(Disturbance(at, network, storage))

    def failover_due(self, fault: ActiveFault) -> float:
        """When every camera must be off the server of a failing fault: the failover bound
        from its start, pushed on by each disturbance of the control plane that came in
        between (docs/soak.md)."""
        b = self.bounds
        storage = fault.kind is FaultKind.STORAGE_FAILURE
        start = fault.record.at
        due = start + (b.storage_failover if storage else b.network_failover)
        for d in sorted(self.disturbances, key=lambda d: d.at):
            if start - b.lookback <= d.at <= due:
                due = max(due, d.at + (d.delays_storage if storage else d.delays_network))
        return due

    # ---- the event log ----

    def on_event(self, seq: int, at: float, event: AnyEvent | None, digest: str) -> None:
        """One event, in log order, seen live at ``at``."""
        if seq != self.last_seq + 1:
            self._violate(
                EVENT_HOLE,
                at,
                f"event {seq} came after {self.last_seq}: the log has a hole",
                events=(self.last_seq, seq),
            )
        self.last_seq = max(self.last_seq, seq)
        self.digests[seq] = digest
        if event is None:
            self._violate(EVENT_INVALID, at, f"event {seq} does not validate", events=(seq,))
            return
        self._count(event)
        self._remember(seq, event)
        self._storage_gate(seq, at, event)
        self._claims(seq, at, event)
        if isinstance(event, FailoversHeld):
            b = self.bounds
            self._disturbed(at, b.mass_silence_hold + b.network_failover, b.storage_failover)

    def _count(self, event: AnyEvent) -> None:
        t = self.tally
        t.events[event.type] = t.events.get(event.type, 0) + 1
        if isinstance(event, ServerFailed):
            t.failovers[event.cause] = t.failovers.get(event.cause, 0) + 1
        elif isinstance(event, ServerRecovered):
            t.recoveries[event.cause] = t.recoveries.get(event.cause, 0) + 1
        elif isinstance(event, CameraMoved):
            t.moves[event.reason] = t.moves.get(event.reason, 0) + 1
        elif isinstance(event, FailbackCompleted):
            t.failbacks_completed += 1

    def _remember(self, seq: int, event: AnyEvent) -> None:
        """Keep which events are about each camera and epoch."""
        if isinstance(event, CameraMovePlanned | CameraMoved):
            entries = [(event.camera, event.epoch, event.to)]
        elif isinstance(event, ClaimsConfirmed | ReleasesConfirmed):
            entries = [(a.camera, a.epoch, event.server) for a in event.cameras]
        else:
            return
        for camera, epoch, server in entries:
            self.history.setdefault((camera, epoch), []).append((seq, event.type, server))

    def explain(self, camera: str, epoch: int) -> tuple[str, tuple[int, ...]]:
        """What the log says of one camera under one epoch, and those events' sequences."""
        found = self.history.get((camera, epoch), [])
        said = ", ".join(f"{kind} {server} (seq {seq})" for seq, kind, server in found)
        return f"epoch {epoch}: {said or 'no event'}", tuple(seq for seq, _, _ in found)

    def _storage_gate(self, seq: int, at: float, event: AnyEvent) -> None:
        """R7: from a storage failure until the administrator's confirmation, nothing is
        planned onto the server and its failback does not start.

        Placement decides on the part of the log it has folded, and its notice may reach
        the log after events it had not read yet (it sends commands first, and publishes
        behind them). A notice is judged by the log as it stood at its ``decided_at``
        (issue 10, seed 10: a plan decided before the failure, published after it); one
        without it, by the log up to the notice itself."""
        gates = self.storage_gates
        if isinstance(event, ServerFailed) and event.cause == "storage":
            closed = gates.setdefault(event.server, [])
            if not closed or closed[-1][1] is not None:
                closed.append((seq, None))
        elif isinstance(event, FailbackConfirmed):
            closed = gates.get(event.server, [])
            if closed and closed[-1][1] is None:
                closed[-1] = (closed[-1][0], seq)
        elif isinstance(event, CameraMovePlanned | FailbackStarted):
            self._judge_at_gate(seq, at, event)

    def _judge_at_gate(
        self, seq: int, at: float, event: CameraMovePlanned | FailbackStarted
    ) -> None:
        """A plan onto a server, or its failback, while its storage stood failed and
        unconfirmed as of the notice's ``decided_at``."""
        server = event.to if isinstance(event, CameraMovePlanned) else event.server
        decided = _decided_at(seq, event)
        failed = self.storage_failed_at(server, decided)
        if failed is None:
            return
        cameras: tuple[str, ...] = ()
        if isinstance(event, CameraMovePlanned):
            cameras = (event.camera,)
            what = (
                f"{event.camera} planned onto {server} under epoch {event.epoch} "
                f"{_as_of(seq, decided)}, which failed its storage at event {failed} and "
                "had no confirmation since"
            )
        else:
            what = (
                f"failback of {server} started {_as_of(seq, decided)} without a "
                f"confirmation of its storage repair (failed at event {failed})"
            )
        self._violate(
            STORAGE_GATE, at, what, events=(failed, seq), servers=(server,), cameras=cameras
        )

    def storage_failed_at(self, server: str, position: int) -> int | None:
        """The sequence of the storage failure of ``server`` that stood, unconfirmed, once
        the log up to ``position`` had been read; None if none did."""
        for failed, confirmed in reversed(self.storage_gates.get(server, ())):
            if failed <= position:
                return failed if confirmed is None or confirmed > position else None
        return None

    def _claims(self, seq: int, at: float, event: AnyEvent) -> None:
        """R4 and R11: one server per camera and epoch; no move confirmed twice."""
        if isinstance(event, ClaimsConfirmed):
            for a in event.cameras:
                by = self.claimed.setdefault((a.camera, a.epoch), {})
                by.setdefault(event.server, seq)
                if len(by) == 2:
                    self._violate(
                        RECORDED_TWICE,
                        at,
                        f"{a.camera} claimed under epoch {a.epoch} by {sorted(by)}",
                        events=tuple(sorted(by.values())),
                        servers=tuple(sorted(by)),
                        cameras=(a.camera,),
                    )
        elif isinstance(event, CameraMoved):
            key = (event.camera, event.epoch)
            if key in self.moved:
                self._violate(
                    MOVE_REPEATED,
                    at,
                    f"{event.camera} moved to {event.to} under epoch {event.epoch} twice",
                    events=(self.moved[key], seq),
                    cameras=(event.camera,),
                )
            else:
                self.moved[key] = seq

    # ---- the status ----

    def on_status(self, status: StatusSeen) -> None:
        """One read of ``blaze status``."""
        self.tally.status_reads += 1
        self._capacity(status)
        self._failed_servers(status)
        self._pending(status)
        self._settling(status)
        self.last_status = status

    def _capacity(self, status: StatusSeen) -> None:
        """R4: no server above its channel capacity. A capacity lowered below the load
        moves nothing (docs/architecture.md), so such a server may stay above it, but
        never gains a camera until it is below."""
        before = self.last_status.servers if self.last_status else {}
        for s in status.servers.values():
            if s.hosting <= s.capacity:
                self.ceilings.pop(s.id, None)
                continue
            lowered = s.id in before and s.capacity < before[s.id].capacity
            ceiling = self.ceilings.get(s.id, s.hosting if lowered else None)
            if ceiling is not None and s.hosting <= ceiling:
                self.ceilings[s.id] = s.hosting
            else:
                self._violate(
                    OVER_CAPACITY,
                    status.at,
                    f"{s.id} holds {s.hosting} channels, capacity {s.capacity}",
                    cursor=status.cursor,
                    servers=(s.id,),
                    cameras=tuple(status.on(s.id)[:LISTED]),
                    once=f"{s.id}@{status.cursor}",
                )

    def _failed_servers(self, status: StatusSeen) -> None:
        """R2-R4: no camera shows a failed server as its host once the failover is due.
        A camera that records elsewhere while the failed server has yet to confirm its
        release is not on it (a storage-failed server is asked to release; its channel
        stays counted meanwhile, R4)."""
        for fault in self.faults.values():
            if fault.judged or fault.kind not in FAILING or not fault.failing_at(status.at):
                continue
            server = status.servers.get(fault.record.target)
            if server is None or server.hosting == 0 or status.at < self.failover_due(fault):
                continue
            cams = status.recorded_on(server.id)
            if not cams:
                continue
            fault.judged = True
            due = self.failover_due(fault)
            self._violate(
                FAILED_SERVER_HOSTS,
                status.at,
                f"{server.id} ({fault.kind}, {status.at - fault.record.at:.1f} s ago, due "
                f"{due - fault.record.at:.1f} s after it) still hosts {len(cams)} cameras; "
                f"placement shows it {server.state}",
                cursor=status.cursor,
                servers=(server.id,),
                cameras=tuple(cams[:LISTED]),
                fault=fault.record.number,
            )

    def _pending(self, status: StatusSeen) -> None:
        """R5: Pending only when no server that takes cameras has a free channel (every
        server of the soak is in one site, in reach of every camera)."""
        pending = status.pending()
        free = tuple(sorted(s.id for s in status.servers.values() if s.free > 0))
        if not pending or not free:
            self.pending_seen, self.pending_reported = None, False
            return
        if self.pending_seen is None:
            self.pending_seen = (status.at, status.cursor, free)
            return
        first_at, first_cursor, _ = self.pending_seen
        if self.pending_reported or status.at - first_at < self.bounds.pending_grace:
            return
        self.pending_reported = True
        room = ", ".join(f"{sid} {status.servers[sid].free}" for sid in free)
        self._violate(
            PENDING_WITH_FREE,
            status.at,
            f"{len(pending)} cameras Pending for {status.at - first_at:.1f} s while channels "
            f"were free ({room}); placement state at log positions {first_cursor} and "
            f"{status.cursor}",
            cursor=status.cursor,
            events=(first_cursor, status.cursor),
            servers=free,
            cameras=tuple(pending[:LISTED]),
        )

    def _settling(self, status: StatusSeen) -> None:
        """Convergence times: from each fault's end until every camera whose home has no
        fault on it is home again; and after the faults stop, until all are home."""
        at = status.at
        hit = {
            f.record.target
            for f in self.faults.values()
            if f.kind in SERVER_FAULTS and f.active_at(at)
        }
        settled = all(c.state == HOME for c in status.cameras.values() if c.home not in hit)
        if settled:
            for fault in self.faults.values():
                if (
                    fault.ended_at is not None
                    and fault.settled_after is None
                    and at >= fault.ended_at
                ):
                    fault.settled_after = at - fault.ended_at
        stopped = self.faults_stopped_at
        if stopped is not None and self.converged_at is None and at >= stopped:
            self.converged_at = None if status.not_home() else at

    # ---- the recording directories ----

    def on_segments(self, at: float, found: Iterable[SegmentSeen]) -> None:
        """Segments seen for the first time in some directory."""
        for seg in found:
            key = (seg.camera, seg.name)
            if key not in self.segments:
                self.segments[key] = seg.recorded_by
                self.tally.segments_seen += 1
            by = self.recorders.setdefault((seg.camera, seg.epoch), {})
            by.setdefault(seg.recorded_by, seg.name)
            if len(by) == 2 and seg.recorded_by in by and by[seg.recorded_by] == seg.name:
                self._violate(
                    RECORDED_TWICE,
                    at,
                    f"{seg.camera} recorded under epoch {seg.epoch} by {sorted(by)}: "
                    + ", ".join(f"{s}: {n}" for s, n in sorted(by.items())),
                    servers=tuple(sorted(by)),
                    cameras=(seg.camera,),
                )

    # ---- the end of the run ----

    def judge_convergence(self, at: float) -> None:
        """After the faults stopped and the convergence bound passed (or all came home)."""
        status = self.last_status
        if self.converged_at is not None or status is None:
            return
        away = status.not_home()
        self._violate(
            NOT_HOME,
            at,
            f"{len(away)} cameras not home {self.bounds.converge:.0f} s after the faults "
            "stopped: "
            + ", ".join(
                f"{c} ({status.cameras[c].state} on {status.cameras[c].host})"
                for c in away[:LISTED]
            ),
            cursor=status.cursor,
            cameras=tuple(away[:LISTED]),
        )

    def judge_recording_at_home(
        self, at: float, newest: Mapping[str, SegmentSeen | None], since: str
    ) -> None:
        """Every camera's home holds a segment it recorded under the camera's epoch, newer
        than ``since`` (UTC, as segment names write it): it records at home now."""
        status = self.last_status
        if status is None:
            return
        stale = []
        for cam in status.cameras.values():
            seg = newest.get(cam.id)
            if (
                seg is None
                or seg.recorded_by != cam.home
                or seg.epoch != cam.epoch
                or seg.started < since
            ):
                stale.append(f"{cam.id} ({seg.name + ' by ' + seg.recorded_by if seg else 'none'})")
        if stale:
            self._violate(
                NOT_RECORDING_AT_HOME,
                at,
                f"{len(stale)} cameras have no segment at home under their epoch since "
                f"{since}: " + ", ".join(stale[:LISTED]),
                cursor=status.cursor,
                cameras=tuple(s.split(" ")[0] for s in stale[:LISTED]),
            )

    def judge_sync(self, at: float, open_jobs: list[str]) -> None:
        """R9: every sync job completed within the bound after convergence."""
        if open_jobs:
            self._violate(
                SYNC_NOT_SETTLED,
                at,
                f"{len(open_jobs)} sync jobs not completed {self.bounds.sync_settle:.0f} s "
                "after convergence: " + ", ".join(open_jobs[:LISTED]),
            )

    def judge_segments(
        self, at: float, holders: Mapping[tuple[str, str], set[str]], homes: Mapping[str, str]
    ) -> None:
        """Every segment seen during the run is still somewhere, and at its camera's home."""
        lost: dict[str, list[tuple[str, str]]] = {}
        away: dict[str, list[tuple[str, str]]] = {}
        for (camera, name), recorded_by in self.segments.items():
            held = holders.get((camera, name), set())
            if not held:
                lost.setdefault(camera, []).append((name, f"by {recorded_by}"))
            elif homes.get(camera) not in held:
                away.setdefault(camera, []).append((name, f"on {','.join(sorted(held))}"))
        for camera, names in sorted(lost.items()):
            self._segment_violation(SEGMENT_LOST, at, camera, names, "are nowhere any more")
        for camera, names in sorted(away.items()):
            home = homes.get(camera)
            self._segment_violation(
                SEGMENT_NOT_HOME, at, camera, names, f"are not at home ({home})"
            )

    def _segment_violation(
        self, rule: str, at: float, camera: str, names: list[tuple[str, str]], what: str
    ) -> None:
        names.sort()
        epochs = sorted({int(name.rsplit("_e", 1)[1].split(".")[0]) for name, _ in names})
        stories = [self.explain(camera, epoch) for epoch in epochs[:LISTED]]
        listed = ", ".join(f"{name} {where}" for name, where in names[:LISTED])
        self._violate(
            rule,
            at,
            f"{len(names)} segments of {camera} {what}: {listed}; the log of their "
            + "; ".join(story for story, _ in stories),
            cameras=(camera,),
            events=tuple(seq for _, seqs in stories for seq in seqs),
        )

    def judge_replay(self, at: float, replayed: Mapping[int, str], last_seq: int) -> None:
        """R11: the log replayed from the start holds every event seen live, unchanged,
        under the same sequence number, with no hole."""
        missing = [s for s in range(1, last_seq + 1) if s not in replayed]
        changed = [s for s, d in self.digests.items() if replayed.get(s, d) != d]
        lost = [s for s in self.digests if s > last_seq]
        for what, seqs in (
            ("missing from the replay", missing),
            ("changed since seen live", changed),
            ("beyond the stream's last sequence", lost),
        ):
            if seqs:
                self._violate(
                    EVENT_NOT_REPLAYED,
                    at,
                    f"{len(seqs)} events {what}: {seqs[:LISTED]}",
                    events=tuple(seqs[:LISTED]),
                )

    # ---- what the report shows ----

    def convergence_times(self) -> dict[str, Any]:
        """Per fault kind and overall: seconds from a fault's end to a settled cluster."""
        by_kind: dict[str, list[float]] = {}
        unsettled = 0
        for fault in self.faults.values():
            if fault.ended_at is None:
                continue
            if fault.settled_after is None:
                unsettled += 1
                continue
            by_kind.setdefault(fault.kind.value, []).append(fault.settled_after)
        every = [s for samples in by_kind.values() for s in samples]
        return {
            "all": summary(every),
            "by_kind": {k: summary(v) for k, v in sorted(by_kind.items())},
            "never_settled": unsettled,
        }

    def _violate(self, rule: str, at: float, detail: str, *, once: str = "", **fields: Any) -> None:
        key = (rule, once or detail)
        if key in self.fired:
            return
        self.fired.add(key)
        self.violations.append(Violation(rule, at, detail, **fields))


def _decided_at(seq: int, notice: CameraMovePlanned | FailbackStarted) -> int:
    """The log position a notice of placement was decided at: its ``decided_at``, or, from
    a placement that does not say, the notice's own place in the log (the latest it can
    be). Never past the notice itself."""
    return seq if notice.decided_at is None else min(notice.decided_at, seq)


def _as_of(seq: int, decided: int) -> str:
    """When a notice was decided, in words, for a violation's detail."""
    return f"(decided at event {decided})" if decided != seq else f"(event {seq})"


def nearest_rank(ordered: list[float], q: float) -> float:
    """The ``q`` quantile by nearest rank."""
    return ordered[max(0, round(q * len(ordered) + 0.5) - 1)]


def summary(samples: list[float]) -> dict[str, Any]:
    """Count, median, p99 and max, in seconds."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "median_s": round(statistics.median(ordered), 2),
        "p99_s": round(nearest_rank(ordered, 0.99), 2),
        "max_s": round(ordered[-1], 2),
    }
