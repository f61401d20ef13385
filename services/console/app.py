"""The console service: one web page and a small JSON API over the cluster (R13).

It only reads, except for the administrator's failback confirmation, which it sends as
the very request ``blaze failback`` sends. What it shows comes from the same documents
as the command line: ``blaze status --json`` (``views.status_document``), ``blaze whatif``
(``views.whatif_document``, the same planner as placement) and ``blaze sync``
(``footage.sync_document``). Pages stay live through Server-Sent Events: every event of
the log as it is appended, and a notice whenever the placement state or the leaders change.

Routes:

    GET  /                         the page (static/index.html, console.css, console.js)
    GET  /api/status               the status document, with the state's revision and cursor
    GET  /api/whatif/{server}      what a storage failure of the server would do now
    GET  /api/sync                 footage sync progress
    POST /api/failback/{server}    storage repaired: return the cameras (the admin action)
    GET  /api/events               Server-Sent Events: ``event`` and ``status`` frames
    GET  /healthz                  200 while the console answers (liveness)
    GET  /readyz                   200 while it is connected to NATS (readiness)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from services.cli import footage, views
from services.cli.datadir import SERVICES_FILE
from services.console.feed import HISTORY, Feed
from services.placement.state import Placement
from shared import subjects
from shared.bounded import cancel_all, raise_if_cancelled
from shared.bus import Access, Bus, is_transient, read_leases
from shared.errors import BlazeError, RequestRefusedError
from shared.logs import OncePerInterval
from shared.messages import FailbackRequest, Reply

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

POLL_S = 1.0
"""How often the placement state is read while nothing happens."""
BUSY_POLL_S = 0.2
"""How often it is read for ``BUSY_S`` after an event: the snapshot follows the events."""
BUSY_S = 3.0
KEEPALIVE_S = 15.0
"""A comment line on an idle event stream, so proxies and the browser keep it open."""
REQUEST_TIMEOUT_S = 5.0
"""The failback confirmation's bound, as ``blaze failback``'s."""
SHUTDOWN_S = 3.0
"""How long open requests may take to finish when the console stops."""
ADMIN_HEADER = "X-Blaze-Console"
"""Required on POST: a page of another origin cannot set it without a CORS preflight,
which the console never grants, so a foreign page cannot confirm a failback."""

NO_STATE = views.NO_STATE
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
PROBES = ("/healthz", "/readyz")


@dataclass(frozen=True)
class StatusSnapshot:
    """The latest status document, ready to send, and the state it came from."""

    state: Placement
    revision: int
    body: bytes


class ConsoleService:
    """Serves the console until stopped."""

    def __init__(
        self,
        nats_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        data_dir: Path | None = None,
        allowed_hosts: tuple[str, ...] = (),
        access: Access | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.access = access
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.allowed_hosts = frozenset({*LOOPBACK_NAMES, host, *allowed_hosts}) - {"0.0.0.0"}  # noqa: S104
        self._whatif: dict[tuple[int, str], dict[str, Any]] = {}
        self._whatif_lock = asyncio.Lock()
        self.feed = Feed()
        self._bus: Bus | None = None
        self._snapshot: StatusSnapshot | None = None
        self._status_error = NO_STATE
        self._stale = ""
        """Why the status shown may be out of date (a read of the state failed); "" if not."""
        self._seen: tuple[Any, ...] = ()
        self._version = 0
        self._poke = asyncio.Event()
        self._last_event_at = 0.0
        self._warnings = OncePerInterval(log)
        self.serving = asyncio.Event()
        """Set once the page is served (for whoever runs the console in-process)."""

    @property
    def url(self) -> str:
        """Where the page is."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}/"

    # ---- lifecycle ----

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve the page and follow the cluster until ``stop``; a fatal error in
        either loop stops the rest and is raised."""
        self._bus = bus = await Bus.connect(self.nats_url, "console", access=self.access)
        runner = web.AppRunner(self.application(), access_log=None, shutdown_timeout=SHUTDOWN_S)
        try:
            await bus.announce(
                "blaze-console",
                "the operator's web console (R13)",
                instance=socket.gethostname(),  # several consoles each answer for themselves
                status=self._micro_status,
            )
            await runner.setup()
            await web.TCPSite(runner, self.host, self.port).start()
            log.info("console at %s", self.url)
            self.serving.set()
            loops = [
                asyncio.create_task(self._follow_events(), name="console-events"),
                asyncio.create_task(self._watch_status(), name="console-status"),
            ]
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait([*loops, stopped], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                await cancel_all(loops)
            for task in loops:
                if not task.cancelled() and (error := task.exception()) is not None:
                    raise error
        finally:
            self.feed.close_all()
            await runner.cleanup()
            await bus.close()

    def application(self) -> web.Application:
        """The routes (a fresh application each time: aiohttp freezes one when it runs)."""
        app = web.Application(middlewares=[self._known_hosts_only])
        app.add_routes(
            [
                web.get("/", self._index),
                web.get("/api/status", self._get_status),
                web.get("/api/whatif/{server}", self._get_whatif),
                web.get("/api/sync", self._get_sync),
                web.post("/api/failback/{server}", self._post_failback),
                web.get("/api/events", self._get_events),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.static("/static", STATIC),
            ]
        )
        return app

    @web.middleware
    async def _known_hosts_only(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Only requests addressed to the console by a name it knows: a page that rebinds
        its own DNS name to this address (DNS rebinding) gets nothing and can confirm
        nothing. Probes (which name the pod's address) pass."""
        if request.path in PROBES or request.url.host in self.allowed_hosts:
            return await handler(request)
        reason = f"unknown host {request.host!r}: add it with --allow-host"
        return _json({"error": reason}, status=421)

    # ---- following the cluster ----

    async def _follow_events(self) -> None:
        """Every event of the log from a little before now, in order, to the pages."""
        bus = self._require_bus()
        while True:
            try:
                last = await bus.last_event_seq()
                break
            except Exception as exc:  # no stream yet, no stream leader, NATS away a moment
                if not _unavailable(exc):
                    raise
                self._warnings.warning("stream", "event log not readable yet: %s", exc)
                await asyncio.sleep(1.0)
        async with contextlib.aclosing(bus.events(after=max(0, last - HISTORY))) as stream:
            async for seq, event in stream:
                if event is None:
                    continue
                self.feed.add_event(seq, event.model_dump(mode="json", by_alias=True))
                self._last_event_at = time.monotonic()
                self._poke.set()

    async def _watch_status(self) -> None:
        """Read the placement state at once after events, and every ``POLL_S`` anyway;
        tell the pages when it, the leaders or the processes changed."""
        while True:
            self._poke.clear()
            try:
                await self._refresh_status()
            except Exception as exc:
                if not (_unavailable(exc) or isinstance(exc, ValidationError)):
                    raise
                self._status_error = f"cannot read the placement state: {exc}"
                self._warnings.warning("state", "%s", self._status_error)
                self._mark_stale(self._status_error)
            busy = time.monotonic() - self._last_event_at < BUSY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), BUSY_POLL_S if busy else POLL_S)
            raise_if_cancelled()

    def _mark_stale(self, reason: str) -> None:
        """The page keeps the last state it has, and says it may be out of date (and once
        a read works again, that it is not)."""
        if reason == self._stale:
            return
        self._stale = reason
        self._seen = ()  # the next good read is news, even at the same revision
        self._version += 1
        self.feed.status_changed({"version": self._version, "stale": reason})

    async def _refresh_status(self) -> None:
        bus = self._require_bus()
        snapshot = await bus.read_state()
        leaders = await read_leases(bus)
        services = self._services()
        self._mark_stale("")
        revision = snapshot[1] if snapshot is not None else 0
        seen = (revision, tuple(sorted(leaders.items())), json.dumps(services))
        if seen == self._seen:
            return
        if snapshot is None:
            self._snapshot = None
            self._status_error = NO_STATE
        else:
            self._snapshot = await asyncio.to_thread(
                _build_status, snapshot[0], revision, services, leaders
            )
        self._seen = seen
        self._version += 1
        cursor = self._snapshot.state.cursor if self._snapshot else 0
        self.feed.status_changed({"version": self._version, "revision": revision, "cursor": cursor})

    def _services(self) -> list[dict[str, Any]]:
        """The processes of ``blaze up`` (none in a deployment: no services file there)."""
        if self.data_dir is None:
            return []
        try:
            listed = json.loads((self.data_dir / SERVICES_FILE).read_text())
        except (OSError, ValueError):
            return []
        return [
            {"name": s.get("name"), "pid": s.get("pid"), "restarts": s.get("restarts", 0)}
            for s in listed
            if isinstance(s, dict)
        ]

    def _micro_status(self) -> dict[str, Any]:
        """What ``nats micro`` shows of the console: where it is, what it last read."""
        snapshot = self._snapshot
        return {
            "url": self.url,
            "pages": self.feed.pages,
            "revision": snapshot.revision if snapshot else None,
            "last_event": self.feed.last_seq,
        }

    def _require_bus(self) -> Bus:
        if self._bus is None:
            raise RuntimeError("the console is not running")
        return self._bus

    # ---- HTTP ----

    async def _index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _get_status(self, request: web.Request) -> web.StreamResponse:
        if self._snapshot is None:
            return _json({"error": self._status_error}, status=503)
        headers = {"Cache-Control": "no-store"}
        if self._stale:
            headers["X-Blaze-Stale"] = self._stale[:200].encode("ascii", "replace").decode()
        response = web.Response(
            body=self._snapshot.body, content_type="application/json", headers=headers
        )
        if len(self._snapshot.body) > 64 << 10:  # a big cluster's status: worth compressing
            response.enable_compression()
        return response

    async def _get_whatif(self, request: web.Request) -> web.StreamResponse:
        snapshot = self._snapshot
        if snapshot is None:
            return _json({"error": self._status_error}, status=503)
        server = request.match_info["server"]
        try:
            doc = await self._whatif_of(snapshot, server)
        except RequestRefusedError as exc:
            return _json({"error": exc.reason}, status=404)
        return _json({**doc, "revision": snapshot.revision})

    async def _whatif_of(self, snapshot: StatusSnapshot, server: str) -> dict[str, Any]:
        """One what-if per state revision and server, one at a time: many open pages
        asking after every change cost one planner run, not one each."""
        key = (snapshot.revision, server)
        async with self._whatif_lock:
            if key not in self._whatif:
                doc = await asyncio.to_thread(views.whatif_document, snapshot.state, server)
                self._whatif = {k: v for k, v in self._whatif.items() if k[0] == key[0]}
                self._whatif[key] = doc
            return self._whatif[key]

    async def _get_sync(self, _: web.Request) -> web.StreamResponse:
        try:
            doc = await footage.sync_document(self._require_bus())
        except Exception as exc:
            if not _unavailable(exc):
                raise
            return _json({"error": str(exc) or type(exc).__name__}, status=503)
        return _json(doc)

    async def _post_failback(self, request: web.Request) -> web.StreamResponse:
        """The administrator's confirmation (R7): ``blaze failback``'s request, its answer.
        A refusal is an answer (200, ``ok`` false, the reason); 503 when nobody answers.
        The audit trail names the console and the browser's address (no identities before
        issue 7)."""
        if request.headers.get(ADMIN_HEADER) != "1":
            return _json({"ok": False, "reason": f"missing {ADMIN_HEADER} header"}, status=403)
        try:
            confirmation = FailbackRequest(server=request.match_info["server"], by=_who(request))
        except ValidationError as exc:
            return _json({"ok": False, "reason": f"bad server: {exc.errors()[0]['msg']}"}, 400)
        try:
            reply = await self._require_bus().request(
                subjects.ADMIN_FAILBACK, confirmation, Reply, timeout=REQUEST_TIMEOUT_S
            )
        except Exception as exc:
            if not _unavailable(exc):
                raise
            return _json({"ok": False, "reason": str(exc) or type(exc).__name__}, status=503)
        log.info(
            "failback of %s %s: %s",
            confirmation.server,
            "confirmed" if reply.ok else "refused",
            reply.reason,
        )
        self._poke.set()
        return _json({"ok": reply.ok, "reason": reply.reason})

    async def _get_events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events until the page goes away or the console stops."""
        after: int | None = None
        with contextlib.suppress(ValueError):
            after = int(request.headers.get("Last-Event-ID", ""))
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        page = self.feed.open(after)
        try:
            await response.write(b"retry: 2000\n\n")
            while (item := await page.next(KEEPALIVE_S)) is not None:
                await response.write(item or b": keep-alive\n\n")
        except ConnectionError:
            pass  # the page went away
        finally:
            self.feed.close(page)
        return response

    async def _healthz(self, _: web.Request) -> web.StreamResponse:
        return _json({"status": "ok", "pages": self.feed.pages})

    async def _readyz(self, _: web.Request) -> web.StreamResponse:
        connected = self._bus is not None and bool(self._bus.nc.is_connected)
        return _json(
            {"nats": "connected" if connected else "disconnected"},
            status=200 if connected else 503,
        )


def _build_status(
    raw: bytes, revision: int, services: list[dict[str, Any]], leaders: dict[str, str]
) -> StatusSnapshot:
    """``blaze status --json``'s document, with the revision and log cursor it reflects."""
    state = Placement.model_validate_json(raw)
    doc = views.status_document(state, services, leaders)
    doc["revision"] = revision
    doc["cursor"] = state.cursor
    return StatusSnapshot(state, revision, json.dumps(doc, separators=(",", ":")).encode())


def _who(request: web.Request) -> str:
    """``console@<browser address>``, in the shape of ``blaze``'s ``user@host``."""
    return f"console@{request.remote or 'unknown'}"[:64]


def _unavailable(error: Exception) -> bool:
    """The cluster cannot answer right now (no stream or state yet, no responders, NATS
    reconnecting, no JetStream leader): say so and carry on, never crash on it."""
    return isinstance(error, (BlazeError, TimeoutError)) or is_transient(error)


def _json(doc: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, headers={"Cache-Control": "no-store"})
