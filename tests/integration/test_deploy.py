"""deploy/: the compose file, the Kubernetes manifests, the Dockerfile and the NATS configs.

There is no Docker engine or Kubernetes here, so the files are parsed and checked
against the code: every command names a module that exists, every config path is
mounted from a file or ConfigMap that exists and validates, replicas have distinct
names, every process is handed its own identity's seed and nothing else (issue 7).
The NATS configs run on real nats-servers with credentials from ``blaze secrets``: the
cluster configs must form a three-node JetStream cluster over mutual-TLS routes, and
the single-node config must admit a generated identity over TLS, and nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from shared.bus import Access, Bus, find_nats_server, free_port
from shared.config import ClusterConfig, load_config
from shared.errors import ClusterUnreachableError
from tests.helpers import eventually

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
REPLICATED = ("health", "placement", "sync")
AGENT_MODULE = "services.heartbeat"
NATS_CLIENT_PORT = 4222
MINIMUM_NATS = (2, 11)
GENERATED = ("secrets", "secrets-k8s")
"""Where deploy/README.md has `blaze secrets` write: git-ignored, never committed."""
SEED = re.compile(r"SU[A-Z2-7]{50,}")
"""An nkey user seed."""
IDENTITY_OF_MODULE = {
    "services.health": "health",
    "services.placement": "placement",
    "services.sync": "sync",
    "services.console": "admin",  # it confirms failbacks
}
TLS_FILES = {"cert_file": "server.pem", "key_file": "server-key.pem", "ca_file": "ca.pem"}
"""What a node's ``tls`` block must name: the files ``blaze secrets --tls-host`` writes."""
AUTH_FILE = "auth.conf"


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


def identity_of(command: list[str]) -> str:
    """The NATS identity a blaze process must run as: its service's, the console's
    ``admin``, or ``agent-<server>``."""
    module = python_module(command)
    if module == AGENT_MODULE:
        return f"agent-{option(command, '--server')}"
    assert module in IDENTITY_OF_MODULE, f"{module}: which identity does it run as?"
    return IDENTITY_OF_MODULE[module]


def blaze_secrets(out: Path, *tls_hosts: str) -> Path:
    """Run ``blaze secrets`` for the demo cluster into ``out``, as deploy/README.md does."""
    config = ["--config", str(DEPLOY / "demo-cluster.toml")]
    hosts = [arg for host in tls_hosts for arg in ("--tls-host", host)]
    result = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "secrets", *config, "--out", str(out), *hosts],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``blaze secrets`` writes for the demo cluster, its certificate naming loopback."""
    return blaze_secrets(tmp_path_factory.mktemp("deploy") / "secrets", "127.0.0.1", "localhost")


def block(text: str, name: str, *, nested: bool = False) -> str:
    """The body of the first ``name { ... }`` block of a nats-server config, at the top
    level unless ``nested``."""
    indent = r"\s*" if nested else ""
    found = re.search(rf"^{indent}{name}\s*\{{", text, re.MULTILINE)
    assert found, f"no {name} block"
    depth, start = 1, found.end()
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    raise AssertionError(f"{name} block not closed")


def credential_files(text: str, config_path: str) -> dict[str, str]:
    """Where a NATS node config wants each generated file: container path -> file name.

    It must include the authorization block, which nats-server resolves against the
    config's directory, and have TLS for clients and for routes when it routes.
    """
    text = re.sub(r"#.*", "", text)
    includes = re.findall(r"^\s*include\s+(\S+)\s*$", text, re.MULTILINE)
    assert len(includes) == 1, f"{config_path}: include the authorization once: {includes}"
    # nats-server joins even an absolute include path to the config's directory
    assert not PurePosixPath(includes[0]).is_absolute(), f"{config_path}: {includes[0]}"
    wanted = {str(PurePosixPath(config_path).parent / includes[0]): AUTH_FILE}
    tls_blocks = [block(text, "tls")]  # for clients
    if re.search(r"^cluster\s*\{", text, re.MULTILINE):
        tls_blocks.append(block(block(text, "cluster"), "tls", nested=True))
    for tls in tls_blocks:
        files = dict(re.findall(r'^\s*(cert_file|key_file|ca_file):\s*"([^"]+)"', tls, re.M))
        assert set(files) == set(TLS_FILES), f"{config_path}: tls names {sorted(files)}"
        for key, path in files.items():
            assert PurePosixPath(path).is_absolute(), f"{config_path}: {key} {path} is relative"
            wanted[path] = TLS_FILES[key]
    return wanted


def with_credentials(text: str, generated: Path, config_dir: Path) -> str:
    """A node config pointed at generated credentials: each TLS file replaced by the
    generated file of that name, and the included file copied to where the include
    finds it, relative to ``config_dir`` (where the config will be written)."""
    for include in re.findall(r"^\s*include\s+(\S+)\s*$", text, re.MULTILINE):
        target = config_dir / include
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(generated / AUTH_FILE, target)

    def generated_file(found: re.Match[str]) -> str:
        name = PurePosixPath(found[2]).name
        assert (generated / name).is_file(), f"{found[1]}: blaze secrets writes no {name}"
        return f'{found[1]}: "{generated / name}"'

    return re.sub(r'\b(cert_file|key_file|ca_file): "([^"]+)"', generated_file, text)


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


def compose_secret_files() -> dict[str, Path]:
    """Compose secret name -> the file it is made of."""
    secrets = load_yaml(DEPLOY / "compose.yaml")["secrets"]
    return {name: (DEPLOY / secret["file"]).resolve() for name, secret in secrets.items()}


def compose_secret_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> name of the secret a compose service is given there."""
    mounts: dict[str, str] = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            source, target = entry, entry
        else:
            source, target = entry["source"], entry.get("target", entry["source"])
        path = target if target.startswith("/") else f"/run/secrets/{target}"
        mounts[path] = source
    return mounts


def test_compose_secrets_are_files_blaze_secrets_generates_and_git_ignores(
    generated: Path,
) -> None:
    files = compose_secret_files()
    assert files, "compose declares no secrets"
    produced = {p.name for p in generated.iterdir()}
    for name, path in files.items():
        assert path.parent == DEPLOY / "secrets", f"{name}: {path} is not in deploy/secrets/"
        assert path.name in produced, f"{name}: blaze secrets writes no {path.name}"
        assert path.name != "ca-key.pem", "the CA key is deployed nowhere"
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    context = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for directory in GENERATED:
        assert f"deploy/{directory}/" in ignored, f"deploy/{directory}/ is not git-ignored"
        assert f"deploy/{directory}" in context, f"deploy/{directory} goes to the build context"


def test_compose_gives_every_blaze_process_its_own_identity_and_nothing_else() -> None:
    files = compose_secret_files()
    given: set[str] = set()
    for name, svc in compose_blaze_services().items():
        identity = identity_of([str(arg) for arg in svc["command"]])
        given.add(identity)
        mounted = {path: files[source].name for path, source in compose_secret_mounts(svc).items()}
        assert sorted(mounted.values()) == sorted([f"{identity}.nk", "ca.pem"]), (
            f"{name} ({identity}) is given {sorted(mounted.values())}"
        )
        env = svc["environment"]
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        assert mounted.get(str(env["BLAZE_NATS_CREDS"])) == f"{identity}.nk", f"{name}: {env}"
        assert mounted.get(str(env["BLAZE_NATS_CA"])) == "ca.pem", f"{name}: {env}"
    servers = load_config(DEPLOY / "demo-cluster.toml").servers
    assert given == {*REPLICATED, "admin", *(f"agent-{s.id}" for s in servers)}


def test_compose_nats_nodes_include_the_auth_file_and_have_tls() -> None:
    files = compose_secret_files()
    services = compose_services()
    for node in ("nats-1", "nats-2", "nats-3"):
        svc = services[node]
        config_path = option(svc["command"], "--config")
        assert config_path
        text = bind_mounts(svc)[config_path].read_text(encoding="utf-8")
        mounted = {path: files[source].name for path, source in compose_secret_mounts(svc).items()}
        wanted = credential_files(text, config_path)
        for path, name in wanted.items():
            assert mounted.get(path) == name, f"{node}: {path} should be {name}: {mounted}"
        assert not any(name.endswith(".nk") for name in mounted.values()), f"{node}: a seed"


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


def resolve_env(
    container: dict[str, Any], docs: list[dict[str, Any]], pod: str | None = None
) -> dict[str, str]:
    """A container's environment: ConfigMap keys resolved, ``$(VAR)`` of earlier
    variables expanded, fieldRefs as ``<fieldRef:…>`` (the pod's name if ``pod``)."""
    config_maps = kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
            continue
        source = var["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = config_maps[ref["name"]]["data"][ref["key"]]
        else:
            field = source["fieldRef"]["fieldPath"]
            if pod is not None and field == "metadata.name":
                env[var["name"]] = pod
            else:
                env[var["name"]] = f"<fieldRef:{field}>"
    return env


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion; an undefined variable fails the test."""

    def one(found: re.Match[str]) -> str:
        assert found[1] in env, f"$({found[1]}) is not defined in the container's env"
        return env[found[1]]

    return re.sub(r"\$\((\w+)\)", one, arg)


@dataclass(frozen=True)
class FileSource:
    """Where a file a container sees comes from: a key of a ConfigMap or a Secret."""

    kind: str
    name: str
    key: str
    mode: int | None
    read_only: bool


def volume_sources(volume: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], int | None]:
    """The ConfigMaps and Secrets of a volume (projected or not), and its default mode."""
    if "projected" in volume:
        projected = volume["projected"]
        kinds = ("configMap", "secret")
        sources = [(k, s[k]) for s in projected["sources"] for k in kinds if k in s]
        return sources, projected.get("defaultMode")
    for k in ("configMap", "secret"):
        if k in volume:
            return [(k, volume[k])], volume[k].get("defaultMode")
    return [], None


def file_source(workload: dict[str, Any], container: dict[str, Any], path: str) -> FileSource:
    """The ConfigMap or Secret key a container sees at ``path``."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    wanted = PurePosixPath(path)
    for mount in container.get("volumeMounts", []):
        if wanted.parent != PurePosixPath(mount["mountPath"]):
            continue
        sources, mode = volume_sources(volumes[mount["name"]])
        read_only = bool(mount.get("readOnly"))
        for source_kind, source in sources:
            name = source.get("name") or source["secretName"]
            for item in source.get("items", []):
                if item["path"] == wanted.name:
                    return FileSource(source_kind, name, item["key"], mode, read_only)
        whole = [(k, s) for k, s in sources if not s.get("items")]
        assert len(whole) <= 1, f"{path}: which of {whole} is it from?"
        if whole:
            source_kind, source = whole[0]
            name = source.get("name") or source["secretName"]
            return FileSource(source_kind, name, wanted.name, mode, read_only)
    raise AssertionError(f"{path} is mounted from no ConfigMap or Secret")


def pod_secrets(workload: dict[str, Any]) -> set[str]:
    """Every Secret a workload's pods mount."""
    names: set[str] = set()
    for volume in workload["spec"]["template"]["spec"]["volumes"]:
        for source_kind, source in volume_sources(volume)[0]:
            if source_kind == "secret":
                names.add(source.get("name") or source["secretName"])
    return names


def mounted_file(
    workload: dict[str, Any], container: dict[str, Any], path: str, docs: list[dict[str, Any]]
) -> str:
    """The text a container sees at ``path``, when it comes from a ConfigMap."""
    source = file_source(workload, container, path)
    assert source.kind == "configMap", f"{path} is not mounted from a ConfigMap"
    data: dict[str, str] = kind(docs, "ConfigMap")[source.name]["data"]
    assert source.key in data, f"ConfigMap {source.name} has no key {source.key}"
    return data[source.key]


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


@dataclass(frozen=True)
class Process:
    """One blaze process of the manifests: in one pod of a StatefulSet, or in any pod
    of a Deployment."""

    where: str
    workload: dict[str, Any]
    container: dict[str, Any]
    env: dict[str, str]
    identity: str


def k8s_blaze_processes(docs: list[dict[str, Any]]) -> list[Process]:
    """Every blaze process the manifests run, with its environment and identity."""
    processes: list[Process] = []
    for workload in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet")):
        name = workload["metadata"]["name"]
        pods: list[str | None] = [None]
        if workload["kind"] == "StatefulSet":
            pods = [f"{name}-{i}" for i in range(workload["spec"]["replicas"])]
        for container in pod_containers(workload):
            if python_module(container.get("command", [])) is None:
                continue
            for pod in pods:
                env = resolve_env(container, docs, pod)
                command = [expand(str(arg), env) for arg in container["command"]]
                where = f"{workload['kind']} {name}" + (f", pod {pod}" if pod else "")
                processes.append(Process(where, workload, container, env, identity_of(command)))
    return processes


def own_seed(process: Process) -> tuple[str, str]:
    """The Secret and key that must hold a process's seed: its identity's Secret, or for
    the simulated agents, the key of its server in their common Secret."""
    if process.identity.startswith("agent-"):
        return "blaze-creds-agents", f"{process.identity}.nk"
    return f"blaze-creds-{process.identity}", "seed"


def test_k8s_gives_every_blaze_process_its_own_identity_and_nothing_else() -> None:
    processes = k8s_blaze_processes(load_manifests())
    for p in processes:
        creds = file_source(p.workload, p.container, p.env["BLAZE_NATS_CREDS"])
        ca = file_source(p.workload, p.container, p.env["BLAZE_NATS_CA"])
        assert (creds.kind, creds.name, creds.key) == ("secret", *own_seed(p)), (
            f"{p.where} ({p.identity}): seed from {creds}"
        )
        assert (ca.kind, ca.name, ca.key) == ("secret", "blaze-nats-ca", "ca.pem"), p.where
        assert pod_secrets(p.workload) == {creds.name, ca.name}, f"{p.where}: other Secrets"
        for source in (creds, ca):
            assert source.read_only, f"{p.where}: mount {source.name} read-only"
            # fsGroup makes a Secret's files group-readable; nobody else may read them
            assert source.mode is not None, f"{p.where}: no defaultMode"
            assert source.mode & 0o037 == 0, f"{p.where}: mode {source.mode:o}"
    servers = load_config(DEPLOY / "demo-cluster.toml").servers
    assert {p.identity for p in processes} == {
        *REPLICATED,
        "admin",
        *(f"agent-{s.id}" for s in servers),
    }


def test_k8s_nats_pods_include_the_auth_file_and_have_tls() -> None:
    docs = load_manifests()
    nats = kind(docs, "StatefulSet")["nats"]
    (container,) = pod_containers(nats)
    config_path = option(container["command"], "--config")
    assert config_path
    text = mounted_file(nats, container, config_path, docs)
    for path, name in credential_files(text, config_path).items():
        source = file_source(nats, container, path)
        assert (source.kind, source.name, source.key) == ("secret", "blaze-nats-auth", name)
        assert source.read_only, f"{path}: mount it read-only"
        assert source.mode == 0o400, f"{path}: mode {source.mode}: for nats-server (root) only"
    assert pod_secrets(nats) == {"blaze-nats-auth"}


def readme_commands(program: str) -> list[list[str]]:
    """The console commands of deploy/README.md that start with ``program``."""
    text = (DEPLOY / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    prefix = f"$ {program} "
    return [shlex.split(line[2:]) for line in text.splitlines() if line.startswith(prefix)]


def readme_k8s_secrets() -> dict[str, dict[str, PurePosixPath]]:
    """Secret -> key -> file, as deploy/README.md has them created."""
    secrets: dict[str, dict[str, PurePosixPath]] = {}
    for command in readme_commands("kubectl"):
        if command[3:6] != ["create", "secret", "generic"]:
            continue
        assert command[1:3] == ["-n", "blaze"], command
        keys: dict[str, PurePosixPath] = {}
        for arg in command[7:]:
            value = arg.removeprefix("--from-file=")
            assert value != arg, f"{command[6]}: {arg}"
            key, _, path = value.rpartition("=")
            keys[key or PurePosixPath(path).name] = PurePosixPath(path)
        secrets[command[6]] = keys
    return secrets


def readme_tls_hosts() -> dict[str, set[str]]:
    """The names deploy/README.md has ``blaze secrets`` certify, per output directory."""
    hosts: dict[str, set[str]] = {}
    for command in readme_commands(".venv/bin/blaze secrets"):
        out = option(command, "--out")
        assert out, command
        hosts[out] = {command[i + 1] for i, arg in enumerate(command) if arg == "--tls-host"}
    return hosts


def test_readme_creates_every_secret_the_manifests_mount_from_the_right_file(
    generated: Path,
) -> None:
    docs = load_manifests()
    created = readme_k8s_secrets()
    produced = {p.name for p in generated.iterdir()}
    for secret, keys in created.items():
        for key, source in keys.items():
            assert source.parent == PurePosixPath("deploy/secrets-k8s"), f"{secret}: {source}"
            assert source.name in produced, f"{secret}.{key}: blaze secrets writes no {source}"
            assert source.name != "ca-key.pem", "the CA key is deployed nowhere"

    def file_of(source: FileSource) -> str:
        assert source.name in created, f"deploy/README.md does not create Secret {source.name}"
        assert source.key in created[source.name], f"no key {source.key} in {source.name}"
        return created[source.name][source.key].name

    for p in k8s_blaze_processes(docs):
        seed = file_source(p.workload, p.container, p.env["BLAZE_NATS_CREDS"])
        assert file_of(seed) == f"{p.identity}.nk", f"{p.where}: seed of another identity"
        assert file_of(file_source(p.workload, p.container, p.env["BLAZE_NATS_CA"])) == "ca.pem"
    nats = kind(docs, "StatefulSet")["nats"]
    (container,) = pod_containers(nats)
    config_path = option(container["command"], "--config")
    assert config_path
    text = mounted_file(nats, container, config_path, docs)
    for path, name in credential_files(text, config_path).items():
        assert file_of(file_source(nats, container, path)) == name, path
    # the certificates name every host the nodes and the services dial
    hosts = readme_tls_hosts()
    urls = kind(docs, "ConfigMap")["blaze-cluster"]["data"]["nats-urls"].split(",")
    k8s_hosts = {u.removeprefix("nats://").partition(":")[0] for u in urls}
    k8s_hosts |= set(re.findall(r"nats://([\w.-]+):6222", text))
    assert k8s_hosts <= hosts["deploy/secrets-k8s"], hosts
    compose_files = {path.parent for path in compose_secret_files().values()}
    assert compose_files == {DEPLOY / "secrets"}
    assert {"nats-1", "nats-2", "nats-3"} <= hosts["deploy/secrets"], hosts


def test_no_file_under_deploy_holds_a_seed() -> None:
    """Generated credentials live only in the git-ignored directories."""
    checked = 0
    for path in sorted(DEPLOY.rglob("*")):
        relative = path.relative_to(DEPLOY)
        if relative.parts[0] in GENERATED or not path.is_file():
            continue
        checked += 1
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert not SEED.search(text), f"deploy/{relative} holds an nkey seed"
    assert checked >= 10


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


def checkable(text: str, generated: Path, tmp_path: Path) -> Path:
    """A node config written where nats-server can check it here: its credentials the
    generated ones, the included file beside it."""
    path = tmp_path / "nats.conf"
    path.write_text(with_credentials(text, generated, tmp_path), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name", ["nats-server.conf", "nats/nats-1.conf", "nats/nats-2.conf", "nats/nats-3.conf"]
)
def test_nats_config_passes_the_servers_own_check(
    name: str, generated: Path, tmp_path: Path
) -> None:
    text = (DEPLOY / name).read_text(encoding="utf-8")
    result = nats_check(checkable(text, generated, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr


def test_k8s_nats_config_passes_the_servers_own_check(generated: Path, tmp_path: Path) -> None:
    result = nats_check(checkable(k8s_nats_config(), generated, tmp_path), {"POD_NAME": "nats-0"})
    assert result.returncode == 0, result.stderr


def test_nats_check_refuses_a_broken_config(generated: Path, tmp_path: Path) -> None:
    """The check above would catch a typo: nats-server -t refuses unknown keys."""
    text = (DEPLOY / "nats" / "nats-1.conf").read_text(encoding="utf-8")
    typo = text.replace("ping_max:", "ping_maximum:")
    assert nats_check(checkable(typo, generated, tmp_path)).returncode != 0
    assert nats_check(checkable(text, generated, tmp_path)).returncode == 0


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
    layout: ClusterLayout, generated: Path, tmp_path: Path
) -> None:
    rendered = [layout.node_config(i) for i in range(3)]
    nodes = [Node(name, free_port(), free_port(), free_port()) for name, _, _ in rendered]
    configs: list[tuple[Node, Path, dict[str, str]]] = []
    for node, (_, text, env) in zip(nodes, rendered, strict=True):
        store = tmp_path / node.name / "jetstream"
        path = tmp_path / f"{node.name}.conf"
        on_loopback_text = on_loopback(text, node, nodes, layout.route_hosts, store)
        path.write_text(with_credentials(on_loopback_text, generated, tmp_path))
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
            assert varz["auth_required"] is True, f"{node.name}: admits anybody"
            assert varz["tls_required"] is True, f"{node.name}: admits plain text"
            assert varz["cluster"]["tls_required"] is True, f"{node.name}: plain routes"
        assert_no_stranger_joins_as_a_route(nodes, names, generated, tmp_path)


def assert_no_stranger_joins_as_a_route(
    nodes: list[Node], names: list[str], generated: Path, tmp_path: Path
) -> None:
    """Two servers try to route to the first node: one in plain text, one over TLS with
    a certificate of another CA. The node refuses both, and keeps its two routes."""
    other = blaze_secrets(tmp_path / "other-ca", "127.0.0.1")
    strangers = {
        "plain": "",
        "other-ca": (
            f'tls {{ cert_file: "{other / "server.pem"}", key_file: "{other / "server-key.pem"}",'
            f' ca_file: "{generated / "ca.pem"}" }}'
        ),
    }
    configs: list[tuple[Node, Path, dict[str, str]]] = []
    for name, tls in strangers.items():
        node = Node(name, free_port(), free_port(), free_port())
        path = tmp_path / f"{name}.conf"
        path.write_text(
            f"server_name: {name}\nlisten: 127.0.0.1:{node.client}\n"
            f"http: 127.0.0.1:{node.http}\ncluster {{\n  name: blaze\n"
            f"  listen: 127.0.0.1:{node.cluster}\n"
            f"  routes: [nats://127.0.0.1:{nodes[0].cluster}]\n  {tls}\n}}\n"
        )
        configs.append((node, path, {}))
    log = tmp_path / f"{nodes[0].name}.log"
    seen = log.stat().st_size
    refusals = ("does not look like a TLS handshake", "certificate signed by unknown authority")
    with nats_processes(configs, tmp_path) as procs:
        deadline = time.monotonic() + 10
        while True:
            exited = [n.name for (n, _, _), p in zip(configs, procs, strict=True) if p.poll()]
            assert not exited, f"{exited} did not start: see {tmp_path}"
            with log.open("rb") as text:
                text.seek(seen)
                since = text.read().decode(errors="replace")
            if all(refusal in since for refusal in refusals):
                break
            assert time.monotonic() < deadline, f"{nodes[0].name} refused nobody: {since}"
            time.sleep(0.1)
        state = cluster_state(nodes)
        assert formed(state, names), f"the cluster changed: {state}"
        for stranger, _, _ in configs:
            _, routez = monitor(stranger, "/routez")
            assert routez is not None, f"{stranger.name} does not answer"
            assert not routez.get("routes"), f"{stranger.name} joined: {routez}"


async def test_nats_server_conf_admits_a_generated_identity_over_tls_and_nobody_else(
    generated: Path, tmp_path: Path
) -> None:
    """deploy/nats-server.conf with what `blaze secrets` wrote: the health seed gets in
    over TLS and may create its streams; no seed, or no TLS, does not get in."""
    node = Node("nats", free_port(), free_port(), 0)
    text = (DEPLOY / "nats-server.conf").read_text(encoding="utf-8")
    for old, new in [
        ("127.0.0.1:4222", f"127.0.0.1:{node.client}"),
        ("127.0.0.1:8222", f"127.0.0.1:{node.http}"),
        ('"/var/lib/blaze/nats"', f'"{tmp_path / "store"}"'),
    ]:
        assert text.count(old) == 1, f"expected {old!r} once"
        text = text.replace(old, new)
    path = tmp_path / "nats-server.conf"
    path.write_text(with_credentials(text, generated, tmp_path), encoding="utf-8")
    url = f"nats://127.0.0.1:{node.client}"
    ca = generated / "ca.pem"
    with nats_processes([(node, path, {})], tmp_path) as (process,):
        deadline = time.monotonic() + 10
        while monitor(node, "/healthz")[0] != HTTPStatus.OK:
            log = (tmp_path / "nats.log").read_text(errors="replace")
            assert process.poll() is None, f"nats-server exited: {log}"
            assert time.monotonic() < deadline, f"nats-server not healthy: {log}"
            await asyncio.sleep(0.05)
        health = await Bus.connect(
            url, "health", reconnect=False, access=Access(generated / "health.nk", ca)
        )
        try:
            assert health.nc.connected_url is not None
            await health.ensure_streams()
        finally:
            await health.close()
        with pytest.raises(ClusterUnreachableError):
            await Bus.connect(url, "anonymous", reconnect=False, access=Access(None, ca))

        async def server_log() -> str:
            return (tmp_path / "nats.log").read_text(errors="replace")

        await eventually(server_log, lambda log: "authentication error" in log, 5, "a refusal")
        plain = Access(generated / "health.nk")  # no CA: refused, whatever it trusts
        with pytest.raises(ClusterUnreachableError):
            await Bus.connect(url, "plain", reconnect=False, access=plain)
