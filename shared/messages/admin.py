"""Requests from the administrator (command line, console) and their answers."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from shared.messages.base import ChannelCapacity, Message, ServerId


class FailbackRequest(Message):
    """R7: the administrator confirms a storage-failed server is repaired."""

    server: ServerId
    by: str = Field("admin", max_length=64, description="Who confirms, for the event log.")


class CapacityRequest(Message):
    """Change a server's channel capacity at run time (a license change)."""

    server: ServerId
    capacity: ChannelCapacity
    by: str = Field("admin", max_length=64)


class DrainRequest(Message):
    """Maintenance mode: move a server's cameras away and place nothing there (drain), or
    end it and bring its cameras home (undrain)."""

    server: ServerId
    by: str = Field("admin", max_length=64, description="Who asks, for the event log.")


class Reply(Message):
    """Answer to an administrator's request; ``reason`` explains a refusal."""

    ok: bool
    reason: str = ""


class Fault(StrEnum):
    """Fault injection on a simulated server (``blaze sim``)."""

    NET_DOWN = "net-down"
    NET_UP = "net-up"
    STORAGE_FAIL = "storage-fail"
    STORAGE_REPAIR = "storage-repair"
    KILL = "kill"
    START = "start"


class FaultRequest(Message):
    """Ask the simulated cluster to inject or clear a fault."""

    server: ServerId
    fault: Fault
