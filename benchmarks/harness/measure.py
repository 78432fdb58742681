"""Tools run side by side against one sandbox: interleaved runs, rows checked, medians and
paired ratios."""

import datetime as dt
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.base import median
from harness.children import (
    ChildResult,
    count_parquet_rows,
    describe_result,
    run_child,
    summarize,
)
from harness.sandbox import Sandbox, SandboxSpec, observe
from harness.tools import Tool, Window

FULL_RUNS = 3
QUICK_RUNS = 1


@dataclass
class Context:
    """What a scenario is told about the whole benchmark run."""

    quick: bool
    anchor: dt.date
    work: Path
    # Runs per tool, if the user chose (--runs); else each scenario's default.
    runs_override: int | None = None
    # Why a tool cannot run (dlt's environment missing, --no-dlt), by tool name.
    unavailable: dict[str, str] = field(default_factory=dict)
    # The results of the scenarios run so far, by name.
    results: dict[str, dict[str, object]] = field(default_factory=dict)
    options: dict[str, object] = field(default_factory=dict)

    def runs(self, full: int = FULL_RUNS, quick: int = QUICK_RUNS) -> int:
        return self.runs_override or (quick if self.quick else full)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


Measured = tuple[dict[str, object], dict[str, list[ChildResult]]]


def measure_tools(
    ctx: Context, name: str, spec: SandboxSpec, tools: Sequence[Tool], runs: int
) -> Measured:
    """Runs every tool ``runs`` times, interleaved, against one sandbox; checks row counts."""
    window = Window.around(spec.anchor)
    scenario: dict[str, object] = {
        "sandbox": spec.settings(),
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
        "tools": {t.name: t.describe for t in tools},
    }
    per_tool: dict[str, list[ChildResult]] = {t.name: [] for t in tools}
    skipped = {t.name: ctx.unavailable[t.name] for t in tools if t.name in ctx.unavailable}
    scenario["skipped"] = skipped
    runnable = [t for t in tools if t.name not in skipped]
    work = ctx.work / name
    with Sandbox(spec) as sandbox:
        expected = sandbox.total_bookings()
        scenario["expected_rows"] = expected
        print(f"  sandbox {sandbox.base_url}: {expected} bookings, latency {spec.latency_ms} ms")
        for run in range(1, runs + 1):
            for tool in runnable:
                result = _one_run(sandbox, tool, run, work, window, expected)
                per_tool[tool.name].append(result)
                print("    " + describe_result(result))
    scenario["runs"] = {k: [asdict(r) for r in v] for k, v in per_tool.items()}
    scenario["medians"] = {k: summarize(v) for k, v in per_tool.items() if any(r.ok for r in v)}
    return scenario, per_tool


def _one_run(
    sandbox: Sandbox, tool: Tool, run: int, work: Path, window: Window, expected: int
) -> ChildResult:
    out = work / f"{tool.name}-{run}"
    shutil.rmtree(out, ignore_errors=True)
    spec = sandbox.spec
    if spec.rate_limit:  # let the bucket refill after the harness's own reads
        time.sleep((spec.burst or 1) / spec.rate_limit)
    cpu_before = sandbox.cpu_seconds()
    with observe(sandbox) as seen:
        result = run_child(
            tool.name,
            run,
            tool.argv(sandbox.base_url, out, window),
            tool.env(sandbox.base_url),
            work / "logs",
        )
    cpu_after = sandbox.cpu_seconds()
    if cpu_before is not None and cpu_after is not None:
        result.server_cpu_s = cpu_after - cpu_before
    served = seen()
    result.requests = served.counts(expected)
    if served.span_s is not None:
        result.extra["server_span_s"] = served.span_s
    if result.ok:
        result.rows = count_parquet_rows(tool.rows_at(out))
        for table in tool.other_tables:
            result.extra[f"rows_{table}"] = count_parquet_rows(out / table)
        if result.rows != expected:
            result.ok = False
            result.error = f"wrote {result.rows} rows, the sandbox has {expected}"
    shutil.rmtree(out, ignore_errors=True)
    return result


def paired_ratio(
    scenario: Mapping[str, object], slower: str, faster: str, key: str = "wall_s"
) -> float | None:
    """Median over runs of key(slower, run i) / key(faster, run i): paired, interleaved runs."""
    runs = scenario.get("runs")
    if not isinstance(runs, Mapping):
        return None
    a = {r["run"]: r for r in runs.get(slower, []) if r["ok"]}
    b = {r["run"]: r for r in runs.get(faster, []) if r["ok"]}
    ratios = [
        a[i][key] / b[i][key]
        for i in sorted(a.keys() & b.keys())
        if a[i].get(key) is not None and b[i].get(key)
    ]
    return median(ratios)


def median_of(scenario: object, tool: str, key: str) -> float | None:
    """One median figure of a tool in a scenario's results, if there is one."""
    if not isinstance(scenario, Mapping):
        return None
    medians = scenario.get("medians")
    if not isinstance(medians, Mapping) or tool not in medians:
        return None
    value = medians[tool].get(key)
    return float(value) if isinstance(value, int | float) else None


def request_ratio(results: Sequence[ChildResult]) -> float | None:
    """Median over good runs of requests / (pages of the rows written + listings): 1.0 when a
    run asked once for each page of data, plus once per listing for the first page that tells
    its size."""
    ratios = []
    for result in results:
        counts = result.requests
        if result.ok and counts and counts.get("pages_of_rows") is not None:
            floor = counts["pages_of_rows"] + counts["listings"]
            ratios.append(counts["total"] / floor if floor else float(counts["total"]))
    return median(ratios)
