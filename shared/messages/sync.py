"""Footage sync (R9): what the sync service asks of agents, and what agents ask each other.

A *stint* is one camera recording on one server under one epoch; the segments it
wrote there carry that epoch in their names. A *job* brings one stint recorded
away from home back to the home server, segment by segment, each verified by size
and SHA-256 before the host's copy may be deleted.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared.messages.base import CameraId, Count, Epoch, Message, ServerId

SegmentName = str
MAX_SEGMENT_BYTES = 1 << 34
"""The largest segment file. An offset into a segment stays within it: far past the end,
``seek`` fails (ext4 refuses offsets past 16 TiB) instead of reading nothing."""


class Segment(Message):
    """One recorded segment file, as the server holding it describes it."""

    name: SegmentName = Field(
        min_length=1, max_length=128, pattern=r"^[0-9TZ.]+_e[0-9]+\.seg$", description="File name."
    )
    size: int = Field(ge=0, le=MAX_SEGMENT_BYTES)
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="Absent when the list was asked without."
    )
    start: datetime = Field(description="When recording of this segment began (UTC).")


class ListSegments(Message):
    """Ask a server which segments it holds for a camera (one epoch, or all)."""

    camera: CameraId
    epoch: Epoch | None = None
    with_sha256: bool = Field(True, description="Hash every segment (sync); not for timelines.")


class SegmentList(Message):
    """A server's segments of one camera, oldest first."""

    server: ServerId
    camera: CameraId
    segments: tuple[Segment, ...] = ()
    error: str = Field("", max_length=500, description="Why the list is incomplete, if it is.")


class ReadChunk(Message):
    """Ask the server holding a segment for one chunk of it; the reply is raw bytes."""

    camera: CameraId
    name: SegmentName = Field(max_length=128, pattern=r"^[0-9TZ.]+_e[0-9]+\.seg$")
    offset: int = Field(ge=0, le=MAX_SEGMENT_BYTES)
    length: int = Field(ge=1, le=1 << 20)


class FetchSegment(Message):
    """Ask the home server to pull one segment from ``source`` and verify it."""

    source: ServerId
    camera: CameraId
    segment: Segment


class FetchResult(Message):
    """The home server's answer: the segment is home and verified, or why not."""

    ok: bool
    already: bool = Field(False, description="It was home and verified before this request.")
    refetched_chunks: Count = Field(0, description="Chunks that failed their check.")
    reason: str = Field("", max_length=500)


class DropSegment(Message):
    """Tell a failover host that the home server has verified a segment: delete its copy."""

    camera: CameraId
    name: SegmentName = Field(max_length=128, pattern=r"^[0-9TZ.]+_e[0-9]+\.seg$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class DropResult(Message):
    """Whether the host's copy is gone (or was already)."""

    ok: bool
    reason: str = Field("", max_length=500)


class JobState(StrEnum):
    """Where a sync job stands."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class SyncJob(Message):
    """One stint to bring home: durable in the sync bucket, resumable segment by segment."""

    camera: CameraId
    home: ServerId
    source: ServerId
    epoch: Epoch
    state: JobState = JobState.QUEUED
    segments_total: Count = 0
    segments_done: Count = 0
    bytes_total: Count = 0
    bytes_done: Count = 0
    reason: str = Field("", max_length=500)

    @property
    def key(self) -> str:
        """Its key in the sync bucket."""
        return f"job.{self.home}.{self.camera}.{self.source}.e{self.epoch}"
