"""The chaos soak (issue 10): ``blaze up --ha`` under a seeded mixture of faults, with a
checker beside it that holds the cluster to the spec from what an outside observer sees,
and a report. ``python -m soak --help``; docs/soak.md."""

from soak.faults import FaultKind, FleetShape, PlannedFault, plan_faults
from soak.observations import Bounds, SegmentSeen, StatusSeen
from soak.rules import RULES, Checker, Violation

__all__ = [
    "RULES",
    "Bounds",
    "Checker",
    "FaultKind",
    "FleetShape",
    "PlannedFault",
    "SegmentSeen",
    "StatusSeen",
    "Violation",
    "plan_faults",
]
