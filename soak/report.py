"""The soak's report: ``soak/results/<seed>.json`` and the summary printed at the end."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.bus.natsserver import find_nats_server, server_version
from soak.faultlog import ENDED, SKIPPED, STARTED, FaultRecord

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Settings:
    """One soak run's parameters."""

    duration: float
    servers: int
    cameras: int
    fault_every: float
    seed: int
    segment_seconds: float = 1.0

    def reproduce(self) -> str:
        """The command that runs the same soak again."""
        return (
            f"make soak SEED={self.seed} DURATION={self.duration:g} SERVERS={self.servers} "
            f"CAMERAS={self.cameras} FAULT_EVERY={self.fault_every:g} "
            f"SEGMENT_SECONDS={self.segment_seconds:g}"
        )


def machine() -> dict[str, Any]:
    """Where and when it ran."""
    try:
        nats = ".".join(map(str, server_version(find_nats_server())))
    except Exception:  # noqa: BLE001 - the report is written whatever happened
        nats = "unknown"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "nats_server": nats,
    }


def fault_summary(records: list[FaultRecord], planned: int) -> dict[str, Any]:
    """Faults injected by kind, skipped, and those whose repair failed."""
    started = [r for r in records if r.record == STARTED]
    ended = [r for r in records if r.record == ENDED]
    return {
        "planned": planned,
        "injected": len(started),
        "skipped": sum(1 for r in records if r.record == SKIPPED),
        "by_kind": dict(sorted(Counter(r.kind for r in started).items())),
        "replica_faults_by_role": dict(sorted(Counter(r.role for r in started if r.role).items())),
        "not_repaired": [asdict(r) for r in ended if not r.ok],
    }


def build(
    settings: Settings,
    *,
    wall_s: float,
    phases: dict[str, float],
    records: list[FaultRecord],
    planned: int,
    findings: dict[str, Any],
    resources: dict[str, Any],
    fault_phase_started: float,
) -> dict[str, Any]:
    """The whole report."""
    violations = [
        {**v, "at_s": round(v["at"] - fault_phase_started, 2)}
        for v in findings.get("violations", [])
    ]
    tally = findings.get("tally", {})
    return {
        "seed": settings.seed,
        "params": asdict(settings),
        "reproduce": settings.reproduce(),
        "machine": machine(),
        "wall_s": round(wall_s, 1),
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
        "faults": fault_summary(records, planned),
        "failovers": tally.get("failovers", {}),
        "recoveries": tally.get("recoveries", {}),
        "failbacks_completed": tally.get("failbacks_completed", 0),
        "camera_moves": tally.get("moves", {}),
        "events": tally.get("last_event_seq", 0),
        "segments_seen": tally.get("segments_seen", 0),
        "status_reads": tally.get("status_reads", 0),
        "convergence": findings.get("convergence", {}),
        "final": findings.get("final", {}),
        "violations": violations,
        "violations_by_rule": dict(sorted(Counter(v["rule"] for v in violations).items())),
        "observer_problems": findings.get("problems", []),
        "resources": resources,
        "fault_log": [asdict(r) for r in records],
    }


def write(report: dict[str, Any], results: Path = RESULTS) -> Path:
    """Write ``<results>/<seed>.json``."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{report['seed']}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The printed summary."""
    f, conv, final = report["faults"], report["convergence"], report["final"]
    lines = [
        f"soak seed {report['seed']}: {report['wall_s']:.0f} s wall "
        + ", ".join(f"{k} {v:.0f} s" for k, v in report["phases_s"].items()),
        f"  faults      {f['injected']} injected of {f['planned']} planned, {f['skipped']} "
        f"skipped, {len(f['not_repaired'])} not repaired in time",
        "              " + ", ".join(f"{k} {n}" for k, n in f["by_kind"].items()),
        f"  failovers   {_counts(report['failovers'])}; recoveries "
        f"{_counts(report['recoveries'])}; failbacks completed {report['failbacks_completed']}",
        f"  moves       {_counts(report['camera_moves'])}; {report['events']} events, "
        f"{report['segments_seen']} segments seen",
        f"  converged   after each fault: {_stats(conv.get('all', {}))}; "
        f"never settled: {conv.get('never_settled', '?')}",
        f"  at the end  all home {_after(final, 'converged_after_s')}, sync settled "
        f"{_after(final, 'sync_settled_after_s')} after the faults stopped",
    ]
    lines += _resource_lines(report["resources"])
    violations = report["violations"]
    lines.append(
        f"  violations  {len(violations)}"
        + (f" {report['violations_by_rule']}" if violations else "")
    )
    for v in violations[:30]:
        events = f" events {list(v['events'])}" if v.get("events") else ""
        lines.append(f"    [{v['rule']}] t={v['at_s']:.1f}s{events}: {v['detail'][:300]}")
    for problem in report["observer_problems"]:
        lines.append(f"  observer    {problem}")
    lines.append(f"  reproduce   {report['reproduce']}")
    return lines


def _resource_lines(resources: dict[str, Any]) -> list[str]:
    processes = resources.get("processes", {})
    if not processes:
        return []
    kinds: dict[str, list[dict[str, Any]]] = {}
    for name, figures in processes.items():
        kind = "agent" if name.startswith("agent-") else name
        kinds.setdefault(kind, []).append(figures)
    parts = []
    for kind, rows in kinds.items():
        rss = max(r["peak_rss_mb"] for r in rows)
        cpu = max(r["mean_cpu_percent"] for r in rows)
        peak = max(r["peak_cpu_percent"] for r in rows)
        label = f"{kind} x{len(rows)}" if len(rows) > 1 else kind
        parts.append(f"{label} {rss:.0f} MB {cpu:.1f}%/{peak:.0f}%")
    busy = resources.get("machine_cpu_busy_percent", {})
    return [
        f"  machine     CPU busy mean {busy.get('mean')}% max {busy.get('max')}% of "
        f"{busy.get('cpus')} cores; peak RSS of all processes "
        f"{resources.get('total_peak_rss_mb')} MB",
        "  processes   (peak RSS, mean/peak CPU of one core) " + "; ".join(parts),
    ]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def _stats(stats: dict[str, Any]) -> str:
    if not stats.get("count"):
        return "no samples"
    return (
        f"median {stats['median_s']} s, p99 {stats['p99_s']} s, max {stats['max_s']} s "
        f"({stats['count']} faults)"
    )


def _after(final: dict[str, Any], key: str) -> str:
    return f"{final[key]} s" if key in final else "NEVER"
