"""The durable event log (JetStream in the real cluster): ordered, never loses an event,
drops a repeated Msg-Id."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from shared.messages import AnyEvent

DUPLICATE_WINDOW = 120.0
"""Seconds a Msg-Id is remembered (JetStream's default duplicate window)."""


class EventLog:
    """Every event in order; ``on_append`` hears of each new one."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.events: list[AnyEvent] = []
        self._ids: dict[str, float] = {}
        self._now = now
        self.on_append: list[Callable[[int, AnyEvent], None]] = []

    def __len__(self) -> int:
        return len(self.events)

    def append(self, event: AnyEvent, msg_id: str | None = None) -> bool:
        """Append unless ``msg_id`` was seen; returns whether it was appended."""
        if msg_id is not None:
            now = self._now()
            seen = self._ids.get(msg_id)
            if seen is not None and now - seen < DUPLICATE_WINDOW:
                return False
            self._ids[msg_id] = now
        self.events.append(event)
        for hear in self.on_append:
            hear(len(self.events) - 1, event)
        return True

    def digest(self) -> str:
        """A hash of every event without its wall-clock stamp: equal runs, equal digests."""
        h = hashlib.sha256()
        for event in self.events:
            h.update(event.model_dump_json(exclude={"time"}).encode())
            h.update(b"\n")
        return h.hexdigest()[:16]
