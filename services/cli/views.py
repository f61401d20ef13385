"""What ``blaze status`` and ``blaze events`` print: JSON for machines, tables for people."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from services.cli.supervisor import SERVICES_FILE
from services.placement.state import CameraSlot, CameraState, Placement, ServerSlot
from shared.bus import Bus, read_leases
from shared.errors import RequestRefusedError
from shared.messages import AnyEvent, CameraPreempted

NO_STATE = "no placement state yet (is the placement service running?)"
"""What every reader of the placement state says before placement has written one."""


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


def _defaults(model: type[CameraSlot] | type[ServerSlot]) -> dict[str, Any]:
    """The JSON value of every field of ``model`` that has a default (placement leaves
    fields at their defaults out of its snapshot)."""
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in model.model_fields.items()
        if not field.is_required()
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
    defaults = _defaults(ServerSlot)
    servers = []
    for raw_server in raw_servers.values():
        s = {**defaults, **raw_server}
        servers.append(
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
    return {
        "servers": servers,
        "cameras": cameras,
        "services": services,
        "leaders": dict(sorted((leaders or {}).items())),
    }


_CAMERA_DEFAULTS = _defaults(CameraSlot)
_MOVING, _PENDING = CameraState.MOVING.value, CameraState.PENDING.value
_HOME, _FAILED_OVER = CameraState.HOME.value, CameraState.FAILED_OVER.value


def _camera_rows(cameras: Iterable[dict[str, Any]], loads: dict[str, int]) -> list[dict[str, Any]]:
    """The cameras of the status document (CameraSlot.state and .shown_host, on the
    snapshot's dicts, where a field at its default is absent), counting the channels
    each holds into ``loads`` (Placement.loads: host, target, hosts yet to release it).
    One loop, no call per camera: it runs 100,000 times for ``blaze status``."""
    default_priority = _CAMERA_DEFAULTS["priority"].value
    rows: list[dict[str, Any]] = []
    append = rows.append
    for c in cameras:
        get = c.get
        target, host, home = get("target"), get("host"), c["home"]
        release_from, release_after = get("release_from"), get("release_after")
        if target is None and not release_from and not release_after:  # at rest
            releasing: list[str] = []
            if host is None:
                state = _PENDING
            else:
                state = _HOME if host == home else _FAILED_OVER
                if host in loads:
                    loads[host] += 1
        else:
            held = {host, target, *(release_from or ()), *(release_after or ())}
            releasing = sorted({*(release_from or ()), *(release_after or ())})
            if target is not None:
                state = _MOVING
            elif host is None:
                state = _PENDING
            else:
                state = _HOME if host == home else _FAILED_OVER
            for sid in held:
                if sid in loads:
                    loads[sid] += 1
        append(
            {
                "id": c["id"],
                "home": home,
                "host": target if target is not None else host,
                "state": state,
                "priority": get("priority", default_priority),
                "epoch": get("epoch", 0),
                "releasing_on": releasing,
                "preempted_by": get("preempted_by"),
            }
        )
    return rows


def whatif_document(state: Placement, server: str) -> dict[str, Any]:
    """The ``blaze whatif SERVER --json`` object: if ``server``'s storage failed now, where
    its cameras (and any preempted ones) would go, by the same planner placement runs."""
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
    doc = status_document_of_snapshot(snapshot[0], _services(data_dir), await read_leases(bus))
    if as_json:
        sys.stdout.write(json.dumps(doc))
        sys.stdout.write("\n")
    else:
        print(_tables(doc))
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
