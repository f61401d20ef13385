"""The simulated cluster's fault injection: black-holed TCP and failing recording directories."""

from services.sim.faults import fail_storage, repair_storage
from services.sim.relay import BlackHoleRelay, RelayGroup

__all__ = ["BlackHoleRelay", "RelayGroup", "fail_storage", "repair_storage"]
