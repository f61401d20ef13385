"""Agents played by the tests: build a cluster, carry out placement's commands (R8, R11)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.placement.state import Notice, Placement
from shared.config import CameraConfig, ClusterConfig, Priority, ServerConfig
from shared.messages import Action, AnyEvent, ClaimsConfirmed, Command, ReleasesConfirmed


def cluster(
    servers: Mapping[str, int],
    cameras: Mapping[str, str],
    priorities: Mapping[str, Priority] | None = None,
) -> ClusterConfig:
    """Servers with capacities; cameras with their home (and optional priority)."""
    priorities = priorities or {}
    return ClusterConfig(
        servers=tuple(ServerConfig(id=s, capacity=n) for s, n in servers.items()),
        cameras=tuple(
            CameraConfig(id=c, home=h, priority=priorities.get(c, Priority.MEDIUM))
            for c, h in cameras.items()
        ),
    )


def done(command: Command) -> ClaimsConfirmed | ReleasesConfirmed:
    """The event of an agent that carried out the whole command."""
    if command.action is Action.CLAIM:
        return ClaimsConfirmed(server=command.server, cameras=command.cameras)
    return ReleasesConfirmed(server=command.server, cameras=command.cameras)


def carry_out(state: Placement, commands: Iterable[Command], log: list[AnyEvent]) -> list[Notice]:
    """Agents confirm ``commands``; the events go to ``log`` and into the fold."""
    notices: list[Notice] = []
    for command in commands:
        event = done(command)
        log.append(event)
        notices += state.apply(event)
    return notices


def settle(state: Placement, log: list[AnyEvent] | None = None, rounds: int = 20) -> list[Notice]:
    """Confirm every outstanding command until none is left (releases first, then claims)."""
    log = [] if log is None else log
    notices: list[Notice] = []
    for _ in range(rounds):
        commands = state.outstanding_commands()
        if not commands:
            return notices
        notices += carry_out(state, commands, log)
    raise AssertionError(f"commands never settle: {state.outstanding_commands()}")


def hosts(state: Placement) -> dict[str, str | None]:
    """Camera -> the server whose channel it occupies (None: Pending)."""
    return {c.id: c.shown_host for c in state.cameras.values()}


def kinds(notices: Iterable[Notice]) -> list[str]:
    """The event types of ``notices``, in order."""
    return [n.type for n in notices]
