"""The sync service (R9): brings footage recorded away from home back after a failback.

It folds the event log into stints (``stints.py``); every closed stint away from
home becomes a durable job in the ``blaze_sync`` bucket once its home server has
failed back. That includes *possible* stints: a move planned away from home that was
superseded without a ``camera_moved`` (its claim's answer lost, or confirmed too late)
may still have left footage on that host; its job lists what is there, perhaps
nothing, and completes. Jobs of one home run oldest footage first; a party that does
not answer makes every job of the pass that needs it wait (one time-out per pass), so
a source dead for good holds up none of the home's other jobs.

A job is carried out segment by segment: the host lists what it holds
of that stint, the home agent pulls each segment chunk by chunk straight from the
host and verifies it, then the host drops its copy (unless retention is ``keep``).
Progress lives in the home agent's ledger, so a kill of any party resumes at the
first segment not yet verified at home, and nothing arrives twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from services.sync.jobs import about, away_jobs, fetch_timeout, resume
from services.sync.stints import Stint, StintLog
from shared import subjects
from shared.bounded import cancel_all, for_each, raise_if_cancelled
from shared.bus import Access, Bus
from shared.config import ClusterConfig, Retention
from shared.errors import BusError, WriteConflictError
from shared.lease import ReplicatedService, Term
from shared.messages import (
    DropResult,
    DropSegment,
    FetchResult,
    FetchSegment,
    JobState,
    ListSegments,
    Message,
    Segment,
    SegmentList,
    ServerFailed,
    SyncCompleted,
    SyncFailed,
    SyncJob,
    SyncProgress,
    SyncStarted,
)
from shared.metrics import SYNC_BYTES, SYNC_JOBS, SYNC_LAG_SECONDS, SYNC_SEGMENTS

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0

R = TypeVar("R", bound=Message)


class JobBlockedError(Exception):
    """A job cannot go on now (a party unreachable, a check failed); it is retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServerUnreachableError(JobBlockedError):
    """A party did not answer: every job of the same pass that needs ``server`` waits too,
    without asking it again (a source dead for good costs one time-out per pass, not one
    per job, and never holds up the home's other sources)."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(reason)
        self.server = server


class SyncService(ReplicatedService):
    """The one decider of which footage goes home, and the driver of its transfer."""

    SERVICE = "sync"
    DESCRIPTION = "footage back home after failback (R9)"

    def __init__(
        self,
        config: ClusterConfig,
        nats_url: str,
        replica: str | None = None,
        access: Access | None = None,
    ) -> None:
        super().__init__(config, nats_url, replica, access)
        self.settings = config.sync
        self._servers = frozenset(s.id for s in config.servers)
        self._cameras = frozenset(c.id for c in config.cameras)
        # Footage this replica brought home since it started, for its ``status`` (R13).
        self.segments_moved = 0
        self.bytes_moved = 0
        self._forget()

    def _forget(self) -> None:
        """Nothing from an earlier term is trusted: jobs come from KV, stints from the log."""
        self.stints = StintLog.empty()
        self.jobs: dict[str, SyncJob] = {}
        self.stint_of: dict[str, Stint] = {}
        self._revisions: dict[str, int] = {}
        self._attempted: dict[str, list[bytes]] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._progress_at: dict[str, float] = {}

    async def lead(self, term: Term) -> None:
        """One term as leader: jobs from KV, stints from the whole log, then carry on (R12)."""
        assert self._bus is not None
        self._forget()
        try:
            await self._load_jobs(self._bus)
            await self._fold_loop(self._bus)
        finally:
            await cancel_all(self._runners.values())
            SYNC_JOBS.clear()  # only a leader knows; a standby reports nothing
            SYNC_LAG_SECONDS.clear()

    def counters(self) -> dict[str, Any]:
        """Footage moved by this replica; while it leads, its jobs by state."""
        jobs = {}
        if self.leading:
            jobs = {state.value: n for state, n in self._jobs_by_state().items()}
        return {
            "segments_moved": self.segments_moved,
            "bytes_moved": self.bytes_moved,
            "jobs": jobs,
            "homes_syncing": sorted(h for h, r in self._runners.items() if not r.done()),
        }

    # ---- the log and the jobs ----

    async def _load_jobs(self, bus: Bus) -> None:
        for key, (raw, revision) in (await bus.read_records("job.")).items():
            self._revisions[key] = revision
            try:
                self.jobs[key] = SyncJob.model_validate_json(raw)
            except ValidationError as exc:
                log.warning("sync job %s unreadable, left aside: %s", key, exc.errors()[0]["msg"])
        log.info("sync resumed with %d jobs", len(self.jobs))

    async def _fold_loop(self, bus: Bus) -> None:
        caught_up_at = await bus.last_event_seq()
        if caught_up_at == 0:
            await self._reconcile_and_save()
        async with contextlib.aclosing(bus.events()) as log_events:
            async for seq, event in log_events:
                if event is not None and self._configured(event):
                    home = self.stints.apply(event)
                    if seq > caught_up_at:
                        await self._react_safely(event, home)
                if seq == caught_up_at:
                    await self._reconcile_and_save()
                    log.info("caught up with the log at %d; %d jobs open", seq, self._open())

    def _configured(self, event: Message) -> bool:
        """Only events about configured servers and cameras become stints and jobs: a
        forged or stale event naming strangers must not become footage fetched for ever."""
        named = (getattr(event, name, None) for name in ("server", "to", "from_host", "home"))
        if any(sid is not None and sid not in self._servers for sid in named):
            log.debug("event %s names a server not in the config: skipped", event)
            return False
        camera = getattr(event, "camera", None)
        if camera is not None and camera not in self._cameras:
            log.debug("event %s names a camera not in the config: skipped", event)
            return False
        return True

    async def _react_safely(self, event: Message, home: str | None) -> None:
        """A failure to react (the bus down for a moment) must not end the fold: the next
        failback or restart reconciles what was missed."""
        try:
            await self._react(event, home)
        except (BusError, TimeoutError) as exc:
            log.warning("could not act on %s now: %s", getattr(event, "type", "?"), exc)

    async def _react(self, event: Message, home: str | None) -> None:
        """Live events: a failback opens jobs, a failure of a home pauses its jobs."""
        if home is not None:
            await self._reconcile_and_save()
        if isinstance(event, ServerFailed) and self._open_jobs(event.server):
            runner = self._runners.get(event.server)
            if runner is not None:
                runner.cancel()
                await asyncio.wait([runner], timeout=self.settings.request_timeout)
                if runner.done():  # else the term's end cancels it again: never untracked
                    self._runners.pop(event.server, None)
            await self._pause_home(event.server, f"home server {event.server} failed again")

    def _reconcile(self) -> list[SyncJob]:
        """Level-triggered: a job for every away stint of a ready home; return new ones."""
        created = []
        for key, (job, stint) in away_jobs(self.stints).items():
            self.stint_of[key] = stint
            if key not in self.jobs and self.stints.ready(stint.home):
                self.jobs[key] = job
                created.append(job)
        return created

    async def _reconcile_and_save(self) -> None:
        for job in self._reconcile():
            await self._save(job)
        homes = {j.home for j in self.jobs.values() if j.state is not JobState.COMPLETED}
        for home in sorted(homes):
            if self.stints.ready(home):
                self._start_runner(home)
            else:
                await self._pause_home(home, f"home server {home} is not back yet")
        self._count()

    async def _save(self, job: SyncJob) -> None:
        assert self._bus is not None
        self.jobs[job.key] = job
        value = job.model_dump_json().encode()
        attempted = self._attempted.setdefault(job.key, [])
        attempted[:] = [*attempted[-2:], value]  # noted before the write: its answer may be lost
        try:
            self._revisions[job.key] = await self._bus.write_record(
                job.key, value, self._revisions.get(job.key)
            )
        except WriteConflictError:
            # Our own write whose answer was lost (a cancelled runner) is fine to build on;
            # anybody else's write means another sync service decides: stop.
            current = await self._bus.read_records(job.key)
            stored, revision = current.get(job.key, (b"", 0))
            if stored not in attempted:
                if not self.leading:
                    raise
                # A deposed leader wrote last, before it noticed.
                log.warning("sync job %s was written by a deposed leader", job.key)
                if self._adopt_if_further(job, stored, revision):
                    return
                value = self.jobs[job.key].model_dump_json().encode()
            self._revisions[job.key] = await self._bus.write_record(job.key, value, revision)

    def _adopt_if_further(self, job: SyncJob, stored: bytes, revision: int) -> bool:
        """A deposed leader's record that completed the job is kept; otherwise ours is
        written, with the further of the two progress counts (our state and reason:
        a pause stays a pause). Nothing is lost either way: what is home is in the home
        agent's ledger, re-read at every resume."""
        try:
            theirs = SyncJob.model_validate_json(stored)
        except ValidationError:
            return False
        if theirs.state is JobState.COMPLETED:
            self.jobs[job.key] = theirs
            self._revisions[job.key] = revision
            return True
        if theirs.segments_done > job.segments_done:
            job = job.model_copy(
                update={"segments_done": theirs.segments_done, "bytes_done": theirs.bytes_done}
            )
            self.jobs[job.key] = job
        return False

    async def _pause_home(self, home: str, reason: str) -> None:
        for job in self._open_jobs(home):
            if job.state is not JobState.PAUSED:
                await self._save(
                    job.model_copy(update={"state": JobState.PAUSED, "reason": reason})
                )
                await self._failed(job, reason, paused=True)
        self._count()

    def _open(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state is not JobState.COMPLETED)

    def _open_jobs(self, home: str) -> list[SyncJob]:
        return sorted(
            (j for j in self.jobs.values() if j.home == home and j.state is not JobState.COMPLETED),
            key=lambda j: (self._started(j), j.key),
        )

    def _started(self, job: SyncJob) -> datetime:
        stint = self.stint_of.get(job.key)
        return stint.start if stint is not None else datetime.min.replace(tzinfo=UTC)

    # ---- carrying out jobs, one runner per home server ----

    def _start_runner(self, home: str) -> None:
        runner = self._runners.get(home)
        if runner is None or runner.done():
            runner = asyncio.create_task(self._run_home(home), name=f"sync-{home}")
            runner.add_done_callback(_report_end)
            self._runners[home] = runner

    async def _run_home(self, home: str) -> None:
        """Work through the home's open jobs, oldest footage first; retry what cannot go on."""
        while True:
            while self._open_jobs(home):
                raise_if_cancelled()
                try:
                    waiting = await self._run_open_jobs(home)
                except Exception:
                    raise_if_cancelled()  # the error came from a cancel being handled
                    log.exception("sync to %s stumbled; retrying", home)
                    waiting = True
                self._count()
                if waiting:
                    await asyncio.sleep(self.settings.retry_seconds)
            SYNC_LAG_SECONDS.labels(server=home).set(0)
            await self._progress(home, force=True)
            if not self._open_jobs(home):  # a job may have come while that was published
                return

    async def _run_open_jobs(self, home: str) -> bool:
        """One pass over the home's open jobs; True if some must wait and be retried."""
        waiting = False
        unreachable: dict[str, str] = {}  # this pass: server -> why
        for job in self._open_jobs(home):
            asked = (unreachable[p] for p in (job.home, job.source) if p in unreachable)
            blocked = next(asked, None)  # a party that did not answer is not asked again
            if blocked is None:
                try:
                    await self._run_job(job)
                except JobBlockedError as stop:
                    if isinstance(stop, ServerUnreachableError):
                        unreachable[stop.server] = stop.reason
                    blocked = stop.reason
                else:
                    continue
            current = self.jobs[job.key]
            if blocked != current.reason:
                await self._save(current.model_copy(update={"reason": blocked}))
                await self._failed(current, blocked, paused=False)
            waiting = True
        return waiting

    async def _run_job(self, job: SyncJob) -> None:
        started = time.monotonic()
        held = await self._list(job)
        log.info(
            "%s: %d segments to bring home from %s",
            job.key,
            len(held),
            job.source,
            extra=_ids(job),
        )
        job = await self._resume(job, held)
        job, refetched = await self._move_segments(job, held)
        job = job.model_copy(update={"state": JobState.COMPLETED, "reason": ""})
        await self._save(job)
        await self._publish(
            SyncCompleted(
                **about(job),
                segments=job.segments_done,
                bytes=job.bytes_done,
                refetched_chunks=refetched,
                seconds=round(time.monotonic() - started, 3),
            ),
            f"sync-completed-{job.key}",
        )

    async def _resume(self, job: SyncJob, held: list[Segment]) -> SyncJob:
        first_run = job.state is JobState.QUEUED
        job = resume(job, held)
        await self._save(job)
        if first_run:
            started = SyncStarted(**about(job), segments=job.segments_total, bytes=job.bytes_total)
            await self._publish(started, f"sync-started-{job.key}")
        return job

    async def _list(self, job: SyncJob) -> list[Segment]:
        held = await self._ask(
            job.source,
            "list",
            ListSegments(camera=job.camera, epoch=job.epoch),
            SegmentList,
        )
        if held.error:
            raise JobBlockedError(f"source {job.source}: {held.error}")
        return list(held.segments)

    async def _move_segments(self, job: SyncJob, held: list[Segment]) -> tuple[SyncJob, int]:
        """Fetch (home pulls and verifies) then drop (host deletes), a few segments at once.

        With retention ``keep`` the source lists what is home already too; the home answers
        those at once (``already``) and they count as done without a transfer."""
        keep = self.settings.retention is Retention.KEEP
        done = 0 if keep else job.segments_done
        moved_bytes = 0 if keep else job.bytes_done
        refetched = 0

        async def one(segment: Segment) -> None:
            nonlocal done, moved_bytes, refetched
            fetched = await self._ask(
                job.home,
                "fetch",
                FetchSegment(source=job.source, camera=job.camera, segment=segment),
                FetchResult,
                timeout=fetch_timeout(self.settings, segment),
            )
            if not fetched.ok:
                raise JobBlockedError(f"home {job.home}: {fetched.reason}")
            refetched += fetched.refetched_chunks
            assert segment.sha256 is not None  # listed with hashes; fetch verified it
            if not self.leading:
                raise JobBlockedError("this sync replica no longer leads")
            drop = DropSegment(camera=job.camera, name=segment.name, sha256=segment.sha256)
            dropped = await self._ask(job.source, "drop", drop, DropResult)
            if not dropped.ok:  # the job is not done while a copy stays behind
                raise JobBlockedError(f"{job.source} kept {segment.name}: {dropped.reason}")
            done += 1
            moved_bytes += segment.size
            if not fetched.already:
                SYNC_SEGMENTS.labels(server=job.home).inc()
                SYNC_BYTES.labels(server=job.home).inc(segment.size)
                self.segments_moved += 1
                self.bytes_moved += segment.size
            self.jobs[job.key] = job.model_copy(
                update={"segments_done": done, "bytes_done": moved_bytes}
            )
            if await self._progress(job.home):
                await self._save(self.jobs[job.key])  # so blaze sync shows it live

        try:
            await for_each(held, self.settings.segments_in_flight, one)
        except JobBlockedError:
            await self._save(self.jobs[job.key])
            raise
        return self.jobs[job.key], refetched

    async def _ask(
        self,
        server: str,
        verb: str,
        request: Message,
        reply: type[R],
        timeout: float | None = None,
    ) -> R:
        assert self._bus is not None
        subject = subjects.sync_request(server, verb)
        wait = timeout or self.settings.request_timeout
        try:
            return await self._bus.request(subject, request, reply, wait)
        except BusError as exc:
            raise ServerUnreachableError(server, f"{server} unreachable: {exc}") from exc

    # ---- telling the world ----

    async def _publish(self, event: Message, msg_id: str) -> None:
        assert self._bus is not None
        server = getattr(event, "server", "unknown")
        await self._bus.publish_event(
            subjects.sync_event(server, getattr(event, "type", "sync")), event, msg_id
        )

    async def _failed(self, job: SyncJob, reason: str, *, paused: bool) -> None:
        log.warning("sync of %s from %s: %s", job.camera, job.source, reason, extra=_ids(job))
        await self._publish(
            SyncFailed(**about(job), reason=reason[:500], paused=paused),
            f"sync-failed-{uuid.uuid4().hex}",
        )

    async def _progress(self, home: str, *, force: bool = False) -> bool:
        """Publish the home's progress, at most about once a second; True if it did."""
        now = time.monotonic()
        if not force and now - self._progress_at.get(home, 0.0) < PROGRESS_EVERY_S:
            return False
        self._progress_at[home] = now
        jobs = [j for j in self.jobs.values() if j.home == home]
        open_jobs = [j for j in jobs if j.state is not JobState.COMPLETED]
        await self._publish(
            SyncProgress(
                server=home,
                jobs_open=len(open_jobs),
                segments_done=sum(j.segments_done for j in jobs),
                segments_total=sum(j.segments_total for j in jobs),
                bytes_done=sum(j.bytes_done for j in jobs),
                bytes_total=sum(j.bytes_total for j in jobs),
            ),
            f"sync-progress-{uuid.uuid4().hex}",
        )
        oldest = min((self._started(j) for j in open_jobs), default=None)
        lag = (datetime.now(UTC) - oldest).total_seconds() if oldest and oldest.year > 1 else 0
        SYNC_LAG_SECONDS.labels(server=home).set(max(0.0, lag))
        return True

    def _jobs_by_state(self) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        for job in self.jobs.values():
            counts[job.state] += 1
        return counts

    def _count(self) -> None:
        for state, n in self._jobs_by_state().items():
            SYNC_JOBS.labels(state=state.value).set(n)


def _ids(job: SyncJob) -> dict[str, object]:
    """The log ids of a job: its home server, camera, failover host and epoch."""
    return {"server": job.home, "camera": job.camera, "source": job.source, "epoch": job.epoch}


def _report_end(runner: asyncio.Task[None]) -> None:
    """A runner that ends by an error says so (nothing else would ever read it)."""
    if not runner.cancelled() and (exc := runner.exception()) is not None:
        log.error("%s ended by an error", runner.get_name(), exc_info=exc)
