"""Fault injected -> failure reported, on a real nats-server (``make bench``, issue 8).

Timed from the instant the recording directory is made to fail (``faults.fail_storage``)
to two reports, both as the benchmark's own connection receives them: the agent's
heartbeat saying its storage failed, and health's ``server_failed`` on the event log.
Two ways the agent notices, each in its own cluster:

1. the storage probe (write + fsync + read back every ``storage_probe_interval``, 0.5 s
   as configured by default): the failing server records no camera, so only the probe can;
2. a failed segment write: the failing server records 16 cameras, one segment a second
   each (claimed together at failback, they write in step, so the next write comes up to
   a second after the fault), and its probe runs only once a minute (it is asked once
   more after each repair, so the repair is seen at once); a run the probe caught anyway
   is left out and counted.

Each fault lands at a random instant of the probe's or the segments' cycle. Writes
``bench/results/detection.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from bench.cluster import Watch, confirm_failback, wait_for
from bench.common import Figure, run_quietly, write_result
from services.sim.local import LocalCluster, all_home
from shared.bus import embedded_server
from shared.config import CameraConfig, ClusterConfig, Detection, ServerConfig, Timing

FAILING = "rs-1"
GOAL_S = 1.0
PROBE_S = Timing().storage_probe_interval  # the configured default
SEGMENT_S = Timing().segment_seconds
WRITE_CAMERAS = 16
NAMES = (
    "probe_fault_to_heartbeat",
    "probe_fault_to_server_failed",
    "write_fault_to_heartbeat",
    "write_fault_to_server_failed",
)


def names() -> list[str]:
    """The figures this benchmark writes, in order."""
    return list(NAMES)


def config(*, writes: bool) -> ClusterConfig:
    """rs-1 fails; rs-2 and rs-3 each record 8 cameras of their own and have room for
    rs-1's. With ``writes``, rs-1 records 16 cameras and probes once a minute; without,
    it records nothing and probes as configured by default."""
    cameras = [CameraConfig(id=f"c{s}-{i}", home=f"rs-{s}") for s in (2, 3) for i in range(8)]
    if writes:
        cameras += [CameraConfig(id=f"c1-{i:02d}", home=FAILING) for i in range(WRITE_CAMERAS)]
    servers = (
        ServerConfig(id=FAILING, capacity=WRITE_CAMERAS),
        ServerConfig(id="rs-2", capacity=8 + WRITE_CAMERAS),
        ServerConfig(id="rs-3", capacity=8 + WRITE_CAMERAS),
    )
    timing = Timing(storage_probe_interval=60.0 if writes else PROBE_S, segment_seconds=SEGMENT_S)
    detection = Detection(failback_hold_down=0.0, max_failovers=0)  # rs-1 fails again and again
    return ClusterConfig(
        timing=timing, servers=servers, cameras=tuple(cameras), detection=detection
    )


async def fault_run(cluster: LocalCluster, watch: Watch, cycle: float) -> tuple[float, float, str]:
    """One storage fault at a random instant of a ``cycle``, measured, then repaired and
    confirmed; (to the heartbeat, to server_failed, what the agent said)."""
    await asyncio.sleep(random.uniform(0, cycle))
    watch.forget()
    injected = time.monotonic()
    cluster.fail_storage(FAILING)
    deadline = injected + 30
    while watch.storage_report is None or watch.server_failed is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the storage fault was not reported within 30 s")
        await asyncio.sleep(0.002)
    said = watch.storage_error or ""
    cluster.repair_storage(FAILING)
    agent = cluster.agent(FAILING)
    if cluster.config.timing.storage_probe_interval > cycle:
        await agent.storage.probe_once(limit=1.0)  # the once-a-minute probe is not waited for
    await watch.until_storage_ok(30)
    await confirm_failback(cluster, FAILING, 30)
    await wait_for(cluster, all_home, 60)
    return watch.storage_report - injected, watch.server_failed - injected, said


async def measure(runs: int, *, writes: bool) -> tuple[list[float], list[float], int]:
    """``runs`` faults caught the one way; (to heartbeat, to server_failed, runs left out
    because the other way caught the fault first)."""
    to_heartbeat: list[float] = []
    to_failed: list[float] = []
    left_out = 0
    expected = "segment write" if writes else "storage probe"
    with tempfile.TemporaryDirectory(prefix="blaze-bench-detection-") as tmp:
        root = Path(tmp)
        nats = embedded_server(root / "nats")
        nats.start()
        watch = Watch(FAILING)
        cluster = LocalCluster(nats, config(writes=writes), root / "cluster", watch.recorder)
        try:
            await cluster.start(with_sync=False)
            await watch.listen(cluster)
            await wait_for(cluster, all_home, 60)
            while len(to_heartbeat) < runs:
                hb, failed, said = await fault_run(cluster, watch, SEGMENT_S if writes else PROBE_S)
                if not said.startswith(expected):
                    left_out += 1
                    if left_out > runs:
                        raise RuntimeError(f"faults keep being caught otherwise: {said!r}")
                    continue
                to_heartbeat.append(hb)
                to_failed.append(failed)
        finally:
            await cluster.close()
            nats.stop()
    return to_heartbeat, to_failed, left_out


def figures(
    probe: tuple[list[float], list[float]], write: tuple[list[float], list[float]]
) -> list[Figure]:
    goal = f"p99 ≤ {GOAL_S * 1000:g} ms"
    limit = GOAL_S * 1000
    return [
        Figure.of(
            NAMES[0],
            f"storage fault -> the agent's heartbeat says storage failed, caught by the probe "
            f"(every {PROBE_S:g} s)",
            probe[0],
        ),
        Figure.of(
            NAMES[1],
            "storage fault caught by the probe -> health's server_failed",
            probe[1],
            goal=goal,
            limit=limit,
        ),
        Figure.of(
            NAMES[2],
            f"storage fault -> the agent's heartbeat says storage failed, caught by a failed "
            f"segment write ({WRITE_CAMERAS} cameras, a segment every {SEGMENT_S:g} s each)",
            write[0],
        ),
        Figure.of(
            NAMES[3],
            "storage fault caught by a segment write -> health's server_failed",
            write[1],
            goal=goal,
            limit=limit,
        ),
    ]


async def bench(runs: int) -> tuple[list[Figure], dict[str, int]]:
    probe_hb, probe_failed, probe_left_out = await measure(runs, writes=False)
    write_hb, write_failed, write_left_out = await measure(runs, writes=True)
    left_out = {"probe": probe_left_out, "write": write_left_out}
    return figures((probe_hb, probe_failed), (write_hb, write_failed)), left_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.detection", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=25, help="faults of each kind (default 25)")
    parser.add_argument("--smoke", action="store_true", help="two faults of each kind")
    args = parser.parse_args(argv)
    runs = 2 if args.smoke else args.runs
    (found, left_out), wall_s = run_quietly(bench(runs))
    params = {
        "runs": runs,
        "storage_probe_interval_s": PROBE_S,
        "segment_seconds": SEGMENT_S,
        "write_cameras": WRITE_CAMERAS,
        "left_out_caught_otherwise": left_out,
        "smoke": args.smoke,
        "wall_s": wall_s,
    }
    write_result("detection", found, params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
