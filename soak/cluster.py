"""The soak's cluster: ``blaze up --ha`` itself (3 clustered NATS nodes, two replicas of
each service, one agent per server behind a black-hole relay group, every process
restarted when it dies), with each replica behind a relay group of its own too, and the
hands to hurt it: cut or kill a server, a replica or a NATS node."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from services.cli.supervisor import Supervisor
from shared.bus import NatsCluster, NatsServer
from shared.config import ClusterConfig
from shared.messages import Fault, FaultRequest, Reply

NODE_HEALTHY_S = 30.0
"""How long a restarted NATS node may take to report healthy."""


class SoakCluster(Supervisor):
    """``blaze up --ha`` with black-hole relays in front of the service replicas too, and
    no web console (nobody looks at it during a soak; it would only take CPU)."""

    def __init__(self, config: ClusterConfig, config_path: Path, data_dir: Path) -> None:
        super().__init__(config, config_path, data_dir, ha=True, service_relays=True, console=False)

    def _announce(self) -> None:
        """``blaze up`` prints where things are; the soak prints its own summary."""

    @property
    def cluster(self) -> NatsCluster:
        """The three NATS nodes."""
        assert isinstance(self.nats, NatsCluster)
        return self.nats

    # ---- recording servers: what ``blaze sim`` does ----

    async def server_fault(self, fault: Fault, server: str) -> Reply:
        """Cut, restore, fail or repair storage, kill or start a server's agent, exactly
        as ``blaze sim`` asks the supervisor to."""
        reply = await self._on_fault(FaultRequest(server=server, fault=fault))
        assert isinstance(reply, Reply)
        return reply

    # ---- service replicas ----

    def replica_pid(self, replica: str) -> int | None:
        """The running pid of a replica (``placement-b``), or None."""
        return self.processes[replica].pid

    def kill_replica(self, replica: str) -> int | None:
        """SIGKILL a replica; the supervisor restarts it as it would any dead process."""
        pid = self.replica_pid(replica)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        return pid

    def cut_replica(self, replica: str) -> None:
        """Black-hole a replica's traffic to every NATS node."""
        assert self.service_relays is not None
        self.service_relays[replica].cut()

    def restore_replica(self, replica: str) -> None:
        """Forward a replica's traffic again."""
        assert self.service_relays is not None
        self.service_relays[replica].restore()

    # ---- NATS nodes ----

    def node(self, name: str) -> NatsServer:
        """A NATS node by name (``nats-2``)."""
        return next(n for n in self.cluster.nodes if n.config.name == name)

    async def kill_node(self, name: str) -> None:
        """SIGKILL a NATS node."""
        await asyncio.to_thread(self.node(name).kill)

    async def stop_node(self, name: str) -> None:
        """Stop a NATS node gracefully (SIGTERM; SIGKILL after 10 s)."""
        await asyncio.to_thread(self.node(name).stop)

    async def start_node(self, name: str) -> str:
        """Start a stopped NATS node on its own ports and wait until every running node is
        healthy; what went wrong, or "" if nothing did."""
        node = self.node(name)
        port = node.config.port
        try:
            await asyncio.to_thread(node.start)
            await asyncio.to_thread(self.cluster.wait_healthy, NODE_HEALTHY_S)
        except Exception as exc:  # noqa: BLE001 - reported in the fault log
            return f"{name} did not come back: {exc}"
        if node.config.port != port:
            return f"{name} came back on port {node.config.port}, not {port}: relays miss it"
        return ""

    def pids(self) -> dict[str, int]:
        """Every process of the cluster now: services, agents, NATS nodes."""
        found = {name: p.pid for name, p in self.processes.items() if p.pid is not None}
        for node in self.cluster.nodes if self.nats is not None else []:
            if node.process is not None and node.process.poll() is None:
                found[node.config.name] = node.process.pid
        return found
