"""The event log's de-duplication, as the services rely on it (R11, R12): a decision
published again under the same Msg-Id is stored once, and the publisher learns which
call appended it (health counts failovers only for that one)."""

from __future__ import annotations

from shared import subjects
from shared.bus import Bus
from shared.messages import FailureCause, ServerFailed


async def test_a_repeated_msg_id_is_stored_once_and_the_repeat_says_so(bus: Bus) -> None:
    failed = ServerFailed(server="rs-1", cause=FailureCause.STORAGE)
    subject = subjects.server_event("rs-1", failed.type)
    assert await bus.publish_event(subject, failed, "health-rs-1-0-server_failed") is True
    assert await bus.publish_event(subject, failed, "health-rs-1-0-server_failed") is False
    assert await bus.publish_event(subject, failed, "health-rs-1-1-server_failed") is True
    assert await bus.last_event_seq() == 2
