"""The bus: the only package that imports ``nats``.

Its names are imported from their modules when first used (PEP 562): ``blaze status``
needs a read-only connection (``StateReader``), not ``Bus`` nor the embedded
nats-server's or TLS's code, and every module imported costs start-up time of a command
that has half a second in all (issue 8).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.bus.connection import Bus as Bus
    from shared.bus.connection import is_transient as is_transient
    from shared.bus.connection import read_leases as read_leases
    from shared.bus.credentials import Access as Access
    from shared.bus.credentials import SecretsDir as SecretsDir
    from shared.bus.natsserver import NatsCluster as NatsCluster
    from shared.bus.natsserver import NatsServer as NatsServer
    from shared.bus.natsserver import ServerSecurity as ServerSecurity
    from shared.bus.natsserver import embedded_cluster as embedded_cluster
    from shared.bus.natsserver import embedded_server as embedded_server
    from shared.bus.natsserver import find_nats_server as find_nats_server
    from shared.bus.natsserver import free_port as free_port
    from shared.bus.reader import StateReader as StateReader

_MODULE_OF = {
    "Access": "credentials",
    "Bus": "connection",
    "NatsCluster": "natsserver",
    "NatsServer": "natsserver",
    "SecretsDir": "credentials",
    "ServerSecurity": "natsserver",
    "StateReader": "reader",
    "embedded_cluster": "natsserver",
    "embedded_server": "natsserver",
    "find_nats_server": "natsserver",
    "free_port": "natsserver",
    "is_transient": "connection",
    "read_leases": "connection",
}

__all__ = [
    "Access",
    "Bus",
    "NatsCluster",
    "NatsServer",
    "SecretsDir",
    "ServerSecurity",
    "StateReader",
    "embedded_cluster",
    "embedded_server",
    "find_nats_server",
    "free_port",
    "is_transient",
    "read_leases",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
