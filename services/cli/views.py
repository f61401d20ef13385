"""What ``blaze status`` and ``blaze events`` print: JSON for machines, tables for people.

``blaze status --json`` imports none of the placement state's models: it reads the
snapshot's JSON as plain dicts and writes its answer row by row (``write_status_json``)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from services.cli.datadir import SERVICES_FILE
from shared.errors import RequestRefusedError

if TYPE_CHECKING:
    from services.placement.state import Placement
    from shared.bus import Bus
    from shared.messages import AnyEvent

NO_STATE = "no placement state yet (is the placement service running?)"
"""What every reader of the placement state says before placement has written one."""

SERVER_DEFAULTS: dict[str, Any] = {
    "site": "default",
    "group": "default",
    "state": "online",
    "storage_ok": True,
    "drained": False,
}
"""``ServerSlot``'s defaults of the fields status shows: placement leaves a field at its
default out of its snapshot. Written out rather than read from the model, whose import
alone is a tenth of ``blaze status``'s time; a unit test holds the two equal."""

DEFAULT_PRIORITY = "medium"
"""``CameraSlot.priority``'s default (held equal to the model's by the same test)."""

HOME, FAILED_OVER, PENDING, MOVING = "home", "failed_over", "pending", "moving"
"""``CameraState``'s values (held equal to the enum's by the same test)."""

CAMERA_ROW = (
    '{"id": "%s", "home": "%s", "host": %s, "state": "%s", "priority": "%s", "epoch": %d, '
    '"releasing_on": %s, "preempted_by": %s}'
)
"""One camera of ``blaze status --json`` exactly as ``json.dumps`` writes its dict, for
strings that JSON writes as they are (``host``, ``releasing_on`` and ``preempted_by``
come as JSON already)."""

ROWS_PER_WRITE = 10_000
"""Camera rows joined and written at once: the reader starts on the first ones while the
rest are joined, and no string of the whole answer (15 MB at 100,000 cameras) is built."""


def status_document(
    state: Placement, services: list[dict[str, Any]], leaders: dict[str, str] | None = None
) -> dict[str, Any]:
    """The ``blaze status --json`` object; ``leaders`` names the replica leading each
    replicated service (R12)."""
    loads = state.loads()
    servers = [
        {
            "id": s.id,
            "site": s.site,
            "group": s.group,
            "state": s.state.value,
            "capacity": s.capacity,
            "hosting": loads[s.id],
            "storage": "ok" if s.storage_ok else "failed",
            "drained": s.drained,
        }
        for s in state.servers.values()
    ]
    cameras = [
        {
            "id": c.id,
            "home": c.home,
            "host": c.shown_host,
            "state": c.state.value,
            "priority": c.priority.value,
            "epoch": c.epoch,
            "releasing_on": sorted({*c.release_from, *c.release_after}),
            "preempted_by": c.preempted_by,
        }
        for c in state.cameras.values()
    ]
    return {
        "servers": servers,
        "cameras": cameras,
        "services": services,
        "leaders": dict(sorted((leaders or {}).items())),
    }


def status_document_of_snapshot(
    raw: bytes, services: list[dict[str, Any]], leaders: dict[str, str] | None = None
) -> dict[str, Any]:
    """``status_document`` straight from the snapshot's JSON, without building the
    pydantic state: at 100,000 cameras that (validation, then a model per camera) is
    most of ``blaze status``'s time. The snapshot is placement's own, written after
    validation; ``tests/integration/test_scale_parts.py`` holds the two documents equal."""
    doc = json.loads(raw)
    raw_servers = doc.get("servers", {})
    loads = dict.fromkeys(raw_servers, 0)
    cameras = _camera_rows(doc.get("cameras", {}).values(), loads)
    return {
        "servers": _server_rows(raw_servers.values(), loads),
        "cameras": cameras,
        "services": services,
        "leaders": dict(sorted((leaders or {}).items())),
    }


def write_status_json(
    raw: bytes, services: list[dict[str, Any]], leaders: dict[str, str], out: BinaryIO
) -> None:
    """Write ``json.dumps(status_document_of_snapshot(raw, services, leaders))`` and a
    newline to ``out``, byte for byte, without a dict per camera to build and encode
    (at 100,000 cameras those were half of ``blaze status --json``'s time): each camera
    is a ``CAMERA_ROW``. That is exact only for strings JSON writes as they are, which
    every string of a snapshot with no escape (``\\``) and no byte past ASCII is; any
    other snapshot takes the way of the dicts."""
    if not raw.isascii() or b"\\" in raw:
        out.write(json.dumps(status_document_of_snapshot(raw, services, leaders)).encode())
        out.write(b"\n")
        return
    doc = json.loads(raw)
    raw_servers = doc.get("servers", {})
    loads = dict.fromkeys(raw_servers, 0)
    rows = _camera_lines(doc.get("cameras", {}).values(), loads)
    servers = json.dumps(_server_rows(raw_servers.values(), loads))
    out.write(f'{{"servers": {servers}, "cameras": ['.encode())
    for start in range(0, len(rows), ROWS_PER_WRITE):
        if start:
            out.write(b", ")
        out.write(", ".join(rows[start : start + ROWS_PER_WRITE]).encode())
    rest = json.dumps({"services": services, "leaders": dict(sorted(leaders.items()))})
    out.write(f"], {rest[1:]}\n".encode())


def _server_rows(servers: Iterable[dict[str, Any]], loads: dict[str, int]) -> list[dict[str, Any]]:
    """The servers of the status document, from the snapshot's dicts."""
    rows = []
    for raw_server in servers:
        s = {**SERVER_DEFAULTS, **raw_server}
        rows.append(
            {
                "id": s["id"],
                "site": s["site"],
                "group": s["group"],
                "state": str(s["state"]),
                "capacity": s["capacity"],
                "hosting": loads[s["id"]],
                "storage": "ok" if s["storage_ok"] else "failed",
                "drained": s["drained"],
            }
        )
    return rows


CameraFacts = tuple[str, str, str | None, str, str, int, list[str], str | None]
"""id, home, host shown, state, priority, epoch, hosts releasing it, preempted by."""


def _camera_facts(cameras: Iterable[dict[str, Any]], loads: dict[str, int]) -> list[CameraFacts]:
    """What the status document says of each camera (CameraSlot.state and .shown_host,
    on the snapshot's dicts, where a field at its default is absent), counting the
    channels each holds into ``loads`` (Placement.loads: host, target, hosts yet to
    release it). One loop, no call per camera: it runs 100,000 times for ``blaze status``."""
    facts: list[CameraFacts] = []
    append = facts.append
    for c in cameras:
        get = c.get
        target, host, home = get("target"), get("host"), c["home"]
        release_from, release_after = get("release_from"), get("release_after")
        if target is None and not release_from and not release_after:  # at rest
            releasing: list[str] = []
            if host is None:
                state = PENDING
            else:
                state = HOME if host == home else FAILED_OVER
                if host in loads:
                    loads[host] += 1
        else:
            held = {host, target, *(release_from or ()), *(release_after or ())}
            releasing = sorted({*(release_from or ()), *(release_after or ())})
            if target is not None:
                state = MOVING
            elif host is None:
                state = PENDING
            else:
                state = HOME if host == home else FAILED_OVER
            for sid in held:
                if sid in loads:
                    loads[sid] += 1
        shown = target if target is not None else host
        priority = get("priority", DEFAULT_PRIORITY)
        append(
            (c["id"], home, shown, state, priority, get("epoch", 0), releasing, get("preempted_by"))
        )
    return facts


def _camera_rows(cameras: Iterable[dict[str, Any]], loads: dict[str, int]) -> list[dict[str, Any]]:
    """The cameras of the status document, as dicts."""
    keys = ("id", "home", "host", "state", "priority", "epoch", "releasing_on", "preempted_by")
    return [dict(zip(keys, f, strict=True)) for f in _camera_facts(cameras, loads)]


def _camera_lines(cameras: Iterable[dict[str, Any]], loads: dict[str, int]) -> list[str]:
    """The cameras of the status document as JSON text, one ``CAMERA_ROW`` each, for a
    snapshot whose strings need no escaping (``write_status_json``)."""
    return [
        CAMERA_ROW
        % (
            cam,
            home,
            "null" if shown is None else f'"{shown}"',
            state,
            priority,
            epoch,
            json.dumps(releasing) if releasing else "[]",
            "null" if by is None else f'"{by}"',
        )
        for cam, home, shown, state, priority, epoch, releasing, by in _camera_facts(cameras, loads)
    ]


def whatif_document(state: Placement, server: str) -> dict[str, Any]:
    """The ``blaze whatif SERVER --json`` object: if ``server``'s storage failed now, where
    its cameras (and any preempted ones) would go, by the same planner placement runs."""
    from services.placement.state import CameraState  # noqa: PLC0415 - only whatif needs it
    from shared.messages import CameraPreempted  # noqa: PLC0415

    if server not in state.servers:
        raise RequestRefusedError(f"unknown server {server!r}")
    after, notices = state.what_if(server)
    moves, pending = [], []
    for cid, cam in after.cameras.items():
        was = state.cameras[cid].shown_host
        if cam.state is CameraState.PENDING and was is not None:
            pending.append({"camera": cid, "home": cam.home, "from": was})
        elif cam.shown_host != was:
            moves.append({"camera": cid, "home": cam.home, "from": was, "to": cam.shown_host})
    preempted = [
        {"camera": n.camera, "server": n.server, "by": n.by}
        for n in notices
        if isinstance(n, CameraPreempted)
    ]
    return {"server": server, "moves": moves, "pending": pending, "preempted": preempted}


async def whatif(bus: Bus, server: str, *, as_json: bool) -> int:
    """Print what a failure of ``server`` would do now; exit code 2 without a placement state."""
    snapshot = await bus.read_state()
    if snapshot is None:
        print(f"blaze: {NO_STATE}", file=sys.stderr)
        return 2
    from services.placement.state import Placement  # noqa: PLC0415 - only whatif needs it

    doc = whatif_document(Placement.model_validate_json(snapshot[0]), server)
    if as_json:
        print(json.dumps(doc))
        return 0
    print(
        f"if {server} failed now: {len(doc['moves'])} cameras move, "
        f"{len(doc['pending'])} go Pending, {len(doc['preempted'])} preempted"
    )
    for m in doc["moves"]:
        print(f"  {m['camera']:<20} {m['from'] or '-':>10} -> {m['to']}")
    for p in doc["pending"]:
        print(f"  {p['camera']:<20} {p['from']:>10} -> Pending")
    for p in doc["preempted"]:
        print(f"  {p['camera']:<20} preempted on {p['server']} by {p['by']}")
    return 0


def _services(data_dir: Path) -> list[dict[str, Any]]:
    try:
        listed = json.loads((data_dir / SERVICES_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [{"name": s["name"], "pid": s["pid"]} for s in listed if isinstance(s, dict)]


async def status(bus: Bus, data_dir: Path, *, as_json: bool) -> int:
    """Print the cluster's status; exit code 2 when placement has not written any yet."""
    snapshot = await bus.read_state()
    if snapshot is None:
        print(f"blaze: {NO_STATE}", file=sys.stderr)
        return 2
    from shared.bus import read_leases  # noqa: PLC0415 - see main: imported once connected

    leaders = await read_leases(bus)
    if as_json:
        sys.stdout.flush()
        write_status_json(snapshot[0], _services(data_dir), leaders, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        print(_tables(status_document_of_snapshot(snapshot[0], _services(data_dir), leaders)))
    return 0


def _tables(doc: dict[str, Any]) -> str:
    lines = [f"{'SERVER':<14}{'STATE':<16}{'HOSTING':>8}{'CAPACITY':>10}  STORAGE"]
    for s in doc["servers"]:
        state = s["state"] + (" drained" if s["drained"] else "")
        lines.append(
            f"{s['id']:<14}{state:<16}{s['hosting']:>8}{s['capacity']:>10}  {s['storage']}"
        )
    lines += ["", f"{'CAMERA':<16}{'HOME':<14}{'HOST':<14}{'STATE':<13}PRIORITY"]
    for c in doc["cameras"]:
        host = c["host"] or "-"
        lines.append(f"{c['id']:<16}{c['home']:<14}{host:<14}{c['state']:<13}{c['priority']}")
    if doc["leaders"]:
        lines += ["", "LEADERS   " + ", ".join(f"{k}={v}" for k, v in doc["leaders"].items())]
    if doc["services"]:
        lines += ["", "SERVICES  " + ", ".join(f"{s['name']}({s['pid']})" for s in doc["services"])]
    return "\n".join(lines)


def _line(seq: int, event: AnyEvent, *, as_json: bool) -> str:
    doc = event.model_dump(mode="json", by_alias=True)
    if as_json:
        return json.dumps({"seq": seq, **doc})
    rest = ", ".join(
        f"{k}={v}" for k, v in doc.items() if k not in ("type", "time", "schema_version")
    )
    return f"{seq:>6}  {doc['time']}  {doc['type']:<22} {rest}"


async def events(bus: Bus, *, as_json: bool, follow: bool) -> int:
    """Print the event log, oldest first; with ``follow`` keep printing."""
    last = 0
    for seq, event in await bus.replay():
        last = seq
        if event is not None:
            print(_line(seq, event, as_json=as_json), flush=True)
    if follow:
        async with contextlib.aclosing(bus.events(after=last)) as stream:
            async for seq, event in stream:
                if event is not None:
                    print(_line(seq, event, as_json=as_json), flush=True)
    return 0
