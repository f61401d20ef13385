"""Storage health from real I/O on the recording directory (R3).

Each probe writes a small file, fsyncs it, reads it back and compares. A
failed probe or a failed segment write marks storage failed at once; the
agent publishes a heartbeat immediately on every change.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from shared.metrics import STORAGE_OK

PROBE_FILE = ".blaze-probe"


def probe_directory(directory: Path) -> None:
    """Write + fsync + read back a probe file; raise OSError when storage does not work."""
    payload = secrets.token_bytes(64)
    path = directory / PROBE_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.read_bytes() != payload:
        raise OSError(f"probe read back different bytes from {path}")


class StorageHealth:
    """The agent's storage verdict; ``on_change`` fires on every flip."""

    def __init__(self, directory: Path, on_change: Callable[[], None]) -> None:
        self.directory = directory
        self.ok = True
        self.error: str | None = None
        self._on_change = on_change
        STORAGE_OK.set(1)

    def failed(self, reason: str) -> None:
        """Storage failed (probe or segment write)."""
        self.error = reason
        if self.ok:
            self.ok = False
            STORAGE_OK.set(0)
            self._on_change()

    def passed(self) -> None:
        """A probe passed: storage works."""
        if not self.ok:
            self.ok, self.error = True, None
            STORAGE_OK.set(1)
            self._on_change()

    async def probe_once(self, limit: float) -> None:
        """Run one probe in a thread; a hung disk counts as failed after ``limit`` seconds."""
        try:
            async with asyncio.timeout(limit):
                await asyncio.to_thread(probe_directory, self.directory)
        except TimeoutError:
            self.failed(f"storage probe of {self.directory} hung for {limit} s")
        except OSError as exc:
            self.failed(f"storage probe of {self.directory} failed: {exc.strerror or exc}")
        else:
            self.passed()
