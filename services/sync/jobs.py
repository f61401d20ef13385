"""Sync jobs as pure functions (R9): which jobs the stints call for, how a job resumes
from what its source still holds, and how long one segment may take. No clock, no bus."""

from __future__ import annotations

from typing import Any

from services.sync.stints import Stint, StintLog
from shared.config import SyncSettings
from shared.messages import JobState, Segment, SyncJob


def away_jobs(stints: StintLog) -> dict[str, tuple[SyncJob, Stint]]:
    """A fresh job for every closed stint recorded away from home, by job key.

    The key is (home, camera, source, epoch), so a possible stint and the ``camera_moved``
    one of the same epoch can never make two jobs; possible stints are jobs like any other
    (the source lists what it holds of that epoch, perhaps nothing)."""
    found = {}
    for stint in stints.closed:
        if stint.away:
            job = SyncJob(
                camera=stint.camera, home=stint.home, source=stint.host, epoch=stint.epoch
            )
            found[job.key] = (job, stint)
    return found


def resume(job: SyncJob, held: list[Segment]) -> SyncJob:
    """The job, running, with totals and progress from what the source still holds (it
    drops what is home), never from counters of an earlier run that a kill may have cut."""
    held_bytes = sum(s.size for s in held)
    done = max(0, job.segments_total - len(held))
    bytes_done = max(0, job.bytes_total - held_bytes)
    return SyncJob.model_validate(
        job.model_dump()
        | {
            "state": JobState.RUNNING,
            "reason": "",
            "segments_total": done + len(held),
            "bytes_total": bytes_done + held_bytes,
            "segments_done": done,
            "bytes_done": bytes_done,
        }
    )


def fetch_timeout(settings: SyncSettings, segment: Segment) -> float:
    """A segment's pull takes one step per window of chunks in flight."""
    chunks = max(1, -(-segment.size // settings.chunk_bytes))
    windows = -(-chunks // settings.chunks_in_flight)
    return settings.request_timeout * windows


def about(job: SyncJob) -> dict[str, Any]:
    """The fields every sync event about this job carries."""
    return {"server": job.home, "camera": job.camera, "source": job.source, "epoch": job.epoch}
