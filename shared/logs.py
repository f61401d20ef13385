"""Logging for every service: one line per record, with the service name; rate-limited warnings."""

from __future__ import annotations

import logging
import sys
import time


def setup_logging(service: str, level: str = "INFO") -> None:
    """Log to stderr as ``time level service: message``."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {service}: %(message)s",
        force=True,
    )


class OncePerInterval:
    """Log a given key at most once per interval, so hostile input cannot flood the log."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        """Log unless the same key was logged within the interval."""
        now = time.monotonic()
        if now - self._last.get(key, -self._interval) >= self._interval:
            self._last[key] = now
            self._logger.warning(message, *args)
