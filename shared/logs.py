"""Logging for every service: one JSON object per line with the ids that matter (server,
camera, epoch, …), or a readable line when stderr is a terminal; rate-limited warnings.

Ids come from ``extra=`` at the call (``log.info("…", extra={"camera": cid, "epoch": 7})``)
or from ``log_context(server=…)``, which tags every record of the current task and of the
tasks it starts afterwards (an agent names its server once, at start).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any, Literal

LOG_FORMAT_ENV = "BLAZE_LOG_FORMAT"
"""``json`` or ``text`` forces a format; unset (or ``auto``): text on a terminal, else JSON."""

IDS = ("service", "replica", "server", "camera", "home", "source", "epoch", "cause")
"""Ids shown first, in this order; any other ``extra`` field follows them."""

Format = Literal["json", "text"]

_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
"""Attributes every record has: whatever else a record carries came from ``extra=``."""

_NO_IDS: Mapping[str, object] = MappingProxyType({})
_context: ContextVar[Mapping[str, object]] = ContextVar("blaze_log_context", default=_NO_IDS)


@contextlib.contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Tag every record logged in this task (and tasks started meanwhile) with ``ids``."""
    token = _context.set({**_context.get(), **ids})
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**ids: object) -> None:
    """``log_context`` for the rest of the current task (a service's ``run``)."""
    _context.set({**_context.get(), **ids})


class ContextFilter(logging.Filter):
    """Copies the task's context ids onto each record, unless the call set them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def record_ids(record: logging.LogRecord) -> dict[str, object]:
    """The ids and other ``extra`` fields of a record: known ids first, None left out."""
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}
    ordered = {k: extra.pop(k) for k in IDS if k in extra}
    return {**ordered, **dict(sorted(extra.items()))}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "service", …ids, "message", "logger"[, "exception"]}`` per line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        doc: dict[str, object] = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "service": self.service,
            **record_ids(record),
            "message": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL service: message  server=rs-2 camera=cam-1 epoch=7`` for a person."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service}: %(message)s")
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = {k: v for k, v in record_ids(record).items() if k != "service"}
        if not ids:
            return line
        tags = " ".join(f"{k}={v}" for k, v in ids.items())
        head, newline, rest = line.partition("\n")  # keep a traceback below the tags
        return f"{head}  {tags}{newline}{rest}"


def choose_format(stream: IO[str], wanted: str | None = None) -> Format:
    """``wanted`` (or ``$BLAZE_LOG_FORMAT``) if it says json or text; else text on a
    terminal and JSON otherwise (a file, a pipe, a container runtime's collector)."""
    wanted = (wanted or os.environ.get(LOG_FORMAT_ENV) or "auto").lower()
    if wanted in ("json", "text"):
        return "json" if wanted == "json" else "text"
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def setup_logging(
    service: str,
    level: str = "INFO",
    *,
    stream: IO[str] | None = None,
    log_format: str | None = None,
) -> Format:
    """Log to ``stream`` (stderr) in the chosen format; returns which one."""
    stream = stream if stream is not None else sys.stderr
    chosen = choose_format(stream, log_format)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service) if chosen == "json" else TextFormatter(service))
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return chosen


LOG_INTERVAL_S = 10.0
"""``OncePerInterval``'s default interval."""
LOG_MAX_KEYS = 20
"""``OncePerInterval``'s default bound on keys (senders) logged per interval."""


class OncePerInterval:
    """Log a given key (a sender and what is wrong) at most once per interval, and at most
    ``max_keys`` keys per interval: hostile input cannot flood the log, not even from
    ever new senders (a wildcard subscription hears any subject). The next line logged
    after such a burst says how many were left out (``suppressed``)."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = LOG_INTERVAL_S,
        max_keys: int = LOG_MAX_KEYS,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed = 0

    def warning(self, key: str, message: str, *args: object, **extra: Any) -> None:
        """Log unless the same key was logged within the interval, or ``max_keys`` others
        were; ``extra`` are ids."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return
        if last is None and len(self._last) >= self._max_keys:
            # Forget keys whose interval is over; memory stays bounded by ``max_keys``.
            self._last = {k: t for k, t in self._last.items() if now - t < self._interval}
            if len(self._last) >= self._max_keys:
                self._suppressed += 1
                return
        self._last[key] = now
        if self._suppressed:
            extra["suppressed"], self._suppressed = self._suppressed, 0
        self._logger.warning(message, *args, extra=extra or None)
