"""The chaos soak in ``make test`` (issue 10): ``python -m soak`` as ``make soak`` runs it,
a small fleet, a fixed seed, two and a half minutes of faults (about three minutes in
all), and not one violation. The checker's rules have their own tests in
``tests/soak/``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOAK = {
    "--duration": "150",
    "--servers": "5",
    "--cameras": "40",
    "--fault-every": "4",
    "--seed": "1",
}
"""The fixed soak of the test suite (seed 1 injects every kind of fault)."""
RUN_BOUND_S = 390
"""The run stops by itself well within this (docs/soak.md: each phase is bounded)."""


def run_soak(results: Path, data: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    argv = [sys.executable, "-m", "soak", *(x for kv in SOAK.items() for x in kv)]
    argv += ["--results", str(results), "--data", str(data)]
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=RUN_BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"the soak did not stop within {RUN_BOUND_S} s:\n{out[-5000:]}")
    done = subprocess.CompletedProcess(argv, process.returncode, out, "")
    report = json.loads((results / f"{SOAK['--seed']}.json").read_text())
    return done, report


@pytest.mark.slow
@pytest.mark.timeout(RUN_BOUND_S + 30)
def test_three_minutes_of_mixed_faults_end_converged_with_no_violation(tmp_path: Path) -> None:
    done, report = run_soak(tmp_path / "results", tmp_path / "data")
    assert report["violations"] == [], done.stdout[-6000:]
    assert done.returncode == 0, done.stdout[-6000:]
    faults = report["faults"]
    assert faults["injected"] >= 30, faults
    assert faults["not_repaired"] == []
    assert len(faults["by_kind"]) >= 7, faults["by_kind"]
    assert report["failovers"], "no server failed over: the soak hurt nothing"
    assert "converged_after_s" in report["final"]
    assert "sync_settled_after_s" in report["final"]
    assert report["segments_seen"] > 1000
    assert report["resources"]["processes"]["placement-a"]["peak_rss_mb"] > 0
    assert "soak seed 1:" in done.stdout
