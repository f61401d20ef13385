"""The recording gap at failback, release-first against make-before-break (``make bench``).

Storage-fails a home server with 8 cameras over and over (repair + confirmation each
time) under each ``[placement] failback`` mode, and measures per camera and failback,
from the recorders' own start and stop instants (finer than segment files show):

- gap: the host stopped recording -> home wrote its first segment (release-first: a
  hole; make-before-break: none);
- double recording: home's first segment -> the host stopped (make-before-break only).

The failed home server lets go of its cameras only when placement releases them as
strays, after one of its heartbeats: 0.05-5.5 s after they moved in one run of 25
outages. An outage that ends first leaves home's stint going on through it, so that
return home has no new stint to time: it is left out, and counted in the parameters
(``stints_away_unpaired``).

Writes ``bench/results/failback.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.cluster import wait_for
from bench.common import Figure, run_quietly, write_result
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


def handovers(cluster: LocalCluster) -> tuple[list[float], int]:
    """Seconds from the host's stop to home's first segment, per camera and failback
    (negative: both recorded for that long); and how many stints away could not be
    paired with a return home (a stint at home that went on through an outage, say)."""
    gaps = []
    unpaired = 0
    for camera in CAMERAS:
        at_home = stints(cluster, camera, home=True)
        away = stints(cluster, camera, home=False)
        for before, back in itertools.pairwise(at_home):
            # The last host before the return; an earlier one handed over to it.
            hosts = [s for s in away if before.started < s.started < back.started]
            if hosts and hosts[-1].stopped is not None:
                gaps.append((back.started - hosts[-1].stopped).total_seconds())
        unpaired += len(away) - len(at_home) + 1
    return gaps, unpaired


def not_back_home(cluster: LocalCluster) -> list[str]:
    """The cameras not recorded at home alone, or whose home has not written a segment
    since its last stint away began, each with its latest stints."""
    found = []
    recording = cluster.recorders()
    for camera in CAMERAS:
        at_home, away = stints(cluster, camera, home=True), stints(cluster, camera, home=False)
        elsewhere = [sid for sid, cams in recording.items() if sid != HOME and camera in cams]
        if camera not in recording[HOME] or elsewhere or not at_home:
            found.append(f"{camera}: home {_show(at_home)}, away {_show(away)}")
    return found


def _show(found: list[Stint]) -> str:
    def instant(at: datetime | None) -> str:
        return "" if at is None else f"{at:%H:%M:%S.%f}"

    return ", ".join(f"e{s.epoch} {instant(s.started)}-{instant(s.stopped)}" for s in found[-3:])


async def until_back_home(cluster: LocalCluster, within: float) -> None:
    """Wait until home alone records every camera."""
    deadline = time.monotonic() + within
    while missing := not_back_home(cluster):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not recording at home {within} s after the failback: {missing}")
        await asyncio.sleep(0.01)


async def run_mode(mode: FailbackMode, outages: int, outage_s: float) -> tuple[list[float], int]:
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
                await until_back_home(cluster, 10)
            return handovers(cluster)
        finally:
            await cluster.close()
            nats.stop()


def _released(doc: dict[str, Any]) -> bool:
    return all_home(doc) and not any(c["releasing_on"] for c in doc["cameras"])


GOALS_MS = {FailbackMode.RELEASE_FIRST: 100.0, FailbackMode.MAKE_BEFORE_BREAK: 0.0}


def names() -> list[str]:
    """The figures this benchmark writes, in order."""
    return [f"{m.value}_{what}" for m in FailbackMode for what in ("gap", "double_recording")]


def mode_figures(mode: FailbackMode, samples: list[float]) -> list[Figure]:
    """The hole (a double recording counts as no hole) and the double recording."""
    limit = GOALS_MS[mode]
    return [
        Figure.of(
            f"{mode.value}_gap",
            f"[placement] failback = {mode.value}: the host stopped -> home's first segment "
            "written, per camera and failback (a double recording counts as 0; a stint away "
            "that no new stint at home followed is left out, counted in the parameters)",
            [max(0.0, s) for s in samples],
            goal=f"p99 ≤ {limit:g} ms",
            limit=limit,
        ),
        Figure.of(
            f"{mode.value}_double_recording",
            f"[placement] failback = {mode.value}: home's first segment -> the host stopped "
            "(both recorded), per camera and failback",
            [max(0.0, -s) for s in samples],
        ),
    ]


async def bench(outages: int, outage_s: float) -> tuple[list[Figure], dict[str, int]]:
    figures: list[Figure] = []
    unpaired = {}
    for mode in FailbackMode:
        gaps, unpaired[mode.value] = await run_mode(mode, outages, outage_s)
        assert gaps, f"{mode}: no failback could be timed ({unpaired[mode.value]} unpaired)"
        figures += mode_figures(mode, gaps)
    return figures, unpaired


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.failback", description=__doc__.split("\n")[0])
    parser.add_argument("--outages", type=int, default=8, help="cycles per mode")
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=3.0,
        help="each outage's length: long enough for the failed home to release (default 3)",
    )
    parser.add_argument("--smoke", action="store_true", help="two long outages per mode")
    args = parser.parse_args(argv)
    if args.smoke:
        # Long enough for the failed home to release its cameras (placement's stray repair
        # after its next heartbeat; up to seconds): a short outage can leave nothing to pair.
        args.outages, args.outage_seconds = 2, 3.0
    (figures, unpaired), wall_s = run_quietly(bench(args.outages, args.outage_seconds))
    params = {
        "cameras": len(CAMERAS),
        "outages_per_mode": args.outages,
        "outage_s": args.outage_seconds,
        "stints_away_unpaired": unpaired,
        "smoke": args.smoke,
        "wall_s": wall_s,
    }
    write_result("failback", figures, params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
