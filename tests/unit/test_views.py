"""``blaze status --json`` without the placement state's models: the defaults it writes out
are the models', the fields it cuts out of the snapshot's text are a ``CameraSlot``'s, and
the rows it formats are what ``json.dumps`` writes, escapes too."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from services.cli import views
from services.cli.views import status_document_of_snapshot, write_status_json
from services.placement.state import CameraSlot, CameraState, ServerSlot


def test_the_defaults_status_writes_out_are_the_placement_models() -> None:
    for name, value in views.SERVER_DEFAULTS.items():
        field = ServerSlot.model_fields[name]
        assert not field.is_required()
        assert field.get_default(call_default_factory=True) == value, name
    assert CameraSlot.model_fields["priority"].get_default() == views.DEFAULT_PRIORITY
    assert CameraSlot.model_fields["epoch"].get_default() == 0
    shown = {views.HOME, views.FAILED_OVER, views.PENDING, views.MOVING}
    assert shown == {s.value for s in CameraState}


def _written(raw: bytes, services: list[dict[str, Any]], leaders: dict[str, str]) -> bytes:
    out = io.BytesIO()
    write_status_json(raw, services, leaders, out)
    return out.getvalue()


def _dumped(raw: bytes, services: list[dict[str, Any]], leaders: dict[str, str]) -> bytes:
    return (json.dumps(status_document_of_snapshot(raw, services, leaders)) + "\n").encode()


def _snapshot(*names: str) -> dict[str, Any]:
    """A snapshot as placement writes it (defaults left out), with a camera in each
    state: home, failed over, moving with hosts to release, Pending and preempted, and
    failed over with a failed server it was left on."""
    a, b, c = names
    return {
        "cameras": {
            f"{a}-1": {"id": f"{a}-1", "home": a, "host": a, "epoch": 3},
            f"{a}-2": {"id": f"{a}-2", "home": a, "host": b, "priority": "high", "epoch": 4},
            f"{b}-1": {
                "id": f"{b}-1",
                "home": b,
                "host": c,
                "target": a,
                "release_from": [c, b],
                "release_after": [b],
            },
            f"{c}-1": {"id": f"{c}-1", "home": c, "priority": "low", "preempted_by": f"{a}-2"},
            f"{c}-2": {"id": f"{c}-2", "home": c, "host": c, "release_after": [a]},
            f"{a}-3": {"id": f"{a}-3", "home": a, "host": c, "left_on": [b], "epoch": 5},
        },
        "servers": {
            a: {"id": a, "capacity": 4},
            b: {"id": b, "capacity": 2, "state": "failed", "storage_ok": False},
            c: {"id": c, "capacity": 1, "site": "north", "group": "g", "drained": True},
        },
        "next_epoch": 9,
    }


@pytest.mark.parametrize(
    "names",
    [
        ("rs-1", "rs-2", "rs-3"),  # strings JSON writes as they are: the rows' way
        ('rs "1"', "rs\\2", "rs-\u00e93"),  # escapes and past ASCII: the dicts' way
    ],
)
def test_status_json_is_exactly_json_dumps_of_the_status_document(names: tuple[str, ...]) -> None:
    services = [{"name": "placement", "pid": 7}]
    leaders = {"placement": "p-2", "health": "h-1"}
    for raw in (
        json.dumps(_snapshot(*names), separators=(",", ":")).encode(),
        json.dumps(_snapshot(*names), ensure_ascii=False).encode(),
    ):
        written = _written(raw, services, leaders)
        assert written == _dumped(raw, services, leaders)
        doc = json.loads(written)
        hosting = {s["id"]: s["hosting"] for s in doc["servers"]}
        a, b, c = names
        assert hosting == {a: 3, b: 3, c: 3}  # host, target, hosts yet to release, left on
        assert [cam["state"] for cam in doc["cameras"]] == [
            "home",
            "failed_over",
            "moving",
            "pending",
            "home",
            "failed_over",
        ]
        assert doc["cameras"][2]["releasing_on"] == sorted({b, c})
        assert doc["cameras"][5]["releasing_on"] == [b]
        assert list(doc["leaders"]) == ["health", "placement"]


def test_status_json_of_many_cameras_is_written_in_pieces_that_join_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cameras = {
        f"c{n}": {"id": f"c{n}", "home": "rs-1", "host": "rs-1" if n % 3 else None, "epoch": n}
        for n in range(7)
    }
    snapshot = {"cameras": cameras, "servers": {"rs-1": {"id": "rs-1", "capacity": 9}}}
    raw = json.dumps(snapshot, separators=(",", ":"))  # compact, as placement writes it
    writes: list[bytes] = []

    class Recorder(io.BytesIO):
        def write(self, b: Any) -> int:
            writes.append(bytes(b))
            return super().write(b)

    monkeypatch.setattr(views, "ROWS_PER_WRITE", 3)
    out = Recorder()
    write_status_json(raw.encode(), [], {}, out)
    assert out.getvalue() == _dumped(raw.encode(), [], {})
    assert sum(1 for w in writes if w.startswith(b'{"id"')) == 3  # rows 0-2, 3-5, 6


def test_status_json_of_an_empty_snapshot_lists_nothing() -> None:
    assert _written(b"{}", [], {}) == _dumped(b"{}", [], {})
    assert json.loads(_written(b"{}", [], {})) == {
        "servers": [],
        "cameras": [],
        "services": [],
        "leaders": {},
    }


def test_the_camera_pattern_names_every_field_of_a_camera_in_the_models_order() -> None:
    named = re.findall(rb'"([a-z_]+)":', views.SNAPSHOT_CAMERA.pattern)
    assert [n.decode() for n in named] == list(CameraSlot.model_fields)


def _as_pydantic_writes_it(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot with each camera's fields in ``CameraSlot``'s order."""
    order = list(CameraSlot.model_fields)
    cameras = {
        key: {f: camera[f] for f in order if f in camera}
        for key, camera in snapshot["cameras"].items()
    }
    return {**snapshot, "cameras": cameras}


def test_status_json_cuts_the_cameras_out_of_a_compact_snapshot_in_either_order() -> None:
    snapshot = _as_pydantic_writes_it(_snapshot("rs-1", "rs-2", "rs-3"))
    servers_first = {"servers": snapshot["servers"], **snapshot}
    for doc in (snapshot, servers_first):
        raw = json.dumps(doc, separators=(",", ":")).encode()
        assert views._cameras_cut_out(raw) is not None
        assert _written(raw, [], {"placement": "p-1"}) == _dumped(raw, [], {"placement": "p-1"})


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["cameras"]["rs-1-1"].update(colour="red"),  # a field it does not know
        lambda s: s["cameras"]["rs-1-1"].update(epoch=3.5),  # not an int
        lambda s: s["cameras"]["rs-1-1"].update(host="rs 1"),  # an id outside the config's
        lambda s: s.update(other={"x": {"id": "a", "home": "b"}}),  # camera-like, elsewhere
        lambda s: s["cameras"].clear(),
    ],
    ids=["unknown field", "float epoch", "odd id", "camera-like elsewhere", "no cameras"],
)
def test_a_snapshot_the_camera_pattern_does_not_fit_takes_the_way_of_the_dicts(
    change: Any,
) -> None:
    snapshot = _as_pydantic_writes_it(_snapshot("rs-1", "rs-2", "rs-3"))
    change(snapshot)
    raw = json.dumps(snapshot, separators=(",", ":")).encode()
    assert views._cameras_cut_out(raw) is None
    assert _written(raw, [], {}) == _dumped(raw, [], {})
