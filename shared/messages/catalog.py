"""The JSON Schema section of docs/events.md, generated from the models (R13).

``python -m shared.messages.catalog`` prints it; a test fails when the doc is stale.
"""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel

from shared import messages as m
from shared.messages.events import AnyEvent

REQUESTS: tuple[type[BaseModel], ...] = (
    m.Heartbeat,
    m.ProbeRequest,
    m.ProbeReply,
    m.Command,
    m.CommandResult,
    m.FailbackRequest,
    m.CapacityRequest,
    m.FaultRequest,
    m.Reply,
    m.ListSegments,
    m.SegmentList,
    m.ReadChunk,
    m.FetchSegment,
    m.FetchResult,
    m.DropSegment,
    m.DropResult,
    m.SyncJob,
)


def event_models() -> tuple[type[BaseModel], ...]:
    """Every event type of the log, in the order of ``AnyEvent``."""
    return typing.get_args(typing.get_args(AnyEvent)[0])


def schema_section() -> str:
    """One ``### Model`` heading and its JSON Schema per message, events first."""
    parts = []
    for model in (*event_models(), *REQUESTS):
        schema = json.dumps(model.model_json_schema(), indent=2)
        parts.append(f"### {model.__name__}\n\n```json\n{schema}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(schema_section(), end="")
