"""Every kind of service as its own process, as deployed (R13): Prometheus ``/metrics`` that
``promtool check metrics`` finds clean, ``/healthz`` and ``/readyz`` on the same port
(a standby is ready; nobody is ready without NATS), and JSON log lines with their ids.

``promtool`` comes from Debian's ``prometheus`` package; only its two checks skip
without it, saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.bus import NatsServer, free_port
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[timing]
heartbeat_interval = 0.2
network_timeout = 2.0
storage_probe_interval = 0.2

[[server]]
id = "rs-1"
capacity = 2

[[server]]
id = "rs-2"
capacity = 2

[[camera]]
id = "c1"
home = "rs-1"

[[camera]]
id = "c2"
home = "rs-2"
"""

PROCESSES = {
    "health-a": ["services.health", "--replica", "health-a"],
    "placement-a": ["services.placement", "--replica", "placement-a"],
    "placement-b": ["services.placement", "--replica", "placement-b"],
    "sync-a": ["services.sync", "--replica", "sync-a"],
    "rs-1": ["services.heartbeat", "--server", "rs-1"],
    "rs-2": ["services.heartbeat", "--server", "rs-2"],
}
"""One process of each kind, and a second placement replica that stands by."""

EVERY_PROCESS_METRICS = (
    "blaze_heartbeats_sent_total",
    "blaze_heartbeats_received_total",
    "blaze_heartbeats_rejected_total",
    "blaze_failovers_total",
    "blaze_failbacks_total",
    "blaze_failover_seconds_bucket",
    "blaze_cameras_pending",
)
"""Sample names every process exposes, whoever counts them."""


def promtool() -> str:
    """The promtool binary, or a skip that says how to get it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not found: install Debian's prometheus package")
    return found


def run(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run a tool to its end, its output captured."""
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=30, check=False)


@dataclass
class Process:
    """One service process and its metrics port."""

    name: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes]

    def get(self, path: str) -> tuple[int, bytes]:
        """HTTP GET on the metrics port: (status, body), (0, b"") if nothing answers."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return int(answer.status), bytes(answer.read())
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read()
        except OSError:
            return 0, b""

    async def fetch(self, path: str) -> tuple[int, bytes]:
        return await asyncio.to_thread(self.get, path)

    async def metrics(self) -> str:
        status, body = await self.fetch("/metrics")
        return body.decode() if status == 200 else ""


@pytest.fixture
def processes(nats_server: NatsServer, tmp_path: Path) -> Iterator[dict[str, Process]]:
    """Every process of ``PROCESSES`` on the test's nats-server, with logs in ``tmp_path``."""
    config = tmp_path / "cluster.toml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k not in ("BLAZE_LOG_FORMAT",)}
    running: dict[str, Process] = {}
    try:
        for name, argv in PROCESSES.items():
            port = free_port()
            log = tmp_path / f"{name}.log"
            common = ["--config", str(config), "--nats", nats_server.url]
            common += ["--data", str(tmp_path / "data"), "--metrics-port", str(port)]
            with log.open("wb") as out:
                popen = subprocess.Popen(
                    [sys.executable, "-m", *argv, *common],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            running[name] = Process(name, port, log, popen)
        yield running
    finally:
        for process in running.values():
            process.popen.terminate()
        for process in running.values():
            try:
                process.popen.wait(10)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample's value in Prometheus text, or None."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def all_ready(processes: dict[str, Process]) -> dict[str, int]:
    return {name: (await p.fetch("/readyz"))[0] for name, p in processes.items()}


async def wait_working(processes: dict[str, Process]) -> dict[str, str]:
    """Wait until every process is ready and has counted something; its /metrics."""
    await eventually(
        lambda: all_ready(processes),
        lambda codes: set(codes.values()) == {200},
        30,
        "every process ready",
        every=0.2,
    )

    async def texts() -> dict[str, str]:
        return {name: await p.metrics() for name, p in processes.items()}

    def working(t: dict[str, str]) -> bool:
        leaders = [
            sample(t[n], "blaze_leading", service="placement")
            for n in ("placement-a", "placement-b")
        ]
        return (
            (sample(t["health-a"], "blaze_heartbeats_received_total") or 0) > 0
            and sample(t["health-a"], "blaze_servers", state="up") == 2
            and leaders in ([0.0, 1.0], [1.0, 0.0])  # a standby shows 0, not nothing
            and sample(t["sync-a"], "blaze_leading", service="sync", replica="sync-a") == 1
            and all(
                (sample(t[s], "blaze_heartbeats_sent_total") or 0) > 0 for s in ("rs-1", "rs-2")
            )
        )

    return await eventually(texts, working, 30, "every service at work", every=0.2)


async def test_r13_promtool_check_metrics_is_clean_on_every_kind_of_service(
    processes: dict[str, Process],
) -> None:
    """``promtool check metrics`` on /metrics of health, both placement replicas, sync and
    an agent, each busy: no error, no lint warning. Every process exposes every name."""
    tool = promtool()
    texts = await wait_working(processes)
    for name, text in texts.items():
        checked = await asyncio.to_thread(run, [tool, "check", "metrics"], text.encode())
        said = (checked.stdout + checked.stderr).decode()
        assert checked.returncode == 0, f"{name}: {said}"
        assert said.strip() == "", f"{name}: {said}"
        names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        missing = set(EVERY_PROCESS_METRICS) - names
        assert not missing, f"{name} lacks {missing}"


def test_r13_the_shipped_prometheus_config_passes_promtool_check_config() -> None:
    """``deploy/prometheus.yml`` is a valid Prometheus config."""
    tool = promtool()
    checked = run([tool, "check", "config", str(ROOT / "deploy" / "prometheus.yml")])
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


async def test_r13_liveness_and_readiness_standby_ready_nobody_ready_without_nats(
    processes: dict[str, Process], nats_server: NatsServer
) -> None:
    """/healthz answers while the process lives; /readyz once connected and announced,
    the standby placement replica included; 503 on every process while NATS is down,
    200 again once it is back, and /healthz stays 200 throughout."""
    texts = await wait_working(processes)
    standby = next(
        n
        for n in ("placement-a", "placement-b")
        if sample(texts[n], "blaze_leading", service="placement") == 0
    )
    status, body = await processes[standby].fetch("/readyz")
    assert status == 200
    assert json.loads(body)["ready"] is True

    nats_server.stop()
    codes = await eventually(
        lambda: all_ready(processes),
        lambda c: set(c.values()) == {503},
        15,
        "nobody ready without NATS",
        every=0.2,
    )
    assert codes
    status, body = await processes["rs-1"].fetch("/readyz")
    assert json.loads(body) == {"ready": False, "checks": {json_key(body): False}}
    for name, process in processes.items():
        status, body = await process.fetch("/healthz")
        assert (status, json.loads(body)) == (200, {"alive": True}), name

    nats_server.start()
    await eventually(
        lambda: all_ready(processes),
        lambda c: set(c.values()) == {200},
        30,
        "every process ready again",
        every=0.2,
    )


def json_key(body: bytes) -> str:
    """The one check's name in a /readyz answer."""
    [key] = json.loads(body)["checks"]
    return str(key)


async def test_r13_logs_of_a_process_are_json_lines_with_the_ids_that_matter(
    processes: dict[str, Process],
) -> None:
    """Not on a terminal, each process logs one JSON object per line: the service, its
    replica or server, and for a camera move the camera and the epoch."""
    await wait_working(processes)

    def records(name: str) -> list[dict[str, object]]:
        lines = processes[name].log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    async def claims() -> list[dict[str, object]]:
        return [r for r in records("rs-1") if str(r["message"]).startswith("claim c1")]

    [claim, *_] = await eventually(claims, bool, 10, "rs-1 logged its claim of c1")
    assert claim["service"] == "heartbeat"
    assert claim["server"] == "rs-1"
    assert claim["camera"] == "c1"
    assert isinstance(claim["epoch"], int)
    assert claim["level"] == "INFO"
    assert str(claim["time"]).endswith("Z")

    leads = [r for r in records("sync-a") if "leads sync under epoch" in str(r["message"])]
    assert leads, records("sync-a")
    assert leads[0]["replica"] == "sync-a"
    assert leads[0]["service"] == "sync"
    assert isinstance(leads[0]["epoch"], int)
    for name in processes:
        for record in records(name):  # every line is JSON, nothing else
            assert {"time", "level", "service", "message", "logger"} <= record.keys(), record
