"""What a recording server's agent says about itself: heartbeats and probe answers (R1, R2)."""

from __future__ import annotations

from pydantic import Field

from shared.messages.base import CameraId, ChannelCapacity, Count, Epoch, Message, ServerId


class Heartbeat(Message):
    """Published every heartbeat interval, and at once when storage health changes (R1, R3)."""

    server: ServerId
    boot_id: str = Field(min_length=1, max_length=64, description="New at every agent start.")
    sequence: Count = Field(description="Counts up from 0 within one boot.")
    capacity: ChannelCapacity = Field(description="Channel capacity the server reports.")
    hosted: dict[CameraId, Epoch] = Field(
        default_factory=dict, description="Cameras it records now, with their epochs."
    )
    storage_ok: bool = Field(description="False when the recording directory fails real I/O.")
    storage_error: str | None = Field(None, description="The last storage error, if any.")


class ProbeRequest(Message):
    """The detector asks a silent server's agent directly whether its connection lives (R2)."""

    server: ServerId


class ProbeReply(Message):
    """The agent's answer to the detector's probe: its connection is alive."""

    server: ServerId
    boot_id: str = Field(min_length=1, max_length=64, description="The agent's current boot id.")
