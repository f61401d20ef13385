"""The observer's last look at the recording directories (issue 10, R9): a segment the
periodic scan sees while the final listing is under way must not be judged lost (the
soak's seed 7 reported three such segments, written in the last second of the run).
Real files in a temporary directory; no NATS."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import cast

from shared.bus import Access, Bus
from soak.faultlog import FaultLogReader
from soak.observations import Bounds, SegmentSeen
from soak.observer import Observer
from soak.recordings import RecordingScanner
from soak.rules import SEGMENT_LOST, SEGMENT_NOT_HOME, Checker

CAMERA = "cam-1"


def record(servers: Path, server: str, stamp: str, epoch: int) -> str:
    """Write one segment as the recorder does (``services/heartbeat/recorder.py``)."""
    directory = servers / server / "recordings" / CAMERA
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{stamp}Z_e{epoch}.seg"
    header = f"blaze segment camera={CAMERA} epoch={epoch} server={server} at={stamp}\n"
    (directory / name).write_bytes(header.encode().ljust(256, b"."))
    return name


class RecorderBesideTheListing(RecordingScanner):
    """Right after the final listing, a segment is written, as a recorder would: the
    listing gives another scan, if one may run, a moment to see it."""

    def __init__(self, servers_dir: Path) -> None:
        super().__init__(servers_dir)
        self.written: str | None = None
        self.seen_late = threading.Event()

    def holders(self) -> dict[tuple[str, str], set[str]]:
        held = super().holders()
        self.written = record(self.servers_dir, "rs-1", "20261130T001902.289035", 7)
        self.seen_late.wait(timeout=1.0)
        return held

    def scan_new(self) -> list[SegmentSeen]:
        found = super().scan_new()
        if self.written is not None and any(s.name == self.written for s in found):
            self.seen_late.set()
        return found


async def test_r9_a_segment_written_during_the_final_listing_is_not_judged_lost(
    tmp_path: Path,
) -> None:
    """R9 (checker): scans are serialised, so the final judgement covers exactly the
    segments seen before its listing; the one written after is seen later, not lost."""
    servers = tmp_path / "servers"
    first = record(servers, "rs-1", "20261130T001901.289035", 7)
    scanner = RecorderBesideTheListing(servers)
    observer = Observer(
        cast(Bus, None),
        "nats://127.0.0.1:1",
        Access(),
        Checker(Bounds()),
        scanner,
        FaultLogReader(tmp_path / "faults.jsonl"),
        tmp_path / "events.jsonl",
    )
    periodic = asyncio.create_task(observer._every(0.01, observer._scan))
    try:
        await observer._judge_segments()
        await asyncio.wait_for(asyncio.to_thread(scanner.seen_late.wait, 5.0), 10)
    finally:
        periodic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await periodic
    judged = [v.rule for v in observer.checker.violations]
    assert SEGMENT_LOST not in judged, observer.checker.violations
    assert judged == [SEGMENT_NOT_HOME], "no home known here: the rules did judge both"
    assert set(observer.checker.segments) == {(CAMERA, first), (CAMERA, scanner.written)}
    assert scanner.seen_late.is_set(), "the periodic scan saw the late segment afterwards"
