"""Virtual time: a seeded, single-threaded scheduler of actions at virtual instants.

Actions due at the same instant run in the order they were scheduled (a counter breaks
ties), so a run depends on the seed alone: never on the wall clock, hash seeds or set
order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

Action = Callable[[], None]


class Clock:
    """The simulation's only clock and its queue of things to happen."""

    def __init__(self) -> None:
        self.now = 0.0
        self.steps = 0
        """Actions run so far: the simulation's step counter."""
        self._queue: list[tuple[float, int, Action]] = []
        self._order = 0

    def at(self, when: float, action: Action) -> None:
        """Run ``action`` at virtual time ``when`` (never in the past)."""
        self._order += 1
        heapq.heappush(self._queue, (max(when, self.now), self._order, action))

    def after(self, delay: float, action: Action) -> None:
        """Run ``action`` ``delay`` virtual seconds from now."""
        self.at(self.now + delay, action)

    def every(self, period: float, action: Action, until: Callable[[], bool]) -> None:
        """Run ``action`` every ``period`` seconds, from one period on, while not ``until()``."""

        def tick() -> None:
            if until():
                return
            action()
            self.after(period, tick)

        self.after(period, tick)

    def run_until(self, end: float, after_step: Callable[[], bool]) -> bool:
        """Run every action due up to ``end``; ``after_step`` returns False to stop early.
        Returns whether the run reached ``end``."""
        queue = self._queue
        while queue and queue[0][0] <= end:
            when, _, action = heapq.heappop(queue)
            self.now = when
            self.steps += 1
            action()
            if not after_step():
                return False
        self.now = max(self.now, end)
        return True
