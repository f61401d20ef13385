"""The benchmarks cannot rot (issue 8): each runs with ``--smoke`` (a few seconds) into a
temporary results directory and writes every figure it promises; ``bench.report``
renders them; and BENCHMARKS.md is what ``bench/results/*.json`` say."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parents[2]
BENCHES = ("failover", "detection", "sync", "failback", "ha")
MAY_BE_ZERO = {
    "release_first_double_recording",  # release-first never records twice
    "make_before_break_gap",  # make-before-break leaves no gap
    "failback_gap",  # to within a segment, often none
}
SMOKE_TIMEOUT_S = 120
FIXTURE_TIMEOUT_S = len(BENCHES) * SMOKE_TIMEOUT_S + 60  # each run bounded by its own first


def smoke(name: str, results: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BLAZE_BENCH_RESULTS": str(results)}
    return subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every benchmark's smoke run, one after another (two at once contend for ports and
    CPU), into one temporary directory."""
    results = tmp_path_factory.mktemp("bench-results")
    done = {b: smoke(b, results) for b in BENCHES}
    failed = {b: f"{r.stdout[-1500:]}\n{r.stderr[-3000:]}" for b, r in done.items() if r.returncode}
    assert not failed, failed
    return results


@pytest.mark.slow
@pytest.mark.timeout(FIXTURE_TIMEOUT_S)
@pytest.mark.parametrize("name", BENCHES)
def test_smoke_run_writes_every_figure_it_promises(smoke_results: Path, name: str) -> None:
    doc = json.loads((smoke_results / f"{name}.json").read_text(encoding="utf-8"))
    module = importlib.import_module(f"bench.{name}")
    assert [f["name"] for f in doc["figures"]] == module.names()
    assert doc["params"]["smoke"] is True
    for figure in doc["figures"]:
        assert figure["runs"] >= 1, figure
        assert figure["p99"] is not None, figure
        assert math.isfinite(figure["median"]), figure
        assert math.isfinite(figure["p99"]), figure
        if figure["name"] in MAY_BE_ZERO:
            assert figure["median"] >= 0, figure
        else:
            assert figure["median"] > 0, figure
            assert figure["p99"] > 0, figure
        assert (figure["met"] is None) == (not figure["goal"]), figure


@pytest.mark.slow
@pytest.mark.timeout(FIXTURE_TIMEOUT_S)
def test_report_renders_a_row_for_every_figure_and_checks_its_page(
    smoke_results: Path, tmp_path: Path
) -> None:
    page = tmp_path / "BENCHMARKS.md"
    args = ["--results", str(smoke_results), "--output", str(page)]
    assert report.main(args) == 0
    text = page.read_text(encoding="utf-8")
    for name in BENCHES:
        assert f"## {name}: " in text
        for figure in importlib.import_module(f"bench.{name}").names():
            assert f"| `{figure}` |" in text
    assert "A smoke run" in text
    assert report.main([*args, "--check"]) == 0
    page.write_text(text.replace("| `ratio_256` |", "| `ratio_265` |"), encoding="utf-8")
    assert report.main([*args, "--check"]) == 1


def test_benchmarks_md_is_what_the_results_say() -> None:
    results = ROOT / "bench" / "results"
    page = ROOT / "BENCHMARKS.md"
    assert report.main(["--results", str(results), "--output", str(page), "--check"]) == 0, (
        "BENCHMARKS.md differs from bench/results/*.json: run python -m bench.report"
    )
