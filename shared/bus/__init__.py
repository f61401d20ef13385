"""The bus: the only package that imports ``nats``."""

from shared.bus.connection import Bus, is_transient, read_leases
from shared.bus.credentials import Access, SecretsDir
from shared.bus.natsserver import (
    NatsCluster,
    NatsServer,
    ServerSecurity,
    embedded_cluster,
    embedded_server,
    find_nats_server,
    free_port,
)

__all__ = [
    "Access",
    "Bus",
    "NatsCluster",
    "NatsServer",
    "SecretsDir",
    "ServerSecurity",
    "embedded_cluster",
    "embedded_server",
    "find_nats_server",
    "free_port",
    "is_transient",
    "read_leases",
]
