"""Peak memory and CPU of every process of the run, sampled from ``/proc``: by process
name (``placement-a``, ``agent-rs-03``, ``nats-2``), summed over every incarnation of it
(a killed replica's restarts count under its name)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    """One process name's figures so far."""

    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    peak_cpu_percent: float = 0.0
    pids: set[int] = field(default_factory=set)


@dataclass
class ResourceSampler:
    """Call ``sample`` with every process's pid now and then; ``summary`` at the end."""

    usage: dict[str, Usage] = field(default_factory=dict)
    last: dict[int, tuple[float, float]] = field(default_factory=dict)
    """pid -> (when, its CPU seconds then)."""
    machine_busy: list[float] = field(default_factory=list)
    """Share of the machine's CPU time in use between two samples, in per cent."""
    _machine_last: tuple[int, int] | None = None

    def sample(self, pids: dict[str, int], now: float) -> None:
        """Read every process's memory and CPU time."""
        for name, pid in pids.items():
            figures = _read(pid)
            if figures is None:
                continue
            rss_mb, hwm_mb, cpu_s = figures
            use = self.usage.setdefault(name, Usage())
            use.peak_rss_mb = max(use.peak_rss_mb, rss_mb, hwm_mb)
            when, before = self.last.get(pid, (now, 0.0))
            use.cpu_s += cpu_s - before
            if now > when:
                use.peak_cpu_percent = max(
                    use.peak_cpu_percent, 100 * (cpu_s - before) / (now - when)
                )
            use.pids.add(pid)
            self.last[pid] = (now, cpu_s)
        self._machine()

    def _machine(self) -> None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return
        ticks = [int(x) for x in fields]
        idle, total = ticks[3] + ticks[4], sum(ticks)
        if self._machine_last is not None:
            d_idle, d_total = idle - self._machine_last[0], total - self._machine_last[1]
            if d_total > 0:
                self.machine_busy.append(round(100 * (1 - d_idle / d_total), 1))
        self._machine_last = (idle, total)

    def summary(self, wall_s: float) -> dict[str, Any]:
        """Per process: peak RSS, CPU seconds, mean and peak CPU per cent, incarnations;
        and the machine's load."""
        processes = {
            name: {
                "peak_rss_mb": round(u.peak_rss_mb, 1),
                "cpu_s": round(u.cpu_s, 1),
                "mean_cpu_percent": round(100 * u.cpu_s / wall_s, 1) if wall_s else 0.0,
                "peak_cpu_percent": round(u.peak_cpu_percent, 1),
                "incarnations": len(u.pids),
            }
            for name, u in sorted(self.usage.items())
        }
        busy = sorted(self.machine_busy)
        return {
            "processes": processes,
            "total_peak_rss_mb": round(sum(u.peak_rss_mb for u in self.usage.values()), 1),
            "total_cpu_s": round(sum(u.cpu_s for u in self.usage.values()), 1),
            "machine_cpu_busy_percent": {
                "mean": round(sum(busy) / len(busy), 1) if busy else None,
                "max": busy[-1] if busy else None,
                "cpus": os.cpu_count(),
            },
        }


def _read(pid: int) -> tuple[float, float, float] | None:
    """(RSS MB, peak RSS MB, CPU seconds) of a live process, or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    kb = {}
    for line in status.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            kb[key] = int(value.split()[0])
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    return kb.get("VmRSS", 0) / 1024, kb.get("VmHWM", 0) / 1024, cpu
