"""BENCHMARKS.md from ``bench/results/*.json`` (issue 8): the machine each benchmark ran
on, one table per benchmark, and which goals were met.

    python -m bench.report            # write BENCHMARKS.md
    python -m bench.report --check    # exit 1 if BENCHMARKS.md is not what the JSON says

The page is a function of the JSON files alone (no clock, no machine), so ``--check``
keeps the two in step.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import shared
from bench import common

BENCHMARKS_MD = Path(__file__).parent.parent / "BENCHMARKS.md"
ORDER = ("failover", "detection", "sync", "failback", "ha", "planner", "scale")
TITLES = {
    "failover": "failover after a storage failure and a network cut",
    "detection": "a storage fault until it is reported",
    "sync": "footage sync against a plain local copy; recording gaps",
    "failback": "the recording gap at failback",
    "ha": "a placement leader or a NATS node killed",
    "planner": "placement's pure core at scale",
    "scale": "a large simulated fleet",
}
MODULES = {name: f"bench/{name}.py" for name in ORDER}
HIDDEN_PARAMS = ("smoke", "wall_s")
Result = dict[str, Any]


def load(directory: Path) -> list[Result]:
    """Every result file, in the order of ``ORDER`` (others after, by name)."""
    found = []
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc.get("figures"), list):
            raise SystemExit(f"{path}: not a bench.common result (old format?): run it again")
        doc.setdefault("name", path.stem)
        found.append(doc)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda d: (rank.get(d["name"], len(ORDER)), d["name"]))


def number(value: float | None) -> str:
    """Three significant figures or so, with thousands separators; a dash for none."""
    if value is None:
        return "–"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}".rstrip("0").rstrip(".") if value else "0"


def verdict(figure: dict[str, Any]) -> str:
    """✓ met, ✗ missed, blank without a goal."""
    met = figure.get("met")
    if met is None:
        return "?" if figure.get("goal") else ""
    return "✓" if met else "✗"


def cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def headline(figure: dict[str, Any]) -> str:
    """The statistic a goal is held to: the median for a goal that says so, else p99."""
    goal = str(figure.get("goal", ""))
    if goal.startswith("median") or figure.get("p99") is None:
        return f"median {number(figure['median'])} {figure['unit']}"
    return f"p99 {number(figure['p99'])} {figure['unit']}"


def goals_section(results: list[Result]) -> list[str]:
    lines = ["## Goals", ""]
    held = [
        (r, f) for r in results for f in r["figures"] if f.get("goal") or f.get("met") is not None
    ]
    for r, f in held:
        smoke = " (smoke run)" if r.get("params", {}).get("smoke") else ""
        lines.append(
            f"- {verdict(f)} {r['name']} `{f['name']}`: {headline(f)}; "
            f"goal {f.get('goal') or '–'}{smoke}"
        )
    met = sum(1 for _, f in held if f.get("met") is True)
    missed = sum(1 for _, f in held if f.get("met") is False)
    if not held:
        lines.append("- no goals yet")
    lines += ["", f"{met} of {len(held)} goals met, {missed} missed.", ""]
    return lines


def machine_section(results: list[Result]) -> list[str]:
    lines = [
        "## Machine",
        "",
        "| benchmark | date (UTC) | Python | platform | CPUs | nats-server | blaze-cluster | "
        "wall time |",
        "|---|---|---|---|---:|---|---|---:|",
    ]
    for r in results:
        m = r.get("machine", {})
        wall = r.get("params", {}).get("wall_s")
        version = m.get("blaze_cluster", shared.__version__)
        lines.append(
            f"| {r['name']} | {m.get('date', '–')} | {m.get('python', '–')} | "
            f"{cell(m.get('platform', '–'))} | {m.get('cpus', '–')} | "
            f"{m.get('nats_server', '–')} | {version} | "
            f"{'–' if wall is None else f'{number(wall)} s'} |"
        )
    return [*lines, ""]


def params_line(params: dict[str, Any]) -> str:
    shown = [
        f"`{k}` {json.dumps(v, ensure_ascii=False)}"
        for k, v in params.items()
        if k not in HIDDEN_PARAMS
    ]
    return "Parameters: " + (", ".join(shown) if shown else "none") + "."


def benchmark_section(result: Result) -> list[str]:
    name = result["name"]
    params = result.get("params", {})
    title = TITLES.get(name, name)
    lines = [f"## {name}: {title}", ""]
    if params.get("smoke"):
        lines += ["**A smoke run: too few runs to mean anything.**", ""]
    source = f"`{MODULES[name]}`, " if name in MODULES else ""
    lines += [f"{source}`python -m bench.{name}`. {params_line(params)}", ""]
    lines += [
        "| figure | median | p99 | unit | runs | goal | met |",
        "|---|---:|---:|---|---:|---|:-:|",
    ]
    for f in result["figures"]:
        lines.append(
            f"| `{f['name']}` | {number(f['median'])} | {number(f.get('p99'))} | "
            f"{cell(f['unit'])} | {f['runs']} | {cell(f.get('goal') or '')} | {verdict(f)} |"
        )
    lines.append("")
    lines += [f"- `{f['name']}`: {f['what']}" for f in result["figures"]]
    return [*lines, ""]


def render(results: list[Result]) -> str:
    """The whole page."""
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench.report` from bench/results/*.json: "
        "edit those (by running the benchmarks), not this. -->",
        "",
        "`make bench` runs every benchmark on loopback and rewrites this page from its "
        "results; `make bench ONLY=failover` runs one (see the Makefile). Each figure is "
        "a median and a p99 over `runs` runs (nearest rank: of 100 runs or fewer, the "
        "p99 is the largest), timed on one monotonic clock. The goals are issue 8's. "
        "Figures from a busy machine are slower than a quiet one gives; the ratios to a "
        "baseline measured in the same run hold better.",
        "",
    ]
    lines += goals_section(results)
    lines += machine_section(results)
    for r in results:
        lines += benchmark_section(r)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.report", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--results", type=Path, help="result files (default bench/results or $BLAZE_BENCH_RESULTS)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="the page (default BENCHMARKS.md; beside the results when they are elsewhere)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the page differs from the results"
    )
    args = parser.parse_args(argv)
    results = (args.results or common.results_dir()).resolve()
    output = args.output or (
        BENCHMARKS_MD if results == common.RESULTS.resolve() else results / "BENCHMARKS.md"
    )
    text = render(load(results))
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current == text:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(), text.splitlines(), str(output), "from the results", n=0
        )
        print("\n".join(list(diff)[:40]), file=sys.stderr)
        print(
            f"{output} is not what the results say: run python -m bench.report",
            file=sys.stderr,
        )
        return 1
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
