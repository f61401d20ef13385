"""Test helpers: assert eventually (never sleep and hope), and read Prometheus text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import REGISTRY

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    within: float,
    what: str,
    every: float = 0.05,
) -> T:
    """Poll ``probe`` until ``until(value)`` holds; fail with the last value after ``within`` s."""
    deadline = time.monotonic() + within
    value = await probe()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}; last seen: {value!r}"[:3000])
        await asyncio.sleep(every)
        value = await probe()
    return value


async def holds(
    probe: Callable[[], Awaitable[T]],
    invariant: Callable[[T], bool],
    for_s: float,
    what: str,
    every: float = 0.1,
) -> None:
    """``invariant`` must hold at every poll for ``for_s`` seconds."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        value = await probe()
        assert invariant(value), f"stopped holding: {what}; saw {value!r}"[:3000]
        await asyncio.sleep(every)


def metric(name: str, **labels: str) -> float:
    """Current value of one sample in this process's Prometheus registry (0 if absent)."""
    value = REGISTRY.get_sample_value(name, labels or None)
    return value if value is not None else 0.0
