"""``python -m soak``: the chaos soak (issue 10). Starts ``blaze up --ha`` with a soak
fleet, waits until every camera records at home, starts the checker beside it
(``soak.observer``, its own process), injects the seeded faults for ``--duration``
seconds, lets every fault end, waits for the checker's verdict on convergence, sync,
segments and the event log, stops everything and writes the report.

Exit codes: 0 no violation; 1 violations (listed in the report); 2 the run itself could
not be carried out (the cluster did not start, the checker gave no findings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from shared.bus import Access, Bus
from shared.children import die_with_parent
from soak.cluster import SoakCluster
from soak.faultlog import FaultLogWriter
from soak.faults import FaultBounds, plan_faults
from soak.fleet import shape_of, write_fleet
from soak.injector import CONFIRM_BOUND_S, Injector
from soak.observations import Bounds, status_of_snapshot
from soak.report import RESULTS, Settings, build, summary_lines, write
from soak.resources import ResourceSampler

log = logging.getLogger("soak")

START_BOUND_S = 180.0
"""From ``blaze up`` until every camera records at home."""
STOP_BOUND_S = 60.0
SAMPLE_EVERY_S = 2.0
REPLAY_ALLOWANCE_S = 120.0
"""The observer's time, past the bounds, for the final scans and the replay."""


class SoakFailedError(Exception):
    """The run itself could not be carried out (not a violation by the cluster)."""


def build_parser() -> argparse.ArgumentParser:
    """The soak's options."""
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=180.0, help="fault phase, seconds")
    parser.add_argument("--servers", type=int, default=6)
    parser.add_argument("--cameras", type=int, default=60)
    parser.add_argument("--fault-every", type=float, default=5.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--segment-seconds", type=float, default=1.0, help="length of a recorded segment"
    )
    parser.add_argument("--data", type=Path, help="data dir (default: a new one under /tmp)")
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir afterwards")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where <seed>.json goes")
    parser.add_argument("--converge-bound", type=float, default=60.0)
    parser.add_argument("--sync-bound", type=float, default=120.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one soak; its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings(
        duration=args.duration,
        servers=args.servers,
        cameras=args.cameras,
        fault_every=args.fault_every,
        seed=args.seed,
        segment_seconds=args.segment_seconds,
    )
    made = args.data is None
    data = args.data or Path(tempfile.mkdtemp(prefix=f"blaze-soak-{args.seed}-"))
    try:
        report = asyncio.run(run_soak(settings, data, args.converge_bound, args.sync_bound))
    except SoakFailedError as exc:
        print(f"soak: {exc} (data kept in {data})", file=sys.stderr)
        return 2
    path = write(report, args.results)
    print("\n".join(summary_lines(report)))
    print(f"  report      {path}")
    if made and not args.keep_data:
        shutil.rmtree(data, ignore_errors=True)
    else:
        print(f"  data        {data}")
    return 1 if report["violations"] else 0


async def run_soak(
    settings: Settings, data: Path, converge_bound: float = 60.0, sync_bound: float = 120.0
) -> dict[str, Any]:
    """One soak run, start to report."""
    began = time.monotonic()
    config = write_fleet(
        data / "soak.toml", settings.servers, settings.cameras, settings.segment_seconds
    )
    plan = plan_faults(settings.seed, settings.duration, settings.fault_every, shape_of(config))
    bounds = Bounds.of(config, converge=converge_bound, sync_settle=sync_bound)
    faults = FaultLogWriter(data / "faults.jsonl")
    cluster = SoakCluster(config, data / "soak.toml", data)
    stop = asyncio.Event()
    running = asyncio.create_task(cluster.run(stop), name="cluster")
    sampler = ResourceSampler()
    observed: dict[str, int] = {}
    sampling = asyncio.create_task(_sample(sampler, cluster, observed), name="sampler")
    phases: dict[str, float] = {}
    try:
        admin = await _until_all_home(cluster, running, data)
        phases["start"] = time.monotonic() - began
        deadline = _observer_deadline(settings, bounds)
        observer = await _start_observer(data, bounds, deadline)
        observed["observer"] = observer.pid
        fault_phase = time.monotonic()
        try:
            await Injector(cluster, admin, faults).run(plan, fault_phase, settings.duration)
            phases["faults"] = time.monotonic() - fault_phase
            ended = time.monotonic()
            findings = await _findings_of(observer, data, deadline)
            phases["end"] = time.monotonic() - ended
        finally:
            await admin.close()
    finally:
        sampling.cancel()
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, STOP_BOUND_S)
    return build(
        settings,
        wall_s=time.monotonic() - began,
        phases=phases,
        records=faults.records,
        planned=len(plan),
        findings=findings,
        resources=sampler.summary(time.monotonic() - began),
        fault_phase_started=fault_phase,
    )


async def _until_all_home(cluster: SoakCluster, running: asyncio.Task[None], data: Path) -> Bus:
    """Wait until the cluster is up and every camera records at home; the administrator's
    connection to it."""
    deadline = time.monotonic() + START_BOUND_S
    while not (data / "cluster.json").exists():
        if running.done():
            raise SoakFailedError(f"the cluster stopped at start: {running.exception()!r}")
        if time.monotonic() > deadline:
            raise SoakFailedError("the cluster did not start")
        await asyncio.sleep(0.1)
    assert cluster.nats is not None
    admin = await Bus.connect(
        cluster.nats.url, "soak-admin", access=Access(cluster.secrets.creds("admin"))
    )
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # no state yet, or no stream leader yet
            found = await admin.read_state()
            if found is not None:
                status = status_of_snapshot(time.monotonic(), found[0])
                if status.cameras and not status.not_home():
                    return admin
        await asyncio.sleep(0.5)
    await admin.close()
    raise SoakFailedError(f"not every camera recorded at home within {START_BOUND_S:.0f} s")


def _observer_deadline(settings: Settings, bounds: Bounds) -> float:
    """The observer's whole life, at most: the fault phase, the longest repair, every
    bound after it, and the final scans."""
    repairs = FaultBounds().longest + CONFIRM_BOUND_S + 30.0
    after = bounds.converge + bounds.recording_at_home + bounds.sync_settle
    return settings.duration + repairs + after + REPLAY_ALLOWANCE_S


async def _start_observer(
    data: Path, bounds: Bounds, deadline: float
) -> asyncio.subprocess.Process:
    out = (data / "observer.log").open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "soak.observer",
            "--data",
            str(data),
            "--faults",
            str(data / "faults.jsonl"),
            "--out",
            str(data / "findings.json"),
            "--bounds",
            json.dumps(asdict(bounds)),
            "--deadline",
            str(deadline),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent,  # only prctl runs in the child
        )
    finally:
        out.close()


async def _findings_of(
    observer: asyncio.subprocess.Process, data: Path, deadline: float
) -> dict[str, Any]:
    """Wait for the observer's verdict (it always exits by its deadline)."""
    try:
        await asyncio.wait_for(observer.wait(), deadline + 30.0)
    except TimeoutError:
        observer.kill()
        await observer.wait()
    try:
        findings: dict[str, Any] = json.loads((data / "findings.json").read_text())
    except (OSError, ValueError) as exc:
        raise SoakFailedError(
            f"the checker gave no findings ({exc}); see {data / 'observer.log'}"
        ) from exc
    return findings


async def _sample(sampler: ResourceSampler, cluster: SoakCluster, extra: dict[str, int]) -> None:
    """Sample every process of the run every few seconds: the cluster's, this one (with
    the relays), and ``extra`` (the observer, once it runs)."""
    while True:
        sampler.sample({"soak": os.getpid(), **cluster.pids(), **extra}, time.monotonic())
        await asyncio.sleep(SAMPLE_EVERY_S)
