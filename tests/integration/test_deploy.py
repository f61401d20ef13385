"""deploy/: the compose file, the Kubernetes manifests, the Dockerfile and the NATS configs.

There is no Docker engine or Kubernetes here, so the files are parsed and checked
against the code: every command names a module that exists, every config path is
mounted from a file or ConfigMap that exists and validates, replicas have distinct
names. The NATS cluster configs are started as three real nats-server processes on
loopback, and must form a JetStream cluster with a meta leader.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from shared.bus.natsserver import find_nats_server, free_port
from shared.config import ClusterConfig, load_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
REPLICATED = ("health", "placement", "sync")
AGENT_MODULE = "services.heartbeat"
NATS_CLIENT_PORT = 4222
MINIMUM_NATS = (2, 11)


# --- helpers -------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


def load_manifests() -> list[dict[str, Any]]:
    """Every document of every manifest in deploy/k8s except the kustomization."""
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                assert isinstance(doc, dict), f"{path}: a document is not a mapping"
                docs.append(doc)
    return docs


def python_module(command: list[str]) -> str | None:
    """``services.x`` of ``python -m services.x ...``; None for any other command."""
    if len(command) >= 3 and command[0] == "python" and command[1] == "-m":
        return command[2]
    return None


def option(command: list[str], name: str) -> str | None:
    """The value after ``name`` in an argument list, or None."""
    for i, arg in enumerate(command[:-1]):
        if arg == name:
            return command[i + 1]
    return None


def module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def image_version(image: str) -> tuple[int, int]:
    """(major, minor) of an image tag like ``nats:2.11-alpine``."""
    found = re.fullmatch(r"nats:(\d+)\.(\d+)(?:\.\d+)?(?:-alpine)?", image)
    assert found, f"{image!r}: expected the official nats image with a version tag"
    return int(found[1]), int(found[2])


def validated_config(text: str, tmp_path: Path, name: str) -> ClusterConfig:
    """The cluster config in ``text``, loaded the way every service loads its --config."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config(path)


# --- compose.yaml ----------------------------------------------------------------------


def compose_services() -> dict[str, dict[str, Any]]:
    services = load_yaml(DEPLOY / "compose.yaml")["services"]
    assert isinstance(services, dict)
    return services


def compose_blaze_services() -> dict[str, dict[str, Any]]:
    """The services that run a blaze process (the blaze image, ``python -m ...``)."""
    return {
        name: svc
        for name, svc in compose_services().items()
        if python_module(list(svc.get("command", []))) is not None
    }


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (relative to deploy/) of a compose service's bind mounts."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith((".", "/")):
            mounts[target] = (DEPLOY / source).resolve()
    return mounts


def named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """Volume name -> container path of a compose service's named volumes."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if not source.startswith((".", "/")):
            mounts[source] = target
    return mounts


def test_compose_runs_three_nats_nodes_two_replicas_of_each_service_and_three_agents() -> None:
    services = compose_services()
    assert {"nats-1", "nats-2", "nats-3"} <= services.keys()
    blaze = compose_blaze_services()
    for service in REPLICATED:
        replicas = {
            name: svc
            for name, svc in blaze.items()
            if python_module(svc["command"]) == f"services.{service}"
        }
        assert len(replicas) == 2, f"{service}: want two replicas, found {sorted(replicas)}"
        names = [option(svc["command"], "--replica") for svc in replicas.values()]
        hostnames = [svc.get("hostname") for svc in replicas.values()]
        assert None not in names, f"{service}: every replica needs an explicit --replica"
        assert len(set(names)) == 2, f"{service}: replica names {names} must differ"
        assert len(set(hostnames)) == 2, f"{service}: hostnames {hostnames} must differ"
    agents = [svc for svc in blaze.values() if python_module(svc["command"]) == AGENT_MODULE]
    servers = [option(svc["command"], "--server") for svc in agents]
    assert len(agents) >= 3
    assert None not in servers
    assert len(set(servers)) == len(servers), f"two agents for one server: {servers}"


def test_compose_commands_name_existing_modules_and_a_mounted_valid_config() -> None:
    nodes = {"nats-1", "nats-2", "nats-3"}
    configs: set[Path] = set()
    for name, svc in compose_blaze_services().items():
        command = [str(arg) for arg in svc["command"]]
        module = python_module(command)
        assert module is not None
        assert module_exists(module), f"{name}: no module {module}"
        config_path = option(command, "--config")
        assert config_path, f"{name}: no --config"
        source = bind_mounts(svc).get(config_path)
        assert source is not None, f"{name}: --config {config_path} is not a bind mount"
        assert source.is_file(), f"{name}: {source} does not exist"
        configs.add(source)
        config = load_config(source)
        data = option(command, "--data")
        assert data, f"{name}: no --data"
        if module == AGENT_MODULE:
            server = option(command, "--server")
            assert server in {s.id for s in config.servers}, f"{name}: unknown server {server}"
            # the agent's ledgers and recordings must outlive the container
            assert data in named_volumes(svc).values(), f"{name}: --data {data} is no volume"
        urls = (option(command, "--nats") or "").split(",")
        hosts = {url.removeprefix("nats://").partition(":")[0] for url in urls}
        assert hosts == nodes, f"{name}: give all three NATS URLs (3 stream replicas): {urls}"
        assert all(url.endswith(f":{NATS_CLIENT_PORT}") for url in urls), f"{name}: {urls}"
    assert len(configs) == 1, f"every process must read the same cluster config: {configs}"


def test_compose_builds_the_image_from_the_repository_root_after_nats_is_healthy() -> None:
    for name, svc in compose_blaze_services().items():
        build = svc["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO, f"{name}: build context {context} is not the repository root"
        assert (context / build["dockerfile"]).is_file()
        depends = svc["depends_on"]
        for node in ("nats-1", "nats-2", "nats-3"):
            assert depends[node]["condition"] == "service_healthy", f"{name} -> {node}"


def test_compose_nats_nodes_mount_their_own_config_and_a_named_volume() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")
    services = compose["services"]
    nodes = ("nats-1", "nats-2", "nats-3")
    for node in nodes:
        svc = services[node]
        assert image_version(svc["image"]) >= MINIMUM_NATS, f"{node}: {svc['image']}"
        config_path = option(svc["command"], "--config")
        assert config_path
        source = bind_mounts(svc).get(config_path)
        assert source is not None, f"{node}: --config {config_path} is not a bind mount"
        text = source.read_text(encoding="utf-8")
        assert re.search(rf"^server_name: {node}$", text, re.MULTILINE), f"{source}"
        routes = set(re.findall(r"nats://([\w.-]+):6222", text))
        assert routes == set(nodes), f"{source}: routes to {routes}"
        (store_dir,) = re.findall(r'^\s*store_dir: "(.+)"$', text, re.MULTILINE)
        named = named_volumes(svc)
        assert any(PurePosixPath(t) in PurePosixPath(store_dir).parents for t in named.values()), (
            f"{node}: store_dir {store_dir} is not on a volume ({named})"
        )
        assert set(named) <= set(compose["volumes"]), f"{node}: undeclared volume {named}"
        assert "healthz" in " ".join(svc["healthcheck"]["test"])
    stores = [volume for n in nodes for volume in named_volumes(services[n])]
    assert len(set(stores)) == len(stores), f"two nodes share a volume: {stores}"


# --- Kubernetes ------------------------------------------------------------------------


def kind(docs: list[dict[str, Any]], kind_name: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind_name}


def pod_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return containers


def test_every_k8s_manifest_parses_and_the_kustomization_lists_them_all() -> None:
    docs = load_manifests()
    assert docs
    for doc in docs:
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_k8s_runs_three_nats_pods_and_two_replicas_of_each_service() -> None:
    docs = load_manifests()
    nats = kind(docs, "StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["podManagementPolicy"] == "Parallel"
    assert nats["spec"]["volumeClaimTemplates"], "JetStream needs a volume per pod"
    (container,) = pod_containers(nats)
    assert image_version(container["image"]) >= MINIMUM_NATS
    headless = kind(docs, "Service")[nats["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    deployments = kind(docs, "Deployment")
    for service in REPLICATED:
        running = [
            d
            for d in deployments.values()
            if any(python_module(c["command"]) == f"services.{service}" for c in pod_containers(d))
        ]
        assert len(running) == 1, f"{service}: want one Deployment, found {len(running)}"
        assert running[0]["spec"]["replicas"] >= 2


def resolve_env(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """A container's environment; ConfigMap keys resolved, fieldRefs as ``<fieldRef:…>``."""
    config_maps = kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        source = var["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = config_maps[ref["name"]]["data"][ref["key"]]
        else:
            env[var["name"]] = f"<fieldRef:{source['fieldRef']['fieldPath']}>"
    return env


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion; an undefined variable fails the test."""

    def one(found: re.Match[str]) -> str:
        assert found[1] in env, f"$({found[1]}) is not defined in the container's env"
        return env[found[1]]

    return re.sub(r"\$\((\w+)\)", one, arg)


def mounted_file(
    workload: dict[str, Any], container: dict[str, Any], path: str, docs: list[dict[str, Any]]
) -> str:
    """The text a container sees at ``path``, when it comes from a ConfigMap volume."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    wanted = PurePosixPath(path)
    for mount in container["volumeMounts"]:
        if wanted.parent != PurePosixPath(mount["mountPath"]):
            continue
        config_map = volumes[mount["name"]]["configMap"]
        items = {i["path"]: i["key"] for i in config_map.get("items", [])}
        key = items.get(wanted.name, wanted.name) if items else wanted.name
        data: dict[str, str] = kind(docs, "ConfigMap")[config_map["name"]]["data"]
        assert key in data, f"ConfigMap {config_map['name']} has no key {key}"
        return data[key]
    raise AssertionError(f"{path} is not mounted from a ConfigMap")


def test_k8s_containers_name_existing_modules_and_a_mounted_valid_config(
    tmp_path: Path,
) -> None:
    docs = load_manifests()
    nats = kind(docs, "StatefulSet")["nats"]
    headless = nats["spec"]["serviceName"]
    nats_pods = {f"nats-{i}.{headless}" for i in range(nats["spec"]["replicas"])}
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
    checked = 0
    for workload in workloads:
        for container in pod_containers(workload):
            module = python_module(container.get("command", []))
            if module is None:
                continue
            checked += 1
            where = f"{workload['kind']} {workload['metadata']['name']}"
            assert module_exists(module), f"{where}: no module {module}"
            env = resolve_env(container, docs)
            command = [expand(str(arg), env) for arg in container["command"]]
            config_path = option(command, "--config")
            assert config_path, f"{where}: no --config"
            text = mounted_file(workload, container, config_path, docs)
            config = validated_config(text, tmp_path, f"{workload['metadata']['name']}.toml")
            urls = (option(command, "--nats") or "").split(",")
            hosts = {u.removeprefix("nats://").partition(":")[0] for u in urls}
            assert hosts == nats_pods, f"{where}: --nats {urls} must name every NATS pod"
            if module in {f"services.{s}" for s in REPLICATED}:
                replica = option(command, "--replica")
                assert replica == "<fieldRef:metadata.name>", f"{where}: --replica {replica}"
            if module == AGENT_MODULE:
                # a StatefulSet of simulated agents: pod names are the server ids
                assert workload["kind"] == "StatefulSet"
                assert option(command, "--server") == "<fieldRef:metadata.name>"
                name = workload["metadata"]["name"]
                pods = {f"{name}-{i}" for i in range(workload["spec"]["replicas"])}
                assert pods <= {s.id for s in config.servers}, f"{where}: {pods}"
    assert checked >= len(REPLICATED)


def test_k8s_cluster_config_is_the_compose_demo_config() -> None:
    config_map = kind(load_manifests(), "ConfigMap")["blaze-cluster"]
    demo = (DEPLOY / "demo-cluster.toml").read_text(encoding="utf-8")
    assert config_map["data"]["cluster.toml"] == demo


def test_k8s_nats_pods_get_their_name_and_config_from_the_manifest() -> None:
    docs = load_manifests()
    nats = kind(docs, "StatefulSet")["nats"]
    (container,) = pod_containers(nats)
    env = resolve_env(container, docs)
    assert env["POD_NAME"] == "<fieldRef:metadata.name>"
    config_path = option(container["command"], "--config")
    assert config_path
    text = mounted_file(nats, container, config_path, docs)
    assert re.search(r"^server_name: \$POD_NAME$", text, re.MULTILINE)
    routes = set(re.findall(r"nats://([\w.-]+):6222", text))
    headless = nats["spec"]["serviceName"]
    assert routes == {f"nats-{i}.{headless}" for i in range(nats["spec"]["replicas"])}


# --- Dockerfile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    argument: str


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, argument = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), argument.strip()))
        pending = ""
    return instructions


def copied_sources(instructions: list[Instruction]) -> list[str]:
    """The build-context paths the COPY instructions name."""
    sources: list[str] = []
    for copy in (i for i in instructions if i.keyword == "COPY"):
        *named, _target = shlex.split(copy.argument)
        sources += [s for s in named if not s.startswith("--")]
    return sources


def test_dockerfile_installs_the_repository_and_defaults_to_an_existing_module() -> None:
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    base = [i.argument for i in instructions if i.keyword == "FROM"]
    assert base, "no base image"
    found = re.match(r"python:(\d+)\.(\d+)", base[-1])
    assert found, f"base image {base[-1]} is not the official python image"
    assert (int(found[1]), int(found[2])) >= (3, 11), "pyproject requires Python >= 3.11"
    copied = copied_sources(instructions)
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the build context"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", pyproject["project"]["readme"], "shared", "services"}
    assert needed <= {s.rstrip("/") for s in copied}, f"COPY misses {needed}"
    # the directory pyproject.toml was copied into is the one pip installs
    (copy,) = [i for i in instructions if i.keyword == "COPY" and "pyproject.toml" in i.argument]
    target = shlex.split(copy.argument)[-1].rstrip("/")
    runs = [i.argument for i in instructions if i.keyword == "RUN"]
    assert any(re.search(rf"pip install {re.escape(target)}(/|\s|$)", run) for run in runs), (
        f"no RUN pip install {target}"
    )
    (cmd,) = [i.argument for i in instructions if i.keyword == "CMD"]
    default = json.loads(cmd)
    module = python_module(default)
    assert module is not None, f"default command {default} is not python -m <module>"
    assert module_exists(module)
    user = [i.argument for i in instructions if i.keyword == "USER"]
    assert user, "runs as root"
    assert user[-1].split(":")[0] not in ("0", "root")


def test_dockerignore_keeps_the_virtualenv_out_but_not_what_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".venv" in patterns
    needed: list[str] = []
    for source in copied_sources(dockerfile_instructions(DEPLOY / "Dockerfile")):
        copied = REPO / source
        files = sorted(copied.rglob("*.py")) if copied.is_dir() else [copied]
        needed += [str(f.relative_to(REPO)) for f in files]
    assert "pyproject.toml" in needed
    assert "shared/config.py" in needed
    for path in needed:
        # fnmatch's * also crosses "/": stricter than Docker's matching, never laxer
        hit = [p for p in patterns if fnmatch(path, p) or fnmatch(path, p.rstrip("/") + "/*")]
        assert not hit, f"{path} would be left out of the build context by {hit}"


# --- NATS configs on real servers --------------------------------------------------------


def nats_check(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_nats_server()), "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        env={**os.environ, **(env or {})},
    )


def k8s_nats_config() -> str:
    docs = load_manifests()
    text: str = kind(docs, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    return text


@pytest.mark.parametrize(
    "name", ["nats-server.conf", "nats/nats-1.conf", "nats/nats-2.conf", "nats/nats-3.conf"]
)
def test_nats_config_passes_the_servers_own_check(name: str) -> None:
    result = nats_check(DEPLOY / name)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr


def test_k8s_nats_config_passes_the_servers_own_check(tmp_path: Path) -> None:
    path = tmp_path / "nats.conf"
    path.write_text(k8s_nats_config(), encoding="utf-8")
    result = nats_check(path, {"POD_NAME": "nats-0"})
    assert result.returncode == 0, result.stderr


def test_nats_check_refuses_a_broken_config(tmp_path: Path) -> None:
    """The check above would catch a typo: nats-server -t refuses unknown keys."""
    path = tmp_path / "typo.conf"
    text = (DEPLOY / "nats" / "nats-1.conf").read_text(encoding="utf-8")
    path.write_text(text.replace("ping_max:", "ping_maximum:"), encoding="utf-8")
    assert nats_check(path).returncode != 0


@dataclass(frozen=True)
class Node:
    name: str
    client: int
    http: int
    cluster: int


def on_loopback(
    text: str, node: Node, nodes: list[Node], route_hosts: list[str], store: Path
) -> str:
    """A node's config with its listeners, routes and store moved to loopback and tmp.

    Each replacement must hit exactly once, so a config that drifts from the shape
    the deployment relies on fails here rather than being started half-rewritten.
    """
    replacements = [
        ("0.0.0.0:4222", f"127.0.0.1:{node.client}"),
        ("0.0.0.0:8222", f"127.0.0.1:{node.http}"),
        ("0.0.0.0:6222", f"127.0.0.1:{node.cluster}"),
        ('"/data/jetstream"', f'"{store}"'),
    ]
    replacements += [
        (f"nats://{host}:6222", f"nats://127.0.0.1:{peer.cluster}")
        for host, peer in zip(route_hosts, nodes, strict=True)
    ]
    for old, new in replacements:
        assert text.count(old) == 1, f"{node.name}: expected {old!r} once"
        text = text.replace(old, new)
    return text


def monitor(node: Node, path: str) -> tuple[int, Any]:
    """HTTP status and JSON body of a monitoring endpoint; (0, None) if it does not answer."""
    url = f"http://127.0.0.1:{node.http}{path}"
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (OSError, ValueError):
        return 0, None


@contextlib.contextmanager
def nats_processes(
    configs: list[tuple[Node, Path, dict[str, str]]], logs: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start one nats-server per config; terminate them all afterwards (kill if stuck)."""
    binary = str(find_nats_server())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for node, config, env in configs:
            with (logs / f"{node.name}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [binary, "-c", str(config)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, **env},
                    )
                )
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cluster_state(nodes: list[Node]) -> dict[str, Any]:
    """What each node's monitoring port says about health, routes and the meta leader."""
    state: dict[str, Any] = {}
    for node in nodes:
        health, _ = monitor(node, "/healthz")
        _, routez = monitor(node, "/routez")
        _, jsz = monitor(node, "/jsz")
        state[node.name] = {
            "healthz": health,
            "routes_to": sorted({r["remote_name"] for r in (routez or {}).get("routes", [])}),
            "meta": (jsz or {}).get("meta_cluster", {}),
        }
    return state


def formed(state: dict[str, Any], names: list[str]) -> bool:
    """Every node healthy, routed to both others, and all agree on one meta leader
    who sees the other two as current replicas."""
    leaders = {s["meta"].get("leader") for s in state.values()}
    if len(leaders) != 1 or None in leaders or "" in leaders:
        return False
    (leader,) = leaders
    if leader not in names:
        return False
    followers = {r["name"] for r in state[leader]["meta"].get("replicas", []) if r["current"]}
    return followers == set(names) - {leader} and all(
        s["healthz"] == 200 and s["routes_to"] == sorted(set(names) - {name})
        for name, s in state.items()
    )


@dataclass(frozen=True)
class ClusterLayout:
    """Where a deployment's three node configs come from and what their routes name."""

    flavour: str
    route_hosts: list[str]

    def node_config(self, index: int) -> tuple[str, str, dict[str, str]]:
        """(server name, config text, environment) of node ``index``."""
        if self.flavour == "compose":
            name = f"nats-{index + 1}"
            return name, (DEPLOY / "nats" / f"{name}.conf").read_text(encoding="utf-8"), {}
        name = f"nats-{index}"
        return name, k8s_nats_config(), {"POD_NAME": name}


LAYOUTS = [
    ClusterLayout("compose", ["nats-1", "nats-2", "nats-3"]),
    ClusterLayout("k8s", [f"nats-{i}.nats-headless" for i in range(3)]),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.flavour)
def test_nats_cluster_configs_start_a_three_node_jetstream_cluster(
    layout: ClusterLayout, tmp_path: Path
) -> None:
    rendered = [layout.node_config(i) for i in range(3)]
    nodes = [Node(name, free_port(), free_port(), free_port()) for name, _, _ in rendered]
    configs: list[tuple[Node, Path, dict[str, str]]] = []
    for node, (_, text, env) in zip(nodes, rendered, strict=True):
        store = tmp_path / node.name / "jetstream"
        path = tmp_path / f"{node.name}.conf"
        path.write_text(on_loopback(text, node, nodes, layout.route_hosts, store))
        configs.append((node, path, env))
    names = [node.name for node in nodes]
    with nats_processes(configs, tmp_path) as procs:
        deadline = time.monotonic() + 15
        state = cluster_state(nodes)
        while not formed(state, names):
            exited = [n.name for n, p in zip(nodes, procs, strict=True) if p.poll() is not None]
            logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace")[-2000:] for n in names}
            assert not exited, f"nats-server exited: {exited}; logs: {logs}"
            assert time.monotonic() < deadline, f"no 3-node cluster within 15 s: {state}; {logs}"
            time.sleep(0.1)
            state = cluster_state(nodes)
        # the settings the deployment relies on, as the running servers report them
        for node in nodes:
            _, varz = monitor(node, "/varz")
            assert varz["server_name"] == node.name
            assert varz["cluster"]["name"] == "blaze"
            assert varz["ping_interval"] == 1_000_000_000  # ns: R2, dead clients in 2-3 s
            assert varz["ping_max"] == 2
            assert varz["max_payload"] == 8 << 20
            js_config = varz["jetstream"]["config"]
            assert js_config.get("sync_always") is True, f"{node.name}: no fsync per write"
            assert js_config["store_dir"].startswith(str(tmp_path))
