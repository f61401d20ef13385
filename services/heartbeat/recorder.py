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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from shared.metrics import SEGMENT_WRITE_FAILURES, SEGMENTS_WRITTEN

log = logging.getLogger(__name__)

SEGMENT_BYTES = 2048


class Recorder(Protocol):
    """Start/stop recording cameras; report what records now."""

    async def start(self, camera: str, epoch: int) -> None:
        """Record this camera under this epoch (idempotent; a newer epoch replaces the old)."""

    async def stop(self, camera: str) -> None:
        """Stop recording this camera (idempotent)."""

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
    ) -> None:
        self.recording_dir = recording_dir
        self.segment_seconds = segment_seconds
        self._on_write_error = on_write_error
        self._server_id = server_id
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._epochs: dict[str, int] = {}

    async def start(self, camera: str, epoch: int) -> None:
        self._epochs[camera] = epoch
        if camera not in self._tasks:
            self._tasks[camera] = asyncio.create_task(self._record(camera), name=f"rec-{camera}")

    async def stop(self, camera: str) -> None:
        self._epochs.pop(camera, None)
        task = self._tasks.pop(camera, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def recording(self) -> dict[str, int]:
        return dict(self._epochs)

    async def close(self) -> None:
        for camera in list(self._tasks):
            await self.stop(camera)

    async def _record(self, camera: str) -> None:
        while True:
            epoch = self._epochs.get(camera, 0)
            try:
                await asyncio.to_thread(self._write_segment, camera, epoch)
                SEGMENTS_WRITTEN.inc()
            except OSError as exc:
                SEGMENT_WRITE_FAILURES.inc()
                self._on_write_error(f"segment write for {camera} failed: {exc.strerror or exc}")
            await asyncio.sleep(self.segment_seconds)

    def _write_segment(self, camera: str, epoch: int) -> None:
        now = datetime.now(UTC)
        directory = self.recording_dir / camera
        directory.mkdir(exist_ok=True)
        name = f"{now:%Y%m%dT%H%M%S.%f}Z_e{epoch}.seg"
        header = (
            f"blaze segment camera={camera} epoch={epoch} "
            f"server={self._server_id} at={now.isoformat()}\n"
        )
        body = header.encode().ljust(SEGMENT_BYTES, b".")
        # Written aside and renamed, so a listed segment is always complete (R9 sync).
        aside = directory / f".{name}.tmp"
        aside.write_bytes(body)
        aside.replace(directory / name)
