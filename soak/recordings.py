"""Reading the recording directories as an operator could: which segments each server
holds (``<data>/servers/<id>/recordings/<camera>/<UTC start>_e<epoch>.seg``) and who
recorded each (the recorder writes its server into every segment's first line).

A directory whose storage has failed is a plain file (``services/sim/faults.py``): it
holds nothing readable until it is repaired, and is skipped meanwhile."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from soak.observations import SegmentSeen, segment_of

HEADER_BYTES = 160
"""Enough of a segment's first line for its camera, epoch and server."""


class RecordingScanner:
    """Finds segments not seen before in every server's recording directory."""

    def __init__(self, servers_dir: Path) -> None:
        self.servers_dir = servers_dir
        self.known: dict[tuple[str, str], set[str]] = {}
        """(server, camera) -> segment names already seen there."""

    def scan_new(self) -> list[SegmentSeen]:
        """Every segment that appeared since the last scan (a file gone before its first
        line was read is skipped: it will be seen wherever it went)."""
        found: list[SegmentSeen] = []
        for server, camera, names in self._listings():
            known = self.known.setdefault((server, camera), set())
            for name in names - known:
                seg = _read(self.servers_dir, server, camera, name)
                if seg is not None:
                    found.append(seg)
                    known.add(name)
        return found

    def holders(self) -> dict[tuple[str, str], set[str]]:
        """(camera, segment name) -> every server that holds a copy now."""
        held: dict[tuple[str, str], set[str]] = {}
        for server, camera, names in self._listings():
            for name in names:
                held.setdefault((camera, name), set()).add(server)
        return held

    def newest_at_home(self, homes: Mapping[str, str]) -> dict[str, SegmentSeen | None]:
        """For each camera, the newest segment in its home server's directory."""
        newest: dict[str, SegmentSeen | None] = {}
        for camera, home in homes.items():
            names = _segment_names(self.servers_dir / home / "recordings" / camera)
            newest[camera] = None
            for name in sorted(names, reverse=True):
                newest[camera] = _read(self.servers_dir, home, camera, name)
                if newest[camera] is not None:
                    break
        return newest

    def _listings(self) -> Iterator[tuple[str, str, set[str]]]:
        try:
            servers = sorted(os.listdir(self.servers_dir))
        except OSError:
            return
        for server in servers:
            recordings = self.servers_dir / server / "recordings"
            try:
                cameras = [e.name for e in os.scandir(recordings) if e.is_dir()]
            except OSError:  # failed storage: a plain file where the directory was
                continue
            for camera in cameras:
                yield server, camera, _segment_names(recordings / camera)


def _segment_names(directory: Path) -> set[str]:
    try:
        return {n for n in os.listdir(directory) if n.endswith(".seg") and not n.startswith(".")}
    except OSError:
        return set()


def _read(servers_dir: Path, server: str, camera: str, name: str) -> SegmentSeen | None:
    path = servers_dir / server / "recordings" / camera / name
    try:
        with path.open("rb") as segment:
            header = segment.read(HEADER_BYTES)
    except OSError:
        return None
    return segment_of(server, camera, name, header)
