"""The base of every message on the bus: frozen, strict about extra keys, versioned."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGE_BYTES = 1_000_000
"""Larger payloads are rejected before parsing."""

ServerId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="Server id.")
]
CameraId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="Camera id.")
]

MAX_INT64 = 2**63 - 1
"""The largest integer SQLite stores (signed 64-bit). No count, sequence number or epoch in
a message may exceed it, so a hostile one is refused as invalid before it reaches a store."""
MAX_CHANNEL_CAPACITY = 100_000
"""The largest channel capacity of a server, as the cluster config allows."""

Count = Annotated[int, Field(ge=0, le=MAX_INT64)]
"""A count, sequence number or byte total: from 0 to ``MAX_INT64``."""
ChannelCapacity = Annotated[int, Field(ge=0, le=MAX_CHANNEL_CAPACITY)]
"""Cameras a server may record at once: from 0 to ``MAX_CHANNEL_CAPACITY``."""
Epoch = Annotated[
    int, Field(ge=0, le=MAX_INT64, description="Fencing token of a camera assignment.")
]


class Message(BaseModel):
    """A message on the bus. Unknown keys are refused, instances are immutable."""

    # No NaN or Infinity either: JSON has neither, and a hostile one breaks comparisons.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = Field(1, ge=1, le=1, description="Version of this message's schema.")
