"""What the console pushes to its pages: the recent events, kept in order with their stream
sequence, and one bounded queue of Server-Sent Events frames per open page.

No bus, no HTTP here: the service feeds it events and status notices, each page's stream
drains its own queue. A page that falls behind is ended rather than allowed to grow a
queue without bound; the browser reconnects with ``Last-Event-ID`` and resumes from the
history kept here.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

HISTORY = 300
"""Events kept for a page that opens (or reconnects): the timeline's depth."""

QUEUE_FRAMES = 2_000
"""Frames one page may have waiting; more, and its stream is ended (it reconnects)."""


def frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One Server-Sent Events frame: ``event``, then ``data`` as one line of JSON."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class PageStream:
    """One open page's frames, in order; ``ended`` once it fell behind or the feed closed."""

    def __init__(self, backlog: list[bytes]) -> None:
        self._frames: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.ended = False
        for item in backlog:
            self._frames.put_nowait(item)

    def offer(self, item: bytes) -> None:
        """Queue a frame; a page this far behind is ended instead."""
        if self.ended:
            return
        if self._frames.qsize() >= QUEUE_FRAMES:
            self.end()
            return
        self._frames.put_nowait(item)

    def end(self) -> None:
        """No more frames: the page's request returns once it has drained what it has."""
        if not self.ended:
            self.ended = True
            self._frames.put_nowait(None)

    async def next(self, timeout: float) -> bytes | None:
        """The next frame; ``b""`` when none came within ``timeout`` (time for a keep-alive),
        None when the stream has ended."""
        if self.ended and self._frames.empty():
            return None
        try:
            return await asyncio.wait_for(self._frames.get(), timeout)
        except TimeoutError:
            return b""


class Feed:
    """The recent events and every open page's stream."""

    def __init__(self, history: int = HISTORY) -> None:
        self._events: deque[tuple[int, bytes]] = deque(maxlen=history)
        self._pages: set[PageStream] = set()
        self.last_seq = 0
        self.status_notice: dict[str, Any] | None = None

    @property
    def pages(self) -> int:
        """Pages connected now."""
        return len(self._pages)

    def add_event(self, seq: int, event: dict[str, Any]) -> None:
        """A new event from the log (in stream order), to every page."""
        self.last_seq = seq
        item = frame("event", {"seq": seq, **event}, seq)
        self._events.append((seq, item))
        for page in list(self._pages):
            page.offer(item)

    def status_changed(self, notice: dict[str, Any]) -> None:
        """The placement state (or the leaders) changed: pages fetch the status again."""
        self.status_notice = notice
        item = frame("status", notice)
        for page in list(self._pages):
            page.offer(item)

    def open(self, after: int | None) -> PageStream:
        """A stream for a page: the kept events after ``after`` (all of them when None),
        the last status notice, then whatever comes."""
        backlog = [item for seq, item in self._events if after is None or seq > after]
        if self.status_notice is not None:
            backlog.append(frame("status", self.status_notice))
        page = PageStream(backlog)
        self._pages.add(page)
        return page

    def close(self, page: PageStream) -> None:
        """A page went away."""
        page.end()
        self._pages.discard(page)

    def close_all(self) -> None:
        """The console stops: every stream ends."""
        for page in list(self._pages):
            self.close(page)
