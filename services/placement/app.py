"""The placement service: folds the event log into the placement state, persists it with
compare-and-set, publishes its decisions and drives agents' claim/release commands (R4-R11).

Order of work for a batch of events: fold (pure, deterministic) -> send the commands
-> publish the decisions (de-duplicated by Msg-Id) -> commit the snapshot with the log
cursor (compare-and-set), once the log goes quiet. The agents' answers go on the log
after the decisions. A SIGKILL between any two steps replays the same events from the
committed cursor, makes the same decisions under the same epochs, sends the same
commands (which the agents already hold) and the log drops the repeated decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, NamedTuple

from pydantic import TypeAdapter

from services.placement.state import (
    CameraSlot,
    CameraState,
    CommandKey,
    MissedCameras,
    Notice,
    Placement,
    ServerState,
)
from shared import subjects
from shared.bounded import cancel_all, raise_if_cancelled
from shared.bus import Access, Bus
from shared.config import ClusterConfig
from shared.errors import BusError
from shared.lease import ReplicatedService, Term
from shared.messages import (
    Action,
    AnyEvent,
    CapacityChanged,
    CapacityRequest,
    ClaimsConfirmed,
    Command,
    CommandRefused,
    CommandResult,
    DrainCompleted,
    DrainRequest,
    FailbackCompleted,
    FailbackStarted,
    Heartbeat,
    Message,
    ReleasesConfirmed,
    Reply,
    ServerDrained,
    ServerFailed,
    ServerUndrained,
)
from shared.messages.events import utc_now
from shared.messages.heartbeat_parser import HeartbeatParser
from shared.metrics import (
    CAMERAS_BY_STATE,
    COMMAND_SECONDS,
    COMMANDS,
    FAILOVER_SECONDS,
    PENDING_CAMERAS,
    REJECTED,
)

log = logging.getLogger(__name__)


RECENT_FAILURE = timedelta(seconds=60)
DERIVE_SPACING = 1.0
"""The outstanding commands are derived again at most once per this many times the
last derivation took: a pass over every camera that must not crowd out the fold, whose
confirmations are what makes commands go away."""
FOLD_YIELD_EVERY = 10
"""Events folded between two turns of the event loop (a start-up confirms 100 cameras
per event: a batch of them in one go would stall heartbeats and the lease)."""
COMMIT_SPACING = 2.0
"""After a commit, the next one waits at least this many times as long as it took."""
COMMIT_QUIET_S = 0.05
"""A commit waits until the log has been quiet this long, or as long as the last commit
took if that is shorter: the events of a burst are folded (and their commands sent)
first, then committed together; a small cluster, whose commits are quick, commits at
once (readers of the snapshot, ``blaze status``, see it as soon as before)."""
COMMIT_MAX_AGE_S = 2.0
"""In a burst that does not go quiet, the snapshot is committed at least this often."""
DERIVE_INLINE_S = 0.05
"""A derivation that took less than this last time runs again in the event loop (at
once); a longer one in a thread, where it takes longer but the loop goes on."""
RECHECK_S = 2.0
"""See ``_on_heartbeat``."""
FOLD_BATCH = 500
"""Events folded before one commit at most: a burst (a rack failure, its confirmations)
is committed once rather than once per event (the snapshot is the whole cluster)."""
ANSWERED_HOLD_S = 2.0
"""An answered command is not sent again for this long: its answer is on the log, and
the state stops wanting it once the fold gets there. Without the hold, a fold running
behind (a burst of events) has the sender repeat every answered command at every wake."""
ANSWERED_HOLD_MAX_S = 30.0
"""The hold doubles each time the same command is answered and still wanted, up to this."""
PUBLISH_AT_ONCE = 500
"""Notices published concurrently at most (a fresh cluster of 100,000 cameras has as
many): more would flood the event loop and starve the lease's renewals."""
FREEZE_CAMERAS = 10_000
"""From this many cameras on, the loaded state is moved out of the garbage collector's
sight (``gc.freeze``): its full collections would otherwise stall the event loop for
longer than the lease tolerates. The cost is that objects of the loaded state that are
dropped later (a camera's replaced list of hosts to release) are never freed: at most
the size of the state once per term."""
SNAPSHOT_CHUNK = 5000
"""Cameras serialized at once when writing the snapshot (a few milliseconds' work)."""
_CAMERAS = TypeAdapter(dict[str, CameraSlot])
COMMANDS_AT_ONCE = 256
"""Commands awaiting their answer at once at most: a failover of thousands of cameras
must not queue a thousand requests ahead of the lease's renewal on the connection."""
READER_STOP_S = 2.0
"""How long the end of a term waits for the event log reader to stop."""
LOGGED_PER_KIND = 10
"""Notices of one kind logged one by one per batch; the rest are counted in one line."""


class Decided(NamedTuple):
    """The notices placement decided at one point of the log."""

    notices: list[Notice]
    at: int
    """The sequence number of the last event folded when they were decided: each notice
    carries it as ``decided_at``, so an outside reader knows which prefix of the log the
    decision saw (issue 10, seed 10)."""
    origin: str
    """What their Msg-Ids are made of: that event's sequence number, or ``start`` or
    ``adopt-<cursor>`` for the notices of a term's first load."""


class PlacementService(ReplicatedService):
    """The single decider of who records which camera: one replica of it leads (R12)."""

    SERVICE = "placement"
    DESCRIPTION = "who records which camera (R4-R8, R10)"

    def __init__(
        self,
        config: ClusterConfig,
        nats_url: str,
        replica: str | None = None,
        access: Access | None = None,
    ) -> None:
        super().__init__(config, nats_url, replica, access)
        self.state = Placement()
        self._revision: int | None = None
        self._wake_sender = asyncio.Event()
        self._in_flight: set[CommandKey] = set()
        self._next_try: dict[CommandKey, tuple[float, float]] = {}
        self._missed = MissedCameras()
        self._tasks: set[asyncio.Task[None]] = set()
        self._unannounced: set[str] = set()
        self._failovers: dict[str, ServerFailed] = {}
        self._version = 0
        """Counts changes of ``state``: what is derived from it is kept per version."""
        self._wanted: tuple[int, dict[CommandKey, Command]] = (-1, {})
        self._keys: dict[int, tuple[Command, CommandKey]] = {}
        """The wanted commands' keys by command object: the state hands out the same
        object for a command until its cameras change, so its key is made once."""
        self._wanted_changed = True
        """Whether the last derivation changed the wanted commands."""
        self._announcing: dict[str, tuple[CommandKey, Command]] = {}
        """The empty command to each server, made once (``_announcements``)."""
        self._derive_after = 0.0
        self._derive_took = 0.0
        self._commit_after = 0.0
        self._commit_took = 0.0
        self._sending = asyncio.Semaphore(COMMANDS_AT_ONCE)
        self._state_lock = asyncio.Lock()
        """Held while the fold changes the state, and while a thread reads all of it (the
        snapshot, the outstanding commands) so the event loop stays free meanwhile."""
        self._in_order: dict[str, tuple[int, dict[str, int], float]] = {}
        """Per server, the state version, the cameras and the time of its last heartbeat
        that had neither strays nor missing cameras."""
        self._publishing: asyncio.Task[None] | None = None
        """The notices of the folded batches, being published in order (see ``_decided``)."""
        self._replayed_at = 0
        """The log's last event when the term began: heartbeats are not reconciled
        before the fold has caught up with it (see ``_on_heartbeat``)."""

    async def lead(self, term: Term) -> None:
        """One term as leader: rebuild everything from JetStream, then decide (R11, R12)."""
        assert self._bus is not None
        bus = self._bus
        self._forget()
        subscriptions = []
        try:
            await self._load(bus)
            self._replayed_at = await bus.last_event_seq()
            self._unannounced = set(self.state.servers)
            heartbeats = HeartbeatParser(self.state.servers).model_validate_json
            subscriptions = [
                await bus.subscribe(
                    subjects.HEARTBEAT_ALL, Heartbeat, self._on_heartbeat, parse=heartbeats
                ),
                await bus.serve(
                    subjects.ADMIN_CAPACITY, CapacityRequest, self._on_capacity, _refusal
                ),
                await bus.serve(subjects.ADMIN_DRAIN, DrainRequest, self._on_drain, _refusal),
                await bus.serve(subjects.ADMIN_UNDRAIN, DrainRequest, self._on_undrain, _refusal),
            ]
            log.info(
                "placement resumed at log position %d, epoch %d, %d cameras (fence %d)",
                self.state.cursor,
                self.state.next_epoch,
                len(self.state.cameras),
                term.epoch,
            )
            log_events: asyncio.Queue[tuple[int, AnyEvent | None]] = asyncio.Queue(FOLD_BATCH)
            reader = asyncio.create_task(self._read_log(log_events))
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._fold_loop(log_events, reader))
                    tg.create_task(self._sender_loop())
                    self._wake_sender.set()
            finally:
                await _stop_reader(reader)
        finally:
            await bus.unsubscribe_all(subscriptions)
            if self._publishing is not None:
                self._tasks.add(self._publishing)  # cancelled with the rest
            await cancel_all(self._tasks)
            CAMERAS_BY_STATE.clear()  # only a leader knows; a standby reports nothing
            PENDING_CAMERAS.set(0)

    def counters(self) -> dict[str, Any]:
        """Cameras by state, Pending, drained servers and the log position (leader only)."""
        if not self.leading:
            return {}
        return {
            "cameras": {s.value: n for s, n in self.state.cameras_by_state().items()},
            "servers": len(self.state.servers),
            "drained": sorted(sid for sid, s in self.state.servers.items() if s.drained),
            "log_position": self.state.cursor,
            "next_epoch": self.state.next_epoch,
        }

    def _forget(self) -> None:
        """Nothing from an earlier term is trusted: the state comes from KV again."""
        self.state = Placement()
        self._revision = None
        self._in_flight.clear()
        self._next_try.clear()
        self._missed = MissedCameras()
        self._unannounced.clear()
        self._failovers.clear()
        self._in_order.clear()
        self._keys.clear()
        self._wanted = (-1, {})
        self._publishing = None
        self._changed()

    def _changed(self) -> None:
        """The state changed: everything derived from it is derived again when next needed."""
        self._version += 1

    # ---- state: load, fold, commit ----

    async def _load(self, bus: Bus) -> None:
        """Resume from the committed snapshot, or start a fresh cluster from the config."""
        snapshot = await bus.read_state(latest=True)
        # Building or parsing the whole state takes seconds at 100,000 cameras: in a
        # thread, so the event loop keeps renewing the lease meanwhile (nothing else
        # reads the state before it is loaded).
        if snapshot is None:
            self.state, notices = await asyncio.to_thread(Placement.from_config, self.config)
            origin = "start"
        else:
            raw, self._revision = snapshot
            self.state = await _parse_snapshot(raw)
            notices = await asyncio.to_thread(self.state.adopt, self.config)
            origin = f"adopt-{self.state.cursor}"
        await asyncio.to_thread(lambda: self.state.index)  # built now, not on a first read
        if len(self.state.cameras) >= FREEZE_CAMERAS:
            # A full collection walks every object: a second at 100,000 cameras, in the
            # middle of anything (a collection now would be one). What is loaded now
            # lives as long as the term.
            gc.freeze()
        await self._publish_all([Decided(notices, self.state.cursor, origin)])
        if not self.state.cluster_id:  # random, so here and not in the deterministic fold
            self.state.cluster_id = uuid.uuid4().hex
        self._changed()
        await self._commit()

    async def _fold_loop(
        self,
        log_events: asyncio.Queue[tuple[int, AnyEvent | None]],
        reader: asyncio.Task[None],
    ) -> None:
        """Fold every event as it comes, in order; send the commands, then publish the
        decisions (``_decided``). The events already there are folded as one batch, whose
        decisions are published together. The snapshot is the whole cluster: it is
        committed once the log goes quiet (``COMMIT_QUIET_S``), at least every
        ``COMMIT_MAX_AGE_S`` during a long burst, and never sooner after the last commit
        than ``COMMIT_SPACING`` times what that one took: a burst (a rack failure, its
        confirmations) is folded and its commands sent first, then committed once, not
        rewritten per event.

        A crash before a commit replays the uncommitted events from the committed
        cursor: the same decisions under the same epochs and Msg-Ids, which the log
        drops, and which the agents already hold (R11)."""
        uncommitted_since: float | None = None  # when the oldest uncommitted fold was
        last_fold = 0.0
        getter: asyncio.Future[tuple[int, AnyEvent | None]] | None = None
        try:
            while True:
                now = time.monotonic()
                if uncommitted_since is not None and now - uncommitted_since > COMMIT_MAX_AGE_S:
                    await self._commit()  # a long burst: commit now and then all the same
                    uncommitted_since = None
                # The getter outlives a timeout (wait_for would cancel it, and a get
                # cancelled as it completes loses its event).
                getter = getter or asyncio.ensure_future(log_events.get())
                wait = None
                if uncommitted_since is not None:
                    quiet = min(COMMIT_QUIET_S, self._commit_took)
                    due = max(self._commit_after, last_fold + quiet)
                    wait = max(0.0, due - time.monotonic())
                watched: set[asyncio.Future[Any]] = {getter, reader}
                done, _ = await asyncio.wait(
                    watched, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if reader in done:
                    reader.result()  # its error ends the term
                    raise RuntimeError("the event log reader stopped")
                if not done:
                    # The log went quiet: commit, unless an event comes meanwhile.
                    if log_events.empty() and await self._commit(unless=getter):
                        uncommitted_since = None
                    continue
                batch, getter = [getter.result()], None
                while len(batch) < FOLD_BATCH and not log_events.empty():
                    batch.append(log_events.get_nowait())
                decided: list[Decided] = []
                async with self._state_lock:
                    for n, (seq, event) in enumerate(batch, 1):
                        notices = self.state.apply(event) if event is not None else []
                        self.state.cursor = seq
                        decided.append(Decided(notices, seq, str(seq)))
                        self._note_failure(event)
                        self._changed()
                        if n % FOLD_YIELD_EVERY == 0:
                            await asyncio.sleep(0)  # heartbeats and the lease, meanwhile
                self._decided(decided)
                last_fold = time.monotonic()
                if uncommitted_since is None:
                    uncommitted_since = last_fold
        finally:
            if getter is not None:
                getter.cancel()

    async def _read_log(self, log_events: asyncio.Queue[tuple[int, AnyEvent | None]]) -> None:
        assert self._bus is not None
        async with contextlib.aclosing(self._bus.events(after=self.state.cursor)) as stream:
            async for item in stream:
                await log_events.put(item)

    def _note_failure(self, event: AnyEvent | None) -> None:
        """Only failures reported in the last minute are timed, so a replay of old events
        at a takeover measures nothing."""
        if isinstance(event, ServerFailed) and utc_now() - event.time < RECENT_FAILURE:
            self._failovers[event.server] = event

    def _time_failovers(self) -> None:
        """blaze_failover_seconds: from health's failure report (its event time) until no
        camera of that failure is still moving. Checked at each commit, not each event."""
        if not self._failovers:
            return
        now = utc_now()
        for server, failure in list(self._failovers.items()):
            if not self.state.moving_off(server):
                seconds = (now - failure.time).total_seconds()
                FAILOVER_SECONDS.labels(cause=failure.cause.value).observe(seconds)
                del self._failovers[server]

    def _decided(self, decided: list[Decided]) -> None:
        """After a folded batch: its commands go out first, then its notices are written
        to the log behind them, in order after the notices of earlier batches.

        A camera that fails over waits for its claim command, not for the acks of a
        notice per camera (256 of them took 30 ms on a quiet machine, more than the rest
        of a failover). That is safe because the fold is deterministic: a leader that dies
        before the notices are stored replays the same events from the committed cursor,
        decides the same moves under the same epochs, and publishes the same notices
        under the same Msg-Ids, while the agents already hold the commands (R11). What
        must not happen waits for the notices: a commit (its cursor would skip them, and
        a replay would not publish them again) and the agents' answers (the log keeps
        reading "planned" before "confirmed")."""
        quick = self._derive_took < DERIVE_INLINE_S and time.monotonic() >= self._derive_after
        if quick and not self._state_lock.locked():
            wanted = self._derive()
            if self._wanted_changed:  # else the sender's wakes retry what needs it
                self._send_wanted(wanted)  # at once, not at the sender's next wake
        else:
            self._wake_sender.set()
        before = self._publishing

        async def publish() -> None:
            if before is not None:
                await before
            await self._publish_all(decided)

        self._publishing = asyncio.create_task(publish())

    async def _notices_published(self) -> None:
        """Wait until the notices of every folded batch are in the log; a failure to
        publish them is raised here (and ends the term)."""
        if self._publishing is not None:
            await self._publishing

    async def _publish_all(self, decided: list[Decided]) -> None:
        """Publish the notices of several folded events, each under a Msg-Id of its
        event's origin and its place among that event's notices, and stamped with the
        log position it was decided at (deterministic, so a replay after a crash makes
        the same notice under the same Msg-Id, R11). They are written in order on one
        connection, so the log keeps their order, and their acks are awaited together: a
        batch costs one round trip, not one per event.

        The stamp is put on here, not in the fold: the fold's commands go out without
        waiting for it, and a fresh cluster's 100,000 notices are stamped
        ``PUBLISH_AT_ONCE`` at a time, with the event loop running in between."""
        assert self._bus is not None
        bus = self._bus
        every = [
            (n, d.at, f"placement-{d.origin}-{i}") for d in decided for i, n in enumerate(d.notices)
        ]
        for start in range(0, len(every), PUBLISH_AT_ONCE):
            await asyncio.gather(
                *(
                    bus.publish_event(_notice_subject(n), _stamped(n, at), msg_id)
                    for n, at, msg_id in every[start : start + PUBLISH_AT_ONCE]
                )
            )
        for d in decided:
            self._log_notices(d)

    def _log_notices(self, decided: Decided) -> None:
        logged: Counter[str] = Counter()
        for n in decided.notices:
            if n.type in LOGGED_NOTICES:
                logged[n.type] += 1
                if logged[n.type] <= LOGGED_PER_KIND:
                    shown = _stamped(n, decided.at)
                    log.info("%s", shown.model_dump_json(exclude={"schema_version", "time"}))
        for kind, count in logged.items():
            if count > LOGGED_PER_KIND:  # a mass failure must not log once per camera
                log.info(
                    "%d more %s at log position %s", count - LOGGED_PER_KIND, kind, decided.origin
                )

    async def _commit(self, unless: asyncio.Future[Any] | None = None) -> bool:
        """Compare-and-set the snapshot; losing the race is fatal (someone else decides).
        Returns whether it committed: with ``unless`` (the next event of the log), a
        commit gives way when that event comes before the snapshot is made, so the fold
        goes on at once. At 100,000 cameras a snapshot takes a second: a rack failure
        whose reports came 50 ms apart waited that long for its second half.

        Fields at their defaults are left out (a camera at rest is a third of the bytes,
        and reading it back is as much faster); reading fills them in again."""
        assert self._bus is not None
        if not await self._published_unless(unless):
            return False
        t0 = time.monotonic()
        snapshot = await self._snapshot(unless)
        if snapshot is None:
            return False
        self._revision = await self._bus.write_state(snapshot, self._revision)
        self._commit_took = time.monotonic() - t0
        self._commit_after = time.monotonic() + self._commit_took * COMMIT_SPACING
        self._time_failovers()
        counts = self.state.cameras_by_state()
        for s, n in counts.items():
            CAMERAS_BY_STATE.labels(state=s.value).set(n)
        PENDING_CAMERAS.set(counts[CameraState.PENDING])
        self._wake_sender.set()
        return True

    async def _published_unless(self, unless: asyncio.Future[Any] | None) -> bool:
        """Wait until the notices of every folded batch are in the log (the cursor must
        not pass unpublished notices), or until ``unless`` is done: then False."""
        publishing = self._publishing
        if unless is not None and publishing is not None and not publishing.done():
            await asyncio.wait({publishing, unless}, return_when=asyncio.FIRST_COMPLETED)
            if not publishing.done():
                return False
        await self._notices_published()  # raises what publishing raised
        return True

    async def _snapshot(self, unless: asyncio.Future[Any] | None = None) -> bytes | None:
        """The state's JSON as ``model_dump_json(exclude_defaults=True)`` writes it, made
        ``SNAPSHOT_CHUNK`` cameras at a time with the event loop running in between:
        in one piece, pydantic holds the GIL for up to a second at 100,000 cameras (in a
        thread too), and heartbeats and the lease's renewals would wait that long.
        Only the fold changes the state, and it waits meanwhile (the fold loop commits),
        so every chunk is of the same state; None as soon as ``unless`` is done."""
        parts: list[bytes] = []
        async with self._state_lock:
            head = self.state.model_dump_json(exclude={"cameras"}, exclude_defaults=True)
            cameras = list(self.state.cameras.items())
            for start in range(0, len(cameras), SNAPSHOT_CHUNK):
                chunk = dict(cameras[start : start + SNAPSHOT_CHUNK])
                parts.append(_CAMERAS.dump_json(chunk, exclude_defaults=True)[1:-1])
                await asyncio.sleep(0)
                if unless is not None and unless.done():
                    return None
        rest = head.encode()[1:]  # '{' + the other fields + '}'
        joined = b'{"cameras":{' + b",".join(parts) + b"}"
        return joined + (b"," + rest if rest != b"}" else rest)

    # ---- commands to agents ----

    async def _sender_loop(self) -> None:
        """Send every outstanding command; retry with back-off until the state moves on."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_sender.wait(), timeout=0.25)
            raise_if_cancelled()
            self._wake_sender.clear()
            if self._wanted[0] != self._version:
                await asyncio.sleep(max(0.0, self._derive_after - time.monotonic()))
            self._send_wanted(await self._outstanding())

    def _send_wanted(self, outstanding: dict[CommandKey, Command]) -> None:
        """Send every outstanding command not already on its way or waiting for a retry."""
        wanted = {**outstanding, **self._announcements()}
        now = time.monotonic()
        self._next_try = {k: v for k, v in self._next_try.items() if k in wanted}
        for key, command in wanted.items():
            if key in self._in_flight or self._next_try.get(key, (0.0, 0.0))[0] > now:
                continue
            self._spawn(self._send(key, command))

    async def _outstanding(self) -> dict[CommandKey, Command]:
        """The state's outstanding commands, derived once per change of the state: the
        sender wakes for retries far more often than the state changes."""
        if self._wanted[0] != self._version:
            async with self._state_lock:
                if self._derive_took < DERIVE_INLINE_S:
                    return self._derive()
                # A long pass (a fresh cluster: every camera): the loop runs meanwhile.
                t0, version = time.monotonic(), self._version
                commands = await asyncio.to_thread(self.state.outstanding_commands)
                self._derived(version, commands, t0)
        return self._wanted[1]

    def _derive(self) -> dict[CommandKey, Command]:
        """The outstanding commands of the state as it is, derived in the event loop."""
        if self._wanted[0] != self._version:
            t0 = time.monotonic()
            self._derived(self._version, self.state.outstanding_commands(), t0)
        return self._wanted[1]

    def _derived(self, version: int, commands: list[Command], t0: float) -> None:
        known = self._keys  # each value holds its command, so an id is never reused here
        self._wanted_changed = len(commands) != len(known) or any(
            id(c) not in known for c in commands
        )
        if self._wanted_changed:  # the state hands out the same objects while unchanged
            self._keys = {id(c): known.get(id(c)) or (c, CommandKey(c)) for c in commands}
            self._wanted = (version, {key: c for c, key in self._keys.values()})
        else:  # a start-up folds a hundred thousand events that change no command
            self._wanted = (version, self._wanted[1])
        self._derive_took = time.monotonic() - t0
        self._derive_after = t0 + self._derive_took * (1 + DERIVE_SPACING)

    def _announcements(self) -> dict[CommandKey, Command]:
        """An empty command to every agent that has not answered one of this term yet:
        it learns this term's epoch at once, so a deposed leader's command still on its
        way is refused everywhere, not only where this leader has moved a camera.
        Retried with the same back-off as any command until the agent answers."""
        made = self._announcing
        for s in self._unannounced - made.keys():
            command = Command(server=s, action=Action.CLAIM, cameras=())
            made[s] = (CommandKey(command), command)
        return dict(made[s] for s in self._unannounced)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, key: CommandKey, command: Command) -> None:
        assert self._bus is not None
        term = self.term
        if term is None or not term.valid:
            return  # deposed: the new leader sends what is still wanted
        command = command.model_copy(update={"fence": term.epoch, "cluster": self.state.cluster_id})
        self._in_flight.add(key)
        try:
            async with self._sending:
                t0 = time.monotonic()
                result = await self._bus.request(
                    subjects.command(command.server),
                    command,
                    CommandResult,
                    timeout=self.config.timing.command_timeout,
                )
        except BusError as exc:
            COMMANDS.labels(action=command.action, outcome="unanswered").inc()
            delay = min(2.0, self._next_try.get(key, (0.0, 0.125))[1] * 2)
            self._next_try[key] = (time.monotonic() + delay, delay)
            log.debug(
                "%s to %s unanswered (%s); retry in %.2f s",
                command.action,
                command.server,
                exc,
                delay,
            )
            return
        finally:
            self._in_flight.discard(key)
        COMMAND_SECONDS.observe(time.monotonic() - t0)
        COMMANDS.labels(action=command.action, outcome="answered").inc()
        if len(result.done) + len(result.refused) == len(command.cameras):
            # Answered again and still wanted: the fold runs behind; hold it longer.
            hold = min(ANSWERED_HOLD_MAX_S, 2 * self._next_try.get(key, (0.0, 0.0))[1])
            hold = max(ANSWERED_HOLD_S, hold)
            self._next_try[key] = (time.monotonic() + hold, hold)
        self._unannounced.discard(command.server)
        if result.fence_seen > term.epoch:
            # Not a refusal to re-plan: a newer leader exists, and this one is deposed.
            log.warning(
                "%s has seen placement epoch %d, newer than ours (%d): deposed",
                command.server,
                result.fence_seen,
                term.epoch,
            )
        elif term.valid:
            await self._publish_outcome(result)

    async def _publish_outcome(self, result: CommandResult) -> None:
        """The agent's answer goes on the log, behind the notices that planned what it
        answers; the fold picks it up in order."""
        assert self._bus is not None
        await self._notices_published()
        server = result.server
        if result.done:
            done_type = ClaimsConfirmed if result.action is Action.CLAIM else ReleasesConfirmed
            event = done_type(server=server, cameras=result.done)
            await self._bus.publish_event(
                subjects.command_outcome_event(server, event.type),
                event,
                f"ack-{server}-{result.action}-{_digest(result.done)}",
            )
        if result.refused:
            refused = CommandRefused(server=server, refusals=result.refused)
            await self._bus.publish_event(
                subjects.command_outcome_event(server, refused.type),
                refused,
                f"refused-{server}-{_digest(result.refused)}",
            )

    # ---- reconciliation from heartbeats ----

    async def _on_heartbeat(self, subject: str, hb: Heartbeat) -> None:
        """Level-triggered repair: release strays, re-claim what a restarted agent forgot.

        Every server heartbeats every second: a heartbeat that lists what the last one
        of its server listed, found in order, while the state has not changed since, is
        in order too (``strays`` and ``missing`` are pure), and costs one comparison.
        While the state changes (a failover), an online server whose cameras did not
        change is checked again every ``RECHECK_S``, not at every heartbeat: its repair
        waits a little, and a failover's fold does not compete with a thousand checks a
        second. A failed server (whose cameras, moved away, are strays) is checked at
        every heartbeat."""
        if subjects.server_of_heartbeat(subject) != hb.server:
            REJECTED.labels(subject="blaze.hb", reason="spoofed").inc()
            return
        slot = self.state.servers.get(hb.server)
        if slot is None or self.state.cursor < self._replayed_at:
            # Still replaying: a predecessor may have sent commands for events after
            # its last commit, which agents carry out; until the fold has made those
            # decisions again, their cameras would look like strays.
            return
        now = time.monotonic()
        checked = self._in_order.get(hb.server)
        if checked is not None and checked[1] == hb.hosted:
            version, _, at = checked
            steady = slot.state is ServerState.ONLINE and now - at < RECHECK_S
            if version == self._version or steady:
                return
        strays = self.state.strays(hb.server, hb.hosted)
        missing = self.state.missing(hb.server, hb.hosted)
        if not strays and not missing:
            self._in_order[hb.server] = (self._version, hb.hosted, now)
            return
        if strays:
            log.info("releasing %d stray cameras on %s", len(strays), hb.server)
            self._send_once(Command(server=hb.server, action=Action.RELEASE, cameras=tuple(strays)))
        again = self._missed.to_reclaim(hb.server, missing)
        if again:
            log.info("re-claiming %d cameras %s does not record", len(again), hb.server)
            self._send_once(Command(server=hb.server, action=Action.CLAIM, cameras=tuple(again)))

    def _send_once(self, command: Command) -> None:
        """A repair from a heartbeat; what the agent did goes on the log like any other
        answer (R11), where the fold recognises it as no move of its own."""
        key = CommandKey(command)
        if key not in self._in_flight:
            self._spawn(self._send(key, command))

    # ---- the administrator ----

    async def _on_capacity(self, request: CapacityRequest) -> Message:
        """A license change: the new capacity goes on the log, the fold re-places Pending (R5)."""
        assert self._bus is not None
        slot = self.state.servers.get(request.server)
        if slot is None:
            return Reply(ok=False, reason=f"unknown server {request.server!r}")
        was = slot.capacity  # read now: the fold may apply the change before we answer
        await self._log_admin(
            CapacityChanged(server=request.server, capacity=request.capacity, by=request.by)
        )
        return Reply(
            ok=True,
            reason=f"capacity of {request.server} set to {request.capacity} (was {was})",
        )

    async def _on_drain(self, request: DrainRequest) -> Message:
        """Maintenance mode: refused for an unknown or already drained server; otherwise
        on the log, where the fold moves its cameras away."""
        slot = self.state.servers.get(request.server)
        if slot is None:
            return Reply(ok=False, reason=f"unknown server {request.server!r}")
        if slot.drained:
            return Reply(ok=False, reason=f"{request.server} is already drained")
        hosting = self.state.load(request.server)
        await self._log_admin(ServerDrained(server=request.server, by=request.by))
        return Reply(
            ok=True,
            reason=f"drain of {request.server} started: {hosting} cameras to move where "
            "channels are free (the rest keep recording there until one frees)",
        )

    async def _on_undrain(self, request: DrainRequest) -> Message:
        """End of maintenance: refused unless the server is drained."""
        slot = self.state.servers.get(request.server)
        if slot is None:
            return Reply(ok=False, reason=f"unknown server {request.server!r}")
        if not slot.drained:
            return Reply(ok=False, reason=f"{request.server} is not drained")
        await self._log_admin(ServerUndrained(server=request.server, by=request.by))
        return Reply(ok=True, reason=f"{request.server} undrained: its cameras come home")

    async def _log_admin(self, event: CapacityChanged | ServerDrained | ServerUndrained) -> None:
        """An administrator's action goes on the log, with who asked; the fold acts on it."""
        assert self._bus is not None
        await self._bus.publish_event(
            subjects.admin_event(event.type), event, f"{event.type}-{uuid.uuid4().hex}"
        )


LOGGED_NOTICES = frozenset(
    {"camera_pending", "camera_preempted", "failback_started", "failback_completed"}
)


def _stamped(notice: Notice, at: int) -> Notice:
    """The notice with the log position it was decided at (``decided_at``)."""
    return notice.model_copy(update={"decided_at": at})


def _notice_subject(notice: Notice) -> str:
    if isinstance(notice, FailbackStarted | FailbackCompleted):
        return subjects.failback_event(notice.server, notice.type)
    if isinstance(notice, DrainCompleted):
        return subjects.server_event(notice.server, notice.type)
    return subjects.camera_event(notice.camera, notice.type)


async def _parse_snapshot(raw: bytes) -> Placement:
    """``Placement.model_validate_json(raw)``, ``SNAPSHOT_CHUNK`` cameras at a time with
    the event loop running in between: in one piece it holds the GIL for seconds at
    100,000 cameras (in a thread too), longer than the lease lets a leader be silent."""
    doc = json.loads(raw)
    found = list(doc.pop("cameras", {}).items())
    cameras: dict[str, CameraSlot] = {}
    for start in range(0, len(found), SNAPSHOT_CHUNK):
        cameras.update(_CAMERAS.validate_python(dict(found[start : start + SNAPSHOT_CHUNK])))
        await asyncio.sleep(0)
    doc["cameras"] = cameras  # models already: taken as they are
    return Placement.model_validate(doc)


async def _stop_reader(reader: asyncio.Task[None]) -> None:
    """Cancel the event log reader, waiting a bounded time: a consumer caught in a
    reconnect can take its time to unwind, and must not hold up the end of a term."""
    reader.cancel()
    done, _ = await asyncio.wait([reader], timeout=READER_STOP_S)
    if not done:
        log.warning(
            "the event log reader did not stop within %.0f s; left to finish", READER_STOP_S
        )
    elif not reader.cancelled() and reader.exception() is not None:
        log.warning("the event log reader failed: %r", reader.exception())


def _digest(items: tuple[Message, ...]) -> str:
    text = "|".join(item.model_dump_json() for item in items)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _refusal(reason: str) -> Message:
    return Reply(ok=False, reason=reason)
