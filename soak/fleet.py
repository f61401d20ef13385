"""The soak's cluster config: ``servers`` recording servers with the cameras spread evenly
over them, each server with a quarter more channels than it has cameras at home (so one
failure among many fits, and a few at once leave some cameras Pending), every timing at
the product's defaults."""

from __future__ import annotations

import math
from pathlib import Path

from shared.config import ClusterConfig, parse_config
from soak.faults import FleetShape

SPARE_SHARE = 0.25
"""Channels beyond a server's home cameras, as a share of them (at least one)."""
PRIORITIES = ("high", "medium", "medium", "low")


def server_ids(servers: int) -> list[str]:
    """``rs-01`` … (zero-padded so they sort in order)."""
    width = max(2, len(str(servers)))
    return [f"rs-{n:0{width}d}" for n in range(1, servers + 1)]


def fleet_toml(servers: int, cameras: int, segment_seconds: float = 1.0) -> str:
    """The cluster TOML of a soak fleet."""
    ids = server_ids(servers)
    homed = {
        sid: cameras // servers + (1 if i < cameras % servers else 0) for i, sid in enumerate(ids)
    }
    lines = ["[timing]", f"segment_seconds = {segment_seconds}", ""]
    for sid in ids:
        capacity = homed[sid] + max(1, math.ceil(homed[sid] * SPARE_SHARE))
        lines += ["[[server]]", f'id = "{sid}"', f"capacity = {capacity}", ""]
    for sid in ids:
        for k in range(1, homed[sid] + 1):
            priority = PRIORITIES[k % len(PRIORITIES)]
            lines += [
                "[[camera]]",
                f'id = "cam-{sid.removeprefix("rs-")}-{k:03d}"',
                f'home = "{sid}"',
                f'priority = "{priority}"',
                "",
            ]
    return "\n".join(lines)


def write_fleet(
    path: Path, servers: int, cameras: int, segment_seconds: float = 1.0
) -> ClusterConfig:
    """Write the fleet's TOML to ``path``; the config it parses to."""
    text = fleet_toml(servers, cameras, segment_seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return parse_config(text, str(path))


def shape_of(config: ClusterConfig) -> FleetShape:
    """What the fault plan needs to know of a config."""
    homed = {s.id: 0 for s in config.servers}
    for cam in config.cameras:
        homed[cam.home] += 1
    return FleetShape(
        capacities={s.id: s.capacity for s in config.servers},
        homed=homed,
        network_timeout=config.timing.network_timeout,
        mass_silence_share=config.detection.mass_silence_share,
        max_failovers=config.detection.max_failovers,
        failover_window=config.detection.failover_window,
    )
