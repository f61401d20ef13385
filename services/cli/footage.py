"""``blaze sync`` and ``blaze timeline``: footage on its way home, and where it is (R9)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from typing import Any

from pydantic import ValidationError

from services.cli.views import NO_STATE
from services.placement.state import Placement
from services.sync import timeline
from shared import subjects
from shared.bus import Bus
from shared.errors import BusError, RequestRefusedError
from shared.messages import JobState, ListSegments, SegmentList, SyncJob

BAR_WIDTH = 30
LIST_TIMEOUT_S = 10.0


async def sync_document(bus: Bus) -> dict[str, Any]:
    """Every sync job, and a summary per home server."""
    jobs = []
    for raw, _ in (await bus.read_records("job.")).values():
        with contextlib.suppress(ValidationError):  # the service logs and skips it too
            jobs.append(SyncJob.model_validate_json(raw))
    homes: dict[str, list[SyncJob]] = defaultdict(list)
    for job in jobs:
        homes[job.home].append(job)
    servers = []
    for home, of_home in sorted(homes.items()):
        states = {s.value: sum(1 for j in of_home if j.state is s) for s in JobState}
        servers.append(
            {
                "server": home,
                "jobs": states,
                "segments_done": sum(j.segments_done for j in of_home),
                "segments_total": sum(j.segments_total for j in of_home),
                "bytes_done": sum(j.bytes_done for j in of_home),
                "bytes_total": sum(j.bytes_total for j in of_home),
            }
        )
    ordered = sorted(jobs, key=lambda j: j.key)
    return {"servers": servers, "jobs": [j.model_dump(mode="json") for j in ordered]}


def _bar(done: int, total: int) -> str:
    share = done / total if total else 1.0
    filled = round(share * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:6.1%}"


def sync_tables(doc: dict[str, Any]) -> str:
    """One progress bar per home server, then the jobs not yet completed."""
    if not doc["servers"]:
        return "no footage to sync: nothing was recorded away from home"
    lines = []
    for s in doc["servers"]:
        open_jobs = sum(n for state, n in s["jobs"].items() if state != "completed")
        lines.append(
            f"{s['server']:<14}{_bar(s['segments_done'], s['segments_total'])}  "
            f"{s['segments_done']}/{s['segments_total']} segments, "
            f"{s['bytes_done']}/{s['bytes_total']} bytes, {open_jobs} jobs open"
        )
    waiting = [j for j in doc["jobs"] if j["state"] != "completed"]
    if waiting:
        lines += ["", f"{'CAMERA':<16}{'FROM':<12}{'TO':<12}{'STATE':<11}REASON"]
        for j in waiting:
            lines.append(
                f"{j['camera']:<16}{j['source']:<12}{j['home']:<12}{j['state']:<11}{j['reason']}"
            )
    return "\n".join(lines)


async def sync(bus: Bus, *, as_json: bool, follow: bool) -> int:
    """Print sync progress; with ``follow`` refresh every second until interrupted."""
    while True:
        doc = await sync_document(bus)
        print(json.dumps(doc) if as_json else sync_tables(doc), flush=True)
        if not follow:
            return 0
        await asyncio.sleep(1.0)
        if not as_json:
            print()


async def timeline_document(bus: Bus, camera: str) -> dict[str, Any]:
    """Ask every server what it holds of ``camera``; merge it into ranges and gaps."""
    snapshot = await bus.read_state()
    if snapshot is None:
        raise RequestRefusedError(NO_STATE)
    state = Placement.model_validate_json(snapshot[0])
    if camera not in state.cameras:
        raise RequestRefusedError(f"unknown camera {camera!r}")
    servers = sorted(state.servers)
    answers = await asyncio.gather(*(_held(bus, s, camera) for s in servers))
    held = {s: a.segments for s, a in zip(servers, answers, strict=True) if a is not None}
    doc = timeline.build(camera, held, timeline.typical_spacing(held))
    doc["home"] = state.cameras[camera].home
    doc["unreachable"] = [s for s, a in zip(servers, answers, strict=True) if a is None]
    return doc


async def _held(bus: Bus, server: str, camera: str) -> SegmentList | None:
    """What one server holds of the camera; None if it cannot say (unreachable, or its
    listing failed, e.g. failed storage), so the timeline names it instead of a gap."""
    subject = subjects.sync_request(server, "list")
    ask = ListSegments(camera=camera, with_sha256=False)
    try:
        held = await bus.request(subject, ask, SegmentList, LIST_TIMEOUT_S)
    except BusError:
        return None
    return None if held.error else held


def timeline_tables(doc: dict[str, Any]) -> str:
    """Ranges and gaps, readable."""
    lines = [f"camera {doc['camera']} (home {doc['home']})", ""]
    lines.append(f"{'SERVER':<14}{'FROM':<34}{'TO':<34}{'SEGMENTS':>9}  EPOCHS")
    for r in doc["ranges"]:
        epochs = ",".join(str(e) for e in r["epochs"])
        lines.append(f"{r['server']:<14}{r['from']:<34}{r['to']:<34}{r['segments']:>9}  {epochs}")
    lines.append("")
    if doc["gaps"]:
        for g in doc["gaps"]:
            lines.append(f"gap {g['ms']} ms: {g['from']} .. {g['to']}")
    else:
        lines.append("no gaps")
    if doc["unreachable"]:
        lines.append("unreachable (not included): " + ", ".join(doc["unreachable"]))
    return "\n".join(lines)


async def show_timeline(bus: Bus, camera: str, *, as_json: bool) -> int:
    """Print one camera's timeline."""
    doc = await timeline_document(bus, camera)
    print(json.dumps(doc) if as_json else timeline_tables(doc))
    return 0
