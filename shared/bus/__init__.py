"""The bus: the only package that imports ``nats``."""

from shared.bus.connection import Bus, read_leases
from shared.bus.natsserver import NatsServer, embedded_server, find_nats_server, free_port

__all__ = ["Bus", "NatsServer", "embedded_server", "find_nats_server", "free_port", "read_leases"]
