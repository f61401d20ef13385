"""The fault log: what the injector did and when, one JSON object per line, appended as it
happens. It is the run's ground truth, which the checker compares the cluster's own
account with (it never reads the services' memory).

Times are ``time.monotonic()`` seconds: on Linux every process of the machine reads the
same clock, so the checker (another process) compares them with its own observations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STARTED, REPAIRING, ENDED = "started", "repairing", "ended"
SKIPPED, FAULTS_STOPPED = "skipped", "faults_stopped"


@dataclass(frozen=True)
class FaultRecord:
    """One line of the fault log."""

    record: str
    """``started`` (written before the fault is inflicted), ``repairing`` (before its repair
    begins: from then on the cluster may rightly see the target healthy), ``ended`` (the
    repair is done), ``skipped``, or ``faults_stopped`` (the last line of a run's fault
    phase: every fault has ended)."""
    at: float
    """When (monotonic seconds)."""
    number: int = 0
    kind: str = ""
    target: str = ""
    """What was hit: a server, a replica (``placement-b``), a NATS node (``nats-2``)."""
    role: str = ""
    """A replica's role when it was hit: ``leader`` or ``standby``."""
    wall: str = ""
    """The same moment in UTC, for people and the event log's ``time``."""
    ok: bool = True
    """For ``ended``: whether the repair completed within its bound."""
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_line(self) -> str:
        """One JSON line."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_line(cls, line: str) -> FaultRecord:
        """Parse one JSON line."""
        return cls(**json.loads(line))


class FaultLogWriter:
    """Appends records, flushed at once so the checker sees them as they happen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[FaultRecord] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def write(self, record: FaultRecord) -> None:
        """Append one record."""
        self.records.append(record)
        with self.path.open("a") as out:
            out.write(record.to_line() + "\n")


class FaultLogReader:
    """Reads the records appended since the last call (a growing file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def new_records(self) -> list[FaultRecord]:
        """Records appended since the last call; a line not yet complete waits."""
        try:
            with self.path.open() as log:
                log.seek(self._offset)
                text = log.read()
                self._offset = log.tell()
        except FileNotFoundError:
            return []
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()
        return [FaultRecord.from_line(line) for line in lines if line.strip()]
