"""Prometheus metrics every service exposes, and the HTTP endpoint that serves them (R13)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

REJECTED = Counter(
    "blaze_rejected_messages_total",
    "Messages refused on input: malformed, oversized, wrong type or spoofed.",
    ["subject", "reason"],
)
EVENTS_PUBLISHED = Counter(
    "blaze_events_published_total", "Events written to the durable log.", ["type"]
)
HEARTBEATS_SENT = Counter("blaze_heartbeats_sent_total", "Heartbeats published by an agent.")
HEARTBEATS_RECEIVED = Counter("blaze_heartbeats_received_total", "Heartbeats seen by health.")
PROBES = Counter("blaze_probes_total", "Direct probes of silent servers.", ["outcome"])
SERVERS_FAILED = Counter("blaze_servers_failed_total", "Servers declared failed.", ["cause"])
CAMERAS_BY_STATE = Gauge("blaze_cameras", "Cameras by placement state.", ["state"])
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
SYNC_JOBS = Gauge("blaze_sync_jobs", "Sync jobs by state.", ["state"])
SYNC_LAG_SECONDS = Gauge(
    "blaze_sync_lag_seconds",
    "Age of the oldest footage not yet home, by home server (0 when all is home).",
    ["server"],
)


def serve_metrics(port: int | None) -> int | None:
    """Serve /metrics on 127.0.0.1:port; no-op when port is None. A port already taken
    (picked free, then taken by another process's connection) falls back to one the OS
    picks, with a warning: a recording server's agent must not stop over its metrics.
    Returns the port served."""
    if port is None:
        return None
    try:
        server, _ = start_http_server(port, addr="127.0.0.1")
    except OSError as exc:
        server, _ = start_http_server(0, addr="127.0.0.1")
        log.warning(
            "metrics port %d unavailable (%s); serving /metrics on port %d instead",
            port,
            exc.strerror or exc,
            server.server_port,
        )
    served: int = server.server_port
    return served
