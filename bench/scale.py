"""Scale (issue 8, benchmark 5): a fleet of lightweight simulated servers at 1 Hz on a real
nats-server, health and placement each in its own process.

1. steady state: CPU (share of one core) and RSS of the health leader, of placement and
   of nats-server, read from /proc over several windows after warm-up;
2. a rack failure (``--rack`` servers report failed storage at once): from the moment
   the fleet starts reporting it until every one of their cameras is claimed by its new
   host, on one clock (CLOCK_MONOTONIC, the same in every process of the machine: the
   fleet notes the failure and every claim it answers); then the storage is repaired,
   the failback confirmed, and everything goes home before the next rack fails;
3. ``blaze status --json`` at that size: the real command line, wall time.

    python -m bench.scale [--servers 1000 --cameras-per-server 100] [--smoke]

Writes ``scale.json`` through ``bench.common.write_result``. Every run ends by itself
(``--budget`` seconds at most).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import Figure, write_result
from services.sim.processes import ServiceProcesses
from shared import subjects
from shared.bus import Bus, embedded_server
from shared.bus.micro import status_subject
from shared.children import die_with_parent
from shared.config import CameraConfig, ClusterConfig, ServerConfig, Timing
from shared.messages import FailbackRequest, Reply

SERVERS_PER_FLEET_PROCESS = 250
LEASE_TTL_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Params:
    """What one run measures, and how long it may take."""

    servers: int
    cameras_per_server: int
    rack: int
    runs: int
    windows: int
    window_s: float
    status_runs: int
    budget_s: float

    @property
    def cameras(self) -> int:
        return self.servers * self.cameras_per_server


def cluster_config(p: Params) -> ClusterConfig:
    """``rs-<n>`` servers with their cameras at home and a fifth more channels than that,
    so a rack's cameras fit on the rest."""
    capacity = p.cameras_per_server + max(2, p.cameras_per_server // 5)
    servers = [ServerConfig(id=f"rs-{n}", capacity=capacity) for n in range(p.servers)]
    cameras = [
        CameraConfig(id=f"c{n}-{k}", home=f"rs-{n}")
        for n in range(p.servers)
        for k in range(p.cameras_per_server)
    ]
    # A longer leader lease than the default 3 s: its renewal must answer within a sixth of
    # it, and a fresh cluster of 100,000 cameras keeps placement busy for a minute (every
    # camera claimed, confirmed and announced on the log). Nothing measured here depends
    # on it; with 3 s, placement's term lapses again and again during that minute.
    timing = Timing(lease_ttl=LEASE_TTL_S)
    return ClusterConfig(servers=tuple(servers), cameras=tuple(cameras), timing=timing)


# ---- /proc ----


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident set size of a process now, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def steady_state(pids: dict[str, list[int]], p: Params) -> dict[str, list[float]]:
    """CPU % of one core per window, and RSS MB at each window's end, per process group."""
    samples: dict[str, list[float]] = {}
    for _ in range(p.windows):
        before = {name: sum(cpu_seconds(x) for x in group) for name, group in pids.items()}
        t0 = time.monotonic()
        await asyncio.sleep(p.window_s)
        elapsed = time.monotonic() - t0
        for name, group in pids.items():
            used = sum(cpu_seconds(x) for x in group) - before[name]
            samples.setdefault(f"{name}_cpu", []).append(100 * used / elapsed)
            samples.setdefault(f"{name}_rss", []).append(sum(rss_mb(x) for x in group))
    return samples


# ---- the fleet processes ----


class FleetProcess:
    """One ``services.sim.fleet`` process, driven over its stdin/stdout."""

    def __init__(self, servers: list[str], process: asyncio.subprocess.Process) -> None:
        self.servers = servers
        self.process = process
        self._lock = asyncio.Lock()

    @classmethod
    async def start(
        cls, servers: list[str], config_path: Path, nats_url: str, log: Path, budget_s: float
    ) -> FleetProcess:
        with log.open("ab") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.sim.fleet",
                "--config",
                str(config_path),
                "--nats",
                nats_url,
                "--servers",
                *servers,
                "--max-seconds",
                str(budget_s),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=64 << 20,
                preexec_fn=die_with_parent,  # only prctl runs in the child
            )
        return cls(servers, process)

    async def ready(self, within: float) -> None:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line:
            raise RuntimeError("a fleet process ended before it was ready (see fleet-*.log)")

    async def ask(self, request: dict[str, Any], within: float = 30.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        async with self._lock:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            await self.process.stdin.drain()
            line = await asyncio.wait_for(self.process.stdout.readline(), within)
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"fleet: {answer['error']}")
        return answer

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.ask({"op": "stop"}, within=5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), 10.0)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


class Fleets:
    """Every fleet process of a run."""

    def __init__(self, processes: list[FleetProcess]) -> None:
        self.processes = processes

    @property
    def pids(self) -> list[int]:
        return [f.process.pid for f in self.processes]

    def owning(self, servers: list[str]) -> list[tuple[FleetProcess, list[str]]]:
        return [
            (f, mine) for f in self.processes if (mine := [s for s in servers if s in f.servers])
        ]

    async def placement(self) -> dict[str, int]:
        total = {"home": 0, "away": 0, "homed": 0}
        for answer in await asyncio.gather(*(f.ask({"op": "placement"}) for f in self.processes)):
            for key in total:
                total[key] += answer[key]
        return total

    async def all_home(self) -> bool:
        found = await self.placement()
        return found["home"] == found["homed"] and found["away"] == 0

    async def fail(self, servers: list[str]) -> float:
        answers = await asyncio.gather(
            *(f.ask({"op": "fail", "servers": mine}) for f, mine in self.owning(servers))
        )
        return min(float(a["at"]) for a in answers)

    async def repair(self, servers: list[str]) -> None:
        await asyncio.gather(
            *(f.ask({"op": "repair", "servers": mine}) for f, mine in self.owning(servers))
        )

    async def claims(self, cameras: list[str], since: float) -> dict[str, tuple[str, float]]:
        found: dict[str, tuple[str, float]] = {}
        request = {"op": "claims", "cameras": cameras, "since": since}
        for answer in await asyncio.gather(*(f.ask(request) for f in self.processes)):
            for camera, (server, at) in answer["claims"].items():
                if camera not in found or at > found[camera][1]:
                    found[camera] = (server, at)
        return found

    async def stop(self) -> None:
        await asyncio.gather(*(f.stop() for f in self.processes))


async def placement_status(bus: Bus) -> dict[str, Any]:
    """The placement leader's own ``status`` (R13): cameras by state, its log position."""
    try:
        msg = await bus.nc.request(status_subject("placement", "placement"), b"", timeout=5.0)
    except Exception as exc:  # noqa: BLE001 (shown, never fatal)
        return {"error": repr(exc)}
    found: dict[str, Any] = json.loads(msg.data)
    return found


async def placement_settled(bus: Bus, cameras: int) -> bool:
    """Placement has folded every event on the log and sees every camera at home."""
    counters = (await placement_status(bus)).get("counters", {})
    home = counters.get("cameras", {}).get("home", 0)
    return bool(home == cameras and counters.get("log_position") == await bus.last_event_seq())


async def until(probe: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Poll ``probe`` until it holds; TimeoutError naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)


# ---- the rack failure ----


async def rack_failure(
    fleets: Fleets, bus: Bus, config: ClusterConfig, rack: list[str], within: float
) -> tuple[float, float]:
    """Fail a rack's storage; return (seconds until every camera is claimed by its new
    host, seconds from the failback confirmation until everything is home again)."""
    failed = set(rack)
    cameras = sorted(c.id for c in config.cameras if c.home in failed)
    at = await fleets.fail(rack)
    deadline = time.monotonic() + within
    while True:
        found = await fleets.claims(cameras, at)
        # Claimed by a server of the rack does not count: placement may plan a camera
        # onto a rack member whose failure report it has not folded yet, then move it on.
        moved = {c: v for c, v in found.items() if v[0] not in failed}
        if len(moved) == len(cameras):
            break
        if time.monotonic() > deadline:
            seen = await placement_status(bus)
            last = await bus.last_event_seq()
            raise TimeoutError(
                f"{len(cameras) - len(moved)} cameras not claimed in {within} s "
                f"(log at {last}; placement: {seen})"
            )
        await asyncio.sleep(0.05)
    claimed = max(t for _, t in moved.values()) - at
    await fleets.repair(rack)
    confirmed = time.monotonic()
    for server in rack:
        await until(partial(_confirm, bus, server), within, f"failback of {server} accepted")
    await until(fleets.all_home, within, "every camera back home")
    await until(partial(placement_settled, bus, len(config.cameras)), within, "placement settled")
    return claimed, time.monotonic() - confirmed


async def _confirm(bus: Bus, server: str) -> bool:
    """The administrator's confirmation; refused until health has seen the repair."""
    request = FailbackRequest(server=server, by="bench")
    reply = await bus.request(subjects.ADMIN_FAILBACK, request, Reply, timeout=5.0)
    return reply.ok


# ---- blaze status ----


def status_once(nats_url: str, data: Path, cameras: int) -> float:
    """Wall time of one ``blaze status --json``; its output must list every camera."""
    blaze = Path(sys.executable).parent / "blaze"
    t0 = time.monotonic()
    done = subprocess.run(
        [str(blaze), "status", "--json", "--nats", nats_url, "--data", str(data)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"blaze status failed ({done.returncode}): {done.stderr[-500:]!r}")
    listed = len(json.loads(done.stdout)["cameras"])
    if listed != cameras:
        raise RuntimeError(f"blaze status listed {listed} cameras, not {cameras}")
    return elapsed


# ---- the run ----


async def bench(p: Params, root: Path) -> tuple[list[Figure], dict[str, Any]]:
    config = cluster_config(p)
    nats = embedded_server(root / "nats")
    nats.start()
    assert nats.process is not None
    services = ServiceProcesses(config, nats.url, root / "services")
    fleets = Fleets([])
    bus = await Bus.connect(nats.url, "bench-scale")
    info: dict[str, Any] = {}
    try:
        await bus.ensure_streams()
        services.start("health")
        services.start("placement")
        t0 = time.monotonic()
        ids = [s.id for s in config.servers]
        for i in range(0, len(ids), SERVERS_PER_FLEET_PROCESS):
            chunk = ids[i : i + SERVERS_PER_FLEET_PROCESS]
            log = root / f"fleet-{i // SERVERS_PER_FLEET_PROCESS}.log"
            fleets.processes.append(
                await FleetProcess.start(chunk, services.config_path, nats.url, log, p.budget_s)
            )
        await asyncio.gather(*(f.ready(120) for f in fleets.processes))
        await until(fleets.all_home, p.budget_s / 3, "every camera claimed at home")
        await until(
            partial(placement_settled, bus, p.cameras), p.budget_s / 3, "placement caught up"
        )
        info["warm_up_s"] = round(time.monotonic() - t0, 1)
        print(f"warm-up done in {info['warm_up_s']} s", file=sys.stderr, flush=True)
        await asyncio.sleep(min(5.0, p.window_s))  # the start-up's last commits and commands
        pids = {
            "health": [services.running["health"].pid],
            "placement": [services.running["placement"].pid],
            "nats_server": [nats.process.pid],
            "fleet": fleets.pids,
        }
        steady = await steady_state(pids, p)
        racks = [ids[r * p.rack : (r + 1) * p.rack] for r in range(p.runs)]
        claimed, home_again = [], []
        for rack in racks:
            print(f"rack failure: {rack[0]}..{rack[-1]}", file=sys.stderr, flush=True)
            c, h = await rack_failure(fleets, bus, config, rack, within=p.budget_s / 6)
            claimed.append(c)
            home_again.append(h)
        status_dir = root / "cli"
        status_dir.mkdir()
        status = [
            await asyncio.to_thread(status_once, nats.url, status_dir, p.cameras)
            for _ in range(p.status_runs)
        ]
        info["fleet_counts"] = await _fleet_counts(fleets)
    finally:
        await fleets.stop()
        services.stop()
        await bus.close()
        nats.stop()
    return figures(p, steady, claimed, home_again, status), info


async def _fleet_counts(fleets: Fleets) -> dict[str, int]:
    total: dict[str, int] = {}
    for f in fleets.processes:
        for key, n in (await f.ask({"op": "counts"})).items():
            total[key] = total.get(key, 0) + n
    return total


def figures(
    p: Params,
    steady: dict[str, list[float]],
    claimed: list[float],
    home_again: list[float],
    status: list[float],
) -> list[Figure]:
    size = f"{p.servers} servers x {p.cameras_per_server} cameras at 1 Hz"
    per_window = f"over {p.windows} windows of {p.window_s:g} s"
    found = [
        Figure.of(
            "health_cpu",
            f"health leader CPU, % of one core, {size}, {per_window}",
            steady["health_cpu"],
            unit="%",
            scale=1.0,
            goal="<= 20 % of one core",
            limit=20.0,
        ),
        Figure.of(
            "health_rss",
            f"health leader resident memory, {size}",
            steady["health_rss"],
            unit="MB",
            scale=1.0,
            goal="<= 200 MB",
            limit=200.0,
        ),
    ]
    for name, who in (
        ("placement", "placement leader"),
        ("nats_server", "nats-server"),
        ("fleet", "every simulated server (the fleet processes together)"),
    ):
        found.append(
            Figure.of(
                f"{name}_cpu",
                f"{who} CPU, % of one core, {size}, {per_window}",
                steady[f"{name}_cpu"],
                unit="%",
                scale=1.0,
            )
        )
        found.append(
            Figure.of(
                f"{name}_rss",
                f"{who} resident memory, {size}",
                steady[f"{name}_rss"],
                unit="MB",
                scale=1.0,
            )
        )
    found += [
        Figure.of(
            "rack_failure_claimed",
            f"{p.rack} servers report failed storage -> all their {p.rack * p.cameras_per_server} "
            "cameras claimed by their new hosts",
            claimed,
            goal="<= 1 s",
            limit=1000.0,
        ),
        Figure.of(
            "rack_failback_home",
            "failback confirmed for the rack -> every camera recording at home again",
            home_again,
        ),
        Figure.of(
            "status_json",
            f"blaze status --json wall time, {p.cameras} cameras",
            status,
            goal="<= 500 ms",
            limit=500.0,
        ),
    ]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--cameras-per-server", type=int, default=100)
    parser.add_argument("--rack", type=int, default=20, help="servers failing at once")
    parser.add_argument("--runs", type=int, default=3, help="rack failures (default 3)")
    parser.add_argument("--windows", type=int, default=4, help="steady-state windows")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per window")
    parser.add_argument("--status-runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds the run may take")
    parser.add_argument("--smoke", action="store_true", help="20 servers x 10 cameras, quick")
    parser.add_argument("--keep", type=Path, help="keep logs and stores in this directory")
    args = parser.parse_args(argv)
    if args.smoke:
        p = Params(20, 10, rack=2, runs=2, windows=2, window_s=2.0, status_runs=3, budget_s=50)
    else:
        p = Params(
            args.servers,
            args.cameras_per_server,
            args.rack,
            args.runs,
            args.windows,
            args.window,
            args.status_runs,
            args.budget,
        )
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="blaze-scale-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        found, info = asyncio.run(_bounded(p, root))
    params = {**p.__dict__, "cameras": p.cameras, "lease_ttl_s": LEASE_TTL_S, **info}
    write_result("scale", found, params)
    return 0


async def _bounded(p: Params, root: Path) -> tuple[list[Figure], dict[str, Any]]:
    async with asyncio.timeout(p.budget_s):
        return await bench(p, root)


if __name__ == "__main__":
    raise SystemExit(main())
