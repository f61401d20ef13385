"""The NATS micro service every blaze process registers (R13): discovery over
``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS`` (``nats micro ls|info|stats``), and a
``status`` endpoint that says what this instance is doing now.

A service gives one callable returning its status as a small JSON-able dict (who it
is, whether it leads, its key counters). The ``status`` endpoint answers it, wrapped
with the instance's identity and uptime; ``$SRV.STATS`` carries the same dict as the
endpoint's ``data``, next to nats.micro's request, error and timing counts.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import nats.micro

from shared import __version__

log = logging.getLogger(__name__)

StatusSource = Callable[[], Mapping[str, Any]]
"""What a service passes to ``Bus.announce``: its current status, cheap and synchronous."""

STATUS_ROOT = "blaze.svc"
"""Every instance's endpoint group: ``blaze.svc.<kind>.<instance>``."""

STATUS_ENDPOINT = "status"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def instance_token(instance: str) -> str:
    """An instance name (replica or server id) as one subject token: a default replica
    name is ``HOST-PID`` and a host name may hold dots."""
    return _UNSAFE.sub("_", instance) or "_"


def status_subject(kind: str, instance: str) -> str:
    """The ``status`` endpoint of one instance, e.g. ``blaze.svc.placement.placement-a.status``."""
    return f"{STATUS_ROOT}.{instance_token(kind)}.{instance_token(instance)}.{STATUS_ENDPOINT}"


class StatusEndpoint:
    """One instance's status, answered on its ``status`` endpoint and in ``$SRV.STATS``."""

    def __init__(self, name: str, instance: str, source: StatusSource) -> None:
        self.name = name
        self.instance = instance
        self.source = source
        self.started = time.monotonic()
        self.service_id = ""

    def document(self) -> dict[str, Any]:
        """The status with the instance's identity and uptime."""
        return {
            "name": self.name,
            "id": self.service_id,
            "version": __version__,
            "instance": self.instance,
            "uptime_s": round(time.monotonic() - self.started, 3),
            **self.source(),
        }

    async def answer(self, request: nats.micro.Request) -> None:
        """The endpoint's handler; an error is answered (and counted) by nats.micro."""
        await request.respond(json.dumps(self.document(), default=str).encode())

    def stats_data(self, _endpoint: Any) -> dict[str, Any]:
        """``$SRV.STATS`` data: never raises, or the whole STATS answer would be lost."""
        try:
            return dict(self.source())
        except Exception as exc:  # noqa: BLE001 (shown in the stats instead)
            return {"error": f"{type(exc).__name__}: {exc}"}


async def add_status_service(
    nc: Any,
    *,
    name: str,
    description: str,
    kind: str,
    instance: str,
    status: StatusSource,
    metadata: Mapping[str, str],
) -> Any:
    """Register ``name`` (``blaze-<kind>``) with a ``status`` endpoint for ``instance``."""
    endpoint = StatusEndpoint(name, instance, status)
    service = await nats.micro.add_service(
        nc,
        name=name,
        version=__version__,
        description=description,
        metadata={"instance": instance, **metadata},
        stats_handler=endpoint.stats_data,
    )
    endpoint.service_id = service.id
    group = service.add_group(name=status_subject(kind, instance).rsplit(".", 1)[0])
    await group.add_endpoint(
        name=STATUS_ENDPOINT,
        handler=endpoint.answer,
        metadata={"description": f"what this {kind} instance is doing now (JSON)"},
    )
    log.debug("announced %s as %s", name, status_subject(kind, instance))
    return service
