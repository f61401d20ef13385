"""A camera's recording timeline (R9): which server holds which time ranges, and the gaps.

Pure: it takes what each server listed for the camera and the segment length, and
merges segments that follow each other on the same server into ranges. A gap is a
stretch longer than ``tolerance`` segments covered by no server at all; an overlap
(two servers recording at once, e.g. a cut-off server that kept recording under its
old epoch) is shown as two ranges, not as a gap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.messages import Segment

GAP_TOLERANCE = 0.5
"""A stretch without footage counts as a gap beyond this many segment lengths of slack."""


@dataclass
class Range:
    """Consecutive segments of one camera on one server."""

    server: str
    start: datetime
    end: datetime
    segments: int
    epochs: set[int]


def build(
    camera: str, held: dict[str, tuple[Segment, ...]], segment_seconds: float
) -> dict[str, Any]:
    """The ``blaze timeline --json`` document for one camera."""
    length = timedelta(seconds=segment_seconds)
    slack = length * GAP_TOLERANCE
    ranges = _ranges(held, length, slack)
    gaps = _gaps(ranges, slack)
    return {
        "camera": camera,
        "segment_seconds": segment_seconds,
        "ranges": [
            {
                "server": r.server,
                "from": r.start.isoformat(),
                "to": r.end.isoformat(),
                "segments": r.segments,
                "epochs": sorted(r.epochs),
            }
            for r in ranges
        ],
        "gaps": [
            {
                "from": a.isoformat(),
                "to": b.isoformat(),
                "ms": round((b - a).total_seconds() * 1000),
            }
            for a, b in gaps
        ],
        "handovers": _handovers(held, length),
    }


def _epoch(segment: Segment) -> int:
    return int(segment.name.rsplit("_e", 1)[1].removesuffix(".seg"))


def _handovers(held: dict[str, tuple[Segment, ...]], length: timedelta) -> list[dict[str, Any]]:
    """Every move (one epoch to the next, in the order placement decided them) and the
    recording gap it left, in milliseconds; a negative gap is an overlap (both recorded
    for a while, e.g. a cut-off server that kept recording under its old epoch)."""
    spans: dict[int, tuple[datetime, datetime]] = {}
    for seg in (seg for segs in held.values() for seg in segs):
        first, last = spans.get(_epoch(seg), (seg.start, seg.start))
        spans[_epoch(seg)] = (min(first, seg.start), max(last, seg.start))
    moves = []
    for before, after in itertools.pairwise(sorted(spans)):
        gap = spans[after][0] - (spans[before][1] + length)
        moves.append(
            {
                "from_epoch": before,
                "to_epoch": after,
                "at": spans[after][0].isoformat(),
                "gap_ms": round(gap.total_seconds() * 1000),
            }
        )
    return moves


def typical_spacing(held: dict[str, tuple[Segment, ...]], default: float = 1.0) -> float:
    """The segment length, read off the footage: the median spacing of consecutive segments
    of one epoch on one server (copies of other epochs held there do not interleave)."""
    runs: dict[tuple[str, int], list[datetime]] = {}
    for server, segments in held.items():
        for seg in segments:
            runs.setdefault((server, _epoch(seg)), []).append(seg.start)
    steps = sorted(
        (b - a).total_seconds()
        for starts in runs.values()
        for a, b in itertools.pairwise(sorted(starts))
        if b > a
    )
    return steps[len(steps) // 2] if steps else default


def _ranges(
    held: dict[str, tuple[Segment, ...]], length: timedelta, slack: timedelta
) -> list[Range]:
    ranges: list[Range] = []
    for server, segments in held.items():
        current: Range | None = None
        for seg in sorted(segments, key=lambda s: s.start):
            epoch = _epoch(seg)
            if current is not None and seg.start - current.end <= slack:
                current.end = max(current.end, seg.start + length)
                current.segments += 1
                current.epochs.add(epoch)
                continue
            current = Range(server, seg.start, seg.start + length, 1, {epoch})
            ranges.append(current)
    return sorted(ranges, key=lambda r: (r.start, r.server))


def _gaps(ranges: list[Range], slack: timedelta) -> list[tuple[datetime, datetime]]:
    """Stretches covered by no range, longer than the slack."""
    gaps = []
    covered_until: datetime | None = None
    for r in ranges:
        if covered_until is not None and r.start - covered_until > slack:
            gaps.append((covered_until, r.start))
        covered_until = r.end if covered_until is None else max(covered_until, r.end)
    return gaps
