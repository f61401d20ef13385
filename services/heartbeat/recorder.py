"""The recorder adapter: how the agent starts and stops recording a camera.

``Recorder`` is the seam to a real recording engine. ``SimulatedRecorder``
really writes one small segment file per camera per segment interval into the
server's recording directory, so storage faults, recording gaps and sync are
real and measurable without a VMS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from shared.metrics import SEGMENT_WRITE_FAILURES, SEGMENTS_WRITTEN

log = logging.getLogger(__name__)

SEGMENT_BYTES = 2048
STINTS_KEPT = 10_000


@dataclass
class Stint:
    """One camera recorded on this server from ``started`` (its first segment) to
    ``stopped`` (None while it records): how recording gaps and double recording at a
    handover are measured to the millisecond, finer than segment files show."""

    camera: str
    epoch: int
    started: datetime
    stopped: datetime | None = None


class Recorder(Protocol):
    """Start/stop recording cameras; report what records now."""

    async def start(self, camera: str, epoch: int) -> None:
        """Record this camera under this epoch (idempotent; a newer epoch replaces the old)."""

    async def stop(self, camera: str) -> None:
        """Stop recording this camera (idempotent)."""

    async def first_segment(self, camera: str) -> bool:
        """Wait until this camera's first segment is written; False if that write failed."""

    def recording(self) -> dict[str, int]:
        """Cameras recording now, with the epoch they record under."""

    async def close(self) -> None:
        """Stop everything."""


class SimulatedRecorder:
    """Writes ``<dir>/<camera>/<UTC time>_e<epoch>.seg`` every segment interval per camera."""

    def __init__(
        self,
        recording_dir: Path,
        segment_seconds: float,
        on_write_error: Callable[[str], None],
        server_id: str = "",
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.recording_dir = recording_dir
        self.segment_seconds = segment_seconds
        self.segment_bytes = segment_bytes
        self._on_write_error = on_write_error
        self._server_id = server_id
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._epochs: dict[str, int] = {}
        self._written: dict[str, asyncio.Future[bool]] = {}
        self._open: dict[str, Stint] = {}
        self.stints: deque[Stint] = deque(maxlen=STINTS_KEPT)

    async def start(self, camera: str, epoch: int) -> None:
        self._epochs[camera] = epoch
        if camera not in self._tasks:
            self._written[camera] = asyncio.get_running_loop().create_future()
            self._tasks[camera] = asyncio.create_task(self._record(camera), name=f"rec-{camera}")

    async def stop(self, camera: str) -> None:
        self._epochs.pop(camera, None)
        task = self._tasks.pop(camera, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        stint = self._open.pop(camera, None)
        if stint is not None:
            stint.stopped = datetime.now(UTC)
        written = self._written.pop(camera, None)
        if written is not None and not written.done():
            written.set_result(False)

    async def first_segment(self, camera: str) -> bool:
        written = self._written.get(camera)
        if written is not None:
            return await asyncio.shield(written)
        return camera in self._open

    def recording(self) -> dict[str, int]:
        return dict(self._epochs)

    async def close(self) -> None:
        for camera in list(self._tasks):
            await self.stop(camera)

    async def _record(self, camera: str) -> None:
        while True:
            epoch = self._epochs.get(camera, 0)
            try:
                at = await asyncio.to_thread(self._write_segment, camera, epoch)
                SEGMENTS_WRITTEN.inc()
                self._written_at(camera, epoch, at)
            except OSError as exc:
                SEGMENT_WRITE_FAILURES.inc()
                self._on_write_error(f"segment write for {camera} failed: {exc.strerror or exc}")
                written = self._written.pop(camera, None)
                if written is not None and not written.done():
                    written.set_result(False)
            await asyncio.sleep(self.segment_seconds)

    def _written_at(self, camera: str, epoch: int, at: datetime) -> None:
        """A segment is on disk: a stint starts (or goes on), a first-segment waiter is told."""
        if camera not in self._open:
            self._open[camera] = Stint(camera, epoch, at)
            self.stints.append(self._open[camera])
        written = self._written.pop(camera, None)
        if written is not None and not written.done():
            written.set_result(True)

    def _write_segment(self, camera: str, epoch: int) -> datetime:
        now = datetime.now(UTC)
        directory = self.recording_dir / camera
        directory.mkdir(exist_ok=True)
        name = f"{now:%Y%m%dT%H%M%S.%f}Z_e{epoch}.seg"
        header = (
            f"blaze segment camera={camera} epoch={epoch} "
            f"server={self._server_id} at={now.isoformat()}\n"
        )
        body = header.encode().ljust(self.segment_bytes, b".")
        # Written aside and renamed, so a listed segment is always complete (R9 sync).
        aside = directory / f".{name}.tmp"
        aside.write_bytes(body)
        aside.replace(directory / name)
        return now
