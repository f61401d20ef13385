"""Footage on one recording server (R9): list segments, serve chunks, pull a segment home
and verify it, drop a copy the home server has verified.

A pulled segment is written beside its final name as ``.<name>.part`` at the offsets
of its chunks and renamed into place only once its size and SHA-256 match; so what
is already home stays playable while footage arrives, and a kill at any moment leaves
at worst a ``.part`` file that the next attempt overwrites. Every verified arrival is
recorded in the server's ledger (SQLite) before the host may delete its copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import aiosqlite

from services.heartbeat.ledger import open_database
from shared import subjects
from shared.bounded import for_each
from shared.bus import Bus
from shared.config import Retention, SyncSettings
from shared.errors import BusError
from shared.messages import (
    DropResult,
    DropSegment,
    FetchResult,
    FetchSegment,
    ListSegments,
    ReadChunk,
    Segment,
    SegmentList,
)
from shared.metrics import SYNC_BYTES_RECEIVED, SYNC_CHUNKS_REFETCHED

log = logging.getLogger(__name__)

CHUNK_TRIES = 5


class ChunkError(Exception):
    """A chunk could not be read from the source, or kept failing its check."""


class ReceivedLedger:
    """The segments this server received and verified, kept across restarts."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> ReceivedLedger:
        """Open (or create) the ledger file."""
        return cls(
            await open_database(
                path,
                "CREATE TABLE IF NOT EXISTS received (camera TEXT, name TEXT, sha256 TEXT, "
                "size INTEGER, source TEXT, verified_at TEXT, PRIMARY KEY (camera, name))",
            )
        )

    async def has(self, camera: str, name: str, sha256: str) -> bool:
        """Whether this exact segment was received and verified."""
        query = "SELECT 1 FROM received WHERE camera = ? AND name = ? AND sha256 = ?"
        async with self._db.execute(query, (camera, name, sha256)) as rows:
            return await rows.fetchone() is not None

    async def record(self, camera: str, segment: Segment, source: str) -> None:
        """Remember a verified arrival, durably."""
        await self._db.execute(
            "INSERT OR REPLACE INTO received VALUES (?, ?, ?, ?, ?, ?)",
            (
                camera,
                segment.name,
                segment.sha256,
                segment.size,
                source,
                datetime.now(UTC).isoformat(),
            ),
        )
        await self._db.commit()

    async def close(self) -> None:
        """Close the database."""
        await self._db.close()


class FootageStore:
    """The sync endpoints of one agent."""

    def __init__(self, server_id: str, recording_dir: Path, settings: SyncSettings) -> None:
        self.server_id = server_id
        self.recording_dir = recording_dir
        self.settings = settings
        self.corrupt_next_chunks = 0  # tests: damage chunk bodies in transit
        self.chunk_delay = 0.0  # tests: a slow link, seconds per chunk served
        self._ledger: ReceivedLedger | None = None
        self._bus: Bus | None = None
        self._fetching: dict[tuple[str, str], asyncio.Future[FetchResult]] = {}

    async def open(self, ledger_path: Path) -> None:
        """Open the received-segments ledger; drop partial segments an earlier run left."""
        self._ledger = await ReceivedLedger.open(ledger_path)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(_remove_partials, self.recording_dir)

    async def close(self) -> None:
        """Close the ledger."""
        if self._ledger is not None:
            await self._ledger.close()

    async def serve(self, bus: Bus) -> None:
        """Answer list, chunk, fetch and drop requests on this server's subjects."""
        self._bus = bus
        sid = self.server_id
        verb = partial(subjects.sync_request, sid)
        await bus.serve(verb("list"), ListSegments, self.list, self._no_list, concurrent=True)
        await bus.serve_bytes(verb("chunk"), ReadChunk, self.read_chunk, concurrent=True)
        await bus.serve(verb("fetch"), FetchSegment, self.fetch, _no_fetch, concurrent=True)
        await bus.serve(verb("drop"), DropSegment, self.drop, _no_drop, concurrent=True)

    # ---- the host side ----

    async def list(self, request: ListSegments) -> SegmentList:
        """Finished segments of a camera here (of one epoch, or all), oldest first."""
        try:
            found = await asyncio.to_thread(
                self._scan, request.camera, request.epoch, request.with_sha256
            )
        except OSError as exc:
            return self._no_list(f"cannot read recordings: {exc.strerror or exc}", request.camera)
        return SegmentList(server=self.server_id, camera=request.camera, segments=found)

    def _no_list(self, reason: str, camera: str = "unknown") -> SegmentList:
        return SegmentList(server=self.server_id, camera=camera, error=reason[:500])

    def _scan(self, camera: str, epoch: int | None, with_sha256: bool) -> tuple[Segment, ...]:
        if not self.recording_dir.is_dir():  # failed storage: an empty list would be a lie
            raise NotADirectoryError(f"{self.recording_dir} is not a directory")
        directory = self.recording_dir / camera
        if not directory.is_dir():
            return ()
        suffix = f"_e{epoch}.seg" if epoch is not None else ".seg"
        names = sorted(n for n in os.listdir(directory) if n.endswith(suffix) and n[0] != ".")
        found = (_describe(directory / n, with_sha256=with_sha256) for n in names)
        return tuple(seg for seg in found if seg is not None)

    async def read_chunk(self, request: ReadChunk) -> tuple[bytes, dict[str, str]]:
        """One chunk of a segment, with its SHA-256 in a header."""
        path = self.recording_dir / request.camera / request.name
        try:
            body = await asyncio.to_thread(_read_at, path, request.offset, request.length)
        except OSError as exc:
            return b"", {"error": f"cannot read {request.name}: {exc.strerror or exc}"}
        headers = {"sha256": hashlib.sha256(body).hexdigest()}
        if self.chunk_delay:
            await asyncio.sleep(self.chunk_delay)
        if self.corrupt_next_chunks > 0 and body:
            self.corrupt_next_chunks -= 1
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        return body, headers

    async def drop(self, request: DropSegment) -> DropResult:
        """Delete this server's copy once the home server verified it (retention policy)."""
        if self.settings.retention is Retention.KEEP:
            return DropResult(ok=True, reason="kept: retention is 'keep'")
        path = self.recording_dir / request.camera / request.name
        try:
            held = await asyncio.to_thread(_sha256_of, path)
        except FileNotFoundError:
            return DropResult(ok=True, reason="already gone")
        except OSError as exc:
            return DropResult(ok=False, reason=f"cannot read {request.name}: {exc.strerror}")
        if held != request.sha256:
            return DropResult(ok=False, reason="copy here differs from the verified one: kept")
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return DropResult(ok=True)

    # ---- the home side ----

    async def fetch(self, request: FetchSegment) -> FetchResult:
        """Pull one segment from its source, verify it, and put it in place.

        One pull per segment at a time: a repeated request (a retry after a time-out, a
        restarted sync service) waits for the pull under way and gets its result."""
        key = (request.camera, request.segment.name)
        running = self._fetching.get(key)
        if running is None:
            running = asyncio.ensure_future(self._fetch_once(request))
            self._fetching[key] = running
            running.add_done_callback(lambda _: self._fetching.pop(key, None))
        return await asyncio.shield(running)

    async def _fetch_once(self, request: FetchSegment) -> FetchResult:
        assert self._ledger is not None
        seg, camera = request.segment, request.camera
        if seg.sha256 is None:
            return FetchResult(ok=False, reason="segment without its SHA-256: cannot verify it")
        final = self.recording_dir / camera / seg.name
        if await self._ledger.has(camera, seg.name, seg.sha256) and final.exists():
            return FetchResult(ok=True, already=True)
        try:
            refetched = await self._receive(request, final)
        except ChunkError as exc:
            return FetchResult(ok=False, reason=str(exc))
        except OSError as exc:
            return FetchResult(ok=False, reason=f"storage: {exc.strerror or exc}")
        if refetched is None:
            return FetchResult(ok=False, reason="segment failed its check")
        await self._ledger.record(camera, seg, request.source)
        SYNC_BYTES_RECEIVED.inc(seg.size)
        return FetchResult(ok=True, refetched_chunks=refetched)

    async def _receive(self, request: FetchSegment, final: Path) -> int | None:
        """Chunks into ``.<name>.part``, verified, renamed into place: the chunks fetched
        again, or None if the whole segment failed its check."""
        seg = request.segment
        part = final.with_name(f".{seg.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            await asyncio.to_thread(_prepare, part, seg.size)
            refetched = await self._pull(request, part)
            if not await asyncio.to_thread(_matches, part, seg):
                return None
            await asyncio.to_thread(_commit, part, final)
            return refetched
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(part.unlink, missing_ok=True)  # gone once committed

    async def _pull(self, request: FetchSegment, part: Path) -> int:
        """Fetch every chunk into ``part`` with a bounded number in flight; count re-fetches."""
        size, step = request.segment.size, self.settings.chunk_bytes
        refetched = 0

        async def one(offset: int) -> None:
            nonlocal refetched
            body, bad = await self._chunk(request, offset, min(step, size - offset))
            refetched += bad
            await asyncio.to_thread(_write_at, part, offset, body)

        await for_each(range(0, size, step), self.settings.chunks_in_flight, one)
        return refetched

    async def _chunk(self, request: FetchSegment, offset: int, length: int) -> tuple[bytes, int]:
        assert self._bus is not None
        ask = ReadChunk(
            camera=request.camera, name=request.segment.name, offset=offset, length=length
        )
        subject = subjects.sync_request(request.source, "chunk")
        for attempt in range(CHUNK_TRIES):
            try:
                body, headers = await self._bus.request_bytes(
                    subject, ask, self.settings.request_timeout
                )
            except BusError as exc:
                raise ChunkError(f"source {request.source} unreachable: {exc}") from exc
            if "error" in headers:
                raise ChunkError(f"source {request.source}: {headers['error']}")
            if len(body) == length and hashlib.sha256(body).hexdigest() == headers.get("sha256"):
                return body, attempt
            SYNC_CHUNKS_REFETCHED.inc()
            log.warning("chunk %d of %s/%s failed its check; re-fetching", offset, *_id(request))
        raise ChunkError(f"chunk at {offset} failed its check {CHUNK_TRIES} times")


def _id(request: FetchSegment) -> tuple[str, str]:
    return request.camera, request.segment.name


def _no_fetch(reason: str) -> FetchResult:
    return FetchResult(ok=False, reason=reason)


def _no_drop(reason: str) -> DropResult:
    return DropResult(ok=False, reason=reason)


def _describe(path: Path, *, with_sha256: bool) -> Segment | None:
    """The segment, or None for a stray file whose name is not a segment's."""
    stamp = path.name.split("_e", 1)[0]
    try:
        start = datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        log.warning("ignoring %s: not a segment name", path)
        return None
    if not with_sha256:
        return Segment(name=path.name, size=path.stat().st_size, start=start)
    data = path.read_bytes()
    return Segment(
        name=path.name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), start=start
    )


def _sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_at(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(length)


def _prepare(part: Path, size: int) -> None:
    # The camera's directory only: a recording directory that is gone (a failed disk, an
    # unmounted volume) must fail the fetch, not be re-created on whatever lies beneath.
    part.parent.mkdir(exist_ok=True)
    with part.open("wb") as f:
        f.truncate(size)


def _write_at(part: Path, offset: int, body: bytes) -> None:
    fd = os.open(part, os.O_WRONLY)
    try:
        os.pwrite(fd, body, offset)
    finally:
        os.close(fd)


def _matches(part: Path, segment: Segment) -> bool:
    data = part.read_bytes()
    return len(data) == segment.size and hashlib.sha256(data).hexdigest() == segment.sha256


def _commit(part: Path, final: Path) -> None:
    """fsync the verified file, rename it into place, fsync the directory."""
    with part.open("rb") as f:
        os.fsync(f.fileno())
    part.replace(final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_partials(recording_dir: Path) -> None:
    for part in recording_dir.glob("*/.*.part"):
        part.unlink(missing_ok=True)
