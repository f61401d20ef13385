"""Footage comes home through ``blaze up`` while the sync service, a sending agent and the
receiving agent are killed with SIGKILL mid-transfer (R9)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import BlazeUp, Status
from tests.integration.cluster import all_home, cameras_of, server

SYNC_CONFIG = """
[timing]
heartbeat_interval = 0.2
network_timeout = 5.0
storage_probe_interval = 0.2
segment_seconds = 0.02

[sync]
chunk_bytes = 1024
segments_in_flight = 1
retry_seconds = 0.2

[[server]]
id = "rs-1"
capacity = 2
[[server]]
id = "rs-2"
capacity = 3
[[server]]
id = "rs-3"
capacity = 3

[[camera]]
id = "c11"
home = "rs-1"
[[camera]]
id = "c12"
home = "rs-1"
[[camera]]
id = "c21"
home = "rs-2"
[[camera]]
id = "c31"
home = "rs-3"
"""
AWAY = ("c11", "c12")


class SyncCluster(BlazeUp):
    """``blaze up`` with fast segments and a slow, chunked sync."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.config.write_text(SYNC_CONFIG)

    def recordings(self, sid: str) -> Path:
        return self.data / "servers" / sid / "recordings"

    def sync_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.ok("sync", "--json"))
        return doc

    def until(self, probe: Any, within: float, what: str) -> Any:
        deadline = time.monotonic() + within
        while not (value := probe()):
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within} s: {what}")
            time.sleep(0.1)
        return value


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SyncCluster]:
    up = SyncCluster(tmp_path)
    try:
        up.start()
        yield up
    finally:
        up.stop()


def _footage(up: SyncCluster, hosts: dict[str, str]) -> dict[str, dict[str, str]]:
    """{camera: {segment: sha256}} on the hosts; a segment sync deletes meanwhile is left out."""
    found: dict[str, dict[str, str]] = {}
    for cam, host in hosts.items():
        found[cam] = {}
        for path in sorted((up.recordings(host) / cam).glob("*.seg")):
            with contextlib.suppress(FileNotFoundError):
                found[cam][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _pid(doc: Status, name: str) -> int:
    pid = next(s["pid"] for s in doc["services"] if s["name"] == name)
    assert pid, f"{name} is not running"
    return int(pid)


def test_r9_footage_comes_home_through_sigkills_of_sync_sender_and_receiver(
    cluster: SyncCluster,
) -> None:
    """R9: SIGKILL of the sync service, a sender and the receiver mid-transfer; every
    segment recorded away ends up at home byte-identical, and the hosts let go of it."""
    cluster.wait(all_home, 60, "every camera home")
    cluster.ok("sim", "storage-fail", "rs-1")
    doc = cluster.wait(
        lambda s: all(c["state"] == "failed_over" for c in cameras_of(s, "rs-1")),
        20,
        "rs-1's cameras failed over",
    )
    hosts = {c["id"]: c["host"] for c in cameras_of(doc, "rs-1")}
    cluster.until(
        lambda: min(len(v) for v in _footage(cluster, hosts).values()) >= 100,
        30,
        "100 segments per camera recorded away from home",
    )
    cluster.ok("sim", "storage-repair", "rs-1")
    cluster.wait(lambda s: server(s, "rs-1")["storage"] == "ok", 20, "rs-1 storage ok")
    before = _footage(cluster, hosts)  # taken before sync can start deleting host copies
    cluster.ok("failback", "rs-1")
    doc = cluster.wait(all_home, 30, "rs-1's cameras home")

    def under_way() -> bool:
        return any(0 < j["segments_done"] < j["segments_total"] for j in cluster.sync_doc()["jobs"])

    cluster.until(under_way, 30, "a sync job under way")
    os.kill(_pid(doc, "sync"), signal.SIGKILL)
    sender = sorted(set(hosts.values()))[0]
    cluster.ok("sim", "kill", sender)
    cluster.ok("sim", "kill", "rs-1")
    cluster.ok("sim", "start", sender)
    cluster.ok("sim", "start", "rs-1")

    def all_synced() -> bool:
        # The killed sender's own cameras may have failed over too (R2: it was silent
        # for network_timeout while four commands ran on a loaded machine), and then
        # have a job of their own.
        jobs = cluster.sync_doc()["jobs"]
        return {j["camera"] for j in jobs} >= set(AWAY) and all(
            j["state"] == "completed" for j in jobs
        )

    cluster.until(all_synced, 90, "every sync job completed")
    for cam, segments in before.items():
        home = cluster.recordings("rs-1") / cam
        for name, sha in segments.items():
            assert hashlib.sha256((home / name).read_bytes()).hexdigest() == sha, (cam, name)
    assert _footage(cluster, hosts) == {cam: {} for cam in hosts}, "hosts kept copies"
    for cam in AWAY:
        timeline = json.loads(cluster.ok("timeline", cam, "--json"))
        assert {r["server"] for r in timeline["ranges"]} == {"rs-1"}
    assert "sync (pid" in cluster.log(), "the supervisor restarted the killed sync service"
