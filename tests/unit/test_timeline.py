"""timeline.build and typical_spacing: who holds which footage of a camera, and the gaps (R9)."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.sync import timeline
from shared.messages import Segment

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def seg(seconds: float, epoch: int) -> Segment:
    """A segment that started ``seconds`` after T0, named the way the recorder names it."""
    start = T0 + timedelta(seconds=seconds)
    name = f"{start:%Y%m%dT%H%M%S.%f}Z_e{epoch}.seg"
    return Segment(
        name=name, size=2048, sha256=hashlib.sha256(name.encode()).hexdigest(), start=start
    )


def run(epoch: int, *starts: float) -> tuple[Segment, ...]:
    """Segments of one epoch at these start offsets."""
    return tuple(seg(s, epoch) for s in starts)


def span(first: int, last: int, epoch: int) -> tuple[Segment, ...]:
    """One segment per second from ``first`` to ``last`` inclusive."""
    return run(epoch, *range(first, last + 1))


def iso(seconds: float) -> str:
    """The document's spelling of T0 + ``seconds``."""
    return (T0 + timedelta(seconds=seconds)).isoformat()


def ranges_of(doc: dict[str, Any]) -> list[tuple[str, str, str, int, list[int]]]:
    """The ranges of a timeline document as plain tuples."""
    return [(r["server"], r["from"], r["to"], r["segments"], r["epochs"]) for r in doc["ranges"]]


# ---- empty input ----


def test_r9_no_footage_anywhere_is_an_empty_timeline() -> None:
    """R9: a camera nobody holds footage of has no ranges, gaps or handovers."""
    doc = timeline.build("c1", {}, 1.0)
    assert doc == {
        "camera": "c1",
        "segment_seconds": 1.0,
        "ranges": [],
        "gaps": [],
        "handovers": [],
    }


def test_r9_a_server_with_an_empty_list_adds_no_range() -> None:
    """R9: a server that answered but holds nothing of the camera contributes nothing."""
    doc = timeline.build("c1", {"rs-1": span(0, 2, 1), "rs-2": ()}, 1.0)
    assert [r["server"] for r in doc["ranges"]] == ["rs-1"]
    assert doc["gaps"] == []


# ---- ranges ----


def test_r9_consecutive_segments_on_one_server_merge_into_one_range() -> None:
    """R9: back-to-back segments of one server are one range, from the first start to the
    end of the last segment."""
    doc = timeline.build("c1", {"rs-1": span(0, 9, 1)}, 1.0)
    assert ranges_of(doc) == [("rs-1", iso(0), iso(10), 10, [1])]
    assert doc["gaps"] == []
    assert doc["handovers"] == []


def test_r9_segments_are_merged_in_time_order_whatever_order_they_are_listed_in() -> None:
    """R9: the ranges do not depend on the order in which a server listed its segments."""
    listed = span(0, 5, 1)
    shuffled = (listed[3], listed[0], listed[5], listed[1], listed[4], listed[2])
    assert timeline.build("c1", {"rs-1": shuffled}, 1.0) == timeline.build(
        "c1", {"rs-1": listed}, 1.0
    )


def test_r9_one_server_holding_several_epochs_is_one_range_listing_them() -> None:
    """R9: after sync the home holds its own epochs and the synced one back to back: one
    range, every epoch listed once, in order."""
    home = span(0, 4, 1) + span(5, 9, 2) + span(10, 14, 3)
    doc = timeline.build("c1", {"rs-1": home}, 1.0)
    assert ranges_of(doc) == [("rs-1", iso(0), iso(15), 15, [1, 2, 3])]


def test_r9_ranges_are_per_server_and_sorted_by_start() -> None:
    """R9: each server's footage is its own range; ranges come in time order."""
    doc = timeline.build("c1", {"rs-2": span(5, 9, 2), "rs-1": span(0, 4, 1)}, 1.0)
    assert ranges_of(doc) == [
        ("rs-1", iso(0), iso(5), 5, [1]),
        ("rs-2", iso(5), iso(10), 5, [2]),
    ]
    assert doc["gaps"] == []


# ---- gaps ----


def test_r9_a_hole_beyond_the_tolerance_is_a_gap_with_its_milliseconds() -> None:
    """R9: a stretch without footage longer than half a segment splits the range and is a
    gap, reported from the end of the last segment to the next start, in ms."""
    doc = timeline.build("c1", {"rs-1": span(0, 2, 1) + run(1, 4.25, 5.25)}, 1.0)
    assert ranges_of(doc) == [
        ("rs-1", iso(0), iso(3), 3, [1]),
        ("rs-1", iso(4.25), iso(6.25), 2, [1]),
    ]
    assert doc["gaps"] == [{"from": iso(3), "to": iso(4.25), "ms": 1250}]


def test_r9_a_hole_within_the_tolerance_is_no_gap() -> None:
    """R9: jitter up to half a segment is slack, not a gap; the range runs on."""
    doc = timeline.build("c1", {"rs-1": span(0, 2, 1) + run(1, 3.4, 4.4)}, 1.0)
    assert ranges_of(doc) == [("rs-1", iso(0), iso(5.4), 5, [1])]
    assert doc["gaps"] == []


def test_r9_a_hole_of_exactly_the_tolerance_is_no_gap_and_just_beyond_it_is() -> None:
    """R9: the tolerance is inclusive: 500 ms of a 1 s segment is slack, 501 ms a gap."""
    exact = timeline.build("c1", {"rs-1": span(0, 2, 1) + run(1, 3.5)}, 1.0)
    beyond = timeline.build("c1", {"rs-1": span(0, 2, 1) + run(1, 3.501)}, 1.0)
    assert exact["gaps"] == []
    assert len(exact["ranges"]) == 1
    assert beyond["gaps"] == [{"from": iso(3), "to": iso(3.501), "ms": 501}]
    assert len(beyond["ranges"]) == 2


def test_r9_the_tolerance_scales_with_the_segment_length() -> None:
    """R9: with 4 s segments, a 1.5 s hole is slack (under 2 s) and a 3 s hole a gap."""
    held = {"rs-1": run(1, 0, 4, 9.5, 16.5)}
    doc = timeline.build("c1", held, 4.0)
    assert doc["segment_seconds"] == 4.0
    assert [(g["from"], g["ms"]) for g in doc["gaps"]] == [(iso(13.5), 3000)]


def test_r9_overlapping_servers_are_two_ranges_and_no_gap() -> None:
    """R9: two servers recording at once (a cut-off server under its old epoch) are two
    ranges that overlap; the overlap is never a gap."""
    doc = timeline.build("c1", {"rs-1": span(0, 7, 1), "rs-2": span(4, 11, 2)}, 1.0)
    assert ranges_of(doc) == [
        ("rs-1", iso(0), iso(8), 8, [1]),
        ("rs-2", iso(4), iso(12), 8, [2]),
    ]
    assert doc["gaps"] == []


def test_r9_a_hole_on_one_server_covered_by_another_is_no_gap() -> None:
    """R9: a gap is footage missing everywhere; a hole one server's range leaves that another
    server covers is not one."""
    held = {"rs-1": span(0, 2, 1) + span(8, 9, 3), "rs-2": span(0, 9, 2)}
    doc = timeline.build("c1", held, 1.0)
    assert [r["server"] for r in doc["ranges"]] == ["rs-1", "rs-2", "rs-1"]
    assert doc["gaps"] == []


def test_r9_a_gap_is_measured_from_the_latest_end_of_everything_before_it() -> None:
    """R9: a long range that started earlier still covers time: the gap starts where the last
    footage of any server ends, not where the most recent range ends."""
    held = {"rs-1": span(0, 9, 1), "rs-2": span(2, 3, 2), "rs-3": span(12, 13, 3)}
    doc = timeline.build("c1", held, 1.0)
    assert doc["gaps"] == [{"from": iso(10), "to": iso(12), "ms": 2000}]


def test_r9_failover_and_failback_holes_are_two_gaps() -> None:
    """R9: home until its storage fails, the host after detection, home after failback: the
    detection window and the failback handover are the only gaps."""
    held = {"rs-1": span(0, 9, 1) + span(31, 40, 3), "rs-2": span(12, 29, 2)}
    doc = timeline.build("c1", held, 1.0)
    assert doc["gaps"] == [
        {"from": iso(10), "to": iso(12), "ms": 2000},
        {"from": iso(30), "to": iso(31), "ms": 1000},
    ]


# ---- handovers ----


def test_r9_handovers_list_every_epoch_change_with_its_gap() -> None:
    """R9: home -> A -> B -> home is three handovers, each with the recording gap it left."""
    held = {
        "rs-1": span(0, 9, 1) + span(40, 44, 4),
        "rs-2": span(12, 19, 2),
        "rs-3": run(3, *range(20, 38)),
    }
    doc = timeline.build("c1", held, 1.0)
    assert doc["handovers"] == [
        {"from_epoch": 1, "to_epoch": 2, "at": iso(12), "gap_ms": 2000},
        {"from_epoch": 2, "to_epoch": 3, "at": iso(20), "gap_ms": 0},
        {"from_epoch": 3, "to_epoch": 4, "at": iso(40), "gap_ms": 2000},
    ]


def test_r9_a_handover_with_overlap_has_a_negative_gap() -> None:
    """R9: when the next host starts before the last segment of the previous one ended, the
    handover's gap is negative (both recorded for a moment)."""
    held = {"rs-1": span(0, 4, 1), "rs-2": run(2, 4.7, 5.7, 6.7)}
    doc = timeline.build("c1", held, 1.0)
    assert doc["handovers"] == [{"from_epoch": 1, "to_epoch": 2, "at": iso(4.7), "gap_ms": -300}]
    assert doc["gaps"] == []


def test_r9_no_handover_without_a_change_of_epoch() -> None:
    """R9: one epoch, even with a hole in it, is no handover."""
    doc = timeline.build("c1", {"rs-1": span(0, 3, 1) + span(7, 9, 1)}, 1.0)
    assert doc["handovers"] == []
    assert len(doc["gaps"]) == 1


def test_r9_overlapping_copies_give_one_handover_and_never_one_back_to_an_older_epoch() -> None:
    """R9: a cut-off home kept recording epoch 1 while rs-2 recorded epoch 2: that is one move
    (1 -> 2), not a move back and forth at every segment."""
    held = {"rs-1": span(0, 9, 1), "rs-2": run(2, 5.5, 6.5, 7.5, 8.5, 9.5)}
    doc = timeline.build("c1", held, 1.0)
    assert all(m["from_epoch"] < m["to_epoch"] for m in doc["handovers"]), doc["handovers"]
    assert [(m["from_epoch"], m["to_epoch"]) for m in doc["handovers"]] == [(1, 2)]


# ---- typical_spacing ----


def test_r9_a_home_holding_two_overlapping_copies_shows_no_false_gaps() -> None:
    """R9: a network-cut home kept recording epoch 1 while rs-2 recorded epoch 2; after sync
    the home holds both, interleaved. Its 100 s of 1 s segments without a hole are one range
    with no gap, read with the length the CLI reads off the footage."""
    both = span(0, 99, 1) + run(2, *(s + 0.5 for s in range(20, 80)))
    held = {"rs-1": tuple(sorted(both, key=lambda s: s.name))}  # as the agent lists them
    doc = timeline.build("c1", held, timeline.typical_spacing(held))
    assert doc["gaps"] == []
    assert len(doc["ranges"]) == 1


def test_r9_typical_spacing_is_the_median_step_between_segments() -> None:
    """R9: the segment length is read off the footage: one odd step does not change it."""
    held = {"rs-1": run(1, 0, 2, 4, 6, 30, 32)}
    assert timeline.typical_spacing(held) == 2.0


def test_r9_typical_spacing_falls_back_to_the_default_without_two_segments() -> None:
    """R9: nothing to measure (no footage, or one segment per server) gives the default."""
    assert timeline.typical_spacing({}) == 1.0
    assert timeline.typical_spacing({}, default=4.0) == 4.0
    assert timeline.typical_spacing({"rs-1": run(1, 0), "rs-2": run(2, 7)}, default=3.0) == 3.0


def test_r9_typical_spacing_steps_only_within_one_server() -> None:
    """R9: steps are taken between segments of the same server, never across servers."""
    held = {"rs-1": run(1, 0, 0.5, 1.0), "rs-2": run(2, 100, 100.5, 101.0)}
    assert timeline.typical_spacing(held) == 0.5


def test_r9_typical_spacing_ignores_segments_with_the_same_start() -> None:
    """R9: two segments with one start time are no step of length zero."""
    held = {"rs-1": run(1, 0) + run(2, 0, 3, 6)}
    assert timeline.typical_spacing(held) == 3.0


# ---- properties ----

SERVERS = ("rs-1", "rs-2", "rs-3")

held_footage = st.dictionaries(
    st.sampled_from(SERVERS),
    # start in milliseconds -> epoch: one segment per start per server, as a recorder writes
    st.dictionaries(st.integers(0, 60_000), st.integers(0, 9), max_size=40),
    max_size=3,
)


def _as_held(raw: dict[str, dict[int, int]]) -> dict[str, tuple[Segment, ...]]:
    return {
        server: tuple(seg(ms / 1000, epoch) for ms, epoch in sorted(starts.items()))
        for server, starts in raw.items()
    }


@settings(max_examples=300, deadline=None)
@given(raw=held_footage, segment_ms=st.integers(100, 5_000))
def test_r9_every_segment_is_in_exactly_one_range_of_its_server_and_gaps_touch_no_range(
    raw: dict[str, dict[int, int]], segment_ms: int
) -> None:
    """R9, property: for any footage, each segment lies inside exactly one range of the
    server holding it, a server's ranges are merged as far as the slack allows and count its
    segments, and every gap is longer than the slack and overlaps no range."""
    held = _as_held(raw)
    length = timedelta(milliseconds=segment_ms)
    slack = length * timeline.GAP_TOLERANCE
    doc = timeline.build("c1", held, segment_ms / 1000)
    ranges = [
        (r["server"], datetime.fromisoformat(r["from"]), datetime.fromisoformat(r["to"]), r)
        for r in doc["ranges"]
    ]
    for server, segments in held.items():
        for s in segments:
            containing = [
                r
                for srv, a, b, r in ranges
                if srv == server and a <= s.start <= s.start + length <= b
            ]
            assert len(containing) == 1, (server, s.name, containing)
        mine = [r for srv, _, _, r in ranges if srv == server]
        assert sum(r["segments"] for r in mine) == len(segments)
        # merged as far as they go: a server's ranges are apart by more than the slack
        bounds = sorted((a, b) for srv, a, b, _ in ranges if srv == server)
        for (_, end), (start, _) in itertools.pairwise(bounds):
            assert start - end > slack, (server, end, start)
    assert {srv for srv, *_ in ranges} == {srv for srv, segments in held.items() if segments}
    for g in doc["gaps"]:
        g_from, g_to = datetime.fromisoformat(g["from"]), datetime.fromisoformat(g["to"])
        assert g_to - g_from > slack, g
        assert g["ms"] == round((g_to - g_from).total_seconds() * 1000), g
        for _, a, b, _ in ranges:
            assert g_to <= a or g_from >= b, (g, a, b)
