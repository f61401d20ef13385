"""What ``blaze status`` and ``blaze events`` print: JSON for machines, tables for people.

``blaze status --json`` imports none of the placement state's models: it cuts each
camera's fields out of the snapshot's text with one regular expression and writes its
answer from them row by row (``write_status_json``); tables read the snapshot as dicts."""

from __future__ import annotations

import contextlib
import gc
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from services.cli.datadir import SERVICES_FILE
from shared.errors import RequestRefusedError

if TYPE_CHECKING:
    from services.placement.state import Placement
    from shared.bus import Bus, StateReader
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

# The ids the config and the messages allow, which JSON writes without escapes. Possessive
# (``++``): what follows is never one of these characters, and not offering to backtrack
# makes the split an eighth faster.
_ID = rb"[A-Za-z0-9_-]++"
SNAPSHOT_CAMERA = re.compile(
    rb'"' + _ID + rb'":\{"id":"(' + _ID + rb')","home":"(' + _ID + rb')"'
    rb'(?:,"priority":"([a-z_]++)")?'
    rb'(?:,"failback":(?:"[a-z_]++"|null))?'
    rb'(?:,"host":(?:"(' + _ID + rb')"|null))?'
    rb'(?:,"target":(?:"(' + _ID + rb')"|null))?'
    rb'(?:,"release_from":\[((?:"' + _ID + rb'"(?:,"' + _ID + rb'")*)?)\])?'
    rb'(?:,"release_after":\[((?:"' + _ID + rb'"(?:,"' + _ID + rb'")*)?)\])?'
    rb'(?:,"left_on":\[((?:"' + _ID + rb'"(?:,"' + _ID + rb'")*)?)\])?'
    rb'(?:,"preempted_by":(?:"(' + _ID + rb')"|null))?'
    rb'(?:,"epoch":(0|-?[1-9][0-9]*+))?'
    rb'(?:,"moved_from":(?:"' + _ID + rb'"|null))?'
    rb'(?:,"reason":"[a-z_]++")?'
    rb"\}"
)
"""One camera of the snapshot, ``"key":{...}``, as pydantic writes a ``CameraSlot``:
compact, its fields in their order, each at its default left out or written out.
Groups: id, home, priority, host, target, release_from, release_after, left_on (the
lists' insides), preempted_by, epoch; None where the field is absent or null. A camera it does
not match (a new field, an id JSON would escape) sends the whole snapshot the way of the
dicts; ``tests/unit/test_views.py`` holds it to what placement writes."""

CAMERA_ROW = (
    b'{"id": "%s", "home": "%s", "host": %s, "state": "%s", "priority": "%s", "epoch": %s, '
    b'"releasing_on": %s, "preempted_by": %s}'
)
"""One camera of ``blaze status --json`` exactly as ``json.dumps`` writes its dict, from
the snapshot's own text: ids and words JSON writes as they are, the epoch's digits as
they were, ``host`` and ``preempted_by`` quoted or ``null``, ``releasing_on`` as JSON."""

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
            "releasing_on": sorted({*c.release_from, *c.release_after, *c.left_on}),
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
    newline to ``out``, byte for byte, without decoding the cameras into dicts nor a
    call per camera: at 100,000 cameras ``json.loads`` alone was a third of ``blaze
    status --json``'s time. ``SNAPSHOT_CAMERA`` splits the snapshot's text (in C, one
    pass) into each camera's fields, every column is one comprehension, and each batch
    of ``CAMERA_ROW`` is one ``%``. A snapshot it does not fit takes the way of the dicts.

    The garbage collector is off meanwhile: what it would walk all lives until the end,
    and its passes over it were a quarter of the time."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        cut = _cameras_cut_out(raw)
        if cut is None:
            out.write(json.dumps(status_document_of_snapshot(raw, services, leaders)).encode())
            out.write(b"\n")
        else:
            _write_rows(*cut, services, leaders, out)
    finally:
        if collecting:
            gc.enable()


def _cameras_cut_out(raw: bytes) -> tuple[dict[str, Any], list[bytes | None]] | None:
    """The snapshot without its cameras (decoded), and ``SNAPSHOT_CAMERA.split(raw)``: the
    text before the first camera, each camera's groups, and the text between and after.
    None unless the matches are the whole ``cameras`` object, one comma apart."""
    parts: list[bytes | None] = SNAPSHOT_CAMERA.split(raw)
    step = SNAPSHOT_CAMERA.groups + 1
    head, tail = parts[0], parts[-1]
    if len(parts) <= step or head is None or tail is None:
        return None
    if not head.endswith(b'"cameras":{') or not tail.startswith(b"}"):
        return None
    if not set(parts[step:-1:step]) <= {b","}:
        return None
    try:
        rest = json.loads(head + tail)
    except ValueError:
        return None
    if not isinstance(rest, dict) or rest.get("cameras") != {}:
        return None  # the matches were not the top-level cameras
    return rest, parts


def _write_rows(
    rest: dict[str, Any],
    parts: list[Any],
    services: list[dict[str, Any]],
    leaders: dict[str, str],
    out: BinaryIO,
) -> None:
    """``write_status_json`` from ``_cameras_cut_out``'s answer: a column per field."""
    step = SNAPSHOT_CAMERA.groups + 1
    ids, homes, priorities, hosts, targets, release_from, release_after, left_on, by, epochs = (
        parts[group::step] for group in range(1, step)
    )
    # CameraSlot.state and .shown_host, as _camera_facts has them
    home, failed_over, pending, moving = (s.encode() for s in (HOME, FAILED_OVER, PENDING, MOVING))
    at_rest = [
        pending if h is None else home if h == m else failed_over
        for h, m in zip(hosts, homes, strict=True)
    ]
    states = [moving if t is not None else s for s, t in zip(at_rest, targets, strict=True)]
    shown = [
        b'"%s"' % t if t is not None else b"null" if h is None else b'"%s"' % h
        for h, t in zip(hosts, targets, strict=True)
    ]
    default_priority = DEFAULT_PRIORITY.encode()
    priorities = [p or default_priority for p in priorities]
    epochs = [e or b"0" for e in epochs]
    by = [b"null" if b is None else b'"%s"' % b for b in by]
    # Placement.loads: a camera at rest counts on its host; one under way, once on each of
    # its host, its target, the hosts yet to release it and the servers it was left on.
    channels = Counter(hosts)
    releasing = [b"[]"] * len(ids)
    under_way: list[int] = []
    lists = (release_from, release_after, left_on)
    if targets.count(None) < len(targets) or any(any(held) for held in lists):
        moves = zip(targets, *lists, strict=True)
        under_way = [i for i, (t, f, a, o) in enumerate(moves) if t is not None or f or a or o]
    for i in under_way:
        names = {n[1:-1] for held in lists if held[i] for n in held[i].split(b",")}
        if names:
            releasing[i] = json.dumps(sorted(n.decode() for n in names)).encode()
        channels[hosts[i]] -= 1
        channels.update({hosts[i], targets[i], *names})
    raw_servers = rest.get("servers", {})
    loads = {sid: channels.get(sid.encode(), 0) for sid in raw_servers}
    servers = json.dumps(_server_rows(raw_servers.values(), loads))
    out.write(b'{"servers": %s, "cameras": [' % servers.encode())
    fields = chain.from_iterable(
        zip(ids, homes, shown, states, priorities, epochs, releasing, by, strict=True)
    )
    per_row = 8
    for start in range(0, len(ids), ROWS_PER_WRITE):
        rows = min(ROWS_PER_WRITE, len(ids) - start)
        if start:
            out.write(b", ")
        out.write(b", ".join([CAMERA_ROW] * rows) % tuple(islice(fields, per_row * rows)))
    tail = json.dumps({"services": services, "leaders": dict(sorted(leaders.items()))})
    out.write(b"], %s\n" % tail[1:].encode())


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
        left_on = get("left_on")
        if target is None and not release_from and not release_after and not left_on:  # at rest
            releasing: list[str] = []
            if host is None:
                state = PENDING
            else:
                state = HOME if host == home else FAILED_OVER
                if host in loads:
                    loads[host] += 1
        else:
            releasing = sorted({*(release_from or ()), *(release_after or ()), *(left_on or ())})
            held = {host, target, *releasing}
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


async def status(reader: StateReader, data_dir: Path, *, as_json: bool) -> int:
    """Print the cluster's status; exit code 2 when placement has not written any yet."""
    snapshot = await reader.read_state()
    if snapshot is None:
        print(f"blaze: {NO_STATE}", file=sys.stderr)
        return 2
    leaders = await reader.read_leases()
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
