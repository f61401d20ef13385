"""The placement core benchmark cannot rot (issue 8): ``bench.planner --smoke`` measures
everything at tiny sizes, in-process, into a temporary results directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import planner


@pytest.mark.timeout(30)  # a few seconds on an idle machine
def test_smoke_run_writes_every_planner_figure_with_positive_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLAZE_BENCH_RESULTS", str(tmp_path))
    assert planner.main(["--smoke"]) == 0
    doc = json.loads((tmp_path / "planner.json").read_text(encoding="utf-8"))
    assert doc["name"] == "planner"
    assert doc["params"]["smoke"] is True
    assert [f["name"] for f in doc["figures"]] == planner.names()
    for figure in doc["figures"]:
        assert figure["runs"] >= 1, figure
        for value in (figure["median"], figure["p99"]):
            assert value is not None, figure
            assert math.isfinite(value), figure
            assert value > 0, figure
        assert (figure["met"] is None) == (not figure["goal"]), figure
