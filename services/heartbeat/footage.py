"""Footage on one recording server (R9): list segments, serve chunks, pull a segment home
and verify it, drop a copy the home server has verified.

A pulled segment is written beside its final name as ``.<name>.part`` at the offsets
of its chunks and renamed into place only once its size and SHA-256 match; so what
is already home stays playable while footage arrives, and a kill at any moment leaves
at worst a ``.part`` file that the next attempt overwrites. Every verified arrival is
recorded in the server's ledger (SQLite) once its rename is durable, and before the host
may delete its copy; arrivals recorded while a commit is under way share the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import ParamSpec, TypeVar

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
ROWS_PER_COMMIT = 500
"""At most this many ledger rows in one statement (6 parameters each; SQLite allows 32,766)."""
DISK_THREADS_MIN = 4
"""Threads for sync's file work at least; as many as segments in flight if more, since
each verified segment waits on its fsyncs there."""

T = TypeVar("T")
P = ParamSpec("P")
Row = tuple[str, str, str | None, int, str, str]


class ChunkError(Exception):
    """A chunk could not be read from the source, or kept failing its check."""


class SegmentMismatchError(Exception):
    """Every chunk passed its check, but the whole segment does not match its SHA-256."""


class ReceivedLedger:
    """The segments this server received and verified, kept across restarts."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._waiting: list[tuple[Row, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> ReceivedLedger:
        """Open (or create) the ledger file."""
        return cls(
            await open_database(
                path,
                "CREATE TABLE IF NOT EXISTS received (camera TEXT, name TEXT, sha256 TEXT, "
                "size INTEGER, source TEXT, verified_at TEXT, PRIMARY KEY (camera, name))",
                autocommit=True,
            )
        )

    async def has(self, camera: str, name: str, sha256: str) -> bool:
        """Whether this exact segment was received and verified."""
        query = "SELECT 1 FROM received WHERE camera = ? AND name = ? AND sha256 = ?"
        async with self._db.execute(query, (camera, name, sha256)) as rows:
            return await rows.fetchone() is not None

    async def record(self, camera: str, segment: Segment, source: str) -> None:
        """Remember a verified arrival, durably: returns once its row is committed.

        Call it only once the segment's file is in place and its rename durable (a row
        is what lets the host drop its copy). Rows recorded while a commit is under way
        share the next commit, so segments arriving together pay one fsync; a commit
        that fails is retried row by row, so each caller gets its own row's outcome."""
        if self._closed:
            raise ConnectionError("ledger closed: the row was not committed")
        row = (camera, segment.name, segment.sha256, segment.size, source, _now())
        committed = asyncio.get_running_loop().create_future()
        self._waiting.append((row, committed))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._commit_waiting(), name="ledger-writer")
        # Shielded: a caller that gives up leaves its row to be committed with the rest.
        await asyncio.shield(committed)

    async def _commit_waiting(self) -> None:
        batch: list[tuple[Row, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch = self._waiting[:ROWS_PER_COMMIT]
                del self._waiting[:ROWS_PER_COMMIT]
                try:
                    await self._insert([row for row, _ in batch])
                except sqlite3.OperationalError as exc:  # the database's own (busy, full)
                    for _, committed in batch:  # every row would wait and fail alike
                        _settle(committed, sqlite3.OperationalError(str(exc)))
                except Exception:  # noqa: BLE001 (a bad row: row by row)
                    for row, committed in batch:
                        try:
                            await self._insert([row])
                        except Exception as exc:  # noqa: BLE001 (this row's own error)
                            _settle(committed, exc)
                        else:
                            _settle(committed, None)
                else:
                    for _, committed in batch:
                        _settle(committed, None)
                batch = []
        finally:  # cancelled (the agent stops): nobody may wait for ever
            for _, committed in [*batch, *self._waiting]:
                reason = "ledger closed while this row was being committed: outcome unknown"
                _settle(committed, ConnectionError(reason))
            self._waiting = []

    async def _insert(self, rows: list[Row]) -> None:
        """One statement, so one transaction (autocommit): all the rows or none."""
        values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
        await self._db.execute(
            f"INSERT OR REPLACE INTO received VALUES {values}",  # noqa: S608 (placeholders only)
            [field for row in rows for field in row],
        )

    async def close(self) -> None:
        """Let the commit under way finish, then close the database."""
        self._closed = True
        if self._writer is not None:
            await asyncio.wait([self._writer])  # its outcome went to its callers
        await self._db.close()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _settle(committed: asyncio.Future[None], error: Exception | None) -> None:
    if committed.done():
        return
    if error is None:
        committed.set_result(None)
    else:
        committed.set_exception(error)
        committed.exception()  # read: a caller that gave up never will (no warning)


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
        self._disk: ThreadPoolExecutor | None = None

    async def open(self, ledger_path: Path) -> None:
        """Open the received-segments ledger; drop partial segments an earlier run left."""
        # Sync's own threads for file work: in the shared default pool, segments waiting
        # on their fsyncs would hold up the recorder's writes and the storage probe
        # (whose delay delays failure detection), and queue behind them. Started on demand.
        self._disk = ThreadPoolExecutor(
            max(DISK_THREADS_MIN, self.settings.segments_in_flight),
            thread_name_prefix=f"footage-{self.server_id}",
        )
        self._ledger = await ReceivedLedger.open(ledger_path)
        with contextlib.suppress(OSError):
            await self._on_disk(_remove_partials, self.recording_dir)

    async def close(self) -> None:
        """Close the ledger; let the file threads go once their work is done."""
        try:
            if self._ledger is not None:
                await self._ledger.close()
        finally:
            if self._disk is not None:
                self._disk.shutdown(wait=False)

    async def _on_disk(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking file work on sync's threads (an OSError once closed)."""
        if self._disk is None:
            raise OSError("footage store not open")
        loop = asyncio.get_running_loop()
        try:
            done = loop.run_in_executor(self._disk, partial(work, *args, **kwargs))
        except RuntimeError as exc:  # shut down: a request outlived close()
            raise OSError(f"footage store closed: {exc}") from exc
        return await done

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
            found = await self._on_disk(
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
        try:  # hashed in the thread too: 256 KiB is a third of a millisecond of event loop
            body, sha256 = await self._on_disk(_read_at, path, request.offset, request.length)
        except OSError as exc:
            return b"", {"error": f"cannot read {request.name}: {exc.strerror or exc}"}
        headers = {"sha256": sha256}
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
            dropped = await self._on_disk(_unlink_if, path, request.sha256)
        except FileNotFoundError:
            return DropResult(ok=True, reason="already gone")
        except OSError as exc:
            return DropResult(ok=False, reason=f"cannot read {request.name}: {exc.strerror or exc}")
        if not dropped:
            return DropResult(ok=False, reason="copy here differs from the verified one: kept")
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
        # The file first: a segment not home yet (the usual case) needs no ledger query.
        if final.exists() and await self._ledger.has(camera, seg.name, seg.sha256):
            return FetchResult(ok=True, already=True)
        try:
            refetched = await self._receive(request, final)
        except ChunkError as exc:
            return FetchResult(ok=False, reason=str(exc))
        except OSError as exc:
            return FetchResult(ok=False, reason=f"storage: {exc.strerror or exc}")
        if refetched is None:
            return FetchResult(ok=False, reason="segment failed its check")
        return await self._recorded(request, refetched)

    async def _recorded(self, request: FetchSegment, refetched: int) -> FetchResult:
        """Only now, with the file's rename durable: the row lets the host drop its copy.
        A row not committed leaves the host's copy where it is."""
        assert self._ledger is not None
        try:
            await self._ledger.record(request.camera, request.segment, request.source)
        except (sqlite3.Error, ValueError, ConnectionError) as exc:
            return FetchResult(ok=False, reason=f"ledger: {exc}")
        SYNC_BYTES_RECEIVED.inc(request.segment.size)
        return FetchResult(ok=True, refetched_chunks=refetched)

    async def _receive(self, request: FetchSegment, final: Path) -> int | None:
        """Chunks into ``.<name>.part``, verified, fsynced, renamed into place, the
        directory fsynced: the chunks fetched again, or None if the whole segment failed
        its check. Each step is one call on sync's threads: the verification, the writes
        and the fsyncs of a segment that fits one chunk are a single one."""
        seg = request.segment
        assert seg.sha256 is not None
        part = final.with_name(f".{seg.name}.{uuid.uuid4().hex[:8]}.part")
        place = partial(_place_whole, part=part, final=final, segment_sha256=seg.sha256)
        placed = False
        try:
            if seg.size == 0:  # nothing to ask the source for
                await self._on_disk(place, b"", 0, hashlib.sha256(b"").hexdigest())
                refetched = 0
            elif seg.size <= self.settings.chunk_bytes:
                refetched = await self._chunk(request, 0, seg.size, place)
            else:
                await self._on_disk(_prepare, part, seg.size)
                refetched = await self._pull(request, part)
                await self._on_disk(_place_if_matches, part, final, seg.size, seg.sha256)
            placed = True
        except SegmentMismatchError:
            return None
        finally:
            if not placed:  # once placed, the .part is the segment under its own name
                with contextlib.suppress(OSError):
                    await self._on_disk(part.unlink, missing_ok=True)
        return refetched

    async def _pull(self, request: FetchSegment, part: Path) -> int:
        """Fetch every chunk into ``part`` with a bounded number in flight; count re-fetches."""
        size, step = request.segment.size, self.settings.chunk_bytes
        refetched = 0

        async def one(offset: int) -> None:
            nonlocal refetched
            store = partial(_write_at, part=part, offset=offset)
            refetched += await self._chunk(request, offset, min(step, size - offset), store)

        await for_each(range(0, size, step), self.settings.chunks_in_flight, one)
        return refetched

    async def _chunk(
        self,
        request: FetchSegment,
        offset: int,
        length: int,
        store: Callable[[bytes, int, str], bool],
    ) -> int:
        """Fetch one chunk and ``store(body, length, sha256)`` it on sync's threads, which
        checks it first (False: it failed, fetch it again); the number of re-fetches."""
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
            if await self._on_disk(store, body, length, headers.get("sha256", "")):
                return attempt
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


def _unlink_if(path: Path, sha256: str) -> bool:
    """Delete ``path`` if it holds what has ``sha256``; whether it did."""
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        return False
    path.unlink(missing_ok=True)
    return True


def _read_at(path: Path, offset: int, length: int) -> tuple[bytes, str]:
    """``length`` bytes at ``offset``, and their SHA-256."""
    with path.open("rb") as f:
        f.seek(offset)
        body = f.read(length)
    return body, hashlib.sha256(body).hexdigest()


def _chunk_ok(body: bytes, length: int, sha256: str) -> bool:
    return len(body) == length and hashlib.sha256(body).hexdigest() == sha256


def _prepare(part: Path, size: int) -> None:
    # The camera's directory only: a recording directory that is gone (a failed disk, an
    # unmounted volume) must fail the fetch, not be re-created on whatever lies beneath.
    part.parent.mkdir(exist_ok=True)
    with part.open("wb") as f:
        f.truncate(size)


def _write_at(body: bytes, length: int, sha256: str, *, part: Path, offset: int) -> bool:
    """Write a chunk that passes its check at its offset; whether it passed."""
    if not _chunk_ok(body, length, sha256):
        return False
    fd = os.open(part, os.O_WRONLY)
    try:
        _write_all(fd, body, offset)
    finally:
        os.close(fd)
    return True


def _place_whole(
    body: bytes, length: int, sha256: str, *, part: Path, final: Path, segment_sha256: str
) -> bool:
    """A segment that came as one chunk: if the chunk passes its check (else False),
    and is the segment (else SegmentMismatchError), write it and put it in place."""
    if not _chunk_ok(body, length, sha256):
        return False
    if sha256 != segment_sha256:
        raise SegmentMismatchError(final.name)
    part.parent.mkdir(exist_ok=True)  # the camera's directory only: see _prepare
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        _write_all(fd, body, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    _rename_durably(part, final)
    return True


def _place_if_matches(part: Path, final: Path, size: int, sha256: str) -> None:
    """fsync the assembled segment and put it in place if it matches its size and
    SHA-256 (else SegmentMismatchError)."""
    with part.open("rb") as f:
        data = f.read()
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise SegmentMismatchError(final.name)
        os.fsync(f.fileno())
    _rename_durably(part, final)


def _write_all(fd: int, body: bytes, offset: int) -> None:
    view = memoryview(body)
    while view:
        written = os.pwrite(fd, view, offset)
        if written == 0:
            raise OSError(errno.EIO, "no byte written")
        view, offset = view[written:], offset + written


def _rename_durably(part: Path, final: Path) -> None:
    """Rename the fsynced ``part`` into place, then fsync the directory: only then may
    the segment be recorded as home."""
    part.replace(final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_partials(recording_dir: Path) -> None:
    for part in recording_dir.glob("*/.*.part"):
        part.unlink(missing_ok=True)
