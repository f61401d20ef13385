"""Lightweight simulated recording servers, many per process, for scale benchmarks
(issue 8): each has its own NATS connection, heartbeats once a second with the cameras
it hosts, answers the detector's probe and placement's claim/release commands with the
real agent's epoch rules, and can be told that its storage failed. No recorder, no files:
the epoch ledger lives in memory.

    python -m services.sim.fleet --config cluster.json --nats URL --servers rs-0..rs-249

reads one JSON request per line on stdin and answers one JSON line on stdout (see
``FleetControl``); it stops at end of input, on SIGTERM, or after ``--max-seconds``.

Times it reports are ``time.monotonic()``: on Linux that is CLOCK_MONOTONIC, one clock
for every process of the machine, so a benchmark can compare times of several fleet
processes with its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import subjects
from shared.bus import Bus
from shared.config import ClusterConfig
from shared.logs import setup_logging
from shared.messages import (
    Action,
    Assignment,
    Command,
    CommandResult,
    Heartbeat,
    Message,
    ProbeReply,
    ProbeRequest,
    Refusal,
)

log = logging.getLogger(__name__)

SERVER_RANGE = re.compile(r"^(?P<prefix>.*?)(?P<first>\d+)\.\.(?P=prefix)(?P<last>\d+)$")
"""``rs-0..rs-249``: a run of numbered servers."""


@dataclass
class Claim:
    """When this agent last started hosting a camera, and under which epoch."""

    epoch: int
    at: float


@dataclass
class FleetAgent:
    """One simulated recording server: heartbeats, probe answers, claim/release with
    the real agent's epoch rules (``services.heartbeat.app.Agent``), all in memory."""

    server_id: str
    capacity: int
    home: frozenset[str] = frozenset()
    """The cameras whose home this server is (for ``FleetControl``'s reports)."""
    boot_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    sequence: int = 0
    hosted: dict[str, int] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)
    storage_ok: bool = True
    counts: dict[str, int] = field(
        default_factory=lambda: {"claims": 0, "releases": 0, "refused": 0, "heartbeats": 0}
    )
    _seen: dict[str, int] = field(default_factory=dict)
    _fence: int = 0
    _cluster: str = ""
    _bus: Bus | None = None

    # ---- the bus ----

    async def connect(self, url: str) -> None:
        """Connect and answer probes and commands on this server's subjects."""
        self._bus = bus = await Bus.connect(url, f"agent-{self.server_id}")
        await bus.serve(
            subjects.probe(self.server_id), ProbeRequest, self._answer_probe, self._probe_error
        )
        await bus.serve(
            subjects.command(self.server_id), Command, self._on_command, self._command_error
        )

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._bus is not None:
            await self._bus.close()

    async def beat(self) -> None:
        """Publish one heartbeat now (R1)."""
        if self._bus is None:
            return
        hb = Heartbeat(
            server=self.server_id,
            boot_id=self.boot_id,
            sequence=self.sequence,
            capacity=self.capacity,
            hosted=dict(self.hosted),
            storage_ok=self.storage_ok,
            storage_error=None if self.storage_ok else "storage failure simulated by the fleet",
        )
        self.sequence += 1
        self.counts["heartbeats"] += 1
        with contextlib.suppress(Exception):  # reconnecting: the next beat goes through
            await self._bus.publish(subjects.heartbeat(self.server_id), hb)

    # ---- requests ----

    async def _answer_probe(self, _request: ProbeRequest) -> Message:
        return ProbeReply(server=self.server_id, boot_id=self.boot_id)

    def _probe_error(self, _reason: str) -> Message:
        return ProbeReply(server=self.server_id, boot_id=self.boot_id)

    def _command_error(self, reason: str) -> Message:
        refusal = Refusal(camera="unknown", epoch=0, seen_epoch=0, reason=reason)
        return CommandResult(server=self.server_id, action=Action.CLAIM, refused=(refusal,))

    async def _on_command(self, command: Command) -> Message:
        return self.carry_out(command, time.monotonic())

    def carry_out(self, command: Command, now: float) -> CommandResult:
        """The real agent's rules: a command for another server, or from a placement leader
        older than one seen (R12), is refused whole; a new cluster id starts the ledger
        afresh; each camera older than its newest epoch seen is refused; the rest is done
        (a make-before-break claim at once: there is no first segment to wait for)."""
        if command.server != self.server_id:
            return self._refuse_all(command, f"addressed to {command.server}")
        if command.cluster and command.cluster != self._cluster:
            self._seen.clear()
            self._fence, self._cluster = 0, command.cluster
        if command.fence < self._fence:
            self.counts["refused"] += len(command.cameras)
            reason = f"from a deposed placement leader (epoch {command.fence} < {self._fence})"
            deposed = self._refuse_all(command, reason)
            return deposed.model_copy(update={"fence_seen": self._fence})
        self._fence = command.fence
        fresh = [a for a in command.cameras if a.epoch >= self._seen.get(a.camera, 0)]
        refused = [
            Refusal(
                camera=a.camera,
                epoch=a.epoch,
                seen_epoch=self._seen[a.camera],
                reason="a newer epoch was already seen",
            )
            for a in command.cameras
            if a.epoch < self._seen.get(a.camera, 0)
        ]
        for a in fresh:
            self._seen[a.camera] = a.epoch
            if command.action is Action.CLAIM:
                if self.hosted.get(a.camera) != a.epoch:
                    self.claims[a.camera] = Claim(a.epoch, now)
                    self.counts["claims"] += 1
                self.hosted[a.camera] = a.epoch
            elif self.hosted.pop(a.camera, None) is not None:
                self.counts["releases"] += 1
        self.counts["refused"] += len(refused)
        return CommandResult(
            server=self.server_id,
            action=command.action,
            done=tuple(Assignment(camera=a.camera, epoch=a.epoch) for a in fresh),
            refused=tuple(refused),
        )

    def _refuse_all(self, command: Command, reason: str) -> CommandResult:
        refused = tuple(
            Refusal(
                camera=a.camera,
                epoch=a.epoch,
                seen_epoch=self._seen.get(a.camera, 0),
                reason=reason,
            )
            for a in command.cameras
        )
        return CommandResult(server=self.server_id, action=command.action, refused=refused)


class Fleet:
    """Many agents in one event loop; heartbeats spread evenly over the interval."""

    def __init__(
        self,
        config: ClusterConfig,
        servers: Iterable[str],
        nats_url: str,
        interval: float | None = None,
    ) -> None:
        self.config = config
        self.nats_url = nats_url
        self.interval = interval or config.timing.heartbeat_interval
        homes: dict[str, set[str]] = {}
        for cam in config.cameras:
            homes.setdefault(cam.home, set()).add(cam.id)
        capacity = {s.id: s.capacity for s in config.servers}
        self.agents = {
            sid: FleetAgent(sid, capacity[sid], frozenset(homes.get(sid, ()))) for sid in servers
        }
        order = [s.id for s in config.servers]
        # Each server's place in the whole cluster sets its phase, so several fleet
        # processes together spread every heartbeat of the second evenly.
        self._phase = {sid: order.index(sid) / max(1, len(order)) for sid in self.agents}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, connect_at_once: int = 50) -> None:
        """Connect every agent (``connect_at_once`` at a time), then start heartbeating."""
        agents = list(self.agents.values())
        for i in range(0, len(agents), connect_at_once):
            await asyncio.gather(
                *(a.connect(self.nats_url) for a in agents[i : i + connect_at_once])
            )
        start = time.monotonic()
        self._tasks = [
            asyncio.create_task(
                self._beat_loop(a, start + self._phase[a.server_id] * self.interval)
            )
            for a in agents
        ]

    async def _beat_loop(self, agent: FleetAgent, first: float) -> None:
        due = first
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await agent.beat()
            due += self.interval
            if due < time.monotonic():  # fell behind (a stalled loop): skip, never burst
                due = time.monotonic() + self.interval

    async def close(self) -> None:
        """Stop heartbeating and close every connection."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(a.close() for a in self.agents.values()), return_exceptions=True)

    # ---- faults ----

    async def fail_storage(self, servers: Iterable[str]) -> float:
        """These servers report failed storage from now on, at once (R3). Returns the
        monotonic time just before the first such heartbeat was published."""
        chosen = [self.agents[s] for s in servers if s in self.agents]
        started = time.monotonic()
        for agent in chosen:
            agent.storage_ok = False
        await asyncio.gather(*(a.beat() for a in chosen))
        return started

    async def repair_storage(self, servers: Iterable[str]) -> None:
        """These servers report healthy storage again, at once."""
        chosen = [self.agents[s] for s in servers if s in self.agents]
        for agent in chosen:
            agent.storage_ok = True
        await asyncio.gather(*(a.beat() for a in chosen))

    # ---- what happened ----

    def claims(self, cameras: Iterable[str], since: float) -> dict[str, tuple[str, float]]:
        """For each camera hosted here by a claim made after ``since``: (server, when)."""
        wanted = set(cameras)
        found: dict[str, tuple[str, float]] = {}
        for agent in self.agents.values():
            for camera in wanted.intersection(agent.hosted):
                claim = agent.claims.get(camera)
                if claim is not None and claim.at >= since:
                    found[camera] = (agent.server_id, claim.at)
        return found

    def placement(self) -> dict[str, int]:
        """``home``: cameras hosted by their home server here; ``away``: cameras hosted by
        a server that is not their home; ``homed``: cameras whose home is here."""
        home = away = homed = 0
        for agent in self.agents.values():
            at_home = len(agent.home.intersection(agent.hosted))
            home += at_home
            away += len(agent.hosted) - at_home
            homed += len(agent.home)
        return {"home": home, "away": away, "homed": homed}

    def counts(self) -> dict[str, int]:
        """Heartbeats, claims, releases and refusals of every agent here, summed."""
        total = {"heartbeats": 0, "claims": 0, "releases": 0, "refused": 0}
        for agent in self.agents.values():
            for key, n in agent.counts.items():
                total[key] += n
        return total


class FleetControl:
    """The line protocol a benchmark drives a fleet process with: one JSON object per
    line in, one per line out.

    ``{"op": "fail", "servers": [...]}`` -> ``{"at": t}``;
    ``{"op": "repair", "servers": [...]}`` -> ``{}``;
    ``{"op": "claims", "cameras": [...], "since": t}`` -> ``{"claims": {cam: [server, t]}}``;
    ``{"op": "placement"}`` -> ``{"home": n, "away": n, "homed": n}``;
    ``{"op": "counts"}`` -> the summed counters; ``{"op": "stop"}`` -> ``{}``, then it stops.
    A request it cannot carry out gets ``{"error": reason}``.
    """

    def __init__(self, fleet: Fleet, stop: asyncio.Event) -> None:
        self.fleet = fleet
        self.stop = stop

    async def answer(self, line: str) -> dict[str, Any]:
        """Carry out one request line and return the answer."""
        try:
            request = json.loads(line)
            return await self._carry_out(request["op"], request)
        except (ValueError, KeyError, TypeError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    async def _carry_out(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        match op:
            case "fail":
                answer["at"] = await self.fleet.fail_storage(request["servers"])
            case "repair":
                await self.fleet.repair_storage(request["servers"])
            case "claims":
                found = self.fleet.claims(request["cameras"], float(request["since"]))
                answer["claims"] = {c: list(v) for c, v in found.items()}
            case "placement":
                answer.update(self.fleet.placement())
            case "counts":
                answer.update(self.fleet.counts())
            case "stop":
                self.stop.set()
            case _:
                answer["error"] = f"unknown op {op!r}"
        return answer


def server_ids(specs: Iterable[str]) -> list[str]:
    """Server ids from ``rs-0..rs-249`` runs and single ids, in order."""
    found: list[str] = []
    for spec in specs:
        for part in spec.split(","):
            run = SERVER_RANGE.match(part.strip())
            if run is None:
                found.append(part.strip())
                continue
            prefix, first, last = run["prefix"], int(run["first"]), int(run["last"])
            found += [f"{prefix}{n}" for n in range(first, last + 1)]
    return [s for s in found if s]


async def serve_stdin(fleet: Fleet, stop: asyncio.Event) -> None:
    """Answer the requests of ``FleetControl`` on stdin until its end or ``stop``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    control = FleetControl(fleet, stop)
    while not stop.is_set():
        line = await reader.readline()
        if not line:
            break
        answer = await control.answer(line.decode())
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    stop.set()


async def run(args: argparse.Namespace, config: ClusterConfig) -> None:
    """Start the fleet, report readiness on stdout, serve stdin until told to stop."""
    fleet = Fleet(config, server_ids(args.servers), args.nats)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.max_seconds, stop.set)  # every run ends by itself
    try:
        await fleet.start()
        sys.stdout.write(json.dumps({"ready": len(fleet.agents)}) + "\n")
        sys.stdout.flush()
        served = asyncio.create_task(serve_stdin(fleet, stop))
        await stop.wait()
        served.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await served
    finally:
        await fleet.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m services.sim.fleet``."""
    parser = argparse.ArgumentParser(prog="services.sim.fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="ClusterConfig as JSON")
    parser.add_argument("--nats", required=True, help="NATS URL")
    parser.add_argument(
        "--servers", nargs="+", required=True, help="server ids, or runs like rs-0..rs-249"
    )
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    setup_logging("fleet", args.log_level)
    config = ClusterConfig.model_validate_json(Path(args.config).read_text())
    asyncio.run(run(args, config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
