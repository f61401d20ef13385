"""The event log's de-duplication, as the services rely on it (R11, R12): a decision
published again under the same Msg-Id is stored once, and the publisher learns which
call appended it (health counts failovers only for that one)."""

from __future__ import annotations

from shared import subjects
from shared.bus import Bus
from shared.messages import CameraPending, FailoversHeld, FailureCause, ServerFailed


async def test_a_repeated_msg_id_is_stored_once_and_the_repeat_says_so(bus: Bus) -> None:
    failed = ServerFailed(server="rs-1", cause=FailureCause.STORAGE)
    subject = subjects.server_event("rs-1", failed.type)
    assert await bus.publish_event(subject, failed, "health-rs-1-0-server_failed") is True
    assert await bus.publish_event(subject, failed, "health-rs-1-0-server_failed") is False
    assert await bus.publish_event(subject, failed, "health-rs-1-1-server_failed") is True
    assert await bus.last_event_seq() == 2


async def test_r12_a_replay_of_some_areas_reads_only_their_events_in_log_order(bus: Bus) -> None:
    """R12: health's takeover replays the events about servers (and fleet alerts) only,
    filtered by the stream, in log order; an area with no event replays as nothing."""
    published = []
    for i, (server, camera) in enumerate([("rs-1", "c1"), ("rs-2", "c2"), ("rs-1", "c3")]):
        failed = ServerFailed(server=server, cause=FailureCause.NETWORK)
        pending = CameraPending(camera=camera, home=server, reason="no server has a free channel")
        await bus.publish_event(subjects.server_event(server, failed.type), failed, f"h-{i}")
        await bus.publish_event(subjects.camera_event(camera, pending.type), pending, f"p-{i}")
        published += [failed, pending]
    held = FailoversHeld(servers=("rs-1", "rs-2"), total=2, share=0.5)
    await bus.publish_event(subjects.alert_event(held.type), held, "a-0")
    replayed = await bus.replay_about("server", "alert")
    assert [seq for seq, _ in replayed] == [1, 3, 5, 7]
    assert [e for _, e in replayed] == [*published[0::2], held]
    assert await bus.replay_about("sync") == []
