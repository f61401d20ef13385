"""The files ``blaze up`` keeps in its data dir for the other commands to read: kept apart
from the supervisor so that reading them imports nothing else."""

from __future__ import annotations

CLUSTER_FILE = "cluster.json"
"""Where the running cluster is (its NATS URL, CA, secrets dir) and the supervisor's pid."""

SERVICES_FILE = "services.json"
"""The service processes running now: name and pid of each."""
