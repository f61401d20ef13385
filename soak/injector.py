"""Carries out the fault plan on the running cluster, logging each fault's start and end
to the fault log. Every fault ends by itself: its repair starts after its planned
duration, and each step of the repair is bounded. The administrator's part (capacity,
drain and undrain, the storage-repair confirmation) goes over NATS as the ``admin``
identity, exactly as ``blaze`` sends it, retried while no leader answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared import subjects
from shared.bounded import raise_if_cancelled
from shared.bus import Bus, read_leases
from shared.errors import BusError
from shared.messages import (
    CapacityRequest,
    DrainRequest,
    FailbackRequest,
    Fault,
    Message,
    Reply,
)
from soak.cluster import SoakCluster
from soak.faultlog import (
    ENDED,
    FAULTS_STOPPED,
    REPAIRING,
    SKIPPED,
    STARTED,
    FaultLogWriter,
    FaultRecord,
)
from soak.faults import NODE_FAULTS, REPLICA_FAULTS, FaultKind, PlannedFault

log = logging.getLogger("soak.injector")

ADMIN = "soak@chaos"
"""Who the administrator's requests say they come from (``by`` in the event log)."""
ADMIN_BOUND_S = 30.0
"""How long an administrator's request is retried while nobody (or a refusal) answers."""
CONFIRM_BOUND_S = 60.0
"""How long the storage-repair confirmation is retried after the repair (R7)."""
RESTART_BOUND_S = 15.0
"""How long the supervisor may take to restart a SIGKILLed replica."""
REQUEST_TIMEOUT_S = 2.0
RETRY_S = 0.5
DONE_ALREADY = ("is already drained", "is not drained", "is not storage-failed")
"""Refusals that mean an earlier try (whose answer was lost) was carried out."""


@dataclass
class Injector:
    """Runs one plan against one cluster."""

    cluster: SoakCluster
    admin: Bus
    log: FaultLogWriter
    busy: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    killed: dict[str, int | None] = field(default_factory=dict)
    """Replica -> the pid it had when SIGKILLed."""

    async def run(self, plan: list[PlannedFault], started: float, duration: float) -> None:
        """Inject every planned fault at its time; after ``duration``, wait for every
        fault to end and log ``faults_stopped``."""
        for fault in plan:
            if fault.at >= duration:
                break
            await asyncio.sleep(max(0.0, started + fault.at - time.monotonic()))
            task = asyncio.create_task(self._carry_out(fault), name=f"fault-{fault.number}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        await asyncio.sleep(max(0.0, started + duration - time.monotonic()))
        if self.tasks:
            await asyncio.gather(*self.tasks)
        self._write(FAULTS_STOPPED, detail="every fault has ended")

    def _write(self, record: str, fault: PlannedFault | None = None, **fields: Any) -> None:
        now = time.monotonic()
        wall = datetime.now(UTC).isoformat(timespec="milliseconds")
        if fault is not None:
            fields = {
                "number": fault.number,
                "kind": fault.kind.value,
                "target": fault.target,
                **fields,
            }
        self.log.write(FaultRecord(record=record, at=now, wall=wall, **fields))

    async def _carry_out(self, fault: PlannedFault) -> None:
        key = _busy_key(fault)
        if key in self.busy:
            self._write(SKIPPED, fault, detail=f"{key} still busy with an earlier fault")
            return
        self.busy.add(key)
        try:
            target, role = await self._resolve(fault)
            self._write(STARTED, fault, target=target, role=role, extra=_extra(fault))
            problem = await self._start(fault, target)
            if not problem:
                await asyncio.sleep(fault.duration)
                self._write(REPAIRING, fault, target=target, role=role)
                problem = await self._end(fault, target)
            self._write(
                ENDED, fault, target=target, role=role, ok=not problem, detail=problem or ""
            )
        except Exception as exc:
            log.exception("fault %s failed", fault.describe())
            self._write(ENDED, fault, ok=False, detail=f"injector error: {exc!r}")
        finally:
            self.busy.discard(key)

    async def _resolve(self, fault: PlannedFault) -> tuple[str, str]:
        """The replica a replica fault hits (the service's leader or its standby, as
        planned) and its role; anything else hits its planned target."""
        if fault.kind not in REPLICA_FAULTS:
            return fault.target, ""
        replicas = (f"{fault.target}-a", f"{fault.target}-b")
        leader = ""
        with contextlib.suppress(Exception):  # no stream leader for a moment
            leader = (await read_leases(self.admin)).get(fault.target, "")
        if leader not in replicas:
            return replicas[0], "unknown"
        standby = replicas[1] if leader == replicas[0] else replicas[0]
        return (leader, "leader") if fault.role == "leader" else (standby, "standby")

    # ---- each kind: start, then end ----

    async def _start(self, fault: PlannedFault, target: str) -> str:  # noqa: PLR0911
        """Inflict the fault; what went wrong, or ""."""
        c = self.cluster
        match fault.kind:
            case FaultKind.SERVER_NETWORK_CUT:
                return _refused(await c.server_fault(Fault.NET_DOWN, target))
            case FaultKind.STORAGE_FAILURE:
                return _refused(await c.server_fault(Fault.STORAGE_FAIL, target))
            case FaultKind.AGENT_KILL:
                return _refused(await c.server_fault(Fault.KILL, target))
            case FaultKind.REPLICA_KILL:
                self.killed[target] = c.kill_replica(target)
                return ""
            case FaultKind.REPLICA_NETWORK_CUT:
                c.cut_replica(target)
                return ""
            case FaultKind.NATS_NODE_KILL:
                await c.kill_node(target)
                return ""
            case FaultKind.NATS_NODE_RESTART:
                await c.stop_node(target)
                return ""
            case FaultKind.CAPACITY_CHANGE:
                assert fault.capacity is not None
                return await self._capacity(target, fault.capacity)
            case FaultKind.DRAIN:
                request = DrainRequest(server=target, by=ADMIN)
                return await self._ask(subjects.ADMIN_DRAIN, request, ADMIN_BOUND_S)
        return f"unknown fault kind {fault.kind}"

    async def _end(self, fault: PlannedFault, target: str) -> str:  # noqa: PLR0911
        """Repair the fault; what went wrong, or ""."""
        c = self.cluster
        match fault.kind:
            case FaultKind.SERVER_NETWORK_CUT:
                return _refused(await c.server_fault(Fault.NET_UP, target))
            case FaultKind.STORAGE_FAILURE:
                return await self._repair_storage(target)
            case FaultKind.AGENT_KILL:
                return _refused(await c.server_fault(Fault.START, target))
            case FaultKind.REPLICA_KILL:
                return await self._restarted(target)
            case FaultKind.REPLICA_NETWORK_CUT:
                c.restore_replica(target)
                return ""
            case FaultKind.NATS_NODE_KILL | FaultKind.NATS_NODE_RESTART:
                return await c.start_node(target)
            case FaultKind.CAPACITY_CHANGE:
                return await self._capacity(target, c.config.server(target).capacity)
            case FaultKind.DRAIN:
                request = DrainRequest(server=target, by=ADMIN)
                return await self._ask(subjects.ADMIN_UNDRAIN, request, ADMIN_BOUND_S)
        return f"unknown fault kind {fault.kind}"

    async def _repair_storage(self, server: str) -> str:
        """Put the directory back, then confirm the repair as the administrator would, once
        the cluster accepts it (it refuses while the server still reports failed storage)."""
        problem = _refused(await self.cluster.server_fault(Fault.STORAGE_REPAIR, server))
        if problem:
            return problem
        request = FailbackRequest(server=server, by=ADMIN)
        return await self._ask(subjects.ADMIN_FAILBACK, request, CONFIRM_BOUND_S)

    async def _capacity(self, server: str, capacity: int) -> str:
        request = CapacityRequest(server=server, capacity=capacity, by=ADMIN)
        return await self._ask(subjects.ADMIN_CAPACITY, request, ADMIN_BOUND_S)

    async def _restarted(self, replica: str) -> str:
        """Wait until the supervisor has the killed replica running again."""
        deadline = time.monotonic() + RESTART_BOUND_S
        killed = self.killed.get(replica)
        while time.monotonic() < deadline:
            pid = self.cluster.replica_pid(replica)
            if pid is not None and pid != killed:
                return ""
            await asyncio.sleep(0.2)
        return f"{replica} not running again within {RESTART_BOUND_S:.0f} s"

    async def _ask(self, subject: str, request: Message, bound: float) -> str:
        """Send an administrator's request until it is accepted; the last refusal or
        error if it never is within ``bound`` seconds."""
        deadline = time.monotonic() + bound
        last = ""
        while time.monotonic() < deadline:
            try:
                reply = await self.admin.request(subject, request, Reply, timeout=REQUEST_TIMEOUT_S)
            except (BusError, TimeoutError) as exc:
                raise_if_cancelled()  # a cancel that 3.11's wait_for turned into a time-out
                last = f"{subject}: {exc}"
            else:
                if reply.ok or any(done in reply.reason for done in DONE_ALREADY):
                    return ""
                last = f"{subject} refused: {reply.reason}"
            await asyncio.sleep(RETRY_S)
        return f"not accepted within {bound:.0f} s; last answer: {last}"


def _busy_key(fault: PlannedFault) -> str:
    """What one fault occupies: its server, its service, or the NATS cluster."""
    return "nats" if fault.kind in NODE_FAULTS else fault.target


def _extra(fault: PlannedFault) -> dict[str, Any]:
    extra: dict[str, Any] = {"planned_at": fault.at, "duration": fault.duration}
    if fault.capacity is not None:
        extra["capacity"] = fault.capacity
    return extra


def _refused(reply: Reply) -> str:
    return "" if reply.ok else reply.reason
