"""The metrics endpoint never takes a service down, answers liveness and readiness, and
every metric the dashboard and the docs name exists (R13)."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics
from shared.metrics import READINESS, Readiness, serve_metrics


def test_r13_a_taken_metrics_port_falls_back_to_another_and_still_serves() -> None:
    """A port picked free and then taken by someone else must not stop the process:
    /metrics is served on another port, which ``serve_metrics`` returns."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        served = serve_metrics(taken)
    assert served is not None
    assert served != taken
    with urllib.request.urlopen(f"http://127.0.0.1:{served}/metrics", timeout=5) as answer:
        assert b"blaze_rejected_messages_total" in answer.read()


# ---- liveness and readiness ----


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_r13_healthz_answers_and_readyz_follows_every_registered_check() -> None:
    """/healthz: the process answers. /readyz: 503 while nothing is registered or any
    check fails (or raises), 200 once every check passes; both on the metrics port."""
    port = serve_metrics(0)
    assert port is not None
    assert _get(port, "/healthz") == (200, {"alive": True})
    key = "test-readiness"
    READINESS.remove(key)
    connected = [False]
    others = READINESS.report()[1]
    try:
        READINESS.add(key, lambda: connected[0])
        status, body = _get(port, "/readyz")
        assert status == 503
        assert body["checks"][key] is False
        connected[0] = True
        status, body = _get(port, "/readyz")
        assert body["checks"][key] is True
        assert status == (200 if all(others.values()) else 503)

        def broken() -> bool:
            raise RuntimeError("cannot tell")

        READINESS.add(key, broken)
        assert _get(port, "/readyz")[0] == 503
    finally:
        READINESS.remove(key)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert b"blaze_leading" in answer.read()


def test_r13_readiness_with_nothing_registered_is_not_ready() -> None:
    """A process whose service has not announced itself yet is not ready."""
    assert Readiness().report() == (False, {})


# ---- the dashboard, the scrape config and the docs against the metric objects ----

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "blaze-cluster.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


def defined_samples() -> dict[str, str]:
    """Every sample name shared/metrics.py can expose, with its family name."""
    samples = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                for suffix in SUFFIXES[family.type]:
                    samples[family.name + suffix] = family.name
    return samples


def dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert panels, "the dashboard has no panels"
    queries = []
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        queries += [t["expr"] for t in panel["targets"]]
    return queries


def test_r13_every_metric_the_dashboard_queries_exists_in_shared_metrics() -> None:
    """deploy/grafana/blaze-cluster.json parses, every panel queries something, and every
    ``blaze_*`` name in its queries is a sample shared/metrics.py exposes."""
    known = defined_samples()
    used = {name for q in dashboard_queries() for name in re.findall(r"\bblaze_\w+", q)}
    assert used, "no blaze metric on the dashboard"
    assert used <= known.keys(), f"not in shared/metrics.py: {sorted(used - known.keys())}"


def test_r13_the_dashboard_shows_what_operators_asked_for() -> None:
    """Heartbeats received and rejected, servers and cameras by state, failovers and
    failbacks by cause, failover duration, Pending, leaders, sync bytes/segments/jobs."""
    used = " ".join(dashboard_queries())
    for family in (
        "blaze_heartbeats_received_total",
        "blaze_heartbeats_rejected_total",
        "blaze_servers",
        "blaze_cameras",
        "blaze_failovers_total",
        "blaze_failbacks_total",
        "blaze_failover_seconds_bucket",
        "blaze_cameras_pending",
        "blaze_leading",
        "blaze_sync_bytes_total",
        "blaze_sync_segments_total",
        "blaze_sync_jobs",
    ):
        assert re.search(rf"\b{family}\b", used), family


def test_r13_grafana_provisioning_points_at_prometheus_and_the_dashboard_folder() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert [s["type"] for s in sources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((provisioning / "dashboards" / "blaze.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"
    assert providers["providers"][0]["options"]["path"]


def test_r13_every_metric_is_documented_in_operations_md() -> None:
    """docs/operations.md's Metrics table names every metric family of shared/metrics.py."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(blaze_\w+)`", section))
    for sample, family in defined_samples().items():
        if sample.endswith(("_created", "_count", "_sum", "_bucket")):
            continue
        assert sample in documented, f"{sample} ({family}) is not in the Metrics table"
