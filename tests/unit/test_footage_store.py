"""A segment pulled home counts as home only once it is durably in place (R9): its ledger
row is committed after its rename and the directory's fsync, never alongside or before;
rows arriving together share a commit, and each segment's failure is its own."""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.heartbeat.footage import FootageStore, ReceivedLedger
from shared.config import SyncSettings
from shared.messages import FetchSegment, ReadChunk, Segment

CAMERA = "c1"


def segment_of(data: bytes, i: int = 0) -> Segment:
    return Segment(
        name=f"20260101T000000.{i:06d}Z_e1.seg",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        start=datetime(2026, 1, 1, tzinfo=UTC),
    )


class ChunksOf:
    """The one bus call a fetch makes: chunk requests, answered by the host's store."""

    def __init__(self, host: FootageStore) -> None:
        self.host = host

    async def request_bytes(
        self, _subject: str, message: ReadChunk, _timeout: float
    ) -> tuple[bytes, dict[str, str]]:
        return await self.host.read_chunk(message)


async def stores(tmp_path: Path, chunk_bytes: int = 1024) -> tuple[FootageStore, FootageStore]:
    """The home server's store, pulling from the host's (``rs-2``)."""
    settings = SyncSettings(chunk_bytes=chunk_bytes)
    home = FootageStore("rs-1", tmp_path / "home", settings)
    host = FootageStore("rs-2", tmp_path / "host", settings)
    for store in (home, host):
        store.recording_dir.mkdir()  # the agent's, made at its start
    await home.open(tmp_path / "home.db")
    await host.open(tmp_path / "host.db")
    bus: Any = ChunksOf(host)
    home._bus = bus
    return home, host


def recorded_at_host(host: FootageStore, data: bytes, i: int = 0) -> Segment:
    seg = segment_of(data, i)
    (host.recording_dir / CAMERA).mkdir(parents=True, exist_ok=True)
    (host.recording_dir / CAMERA / seg.name).write_bytes(data)
    return seg


def fetch(seg: Segment) -> FetchSegment:
    return FetchSegment(source="rs-2", camera=CAMERA, segment=seg)


async def in_ledger(home: FootageStore, seg: Segment) -> bool:
    assert home._ledger is not None
    assert seg.sha256 is not None
    return await home._ledger.has(CAMERA, seg.name, seg.sha256)


@pytest.mark.parametrize("size", [0, 700, 1024, 5000], ids=["empty", "one", "exact", "many"])
async def test_a_fetched_segment_is_in_place_verified_and_recorded(
    tmp_path: Path, size: int
) -> None:
    home, host = await stores(tmp_path)
    try:
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        seg = recorded_at_host(host, data)
        result = await home.fetch(fetch(seg))
        assert result.ok, result.reason
        assert (home.recording_dir / CAMERA / seg.name).read_bytes() == data
        assert await in_ledger(home, seg)
        assert not list((home.recording_dir / CAMERA).glob(".*.part")), "a .part left behind"
        again = await home.fetch(fetch(seg))
        assert again.ok
        assert again.already
    finally:
        await home.close()
        await host.close()


@pytest.mark.parametrize("size", [700, 5000], ids=["one chunk", "many chunks"])
async def test_a_rename_not_known_durable_leaves_no_row_so_the_host_keeps_its_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """The data-loss case of the earlier group commit: a stale file of the same name is at
    home, the new one's directory fsync fails. No row may say it is home (a row is what
    lets the host drop its only copy), and the next attempt fetches it again."""
    home, host = await stores(tmp_path)
    try:
        seg = recorded_at_host(host, b"s" * size)
        (home.recording_dir / CAMERA).mkdir()
        (home.recording_dir / CAMERA / seg.name).write_bytes(b"stale")
        real_fsync = os.fsync
        failing = {"on": True}

        def fsync(fd: int) -> None:
            if failing["on"] and Path(f"/proc/self/fd/{fd}").resolve().is_dir():
                raise OSError(5, "Input/output error")
            real_fsync(fd)

        monkeypatch.setattr("services.heartbeat.footage.os.fsync", fsync)
        result = await home.fetch(fetch(seg))
        assert not result.ok
        assert "Input/output" in result.reason
        assert not await in_ledger(home, seg), "recorded as home, rename not durable"
        failing["on"] = False
        retried = await home.fetch(fetch(seg))
        assert retried.ok, retried.reason
        assert not retried.already, "counted home without being fetched again"
        assert await in_ledger(home, seg)
    finally:
        await home.close()
        await host.close()


async def test_a_segment_whose_bytes_do_not_match_its_hash_is_neither_placed_nor_recorded(
    tmp_path: Path,
) -> None:
    home, host = await stores(tmp_path)
    try:
        seg = recorded_at_host(host, b"recorded")
        (host.recording_dir / CAMERA / seg.name).write_bytes(b"changed!")
        result = await home.fetch(fetch(seg))
        assert not result.ok
        assert not (home.recording_dir / CAMERA / seg.name).exists()
        assert not await in_ledger(home, seg)
        assert not list((home.recording_dir / CAMERA).glob(".*.part"))
    finally:
        await home.close()
        await host.close()


async def test_rows_recorded_during_a_commit_share_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = await ReceivedLedger.open(tmp_path / "footage.db")
    commits: list[int] = []
    insert = ledger._insert

    async def counted(rows: list[Any]) -> None:
        commits.append(len(rows))
        await insert(rows)

    monkeypatch.setattr(ledger, "_insert", counted)
    try:
        segments = [segment_of(f"segment {i}".encode(), i) for i in range(20)]
        await asyncio.gather(*(ledger.record(CAMERA, s, "rs-2") for s in segments))
        assert sum(commits) == 20
        assert len(commits) < 20, f"one commit per row: {commits}"
    finally:
        await ledger.close()
    reopened = await ReceivedLedger.open(tmp_path / "footage.db")
    try:
        for s in segments:
            assert s.sha256 is not None
            assert await reopened.has(CAMERA, s.name, s.sha256)
    finally:
        await reopened.close()


async def test_a_row_that_cannot_be_committed_fails_its_own_caller_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = await ReceivedLedger.open(tmp_path / "footage.db")
    insert = ledger._insert

    async def refusing_bad_rows(rows: list[Any]) -> None:
        if any(row[0] == "bad" for row in rows):
            raise OSError(28, "No space left on device")
        await insert(rows)

    monkeypatch.setattr(ledger, "_insert", refusing_bad_rows)
    try:
        good = [segment_of(b"good %d" % i, i) for i in range(5)]
        bad = [segment_of(b"bad %d" % i, 10 + i) for i in range(2)]
        outcomes = await asyncio.gather(
            *(ledger.record(CAMERA, s, "rs-2") for s in good),
            *(ledger.record("bad", s, "rs-2") for s in bad),
            return_exceptions=True,
        )
        assert outcomes[:5] == [None] * 5
        errors = outcomes[5:]
        assert all(isinstance(e, OSError) for e in errors)
        assert errors[0] is not errors[1], "one exception object shared between callers"
        for s in good:
            assert s.sha256 is not None
            assert await ledger.has(CAMERA, s.name, s.sha256)
    finally:
        await ledger.close()


async def test_closing_waits_for_the_commit_under_way_and_raises_nothing(tmp_path: Path) -> None:
    ledger = await ReceivedLedger.open(tmp_path / "footage.db")
    seg = segment_of(b"last one")
    caller = asyncio.create_task(ledger.record(CAMERA, seg, "rs-2"))
    await asyncio.sleep(0)  # its commit is under way
    caller.cancel()  # the caller gives up: its row is committed all the same
    await ledger.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
    reopened = await ReceivedLedger.open(tmp_path / "footage.db")
    try:
        assert seg.sha256 is not None
        assert await reopened.has(CAMERA, seg.name, seg.sha256)
    finally:
        await reopened.close()
