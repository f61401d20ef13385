"""Placement's pure core at scale, without NATS (issue 8, benchmark 6; ``python -m bench.planner``).

1. A failure decision: a cluster of N servers x M cameras, every camera at home, then
   ``Placement.apply`` of one server's ``server_failed`` (the event health publishes);
   the apply call, and the planner's share of it, at 10k, 100k and 1M cameras.
2. A rack failure: the 20 servers of one failover group fail at once at 100k cameras;
   folding the 20 events in, then also deriving every claim command for the agents.
3. What the shell asks of the state besides: per heartbeat (``strays`` and ``missing``),
   per committed event (``cameras_by_state``, ``outstanding_commands``, ``moving_off``),
   and the whole snapshot written to and read from KV (time, and bytes per camera).

Servers stand in racks of 20, each rack a failover group of one site, so a server's
cameras fail over within its rack and a whole rack's to the other racks. Every server
has 10 % spare channels. ``--smoke`` runs everything at tiny sizes in a few seconds.
Writes ``bench/results/planner.json``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from bench.common import Figure, write_result
from services.placement.planner import Candidate, plan
from services.placement.state import Placement
from shared.config import CameraConfig, ClusterConfig, Priority, ServerConfig
from shared.messages import Action, FailureCause, ServerFailed

GOAL_SCALE = "100k"
"""Where the failure decision is held to its goal."""
PRIORITIES = (Priority.HIGH, *[Priority.MEDIUM] * 7, Priority.LOW, Priority.LOW)
"""One camera in ten is high, two are low, the rest medium."""


@dataclass(frozen=True)
class Scale:
    """A cluster size and how many decisions to time at it; ``name`` is the full run's
    camera count, which figure names carry (a smoke run keeps them at tiny sizes)."""

    name: str
    servers: int
    per_server: int
    runs: int
    rack: int = 20
    spare: float = 0.1
    """Spare channels per server, as a share of its cameras."""

    @property
    def cameras(self) -> int:
        """Cameras in the cluster."""
        return self.servers * self.per_server

    @property
    def size(self) -> str:
        """In words, for a figure's description."""
        return f"{self.servers:,} servers x {self.per_server} cameras"


@dataclass(frozen=True)
class Plan:
    """What one run measures."""

    failures: tuple[Scale, ...]
    at_scale: Scale
    """Where the rack failure, heartbeats, per-event costs and snapshots are measured."""
    heartbeats: int
    snapshots: int
    rack_runs: int


FULL = Plan(
    failures=(
        Scale("10k", 100, 100, 20),
        Scale("100k", 1000, 100, 20),
        Scale("1m", 10_000, 100, 3),
    ),
    at_scale=Scale("100k", 1000, 100, 20),
    heartbeats=200,
    snapshots=5,
    rack_runs=10,
)
SMOKE = Plan(
    failures=(
        Scale("10k", 5, 10, 3, rack=5, spare=0.5),
        Scale("100k", 20, 10, 3, rack=5, spare=0.5),
        Scale("1m", 80, 10, 2, rack=5, spare=0.5),
    ),
    at_scale=Scale("100k", 20, 10, 3, rack=5, spare=0.5),
    heartbeats=5,
    snapshots=2,
    rack_runs=2,
)


# ---- the cluster ----


def server_id(i: int) -> str:
    return f"rs-{i:05d}"


def config(scale: Scale) -> ClusterConfig:
    """N servers with spare channels in racks (failover groups), M cameras at each."""
    capacity = scale.per_server + max(1, round(scale.per_server * scale.spare))
    servers = tuple(
        ServerConfig(
            id=server_id(i), capacity=capacity, site="dc-1", group=f"rack-{i // scale.rack}"
        )
        for i in range(scale.servers)
    )
    cameras = tuple(
        CameraConfig(id=f"cam-{i:05d}-{k:03d}", home=server_id(i), priority=PRIORITIES[k % 10])
        for i in range(scale.servers)
        for k in range(scale.per_server)
    )
    return ClusterConfig(servers=servers, cameras=cameras)


def started(scale: Scale) -> Placement:
    """A fresh cluster whose agents have confirmed every start claim: all at home."""
    state, _ = Placement.from_config(config(scale))
    state.agents_comply(rounds=1)
    assert not state.outstanding_commands(), "start claims left over"
    return state


def fresh_copy(state: Placement) -> Placement:
    """An independent copy to fail servers in, collected garbage first (not timed)."""
    copy = state.model_copy(deep=True)
    gc.collect()
    return copy


def planner_alone(state: Placement, server: str) -> float:
    """Seconds of the one ``plan`` call a failure of ``server`` makes, on the inputs the
    fold gives it then: that server's cameras, every other server's free channels."""
    at = (c for c in state.cameras.values() if c.host == server)
    cameras = [Candidate(c.id, c.home, c.priority) for c in at]
    free = state.free_capacity()
    del free[server]
    topology = state.topology()
    return timed(lambda: plan(cameras, free, topology))


def timed(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def failed(server: str) -> ServerFailed:
    return ServerFailed(server=server, cause=FailureCause.NETWORK, detail="bench")


# ---- 1. one server fails ----


def failure_decisions(scale: Scale) -> tuple[list[float], list[float]]:
    """Seconds of ``apply(server_failed)``, and of the planner within it, per decision.
    Each decision fails a server of another rack (failover group) than the ones before,
    in the same state, so each finds its group as in an all-home cluster: a copy of the
    state (seconds at 1M cameras) is made only when every rack has had a failure."""
    base = started(scale)
    racks = max(1, scale.servers // scale.rack)
    one_pass = racks >= scale.runs  # then the base itself takes the decisions
    applies, planners = [], []
    state = base
    for run in range(scale.runs):
        if run % racks == 0 and not one_pass:
            state = fresh_copy(base)
        server = server_id((run % racks) * scale.rack + (run // racks) % scale.rack)
        planners.append(planner_alone(state, server))
        event = failed(server)
        applies.append(timed(lambda: state.apply(event)))  # noqa: B023 (called at once)
        moved = sum(1 for c in state.cameras.values() if c.home == server and c.target)
        assert moved == scale.per_server, f"{moved} cameras moved, not {scale.per_server}"
    return applies, planners


def failure_figures(scales: tuple[Scale, ...]) -> list[Figure]:
    figures: list[Figure] = []
    medians: list[tuple[Scale, float]] = []
    for scale in scales:
        applies, planners = failure_decisions(scale)
        held = scale.name == GOAL_SCALE
        figure = Figure.of(
            f"failure_apply_{scale.name}",
            f"{scale.size}: apply(server_failed), all cameras at home before",
            applies,
            goal="≤ 100 ms p99" if held else "",
            limit=100.0 if held else None,
        )
        figures.append(figure)
        figures.append(
            Figure.of(
                f"failure_planner_{scale.name}",
                f"{scale.size}: the plan() call of that apply, alone, on the same inputs",
                planners,
            )
        )
        medians.append((scale, figure.median))
    for (small, t_small), (big, t_big) in itertools.pairwise(medians):
        figures.append(
            Figure.of(
                f"failure_growth_{small.name}_to_{big.name}",
                f"median apply at {big.cameras:,} cameras over median at {small.cameras:,} "
                f"({big.cameras // small.cameras}x the cameras; 1x: it grows with the "
                "failed server's cameras only)",
                [t_big / max(t_small, 1e-6)],
                unit="x",
                scale=1.0,
            )
        )
    return figures


# ---- 2. a rack fails ----


def rack_failure(base: Placement, scale: Scale) -> tuple[float, float, int]:
    """Seconds to fold the failures of a whole rack, then to derive every command; and
    how many claims the agents get."""
    state = fresh_copy(base)
    events = [failed(server_id(i)) for i in range(scale.rack)]
    fold = timed(lambda: [state.apply(e) for e in events])
    t0 = time.perf_counter()
    commands = state.outstanding_commands()
    commands_s = time.perf_counter() - t0
    claims = sum(len(c.cameras) for c in commands if c.action is Action.CLAIM)
    assert claims == scale.rack * scale.per_server, f"{claims} claims"
    return fold, commands_s, claims


def rack_figures(base: Placement, scale: Scale, runs: int) -> list[Figure]:
    folds, totals, claims = [], [], 0
    for _ in range(runs):
        fold, commands_s, claims = rack_failure(base, scale)
        folds.append(fold)
        totals.append(fold + commands_s)
    what = f"{scale.size}: the {scale.rack} servers of one rack fail at once"
    return [
        Figure.of(
            f"rack_failure_fold_{scale.name}", f"{what}; fold the {scale.rack} events", folds
        ),
        Figure.of(
            f"rack_failure_claims_{scale.name}",
            f"{what}; fold, then derive every claim command ({claims:,} cameras)",
            totals,
            goal="part of ≤ 1 s end to end",
            limit=1000.0,
        ),
    ]


# ---- 3. what the shell asks per heartbeat, per event, per commit ----


def heartbeat_figures(base: Placement, scale: Scale, beats: int) -> list[Figure]:
    """``strays`` and ``missing`` of one agent's heartbeat listing what it records."""
    hosted: dict[str, dict[str, int]] = {}
    for cam in base.cameras.values():
        if cam.host is not None:
            hosted.setdefault(cam.host, {})[cam.id] = cam.epoch
    samples = []
    for i in range(beats):
        server = server_id(i * 7919 % scale.servers)
        listed = hosted.get(server, {})
        samples.append(
            timed(lambda: (base.strays(server, listed), base.missing(server, listed)))  # noqa: B023
        )
    return [
        Figure.of(
            f"heartbeat_reconcile_{scale.name}",
            f"{scale.size}: strays() + missing() for one heartbeat listing its "
            f"{scale.per_server} cameras",
            samples,
            unit="µs",
            scale=1e6,
            goal="median ≤ 100 µs (1,000 servers beat each second: ≤ 10 % of a core)",
            limit=100.0,
            on="median",  # a budget of CPU per second: the typical cost, not the worst
        )
    ]


def per_event_figures(base: Placement, scale: Scale, runs: int) -> list[Figure]:
    """What the shell derives after every event it folds: counts for the metrics, the
    commands to send, whether a failed server's cameras still move; timed while a
    rack's cameras move (``moving_off`` of a server nothing moves off: a full look)."""
    state = fresh_copy(base)
    for i in range(scale.rack):
        state.apply(failed(server_id(i)))
    quiet = server_id(scale.servers - 1)
    sections: dict[str, tuple[str, Callable[[], object]]] = {
        "cameras_by_state": ("cameras_by_state() for the metrics", state.cameras_by_state),
        "outstanding_commands": ("outstanding_commands()", state.outstanding_commands),
        "moving_off": ("moving_off(a server)", lambda: state.moving_off(quiet)),
    }
    return [
        Figure.of(
            f"per_event_{name}_{scale.name}",
            f"{scale.size}, a rack's cameras moving: {what}",
            [timed(call) for _ in range(runs)],
            unit="µs",
            scale=1e6,
        )
        for name, (what, call) in sections.items()
    ]


def snapshot_figures(base: Placement, scale: Scale, runs: int) -> list[Figure]:
    """The whole state to JSON (every commit) and back (every takeover, every CLI read)."""
    raw = base.model_dump_json().encode()
    dumps = [timed(base.model_dump_json) for _ in range(runs)]
    loads = [timed(lambda: Placement.model_validate_json(raw)) for _ in range(runs)]
    restored = Placement.model_validate_json(raw)
    assert restored.model_dump() == base.model_dump(), "snapshot does not round-trip"
    return [
        Figure.of(f"snapshot_dump_{scale.name}", f"{scale.size}: model_dump_json()", dumps),
        Figure.of(f"snapshot_load_{scale.name}", f"{scale.size}: model_validate_json()", loads),
        Figure.of(
            f"snapshot_bytes_per_camera_{scale.name}",
            f"{scale.size}: snapshot size per camera ({len(raw):,} bytes in all)",
            [len(raw) / scale.cameras],
            unit="bytes",
            scale=1.0,
        ),
    ]


def run(plan: Plan) -> list[Figure]:
    figures = failure_figures(plan.failures)
    scale = plan.at_scale
    base = started(scale)
    figures += rack_figures(base, scale, plan.rack_runs)
    figures += heartbeat_figures(base, scale, plan.heartbeats)
    figures += per_event_figures(base, scale, plan.snapshots)
    figures += snapshot_figures(base, scale, plan.snapshots)
    return figures


def names(plan: Plan = FULL) -> list[str]:
    """The figures this benchmark writes, in order (a smoke run writes the same)."""
    found = []
    for scale in plan.failures:
        found += [f"failure_apply_{scale.name}", f"failure_planner_{scale.name}"]
    found += [f"failure_growth_{a.name}_to_{b.name}" for a, b in itertools.pairwise(plan.failures)]
    at = plan.at_scale.name
    found += [f"rack_failure_fold_{at}", f"rack_failure_claims_{at}", f"heartbeat_reconcile_{at}"]
    found += [f"per_event_{n}_{at}" for n in ("cameras_by_state", "outstanding_commands")]
    found += [f"per_event_moving_off_{at}"]
    found += [f"snapshot_{n}_{at}" for n in ("dump", "load", "bytes_per_camera")]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.planner", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--no-million", action="store_true", help="skip the 1M-camera decisions")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.no_million:
        plan = replace(plan, failures=tuple(s for s in plan.failures if s.name != "1m"))
    t0 = time.monotonic()
    figures = run(plan)
    params = {
        "smoke": args.smoke,
        "failures": [f"{s.size} ({s.runs} runs)" for s in plan.failures],
        "at_scale": plan.at_scale.size,
        "rack": plan.at_scale.rack,
        "spare_channels": f"{plan.at_scale.spare:.0%}",
        "priorities": "1 in 10 high, 2 in 10 low, the rest medium",
        "wall_s": round(time.monotonic() - t0, 1),
    }
    write_result("planner", figures, params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
