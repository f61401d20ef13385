"""Deliberately broken cores, to show the simulation finds what it must (issue 9).

``capacity``: the planner ignores capacity in one branch: a camera goes home whenever
its home takes cameras at all, full or not (``Spare.pick``'s first test).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from services.placement import planner
from services.placement.planner import Candidate, Spare

MUTANTS = ("capacity",)


def _pick_ignoring_home_capacity(self: Spare, cam: Candidate) -> str | None:
    if cam.home in self.free:  # BUG (deliberate): a full home is still chosen
        return cam.home
    return _original_pick(self, cam)


_original_pick = planner.Spare.pick


@contextlib.contextmanager
def mutant(name: str | None) -> Iterator[None]:
    """Run the core with mutant ``name`` patched in (None: the real core)."""
    if name is None:
        yield
        return
    if name not in MUTANTS:
        raise ValueError(f"unknown mutant {name!r}; known: {', '.join(MUTANTS)}")
    planner.Spare.pick = _pick_ignoring_home_capacity  # type: ignore[method-assign]
    try:
        yield
    finally:
        planner.Spare.pick = _original_pick  # type: ignore[method-assign]
