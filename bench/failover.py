"""Failover timings on a real nats-server, many runs each (``make bench``).

1. storage failure reported (the agent's heartbeat with failed storage arrives) -> every
   camera of a 64-camera server recording on its new hosts (the recorders' own start times);
2. last heartbeat heard before a black-holed network cut -> every camera of that server
   recording elsewhere; the detection window (``network_timeout``) is part of this figure,
   and the time beyond it is reported separately.

Everything runs in one process, so one monotonic clock times every step. Prints a table
and writes ``bench/results/failover.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.heartbeat.app import AgentSettings
from services.heartbeat.recorder import SimulatedRecorder
from services.sim.local import LocalCluster, Status, all_home
from shared import subjects
from shared.bus import embedded_server
from shared.bus.natsserver import find_nats_server, server_version
from shared.config import CameraConfig, ClusterConfig, Detection, ServerConfig, Timing
from shared.messages import Heartbeat

RESULTS = Path(__file__).parent / "results"
FAILING = "rs-1"  # the server whose 64 cameras fail over
OTHERS = ("rs-2", "rs-3", "rs-4")


class TimedRecorder(SimulatedRecorder):
    """The simulated recorder, noting when each camera starts recording under a new epoch."""

    def __init__(self, settings: AgentSettings, on_write_error: Callable[[str], None]) -> None:
        super().__init__(
            settings.recording_dir,
            settings.timing.segment_seconds,
            on_write_error,
            settings.server_id,
        )
        self.started: dict[str, float] = {}

    async def start(self, camera: str, epoch: int) -> None:
        if self.recording().get(camera) != epoch:
            self.started[camera] = time.monotonic()
        await super().start(camera, epoch)


@dataclass
class Watch:
    """Heartbeats of the failing server as the observer receives them."""

    last_heartbeat: float = 0.0
    storage_report: float | None = None
    recorders: dict[str, TimedRecorder] = field(default_factory=dict)

    async def on_heartbeat(self, _subject: str, hb: Heartbeat) -> None:
        self.last_heartbeat = time.monotonic()
        if not hb.storage_ok and self.storage_report is None:
            self.storage_report = self.last_heartbeat


def config(network_timeout: float) -> ClusterConfig:
    """rs-1 with 64 cameras at home; three servers with 16 at home and room for 64 more."""
    servers = [ServerConfig(id=FAILING, capacity=64)]
    servers += [ServerConfig(id=s, capacity=40) for s in OTHERS]
    cameras = [CameraConfig(id=f"c1-{i:02d}", home=FAILING) for i in range(64)]
    cameras += [CameraConfig(id=f"c{s[-1]}-{i:02d}", home=s) for s in OTHERS for i in range(16)]
    timing = Timing(heartbeat_interval=1.0, network_timeout=network_timeout)
    detection = Detection(failback_hold_down=0.0, max_failovers=0)  # it cuts rs-1 20 times
    return ClusterConfig(
        timing=timing, servers=tuple(servers), cameras=tuple(cameras), detection=detection
    )


async def wait_for(cluster: LocalCluster, pred: Callable[[Status], bool], within: float) -> None:
    """Poll the status until ``pred`` holds; a read that fails (JetStream electing a
    leader after a node died) is tried again."""
    deadline = time.monotonic() + within
    while True:
        try:
            if pred(await cluster.status()):
                return
        except Exception:  # noqa: BLE001 (any read may fail while NATS elects)
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster did not settle within {within} s")
        await asyncio.sleep(0.05)


def rehosted_at(watch: Watch, cameras: list[str]) -> float | None:
    """When the last of ``cameras`` started recording on another server, if all have."""
    latest = 0.0
    for cam in cameras:
        elsewhere = [
            r.started[cam]
            for sid, r in watch.recorders.items()
            if sid != FAILING and cam in r.started and cam in r.recording()
        ]
        if not elsewhere:
            return None
        latest = max(latest, *elsewhere)
    return latest


async def until_rehosted(watch: Watch, cameras: list[str], within: float) -> float:
    deadline = time.monotonic() + within
    while (done := rehosted_at(watch, cameras)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"cameras not re-hosted within {within} s")
        await asyncio.sleep(0.005)
    return done


def forget_starts(watch: Watch) -> None:
    for recorder in watch.recorders.values():
        recorder.started.clear()


async def storage_run(cluster: LocalCluster, watch: Watch, cameras: list[str]) -> float:
    """One storage failover, measured, then repaired, confirmed and back home."""
    forget_starts(watch)
    watch.storage_report = None
    cluster.fail_storage(FAILING)
    done = await until_rehosted(watch, cameras, 30)
    assert watch.storage_report is not None, "no heartbeat reported the failed storage"
    elapsed = done - watch.storage_report
    cluster.repair_storage(FAILING)
    await wait_for(cluster, lambda s: _server(s, FAILING)["storage"] == "ok", 30)
    reply = await cluster.confirm_failback(FAILING)
    assert reply.ok, reply.reason
    await wait_for(cluster, all_home, 30)
    return elapsed


async def network_run(cluster: LocalCluster, watch: Watch, cameras: list[str]) -> float:
    """One network cut, measured from the last heartbeat heard, then restored and home."""
    forget_starts(watch)
    cluster.relays[FAILING].cut()
    cut_at = time.monotonic()
    done = await until_rehosted(watch, cameras, cluster.config.timing.network_timeout + 30)
    last = watch.last_heartbeat
    assert last <= cut_at + 0.05, "a heartbeat got through the cut"
    cluster.relays[FAILING].restore()
    await wait_for(cluster, all_home, 60)
    return done - last


def _server(doc: Status, sid: str) -> dict[str, Any]:
    return next(s for s in doc["servers"] if s["id"] == sid)


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p99 (nearest rank), min and max, in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[max(0, round(0.99 * len(ms) + 0.5) - 1)]
    return {
        "runs": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p99_ms": round(p99, 1),
        "min_ms": round(ms[0], 1),
        "max_ms": round(ms[-1], 1),
    }


async def bench(runs: int, network_runs: int, network_timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="blaze-bench-") as tmp:
        root = Path(tmp)
        nats = embedded_server(root / "nats")
        nats.start()
        watch = Watch()

        def recorder(settings: AgentSettings, on_error: Callable[[str], None]) -> TimedRecorder:
            watch.recorders[settings.server_id] = TimedRecorder(settings, on_error)
            return watch.recorders[settings.server_id]

        cluster = LocalCluster(nats, config(network_timeout), root / "cluster", recorder)
        try:
            await cluster.start(with_sync=False)  # footage sync would compete for the CPU
            assert cluster.bus is not None
            await cluster.bus.subscribe(subjects.heartbeat(FAILING), Heartbeat, watch.on_heartbeat)
            await wait_for(cluster, all_home, 60)
            cameras = [c.id for c in cluster.config.cameras if c.home == FAILING]
            storage = [await storage_run(cluster, watch, cameras) for _ in range(runs)]
            network = [await network_run(cluster, watch, cameras) for _ in range(network_runs)]
        finally:
            await cluster.close()
            nats.stop()
    beyond = [s - network_timeout for s in network]
    return {
        "storage_report_to_64_cameras_rehosted": summary(storage),
        "last_heartbeat_to_64_cameras_rehosted": summary(network),
        "network_failover_beyond_timeout": summary(beyond),
        "network_timeout_s": network_timeout,
    }


def machine() -> dict[str, Any]:
    nats = find_nats_server()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "nats_server": ".".join(map(str, server_version(nats))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.failover", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="storage failovers (default 20)")
    parser.add_argument("--network-runs", type=int, default=20, help="network cuts (default 20)")
    parser.add_argument("--network-timeout", type=float, default=10.0, help="seconds (default 10)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    figures = asyncio.run(bench(args.runs, args.network_runs, args.network_timeout))
    result = {"machine": machine(), "figures": figures}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "failover.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'figure':45} {'runs':>5} {'median ms':>10} {'p99 ms':>9} {'max ms':>9}")
    for name, f in figures.items():
        if isinstance(f, dict):
            print(
                f"{name:45} {f['runs']:>5} {f['median_ms']:>10} {f['p99_ms']:>9} {f['max_ms']:>9}"
            )
    print(f"network_timeout {args.network_timeout} s; written to {RESULTS / 'failover.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
