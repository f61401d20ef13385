"""Commands from placement to one agent, and the agent's answer."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from shared.messages.base import CameraId, Epoch, Message, ServerId


class Action(StrEnum):
    """What the agent is asked to do with the cameras in a command."""

    CLAIM = "claim"
    RELEASE = "release"


class Assignment(Message):
    """One camera with the epoch of the decision that moves it."""

    camera: CameraId
    epoch: Epoch


class Command(Message):
    """Claim (start recording) or release (stop recording) cameras, fenced by epoch."""

    server: ServerId = Field(description="The agent that must act.")
    action: Action
    cameras: tuple[Assignment, ...] = Field(max_length=100_000)
    fence: Epoch = Field(
        0,
        description="Fencing epoch of the placement leader that sent it: its lease revision "
        "(R12). An agent refuses a command older than the newest fence it has seen.",
    )
    first_segment: bool = Field(
        False,
        description="Claim only: answer once each camera's first segment is on disk "
        "(make-before-break failback); a camera whose first write fails is left out of done.",
    )
    cluster: str = Field(
        "",
        max_length=64,
        description="Id of the cluster's placement state. A new one (a NATS store started "
        "afresh, so epochs start at 1 again) makes an agent start its epoch ledger afresh.",
    )


class Refusal(Message):
    """A camera the agent would not act on, and why."""

    camera: CameraId
    epoch: Epoch = Field(description="Epoch of the refused command.")
    seen_epoch: Epoch = Field(description="The newest epoch the agent has seen for it.")
    reason: str


class CommandResult(Message):
    """The agent's answer: which assignments it applied, which it refused."""

    server: ServerId
    action: Action
    done: tuple[Assignment, ...] = ()
    refused: tuple[Refusal, ...] = ()
    fence_seen: Epoch = Field(
        0,
        description="Set when the whole command was refused as coming from a deposed "
        "placement leader: the newest leader epoch the agent has seen (R12).",
    )
