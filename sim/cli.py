"""``python -m sim``: run seeds; for a failing one, print a minimal trace and the line
that reproduces it."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from sim.mutants import MUTANTS
from sim.run import Outcome, minimise, run
from sim.scenario import Settings

TRACE_LINES = 60


def trace_of(outcome: Outcome, lines: int = TRACE_LINES) -> list[str]:
    """The steps that led to the violation: those about its servers and cameras (and the
    leader changes), the last ``lines`` of them."""
    v = outcome.violation
    assert v is not None
    involved = set(v.entities)
    kept = [
        f"  t={t:10.3f}  {text}"
        for t, text, entities in outcome.trace
        if not entities or not involved or involved.intersection(entities)
    ]
    if len(kept) > lines:
        kept = [f"  ... {len(kept) - lines} earlier steps left out", *kept[-lines:]]
    return kept


def reproduce_line(settings: Settings) -> str:
    line = (
        f"python -m sim --seed {settings.seed} --servers {settings.servers} "
        f"--cameras {settings.cameras} --hours {settings.hours:g}"
    )
    if settings.mutant:
        line += f" --mutant {settings.mutant}"
    if not settings.strict:
        line += " --lenient"
    if settings.faults is not None:
        line += f" --faults {','.join(map(str, settings.faults)) or 'none'}"
    return line


def report_failure(outcome: Outcome, *, shrink: bool, lines: int) -> None:
    """Minimise the failing run's faults, then print its trace."""
    smallest = minimise(outcome) if shrink else outcome
    traced = run(replace(smallest.settings, trace=True))
    if traced.violation is None:  # cannot happen for a deterministic run
        print("  (the traced re-run did not fail: the run is not deterministic!)")
        traced = outcome
    print(f"  world: {traced.scenario}")
    if shrink:
        kept = len(traced.faults)
        print(f"  minimised: {kept} of {len(outcome.faults)} faults still break it")
    print(f"  reproduce: {reproduce_line(traced.settings)}")
    print("  faults:")
    v = traced.violation
    assert v is not None
    before = [f for f in traced.faults if f.at <= v.at]
    for fault in before[-15:]:
        print(f"    t={fault.at:10.3f}  {fault.describe()}")
    print("  trace:")
    for line in trace_of(traced, lines):
        print(line)
    print(f"  VIOLATION {v.invariant} at t={v.at:.3f}: {v.detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim",
        description="Deterministic simulation of the failover core (issue 9).",
    )
    parser.add_argument("--seed", type=int, default=0, help="the (first) seed")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds, from --seed")
    parser.add_argument("--servers", type=int, default=12)
    parser.add_argument("--cameras", type=int, default=240)
    parser.add_argument("--hours", type=float, default=0.25, help="virtual hours of faults")
    parser.add_argument("--mutant", choices=MUTANTS, default=None)
    parser.add_argument(
        "--faults", default=None, help="only these faults of the schedule: 3,7,12 or none"
    )
    parser.add_argument("--no-minimise", action="store_true", help="print the whole trace")
    parser.add_argument("--trace-lines", type=int, default=TRACE_LINES)
    parser.add_argument("--stop-at-first", action="store_true")
    parser.add_argument(
        "--lenient", action="store_true", help="known findings are counted, not fatal"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only failures and totals")
    args = parser.parse_args(argv)
    faults: tuple[int, ...] | None = None
    if args.faults is not None:
        faults = () if args.faults == "none" else tuple(int(x) for x in args.faults.split(","))
    started = time.perf_counter()
    failed: list[int] = []
    virtual = 0.0
    for seed in range(args.seed, args.seed + args.seeds):
        settings = Settings(
            seed=seed,
            servers=args.servers,
            cameras=args.cameras,
            hours=args.hours,
            mutant=args.mutant,
            faults=faults,
            strict=not args.lenient,
        )
        outcome = run(settings)
        virtual += outcome.virtual_seconds
        if not outcome.ok or not args.quiet:
            print(outcome.summary(), flush=True)
        if not outcome.ok:
            failed.append(seed)
            report_failure(outcome, shrink=not args.no_minimise, lines=args.trace_lines)
            if args.stop_at_first:
                break
    wall = time.perf_counter() - started
    print(
        f"{args.seeds} seeds from {args.seed}: {len(failed)} failed {failed[:20]}; "
        f"{virtual / 3600:.1f} virtual h in {wall:.1f} s "
        f"({virtual / 3600 / max(wall, 1e-9):.1f} virtual h per wall second)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
