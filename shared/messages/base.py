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
Epoch = Annotated[int, Field(ge=0, description="Fencing token of a camera assignment.")]


class Message(BaseModel):
    """A message on the bus. Unknown keys are refused, instances are immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = Field(1, ge=1, le=1, description="Version of this message's schema.")
