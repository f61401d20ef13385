"""The checker's process: ``python -m soak.observer --data DIR --faults FILE --out FILE``.

It runs beside the soak, as an outside observer would: it follows the event log and reads
the placement state as the read-only ``monitor`` identity (what ``blaze events`` and
``blaze status --json`` read), scans the recording directories, and tails the fault log
(what the injector did). It feeds all of it to the rules (``soak.rules``). Once the
fault log says the faults have stopped it waits for the cluster to converge, for sync to
settle, checks every segment, replays the log from the start, writes its findings as
JSON and exits. It always exits within ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.bounded import cancel_all, raise_if_cancelled
from shared.bus import Access, Bus, SecretsDir
from shared.messages import AnyEvent, JobState, SyncJob
from soak.faultlog import FaultLogReader
from soak.observations import Bounds, StatusSeen, status_of_snapshot
from soak.recordings import RecordingScanner
from soak.rules import CHECKER_INCOMPLETE, Checker

log = logging.getLogger("soak.observer")

STATUS_EVERY_S = 0.5
SCAN_EVERY_S = 3.0
FAULT_LOG_EVERY_S = 0.25
SYNC_EVERY_S = 2.0


@dataclass
class Findings:
    """What the observer writes at the end (``--out``)."""

    violations: list[dict[str, Any]] = field(default_factory=list)
    tally: dict[str, Any] = field(default_factory=dict)
    convergence: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    """Times after the faults stopped: ``converged_after_s``, ``sync_settled_after_s``."""
    problems: list[str] = field(default_factory=list)
    """What kept the observer from seeing something (reads that failed, and why)."""


@dataclass
class Observer:
    """Feeds the checker until the end of the run."""

    bus: Bus
    url: str
    access: Access
    checker: Checker
    scanner: RecordingScanner
    faults: FaultLogReader
    event_copy: Path
    """Where every event seen is copied, one JSON line each (``blaze events --json``'s
    form), so a finding can be read in its context after the cluster is gone."""
    findings: Findings = field(default_factory=Findings)
    failed_reads: dict[str, int] = field(default_factory=dict)
    faults_stopped: asyncio.Event = field(default_factory=asyncio.Event)
    converged: asyncio.Event = field(default_factory=asyncio.Event)
    scanning: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One directory scan at a time: the periodic scan goes on while the end is judged,
    and a segment it saw after the final listing would be judged lost (seed 7)."""

    async def run(self) -> Findings:
        """Watch, then judge the end of the run."""
        watchers = [
            asyncio.create_task(self._follow_events(), name="events"),
            asyncio.create_task(self._every(STATUS_EVERY_S, self._read_status), name="status"),
            asyncio.create_task(self._every(SCAN_EVERY_S, self._scan), name="scan"),
            asyncio.create_task(self._every(FAULT_LOG_EVERY_S, self._read_faults), name="faults"),
        ]
        try:
            await self.faults_stopped.wait()
            await self._judge_the_end()
        finally:
            await cancel_all(watchers)
        return self.write_up()

    async def _every(self, period: float, step: Any) -> None:
        while True:
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - a read during an election; counted
                # Python 3.11's wait_for (inside nats-py) may have turned our cancel into
                # a TimeoutError: stop then rather than read for ever (shared/bounded.py).
                raise_if_cancelled()
                name = getattr(step, "__name__", "step")
                self.failed_reads[name] = self.failed_reads.get(name, 0) + 1
                log.debug("%s failed: %s", name, exc)
            await asyncio.sleep(period)

    async def _follow_events(self) -> None:
        with self.event_copy.open("a") as copy:
            async with contextlib.aclosing(self.bus.events()) as stream:
                async for seq, event in stream:
                    self.checker.on_event(seq, time.monotonic(), event, digest(event))
                    copy.write(event_line(seq, event) + "\n")

    async def _read_status(self) -> StatusSeen | None:
        found = await self.bus.read_state()
        at = time.monotonic()
        if found is None:
            return None
        # Every fault record written before this answer came (a repair is logged before
        # it begins) is in the file now: read them first, so it is judged against them.
        await self._read_faults()
        status = status_of_snapshot(at, found[0])
        self.checker.on_status(status)
        if self.checker.converged_at is not None:
            self.converged.set()
        return status

    async def _scan(self) -> None:
        async with self.scanning:
            await self._scan_new()

    async def _scan_new(self) -> None:
        """Segments not seen before (the caller holds the scan lock)."""
        found = await asyncio.to_thread(self.scanner.scan_new)
        self.checker.on_segments(time.monotonic(), found)

    async def _judge_segments(self) -> None:
        """The last scan, then where every segment seen is now. Under the scan lock, so
        every segment judged was seen before the listing that judges it began."""
        homes = self._homes()
        async with self.scanning:
            await self._scan_new()
            holders = await asyncio.to_thread(self.scanner.holders)
            self.checker.judge_segments(time.monotonic(), holders, homes)

    async def _read_faults(self) -> None:
        for record in self.faults.new_records():
            self.checker.on_fault(record)
        if self.checker.faults_stopped_at is not None:
            self.faults_stopped.set()

    # ---- the end ----

    async def _judge_the_end(self) -> None:
        """Convergence, recording at home, sync, segments, the replay, in that order."""
        c, b = self.checker, self.checker.bounds
        stopped = c.faults_stopped_at
        assert stopped is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, stopped + b.converge - time.monotonic())):
                await self.converged.wait()
        c.judge_convergence(time.monotonic())
        final = self.findings.final
        if c.converged_at is None:
            await self._judge_replay()
            return
        final["converged_after_s"] = round(c.converged_at - stopped, 2)
        await self._judge_recording_at_home(c.converged_at)
        settled = await self._wait_for_sync(c.converged_at + b.sync_settle)
        if settled is not None:
            final["sync_settled_after_s"] = round(settled - stopped, 2)
        await self._judge_segments()
        await self._judge_replay()

    def _homes(self) -> dict[str, str]:
        status = self.checker.last_status
        return {cam.id: cam.home for cam in status.cameras.values()} if status else {}

    async def _judge_recording_at_home(self, converged_at: float) -> None:
        """A segment at home under each camera's epoch, begun after convergence."""
        since_wall = datetime.now(UTC) - timedelta(seconds=time.monotonic() - converged_at)
        since = f"{since_wall:%Y%m%dT%H%M%S.%f}"
        await asyncio.sleep(self.checker.bounds.recording_at_home)
        await self._read_status()
        newest = await asyncio.to_thread(self.scanner.newest_at_home, self._homes())
        self.checker.judge_recording_at_home(time.monotonic(), newest, since)

    async def _wait_for_sync(self, deadline: float) -> float | None:
        """When every sync job had completed (two reads in a row), or None by ``deadline``."""
        open_jobs: list[str] = []
        calm = 0
        while time.monotonic() < deadline:
            try:
                open_jobs = await self._open_sync_jobs()
            except Exception as exc:  # noqa: BLE001 - no stream leader for a moment
                raise_if_cancelled()
                log.debug("sync jobs unreadable: %s", exc)
                await asyncio.sleep(SYNC_EVERY_S)
                continue
            calm = calm + 1 if not open_jobs else 0
            if calm >= 2:
                return time.monotonic()
            await asyncio.sleep(SYNC_EVERY_S)
        self.checker.judge_sync(time.monotonic(), open_jobs)
        return None

    async def _open_sync_jobs(self) -> list[str]:
        records = await self.bus.read_records("job.")
        jobs = [SyncJob.model_validate_json(raw) for raw, _ in records.values()]
        return sorted(
            f"{j.key} ({j.state}: {j.reason or 'no reason given'})"
            for j in jobs
            if j.state is not JobState.COMPLETED
        )

    async def _judge_replay(self) -> None:
        """Replay the whole log on a connection of its own and compare."""
        replayer = await Bus.connect(self.url, "soak-replay", access=self.access)
        try:
            last = await replayer.last_event_seq()
            replayed = {seq: digest(event) for seq, event in await replayer.replay()}
        finally:
            await replayer.close()
        self.checker.judge_replay(time.monotonic(), replayed, last)

    def write_up(self) -> Findings:
        """The findings so far."""
        c, f = self.checker, self.findings
        f.violations = [v.to_json() for v in c.violations]
        f.tally = asdict(c.tally)
        f.tally["last_event_seq"] = c.last_seq
        f.convergence = c.convergence_times()
        f.problems = [f"{name}: {n} reads failed" for name, n in self.failed_reads.items()]
        return f


def event_line(seq: int, event: AnyEvent | None) -> str:
    """One event as ``blaze events --json`` prints it."""
    if event is None:
        return json.dumps({"seq": seq, "type": "invalid"})
    return json.dumps({"seq": seq, **event.model_dump(mode="json", by_alias=True)})


def digest(event: AnyEvent | None) -> str:
    """What an event is, in a few bytes, to compare its live and replayed copies."""
    if event is None:
        return "invalid"
    return hashlib.sha256(event.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


async def observe(data_dir: Path, faults: Path, bounds: Bounds, deadline: float) -> Findings:
    """Connect as ``monitor`` to the cluster ``blaze up`` described in ``data_dir`` and
    watch it; by ``deadline`` seconds at the latest, what was found so far, with the
    run judged incomplete."""
    started = time.monotonic()
    written = json.loads((data_dir / "cluster.json").read_text())
    url = str(written["nats_url"])
    access = Access(SecretsDir(Path(written["secrets"])).creds("monitor"), None)
    bus = await Bus.connect(url, "soak-observer", access=access)
    try:
        observer = Observer(
            bus,
            url,
            access,
            Checker(bounds),
            RecordingScanner(data_dir / "servers"),
            FaultLogReader(faults),
            data_dir / "events.jsonl",
        )
        try:
            async with asyncio.timeout(max(1.0, deadline - (time.monotonic() - started))):
                return await observer.run()
        except TimeoutError:
            findings = observer.write_up()
            findings.violations.append(
                {
                    "rule": CHECKER_INCOMPLETE,
                    "at": time.monotonic(),
                    "detail": f"the checker ran out of time ({deadline:.0f} s) before its "
                    "last checks: the run is not judged whole",
                }
            )
            return findings
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak.observer", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="the cluster's data dir")
    parser.add_argument("--faults", type=Path, required=True, help="the fault log")
    parser.add_argument("--out", type=Path, required=True, help="where to write findings")
    parser.add_argument("--bounds", default="{}", help="Bounds as JSON")
    parser.add_argument("--deadline", type=float, default=7200.0, help="exit after this")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="soak.observer: %(message)s")
    bounds = Bounds(**json.loads(args.bounds))

    findings = asyncio.run(observe(args.data, args.faults, bounds, args.deadline))
    args.out.write_text(json.dumps(asdict(findings), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
