"""Sync jobs as pure functions: resuming from what the source still holds (R9)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.sync.jobs import fetch_timeout, resume
from shared.config import SyncSettings
from shared.messages import JobState, Segment, SyncJob

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _segments(n: int, size: int = 2048) -> list[Segment]:
    return [
        Segment(name=f"20260101T00000{i}.000000Z_e5.seg", size=size, sha256="0" * 64, start=T0)
        for i in range(n)
    ]


def test_r9_a_first_run_takes_its_totals_from_the_listing() -> None:
    """R9: nothing done yet; the totals are what the source lists."""
    job = resume(SyncJob(camera="c1", home="rs-1", source="rs-2", epoch=5), _segments(4))
    assert (job.state, job.segments_total, job.segments_done) == (JobState.RUNNING, 4, 0)
    assert (job.bytes_total, job.bytes_done) == (8192, 0)


def test_r9_a_resumed_job_counts_what_the_source_no_longer_holds_as_done() -> None:
    """R9: after a kill, progress comes from the listing, not from counters cut short."""
    earlier = SyncJob(
        camera="c1", home="rs-1", source="rs-2", epoch=5, state=JobState.PAUSED,
        segments_total=10, bytes_total=20480, segments_done=3, bytes_done=6144,
    )  # fmt: skip
    job = resume(earlier, _segments(4))
    assert (job.segments_total, job.segments_done) == (10, 6)
    assert (job.bytes_total, job.bytes_done) == (20480, 12288)


def test_r9_a_source_listing_more_than_at_first_never_gives_negative_progress() -> None:
    """R9: a cut-off host that kept recording under the stint's epoch lists more later."""
    earlier = SyncJob(camera="c1", home="rs-1", source="rs-2", epoch=5, segments_total=2)
    job = resume(earlier, _segments(5))
    assert (job.segments_total, job.segments_done) == (5, 0)


def test_r9_a_segment_may_take_one_step_per_window_of_chunks() -> None:
    """R9: big segments get time to arrive instead of being retried while they still do."""
    settings = SyncSettings(chunk_bytes=1024, chunks_in_flight=4, request_timeout=5.0)
    assert fetch_timeout(settings, _segments(1, size=100)[0]) == 5.0
    assert fetch_timeout(settings, _segments(1, size=4096)[0]) == 5.0
    assert fetch_timeout(settings, _segments(1, size=4097)[0]) == 10.0
