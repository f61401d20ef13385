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
replicas are processes. Issue 8 sets no goal for these. Writes ``bench/results/ha.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from bench.cluster import Watch, server_status, wait_for
from bench.common import Figure, run_quietly, write_result
from bench.failover import FAILING
from bench.failover import config as failover_config
from services.sim.local import LocalCluster, Status, all_home
from services.sim.processes import ServiceProcesses
from shared import subjects
from shared.bus import NatsCluster, embedded_cluster, read_leases
from shared.config import ClusterConfig
from shared.errors import BusError
from shared.messages import CameraMovePlanned, Message

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
    await wait_for(cluster, lambda s: server_status(s, FAILING)["storage"] == "ok", 60)
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


async def takeover_run(
    cluster: LocalCluster, placements: ServiceProcesses, watch: Watch, cameras: list[str]
) -> tuple[float, float]:
    """SIGKILL the placement leader as rs-1's storage fails; (lease taken, all re-hosted)."""
    old = await leader(cluster)
    assert old in REPLICAS, old
    watch.forget()
    placements.kill(old)
    killed = time.monotonic()
    cluster.fail_storage(FAILING)
    taken = await until_leader(cluster, lambda h: h is not None and h != old)
    done = await watch.until_rehosted(cameras, 60)
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
    done = await watch.until_rehosted(cameras, 60)
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
    watch = Watch(FAILING)
    cluster = LocalCluster(nats, config, root / "cluster", watch.recorder)
    try:
        await cluster.start(with_placement=False, with_sync=False)
        await watch.listen(cluster)
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


NAMES = (
    "placement_sigkill_to_standby_leads",
    "placement_sigkill_to_64_claimed",
    "stream_leader_killed_storage_report_to_64_claimed",
    "stream_leader_killed_storage_report_to_64_confirmed",
)


def names() -> list[str]:
    """The figures this benchmark writes, in order."""
    return list(NAMES)


async def bench(runs: int) -> tuple[list[Figure], float]:
    config = failover_config(network_timeout=10.0)
    killed_leaders = await takeovers(runs, config)
    killed_nodes = await node_deaths(runs, config)
    figures = [
        Figure.of(
            NAMES[0],
            "placement leader SIGKILLed -> the standby (another process) holds the lease",
            [t for t, _ in killed_leaders],
        ),
        Figure.of(
            NAMES[1],
            "placement leader SIGKILLed as rs-1's storage fails -> all 64 of its cameras "
            "claimed by new hosts (the standby rebuilds its state first)",
            [d for _, d in killed_leaders],
        ),
        Figure.of(
            NAMES[2],
            "the event stream's leader node SIGKILLed after the first failover decision: "
            "storage failure reported -> all 64 cameras claimed by new hosts",
            [r for r, _ in killed_nodes],
        ),
        Figure.of(
            NAMES[3],
            "the same -> every move confirmed in the placement state (confirmations wait "
            "for JetStream's new stream leader)",
            [c for _, c in killed_nodes],
        ),
    ]
    return figures, config.timing.lease_ttl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ha", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--smoke", action="store_true", help="one run of each")
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else args.runs
    (figures, lease_ttl), wall_s = run_quietly(bench(runs))
    params = {
        "runs": runs,
        "nats_nodes": 3,
        "cameras_failing": 64,
        "lease_ttl_s": lease_ttl,
        "smoke": args.smoke,
        "wall_s": wall_s,
    }
    write_result("ha", figures, params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
