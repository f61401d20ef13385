"""What every benchmark shares (issue 8): the machine it ran on, median/p99 summaries,
figures with their goals, and ``bench/results/<name>.json``, which ``bench.report`` turns
into BENCHMARKS.md.

A result file is ``{"name", "machine", "params", "figures": [Figure, ...]}``; a figure
has a median and a p99 over ``runs`` samples (or one value, with ``runs`` 1), a unit, and
the goal it is held to (``goal`` in words, ``met`` true/false, or null for a figure
that has no goal, such as a baseline).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from shared.bus.natsserver import find_nats_server, server_version

RESULTS = Path(__file__).parent / "results"


def results_dir() -> Path:
    """``bench/results``, or ``$BLAZE_BENCH_RESULTS`` when set (tests write to a temp dir)."""
    return Path(os.environ.get("BLAZE_BENCH_RESULTS") or RESULTS)


def machine() -> dict[str, Any]:
    """Where and when: date, Python, platform, CPUs, nats-server."""
    nats = find_nats_server()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "nats_server": ".".join(map(str, server_version(nats))),
    }


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile by nearest rank (p99 of 20 samples is the largest)."""
    return sorted_values[max(0, round(q * len(sorted_values) + 0.5) - 1)]


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p99 (nearest rank), min and max, in milliseconds, of samples in seconds."""
    ms = sorted(s * 1000 for s in samples)
    return {
        "runs": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p99_ms": round(nearest_rank(ms, 0.99), 1),
        "min_ms": round(ms[0], 1),
        "max_ms": round(ms[-1], 1),
    }


@dataclass(frozen=True)
class Figure:
    """One measured figure and the goal it is held to."""

    name: str
    what: str
    unit: str
    median: float
    p99: float | None
    runs: int
    goal: str = ""
    met: bool | None = None

    @classmethod
    def of(
        cls,
        name: str,
        what: str,
        samples: list[float],
        *,
        unit: str = "ms",
        scale: float = 1000.0,
        goal: str = "",
        limit: float | None = None,
        on: str = "p99",
    ) -> Figure:
        """Median and p99 of ``samples`` times ``scale`` (seconds to ms by default);
        with ``limit``, ``met`` says whether the ``on`` statistic is at most it."""
        values = sorted(s * scale for s in samples)
        median = round(statistics.median(values), 2)
        p99 = round(nearest_rank(values, 0.99), 2)
        met = None if limit is None else (p99 if on == "p99" else median) <= limit
        return cls(name, what, unit, median, p99, len(values), goal, met)


R = TypeVar("R")


def run_quietly(work: Coroutine[Any, Any, R]) -> tuple[R, float]:
    """Run one benchmark's work with library logs at ERROR only; its result and its wall
    time in seconds (for ``write_result``'s ``wall_s``)."""
    logging.basicConfig(level=logging.ERROR)
    started = time.monotonic()
    result = asyncio.run(work)
    return result, round(time.monotonic() - started, 1)


def write_result(name: str, figures: list[Figure], params: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` and print its figures; returns the path."""
    results = results_dir()
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    document = {
        "name": name,
        "machine": machine(),
        "params": params,
        "figures": [asdict(f) for f in figures],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    for f in figures:
        p99 = "" if f.p99 is None else f", p99 {f.p99:g}"
        verdict = "" if f.met is None else ("  [met]" if f.met else "  [MISSED]")
        goal = f"  goal: {f.goal}" if f.goal else ""
        print(f"{f.name}: median {f.median:g}{p99} {f.unit} ({f.runs} runs){goal}{verdict}")
    return path


def ratio_figure(
    name: str, what: str, ours: Figure, base: Figure, *, goal: str = "", limit: float | None = None
) -> Figure:
    """``ours`` over ``base``: median over median, p99 over p99 (unit ×); with ``limit``,
    ``met`` says whether the p99 ratio is at most it."""
    median = round(ours.median / base.median, 2)
    p99 = None if ours.p99 is None or base.p99 is None else round(ours.p99 / base.p99, 2)
    met = None if limit is None or p99 is None else p99 <= limit
    return Figure(name, what, "×", median, p99, ours.runs, goal, met)


def at_least(
    name: str,
    what: str,
    samples: list[float],
    *,
    unit: str,
    scale: float = 1.0,
    goal: str = "",
    limit: float | None = None,
) -> Figure:
    """A figure where more is better (a throughput): median and p99 of ``samples`` times
    ``scale``; with ``limit``, ``met`` says whether the median is at least it."""
    figure = Figure.of(name, what, samples, unit=unit, scale=scale, goal=goal)
    met = None if limit is None else figure.median >= limit
    return Figure(name, what, unit, figure.median, figure.p99, figure.runs, goal, met)
