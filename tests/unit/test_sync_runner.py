"""A sync runner whose cancel a library swallowed still stops at its next step (R9, R12):
it must not sync on after its term with a closed connection."""

from __future__ import annotations

import asyncio

import pytest

from shared.bounded import raise_if_cancelled


async def test_a_swallowed_cancel_still_stops_the_runner_at_its_next_step() -> None:
    steps: list[str] = []

    async def runner() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            steps.append("swallowed")  # as Python 3.11's wait_for can, racing a reply
        raise_if_cancelled()
        steps.append("synced on")

    task = asyncio.create_task(runner())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["swallowed"]


async def test_a_runner_nobody_cancelled_goes_on() -> None:
    async def runner() -> str:
        raise_if_cancelled()
        return "synced"

    assert await asyncio.create_task(runner()) == "synced"
