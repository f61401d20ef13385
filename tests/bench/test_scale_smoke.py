"""``python -m bench.scale --smoke`` runs end to end and reports every figure (issue 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIGURES = {
    "health_cpu",
    "health_rss",
    "placement_cpu",
    "placement_rss",
    "nats_server_cpu",
    "nats_server_rss",
    "fleet_cpu",
    "fleet_rss",
    "rack_failure_claimed",
    "rack_failback_home",
    "status_json",
}


@pytest.mark.timeout(90)
def test_scale_smoke_reports_every_figure_with_a_positive_value(tmp_path: Path) -> None:
    env = {**os.environ, "BLAZE_BENCH_RESULTS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "scale.json").read_text())
    figures = {f["name"]: f for f in result["figures"]}
    assert set(figures) == FIGURES
    for name, figure in figures.items():
        assert figure["median"] > 0, name
        assert figure["p99"] >= figure["median"], name
    assert result["params"]["cameras"] == 200
