"""Prometheus metrics every service exposes, and the HTTP endpoint that serves them with
liveness (``/healthz``) and readiness (``/readyz``) (R13).

Every metric object lives here, so every process exposes every name (a counter of
another service's reads 0) and ``deploy/grafana`` can be checked against this module.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

log = logging.getLogger(__name__)

METRICS_ADDR_ENV = "BLAZE_METRICS_ADDR"
"""The address /metrics, /healthz and /readyz bind to (default 127.0.0.1; ``0.0.0.0``
in a container, so Prometheus and the kubelet reach them)."""

REJECTED = Counter(
    "blaze_rejected_messages_total",
    "Messages refused on input: malformed, oversized, wrong type or spoofed.",
    ["subject", "reason"],
)
PERMISSION_DENIED = Counter(
    "blaze_nats_permission_denied_total",
    "Publishes and subscriptions NATS refused this process (issue 7): a permission "
    "missing from the matrix, or a process using another identity's credentials.",
)
EVENTS_PUBLISHED = Counter(
    "blaze_events_published_total", "Events written to the durable log.", ["type"]
)
HEARTBEATS_SENT = Counter("blaze_heartbeats_sent_total", "Heartbeats published by an agent.")
HEARTBEATS_RECEIVED = Counter(
    "blaze_heartbeats_received_total", "Heartbeats the health leader accepted (R1)."
)
HEARTBEATS_REJECTED = Counter(
    "blaze_heartbeats_rejected_total",
    "Well-formed heartbeats the health leader refused: spoofed (the body names another "
    "server than the subject), unknown_server (not in the config), stale (an old or "
    "replayed sequence).",
    ["reason"],
)
HEARTBEAT_REJECTIONS = ("spoofed", "unknown_server", "stale")
PROBES = Counter("blaze_probes_total", "Direct probes of silent servers.", ["outcome"])
SERVERS_BY_STATE = Gauge(
    "blaze_servers",
    "Servers by health state as the health leader sees them: up, probing, "
    "network_failed, storage_failed (only the leader reports).",
    ["state"],
)
FAILOVERS = Counter(
    "blaze_failovers_total",
    "Servers declared failed, whose cameras therefore fail over, by cause (R2, R3).",
    ["cause"],
)
FAILBACKS = Counter(
    "blaze_failbacks_total",
    "Failed servers declared recovered, whose cameras therefore come home, by cause: "
    "network (automatic, R6) or storage (confirmed by an administrator, R7).",
    ["cause"],
)
CAUSES = ("network", "storage")
CAMERAS_BY_STATE = Gauge("blaze_cameras", "Cameras by placement state.", ["state"])
PENDING_CAMERAS = Gauge(
    "blaze_cameras_pending",
    "Cameras waiting Pending for free channel capacity (R5); set by the placement leader.",
)
FAILOVER_SECONDS = Histogram(
    "blaze_failover_seconds",
    "From a server's failure report to all its cameras claimed elsewhere (or Pending), by cause.",
    ["cause"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
COMMANDS = Counter("blaze_commands_total", "Commands sent to agents.", ["action", "outcome"])
COMMAND_SECONDS = Histogram(
    "blaze_command_seconds",
    "Round trip of a command to an agent.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LEADING = Gauge(
    "blaze_leading",
    "1 while this replica holds its service's leader lease (R12), else 0.",
    ["service", "replica"],
)
LEADER_TERMS = Counter(
    "blaze_leader_terms_total", "Terms this replica began as leader (R12).", ["service"]
)
SEGMENTS_WRITTEN = Counter("blaze_segments_written_total", "Segments written by a recorder.")
SEGMENT_WRITE_FAILURES = Counter(
    "blaze_segment_write_failures_total", "Segment writes that failed (storage fault, R3)."
)
STORAGE_OK = Gauge("blaze_storage_ok", "1 when the recording directory passes the probe.")
SYNC_BYTES_RECEIVED = Counter(
    "blaze_sync_received_bytes_total", "Footage bytes a home server received and verified (R9)."
)
SYNC_CHUNKS_REFETCHED = Counter(
    "blaze_sync_chunks_refetched_total", "Chunks that failed their SHA-256 check and came again."
)
SYNC_SEGMENTS = Counter(
    "blaze_sync_segments_total", "Segments brought home and verified, by home server.", ["server"]
)
SYNC_BYTES = Counter(
    "blaze_sync_bytes_total", "Bytes brought home and verified, by home server.", ["server"]
)
SYNC_JOBS = Gauge(
    "blaze_sync_jobs", "Sync jobs by state (only the sync leader reports).", ["state"]
)
SYNC_LAG_SECONDS = Gauge(
    "blaze_sync_lag_seconds",
    "Age of the oldest footage not yet home, by home server (0 when all is home).",
    ["server"],
)

# Known label values start at 0, so a rate() has a series from the first scrape.
for _reason in HEARTBEAT_REJECTIONS:
    HEARTBEATS_REJECTED.labels(reason=_reason)
for _cause in CAUSES:
    FAILOVERS.labels(cause=_cause)
    FAILBACKS.labels(cause=_cause)
    FAILOVER_SECONDS.labels(cause=_cause)


class Readiness:
    """Whether this process is ready: every registered check passes, and there is one.

    A service registers a check once it serves (connected to NATS, its micro service
    announced) and removes it when it closes. A standby replica is ready: it answers
    ``$SRV`` requests and takes over when the leader goes."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], bool]] = {}
        self._lock = threading.Lock()  # read by the HTTP server's threads

    def add(self, name: str, check: Callable[[], bool]) -> None:
        """Register (or replace) a named check."""
        with self._lock:
            self._checks[name] = check

    def remove(self, name: str) -> None:
        """Drop a check; absent names are ignored."""
        with self._lock:
            self._checks.pop(name, None)

    def report(self) -> tuple[bool, dict[str, bool]]:
        """(ready, each check's verdict); not ready while nothing is registered."""
        with self._lock:
            checks = dict(self._checks)
        verdicts = {name: _passes(check) for name, check in sorted(checks.items())}
        return bool(verdicts) and all(verdicts.values()), verdicts


def _passes(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 (a failing check means not ready, never a 500)
        return False


READINESS = Readiness()
"""This process's readiness, served on ``/readyz``."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: Prometheus and the kubelet ask every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def http_app(
    readiness: Readiness = READINESS,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app: ``/healthz`` (the process answers), ``/readyz`` (``readiness``),
    anything else Prometheus metrics."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _answer(start_response, "200 OK", {"alive": True})
        if path == "/readyz":
            ready, checks = readiness.report()
            status = "200 OK" if ready else "503 Service Unavailable"
            return _answer(start_response, status, {"ready": ready, "checks": checks})
        answer: Iterable[bytes] = metrics(environ, start_response)
        return answer

    return app


def _answer(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def serve_metrics(port: int | None, addr: str | None = None) -> int | None:
    """Serve /metrics, /healthz and /readyz on ``addr:port`` (``addr`` defaults to
    ``$BLAZE_METRICS_ADDR``, else 127.0.0.1); no-op when port is None. A port already
    taken (picked free, then taken by another process's connection) falls back to one
    the OS picks, with a warning: a recording server's agent must not stop over its
    metrics. Returns the port served."""
    if port is None:
        return None
    addr = addr or os.environ.get(METRICS_ADDR_ENV) or "127.0.0.1"
    try:
        server = _start(addr, port)
    except OSError as exc:
        server = _start(addr, 0)
        log.warning(
            "metrics port %d unavailable (%s); serving /metrics on port %d instead",
            port,
            exc.strerror or exc,
            server.server_port,
        )
    served: int = server.server_port
    return served


def _start(addr: str, port: int) -> WSGIServer:
    family, _, _, _, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(_ThreadingServer):
        address_family = family

    server = make_server(str(sockaddr[0]), port, http_app(), Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server
