"""The recording gap at failback, release-first against make-before-break (``make bench``).

Storage-fails a home server with 8 cameras over and over (repair + confirmation each
time) under each ``[placement] failback`` mode, and measures per camera and failback,
from the recorders' own start and stop instants (finer than segment files show):

- gap: the host stopped recording -> home wrote its first segment (release-first: a
  hole; make-before-break: none);
- double recording: home's first segment -> the host stopped (make-before-break only).

Writes ``bench/results/failback.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from bench.failover import RESULTS, machine, summary, wait_for
from bench.sync import CAMERAS, HOME, config, outage
from services.heartbeat.recorder import SimulatedRecorder, Stint
from services.sim.local import LocalCluster, all_home
from shared.bus import embedded_server
from shared.config import FailbackMode, PlacementPolicy


def stints(cluster: LocalCluster, camera: str, *, home: bool) -> list[Stint]:
    """A camera's stints at home, or on every other server, oldest first."""
    found = []
    for sid in cluster.agents:
        recorder = cluster.agent(sid).recorder
        assert isinstance(recorder, SimulatedRecorder)
        if (sid == HOME) == home:
            found += [s for s in recorder.stints if s.camera == camera]
    return sorted(found, key=lambda s: s.started)


def handovers(cluster: LocalCluster) -> list[float]:
    """Seconds from the host's stop to home's first segment, per camera and failback;
    negative: both recorded for that long."""
    gaps = []
    for camera in CAMERAS:
        at_home = stints(cluster, camera, home=True)[1:]  # the first is the start
        away = stints(cluster, camera, home=False)
        for host, back in zip(away, at_home, strict=True):
            assert host.stopped is not None, f"{camera} still records on {host}"
            gaps.append((back.started - host.stopped).total_seconds())
    return gaps


async def run_mode(mode: FailbackMode, outages: int, outage_s: float) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="blaze-bench-failback-") as tmp:
        root = Path(tmp)
        nats = embedded_server(root / "nats")
        nats.start()
        settings = config().model_copy(update={"placement": PlacementPolicy(failback=mode)})
        cluster = LocalCluster(nats, settings, root / "cluster")
        try:
            await cluster.start()
            await wait_for(cluster, all_home, 60)
            for _ in range(outages):
                await outage(cluster, outage_s)
                await wait_for(cluster, _released, 30)
            return handovers(cluster)
        finally:
            await cluster.close()
            nats.stop()


def _released(doc: dict[str, Any]) -> bool:
    return all_home(doc) and not any(c["releasing_on"] for c in doc["cameras"])


def gap_figures(samples: list[float]) -> dict[str, Any]:
    """The hole (a double recording counts as no hole) and the double recording."""
    holes = [max(0.0, s) for s in samples]
    doubles = [max(0.0, -s) for s in samples]
    return {"gap": summary(holes), "double_recording": summary(doubles)}


async def bench(outages: int, outage_s: float) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for mode in FailbackMode:
        figures[mode.value] = gap_figures(await run_mode(mode, outages, outage_s))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.failback", description=__doc__.split("\n")[0])
    parser.add_argument("--outages", type=int, default=10, help="failover/failback cycles")
    parser.add_argument("--outage-seconds", type=float, default=0.5, help="each outage's length")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    figures = asyncio.run(bench(args.outages, args.outage_seconds))
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": machine(), "cameras": len(CAMERAS), "figures": figures}
    (RESULTS / "failback.json").write_text(json.dumps(result, indent=2) + "\n")
    for mode, f in figures.items():
        gap, double = f["gap"], f["double_recording"]
        print(
            f"failback {mode}: {gap['runs']} handovers; gap median {gap['median_ms']} ms, "
            f"max {gap['max_ms']} ms; double recording median {double['median_ms']} ms, "
            f"max {double['max_ms']} ms"
        )
    print(f"written to {RESULTS / 'failback.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
