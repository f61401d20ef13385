"""The deterministic simulation (issue 9): a few hundred seeds keep every invariant, a
seed replays exactly, and a planner that ignores capacity is caught within the budget."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sim import Settings, run
from sim.cli import trace_of

ROOT = Path(__file__).resolve().parents[2]
SMALL = Settings(servers=8, cameras=120, hours=0.05)
"""Most seeds: a small fleet, three virtual minutes of faults, then the calm."""
MUTANT_BUDGET = 300
"""Seeds the capacity mutant must be caught within."""


@pytest.mark.parametrize("first", range(0, 300, 50))
def test_a_few_hundred_seeds_keep_every_invariant(first: int) -> None:
    failed = []
    for seed in range(first, first + 50):
        outcome = run(replace(SMALL, seed=seed))
        if not outcome.ok:
            failed.append(outcome.summary())
    assert not failed, "\n".join(failed)


def test_a_larger_fleet_for_a_quarter_hour_keeps_every_invariant() -> None:
    outcome = run(Settings(seed=7, servers=60, cameras=1500, hours=0.25))
    assert outcome.ok, outcome.summary()
    assert outcome.faults_applied > 10


@pytest.mark.slow
def test_the_full_size_fleet_keeps_every_invariant() -> None:
    """1,000 servers and 50,000 cameras, two virtual minutes of faults."""
    outcome = run(Settings(seed=1, servers=1000, cameras=50_000, hours=0.03))
    assert outcome.ok, outcome.summary()


def test_the_same_seed_gives_the_same_trace_twice() -> None:
    settings = replace(SMALL, seed=11, trace=True)
    first, second = run(settings), run(settings)
    assert first.trace == second.trace
    assert first.digest == second.digest
    assert len(first.trace) > 100


def test_the_same_seed_gives_the_same_run_under_another_hash_seed() -> None:
    """No set order, no hash(): a run depends on the seed alone."""
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        args = [sys.executable, "-m", "sim", "--seed", "5", "--servers", "8"]
        out = subprocess.run(
            [*args, "--cameras", "120", "--hours", "0.05"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        digests.add(out.split("digest ")[1].split()[0].rstrip(";"))
    assert len(digests) == 1


def _first_failing_seed() -> int | None:
    for seed in range(MUTANT_BUDGET):
        if not run(replace(SMALL, seed=seed, mutant="capacity")).ok:
            return seed
    return None


def test_a_planner_that_ignores_capacity_is_caught_within_the_budget() -> None:
    seed = _first_failing_seed()
    assert seed is not None, f"the capacity mutant survived {MUTANT_BUDGET} seeds"
    outcome = run(replace(SMALL, seed=seed, mutant="capacity"))
    assert outcome.violation is not None
    assert outcome.violation.invariant in ("placement_capacity", "agent_capacity")


def test_a_failing_seed_reproduces_exactly_with_its_trace() -> None:
    seed = _first_failing_seed()
    assert seed is not None
    settings = replace(SMALL, seed=seed, mutant="capacity", trace=True)
    first, again = run(settings), run(settings)
    assert first.violation is not None
    assert again.violation is not None
    assert (first.violation.invariant, first.violation.at, first.violation.detail) == (
        again.violation.invariant,
        again.violation.at,
        again.violation.detail,
    )
    assert trace_of(first) == trace_of(again)
    assert trace_of(first), "a failing seed prints the steps that led to it"


def test_the_command_line_reproduces_a_failing_seed() -> None:
    seed = _first_failing_seed()
    assert seed is not None
    args = [sys.executable, "-m", "sim", "--seed", str(seed), "--servers", "8"]
    args += ["--cameras", "120", "--hours", "0.05", "--mutant", "capacity", "--no-minimise"]
    done = subprocess.run(args, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "VIOLATION" in done.stdout
    assert f"python -m sim --seed {seed}" in done.stdout


@pytest.mark.parametrize("seed", [4, 90, 184, 199])
def test_the_seeds_that_found_real_bugs_keep_every_invariant(seed: int) -> None:
    """docs/simulation.md, "Findings": seed 4 (a Pending camera kept its epoch), 184 (a
    claim on its way to a home whose storage had just failed), 90 and 199 (a server back
    from a failure was claimed to capacity on top of what was left on it)."""
    outcome = run(Settings(seed=seed))
    assert outcome.ok, outcome.summary()
