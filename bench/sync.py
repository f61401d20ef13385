"""Footage sync and recording gaps on a real nats-server (``make bench``).

Storage-fails a server with 8 cameras over and over (repair + confirmation each time),
lets every outage record away from home, and measures:

1. sync throughput: footage brought home (segments and MB per second of time spent in
   sync jobs, which run one after another per home server), against a plain local copy of the
   same files with an fsync each, in the same run (the ratio holds on a noisy machine);
2. recording gaps per camera at failover and at failback, read off the cameras'
   timelines once all footage is home (median and max, milliseconds).

Writes ``bench/results/sync.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.failover import RESULTS, machine, summary, wait_for
from services.cli.footage import timeline_document
from services.sim.local import LocalCluster, all_home
from shared.bus import embedded_server
from shared.config import CameraConfig, ClusterConfig, Detection, ServerConfig, SyncSettings, Timing
from shared.messages import JobState, SyncCompleted, SyncJob

HOME = "rs-1"
CAMERAS = [f"c1-{i}" for i in range(8)]
SEGMENT_S = 0.05


def config() -> ClusterConfig:
    servers = (
        ServerConfig(id=HOME, capacity=8),
        ServerConfig(id="rs-2", capacity=8),
        ServerConfig(id="rs-3", capacity=8),
    )
    cameras = tuple(CameraConfig(id=c, home=HOME) for c in CAMERAS)
    timing = Timing(
        heartbeat_interval=0.2,
        network_timeout=5.0,
        storage_probe_interval=0.2,
        segment_seconds=SEGMENT_S,
    )
    sync = SyncSettings(segments_in_flight=16)
    detection = Detection(failback_hold_down=0.0, max_failovers=0)  # ten outages in a row
    return ClusterConfig(
        timing=timing, servers=servers, cameras=cameras, sync=sync, detection=detection
    )


async def outage(cluster: LocalCluster, seconds: float) -> None:
    """One storage failure of the home server, repaired and confirmed after ``seconds``."""
    cluster.fail_storage(HOME)
    await wait_for(cluster, lambda s: _away(s) == len(CAMERAS), 30)
    await asyncio.sleep(seconds)  # the outage itself: footage accumulates away from home
    cluster.repair_storage(HOME)
    await wait_for(cluster, lambda s: _server(s)["storage"] == "ok", 30)
    reply = await cluster.confirm_failback(HOME)
    assert reply.ok, reply.reason
    await wait_for(cluster, all_home, 30)


def _server(doc: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in doc["servers"] if s["id"] == HOME)


def _away(doc: dict[str, Any]) -> int:
    return sum(1 for c in doc["cameras"] if c["state"] == "failed_over")


async def synced(cluster: LocalCluster, jobs: int, within: float) -> tuple[float, int, int]:
    """Wait until ``jobs`` sync jobs exist and all completed; (seconds spent in jobs,
    segments, bytes)."""
    assert cluster.bus is not None
    deadline = time.monotonic() + within
    while True:
        records = await cluster.bus.read_records("job.")
        states = [SyncJob.model_validate_json(raw).state for raw, _ in records.values()]
        if len(states) >= jobs and all(s is JobState.COMPLETED for s in states):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"sync did not finish: {len(states)} jobs, states {set(states)}")
        await asyncio.sleep(0.1)
    done = [e for _, e in await cluster.events() if isinstance(e, SyncCompleted)]
    busy = sum(e.seconds for e in done)  # jobs of one home run one after another
    return busy, sum(e.segments for e in done), sum(e.bytes for e in done)


def local_copy(files: list[Path], into: Path) -> float:
    """Seconds to copy ``files`` into ``into``, fsync each: the same durability as sync."""
    started = time.monotonic()
    for i, f in enumerate(files):
        target = into / f"{i}.seg"
        shutil.copyfile(f, target)
        with target.open("rb") as out:
            os.fsync(out.fileno())
    return time.monotonic() - started


async def gaps(cluster: LocalCluster) -> tuple[list[float], list[float]]:
    """Recording gaps at failover and at failback, per camera and move, in seconds."""
    assert cluster.bus is not None
    failover: list[float] = []
    failback: list[float] = []
    for cam in CAMERAS:
        doc = await timeline_document(cluster.bus, cam)
        assert not doc["unreachable"], f"timeline of {cam} misses {doc['unreachable']}"
        for i, move in enumerate(doc["handovers"]):
            (failover if i % 2 == 0 else failback).append(move["gap_ms"] / 1000)
    return failover, failback


async def bench(outages: int, outage_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="blaze-bench-sync-") as tmp:
        root = Path(tmp)
        nats = embedded_server(root / "nats")
        nats.start()
        cluster = LocalCluster(nats, config(), root / "cluster")
        try:
            await cluster.start()
            await wait_for(cluster, all_home, 60)
            for _ in range(outages):
                await outage(cluster, outage_s)
            seconds, segments, size = await synced(cluster, outages * len(CAMERAS), 300)
            home_files = sorted(cluster.recording_dir(HOME).glob("*/*.seg"))
            target = root / "copy-target"
            target.mkdir()
            copied = local_copy(home_files[:segments], target)
            failover, failback = await gaps(cluster)
        finally:
            await cluster.close()
            nats.stop()
    return {
        "sync": {
            "segments": segments,
            "bytes": size,
            "seconds": round(seconds, 3),
            "segments_per_s": round(segments / seconds, 1),
            "mb_per_s": round(size / seconds / 1e6, 3),
            "local_copy_seconds": round(copied, 3),
            "slower_than_local_copy": round(seconds / copied, 1),
        },
        "failover_gap": summary(failover) | {"note": "storage failure -> recording elsewhere"},
        "failback_gap": summary(failback) | {"note": "release at host -> claim at home"},
        "segment_seconds": SEGMENT_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.sync", description=__doc__.split("\n")[0])
    parser.add_argument("--outages", type=int, default=10, help="failover/failback cycles")
    parser.add_argument("--outage-seconds", type=float, default=2.0, help="each outage's length")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    figures = asyncio.run(bench(args.outages, args.outage_seconds))
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": machine(), "figures": figures}
    (RESULTS / "sync.json").write_text(json.dumps(result, indent=2) + "\n")
    s = figures["sync"]
    print(
        f"sync: {s['segments']} segments, {s['bytes']} bytes in {s['seconds']} s "
        f"({s['segments_per_s']} segments/s, {s['mb_per_s']} MB/s); local copy "
        f"{s['local_copy_seconds']} s; sync/local = {s['slower_than_local_copy']}x"
    )
    for name in ("failover_gap", "failback_gap"):
        f = figures[name]
        print(f"{name}: {f['runs']} moves, median {f['median_ms']} ms, max {f['max_ms']} ms")
    print(f"written to {RESULTS / 'sync.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
