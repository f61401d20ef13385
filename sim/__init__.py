"""Deterministic simulation of the failover core (issue 9): the real detector, placement
fold and planner and the agents' epoch rules, driven by a seeded scheduler in virtual
time over a bus that delays, drops, duplicates and reorders, with invariants checked
after every step. ``python -m sim --seed N`` reproduces any seed exactly."""

from sim.mutants import MUTANTS, mutant
from sim.run import Outcome, minimise, run
from sim.scenario import Settings
from sim.violations import Violation

__all__ = ["MUTANTS", "Outcome", "Settings", "Violation", "minimise", "mutant", "run"]
