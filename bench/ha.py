"""High-availability timings on a real 3-node NATS cluster, many runs each (``make bench``).

1. Placement leader SIGKILLed at the same instant as a storage failure of rs-1: time
   until the standby replica (another process) holds the lease, and until every camera
   of rs-1 records on its new host (the standby had to rebuild its state first).
2. The NATS node leading the event stream SIGKILLed right after the first failover
   decision of a storage failure: time from the failure report until every camera of
   rs-1 records on its new host, and until every move is confirmed in the placement
   state (the confirmations are events: they wait for JetStream to elect a new stream
   leader). Each run in a fresh cluster.

Health runs in this process (one monotonic clock times every step); the two placement
replicas are processes. Prints a table and writes ``bench/results/ha.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bench.failover import (
    FAILING,
    TimedRecorder,
    Watch,
    forget_starts,
    machine,
    summary,
    until_rehosted,
    wait_for,
)
from bench.failover import config as failover_config
from services.heartbeat.app import AgentSettings
from services.sim.local import LocalCluster, Status, all_home
from services.sim.processes import ServiceProcesses
from shared import subjects
from shared.bus import NatsCluster, embedded_cluster, read_leases
from shared.config import ClusterConfig
from shared.errors import BusError
from shared.messages import CameraMovePlanned, Heartbeat, Message

RESULTS = Path(__file__).parent / "results"
log = logging.getLogger("bench.ha")
REPLICAS = ("placement-a", "placement-b")


async def leader(cluster: LocalCluster) -> str | None:
    assert cluster.bus is not None
    try:
        return (await read_leases(cluster.bus)).get("placement")
    except Exception:  # noqa: BLE001 (no stream leader for a moment)
        return None


async def until_leader(cluster: LocalCluster, wanted: Callable[[str | None], bool]) -> float:
    deadline = time.monotonic() + 30
    while not wanted(holder := await leader(cluster)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"placement lease still held by {holder}")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def back_home(cluster: LocalCluster) -> None:
    """Repair rs-1's storage, confirm the failback (R7), wait until all are home."""
    cluster.repair_storage(FAILING)
    await wait_for(cluster, lambda s: _server(s, FAILING)["storage"] == "ok", 60)
    deadline = time.monotonic() + 120  # a new health leader needs a fresh heartbeat first
    while not await confirmed(cluster):
        if time.monotonic() > deadline:
            raise TimeoutError("failback confirmation refused for 120 s")
        await asyncio.sleep(0.2)  # no health leader for a moment after a node died
    await wait_for(cluster, all_home, 60)


async def confirmed(cluster: LocalCluster) -> bool:
    try:
        reply = await cluster.confirm_failback(FAILING)
    except BusError as exc:  # nobody answers while health elects a leader
        log.info("failback confirmation: %s", exc)
        return False
    if not reply.ok:
        log.info("failback confirmation refused: %s", reply.reason)
    return reply.ok


def _server(doc: Status, sid: str) -> dict[str, Any]:
    return next(s for s in doc["servers"] if s["id"] == sid)


async def takeover_run(
    cluster: LocalCluster, placements: ServiceProcesses, watch: Watch, cameras: list[str]
) -> tuple[float, float]:
    """SIGKILL the placement leader as rs-1's storage fails; (lease taken, all re-hosted)."""
    old = await leader(cluster)
    assert old in REPLICAS, old
    forget_starts(watch)
    placements.kill(old)
    killed = time.monotonic()
    cluster.fail_storage(FAILING)
    taken = await until_leader(cluster, lambda h: h is not None and h != old)
    done = await until_rehosted(watch, cameras, 60)
    placements.start("placement", old)  # the new standby
    await back_home(cluster)
    return taken - killed, done - killed


async def node_run(cluster: LocalCluster, watch: Watch, cameras: list[str]) -> tuple[float, float]:
    """SIGKILL the event-stream leader node after the first failover decision; (cameras
    recording on new hosts, every move confirmed in the placement state)."""
    assert cluster.bus is not None
    assert isinstance(cluster.nats, NatsCluster)
    info = await cluster.bus.js.stream_info(subjects.EVENTS_STREAM)
    assert info.cluster is not None
    node = next(n for n in cluster.nats.nodes if n.config.name == info.cluster.leader)
    planned = asyncio.Event()

    async def kill_node(_subject: str, _event: Message) -> None:
        if not planned.is_set():
            node.kill()
            planned.set()

    sub = await cluster.bus.subscribe(
        subjects.all_cameras_event("camera_move_planned"), CameraMovePlanned, kill_node
    )
    cluster.fail_storage(FAILING)
    await asyncio.wait_for(planned.wait(), 30)
    await sub.unsubscribe()
    done = await until_rehosted(watch, cameras, 60)
    assert watch.storage_report is not None
    await wait_for(cluster, lambda s: all(_failed_over(s, c) for c in cameras), 60)
    confirmed_at = time.monotonic()
    return done - watch.storage_report, confirmed_at - watch.storage_report


def _failed_over(doc: Status, camera: str) -> bool:
    return any(c["id"] == camera and c["state"] == "failed_over" for c in doc["cameras"])


@contextlib.asynccontextmanager
async def ha_cluster(
    root: Path, config: ClusterConfig
) -> AsyncIterator[tuple[LocalCluster, Watch]]:
    """A 3-node NATS cluster and every server's agent, with health in this process;
    placement is left to the caller. Stopped on the way out."""
    nats = embedded_cluster(root / "nats")
    nats.start()
    watch = Watch()

    def recorder(settings: AgentSettings, on_error: Callable[[str], None]) -> TimedRecorder:
        watch.recorders[settings.server_id] = TimedRecorder(settings, on_error)
        return watch.recorders[settings.server_id]

    cluster = LocalCluster(nats, config, root / "cluster", recorder)
    try:
        await cluster.start(with_placement=False, with_sync=False)
        assert cluster.bus is not None
        await cluster.bus.subscribe(subjects.heartbeat(FAILING), Heartbeat, watch.on_heartbeat)
        yield cluster, watch
    finally:
        await cluster.close()
        nats.stop()


async def takeovers(runs: int, config: ClusterConfig) -> list[tuple[float, float]]:
    """``runs`` placement-leader kills in one cluster, each followed by failback."""
    with tempfile.TemporaryDirectory(prefix="blaze-bench-ha-") as tmp:
        async with ha_cluster(Path(tmp), config) as (cluster, watch):
            placements = ServiceProcesses(config, cluster.nats.url, Path(tmp) / "processes")
            try:
                for replica in REPLICAS:
                    placements.start("placement", replica)
                await wait_for(cluster, all_home, 60)
                cameras = [c.id for c in config.cameras if c.home == FAILING]
                return [
                    await takeover_run(cluster, placements, watch, cameras) for _ in range(runs)
                ]
            finally:
                placements.stop()


async def node_deaths(runs: int, config: ClusterConfig) -> list[tuple[float, float]]:
    """``runs`` stream-leader node kills, each in a fresh cluster (placement in-process)."""
    found = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="blaze-bench-ha-") as tmp:
            async with ha_cluster(Path(tmp), config) as (cluster, watch):
                await cluster.start_replica("placement", "placement")
                await wait_for(cluster, all_home, 60)
                cameras = [c.id for c in config.cameras if c.home == FAILING]
                found.append(await node_run(cluster, watch, cameras))
    return found


async def bench(runs: int) -> dict[str, Any]:
    config = failover_config(network_timeout=10.0)
    killed_leaders = await takeovers(runs, config)
    killed_nodes = await node_deaths(runs, config)
    return {
        "placement_sigkill_to_standby_holds_lease": summary([t for t, _ in killed_leaders]),
        "placement_sigkill_to_64_cameras_rehosted": summary([d for _, d in killed_leaders]),
        "storage_report_to_64_rehosted_stream_leader_killed": summary([r for r, _ in killed_nodes]),
        "storage_report_to_64_moves_confirmed_stream_leader_killed": summary(
            [c for _, c in killed_nodes]
        ),
        "lease_ttl_s": config.timing.lease_ttl,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ha", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each (default 10)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    figures = asyncio.run(bench(args.runs))
    result = {"machine": {**machine(), "nats_nodes": 3}, "figures": figures}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ha.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'figure':58} {'runs':>5} {'median ms':>10} {'max ms':>9}")
    for name, f in figures.items():
        if isinstance(f, dict):
            print(f"{name:58} {f['runs']:>5} {f['median_ms']:>10} {f['max_ms']:>9}")
    print(f"lease ttl {figures['lease_ttl_s']} s; written to {RESULTS / 'ha.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
