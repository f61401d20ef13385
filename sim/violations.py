"""What the simulation reports when an invariant breaks."""

from __future__ import annotations


class Violation(Exception):  # noqa: N818 (an invariant's breach, not an error of the simulator)
    """An invariant broke: which one, what was seen, and the servers and cameras involved."""

    def __init__(self, invariant: str, detail: str, entities: tuple[str, ...] = ()) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail
        self.entities = entities
        self.at = 0.0
        """Virtual time of the breach (set by the run)."""
        self.step = 0
        """The step it was seen after (set by the run)."""
