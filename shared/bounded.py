"""Work through items with at most ``limit`` at once; the first failure stops the rest.

Not ``asyncio.TaskGroup``: on Python 3.11 a group whose child fails while the parent
waits in its exit leaves the parent task marked as cancelling, and a later
``cancelling()`` check (or timeout) then misreads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def for_each(items: Iterable[T], limit: int, work: Callable[[T], Awaitable[None]]) -> None:
    """``await work(item)`` for every item, ``limit`` at a time; re-raise the first error
    once the workers have stopped (items not started by then are skipped)."""
    pending = list(items)
    pending.reverse()
    failures: list[Exception] = []

    async def worker() -> None:
        while pending and not failures:
            item = pending.pop()
            try:
                await work(item)
            except Exception as exc:  # noqa: BLE001 (handed to the caller below)
                failures.append(exc)

    await asyncio.gather(*(worker() for _ in range(max(1, limit))))
    if failures:
        raise failures[0]


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait until each has ended, so none outlives its owner
    (a leader's term): their ``finally`` blocks have run when this returns."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def raise_if_cancelled() -> None:
    """Stop a loop whose cancel was lost on the way: Python 3.11's ``wait_for`` (and so
    nats-py's ``next_msg`` and ``request``) can turn a cancel that races its timeout into
    a TimeoutError, and a loop that retries on timeouts would then run for ever. Call it
    where such a loop goes round again."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
