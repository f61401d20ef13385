"""Maintenance mode and the what-if view on a real nats-server (issue 6): drain moves a
server's cameras away by the placement rules, undrain brings them home; the what-if
prediction equals what placement then does (R4, R5, R8)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.cli.views import whatif_document
from services.placement.state import Placement
from shared.messages import DrainCompleted, ServerDrained, ServerUndrained
from tests.helpers import eventually
from tests.integration.cluster import (
    Status,
    all_home,
    camera,
    cameras_of,
    make_config,
    server,
    settled,
)
from tests.integration.conftest import StartCluster

CAMERAS = {"a": "rs-1", "b": "rs-1", "c": "rs-1", "d": "rs-2"}


def _drained_and_empty(doc: Status) -> bool:
    rs1 = server(doc, "rs-1")
    return rs1["drained"] is True and rs1["hosting"] == 0


async def test_drain_moves_cameras_away_and_undrain_brings_them_home(
    start_cluster: StartCluster,
) -> None:
    """Issue 6: `drain` is logged with who asked; rs-1's cameras record elsewhere, none
    above capacity; a second drain is refused with a reason; `undrain` brings them home."""
    cluster = await start_cluster(make_config({"rs-1": 3, "rs-2": 3, "rs-3": 2}, CAMERAS))
    await cluster.wait_status(all_home, 20, "every camera recording at home")
    reply = await cluster.drain("rs-1")
    assert reply.ok, reply.reason
    assert "3 cameras to move" in reply.reason
    doc = await cluster.wait_status(_drained_and_empty, 10, "rs-1 drained and empty")
    assert sorted(camera(doc, c)["host"] for c in "abc") == ["rs-2", "rs-2", "rs-3"]
    recorders = await eventually(
        cluster.recording_now, lambda r: not r["rs-1"], 5, "rs-1 records nothing"
    )
    for sid in ("rs-2", "rs-3"):
        assert set(recorders[sid]) == {c["id"] for c in doc["cameras"] if c["host"] == sid}
    log = [e for _, e in await cluster.events()]
    assert [(e.server, e.by) for e in log if isinstance(e, ServerDrained)] == [("rs-1", "admin")]
    assert [(e.server, e.cameras_left) for e in log if isinstance(e, DrainCompleted)] == [
        ("rs-1", 0)
    ]
    again = await cluster.drain("rs-1")
    assert not again.ok
    assert again.reason == "rs-1 is already drained"
    unknown = await cluster.drain("rs-9")
    assert (unknown.ok, unknown.reason) == (False, "unknown server 'rs-9'")

    reply = await cluster.drain("rs-1", undrain=True)
    assert reply.ok, reply.reason
    await cluster.wait_status(all_home, 15, "rs-1's cameras home after undrain")
    assert not server(await cluster.status(), "rs-1")["drained"]
    assert sorted(cluster.recorders()["rs-1"]) == ["a", "b", "c"]
    log = [e for _, e in await cluster.events()]
    assert [e.server for e in log if isinstance(e, ServerUndrained)] == ["rs-1"]
    refused = await cluster.drain("rs-1", undrain=True)
    assert (refused.ok, refused.reason) == (False, "rs-1 is not drained")


async def test_whatif_predicts_what_placement_then_does(start_cluster: StartCluster) -> None:
    """Issue 6: the what-if answer, computed before rs-1's storage fails, is exactly where
    its cameras end up (moves and Pending) once placement has decided and agents claimed."""
    cams = {f"c1{i}": "rs-1" for i in range(5)} | {"c21": "rs-2", "c31": "rs-3"}
    cluster = await start_cluster(make_config({"rs-1": 5, "rs-2": 3, "rs-3": 2}, cams))
    await cluster.wait_status(all_home, 20, "every camera recording at home")
    assert cluster.bus is not None
    snapshot = await cluster.bus.read_state()
    assert snapshot is not None
    predicted = whatif_document(Placement.model_validate_json(snapshot[0]), "rs-1")
    expected = {m["camera"]: m["to"] for m in predicted["moves"]}
    expected |= {p["camera"]: None for p in predicted["pending"]}
    assert len(expected) == 5, predicted
    assert list(expected.values()).count(None) == 2, predicted  # 3 free channels for 5
    timed = REGISTRY.get_sample_value("blaze_failover_seconds_count", {"cause": "storage"}) or 0
    cluster.fail_storage("rs-1")
    doc = await cluster.wait_status(
        lambda s: server(s, "rs-1")["state"] == "storage_failed" and settled(s, "rs-1"),
        10,
        "rs-1 failed, its cameras settled",
    )
    assert {c["id"]: c["host"] for c in cameras_of(doc, "rs-1")} == expected

    # R13 metrics, from placement in this process: the failover was timed, Pending counted.
    async def timed_failovers() -> float:
        count = REGISTRY.get_sample_value("blaze_failover_seconds_count", {"cause": "storage"})
        return count or 0

    await eventually(timed_failovers, lambda n: n == timed + 1, 5, "the failover timed once")
    assert REGISTRY.get_sample_value("blaze_cameras_pending") == 2
