"""extract_0ms and extract_50ms: 50,000 bookings [5,000] to Parquet, by our library, our CLI,
the naive script and dlt, side by side against one sandbox (no latency, then 50 ms added to
every answer)."""

from collections.abc import Mapping

from harness.measure import Context, measure_tools, paired_ratio, request_ratio
from harness.report import Target
from harness.sandbox import SandboxSpec
from harness.tools import (
    DLT,
    DLT_TOOL,
    NAIVE,
    NAIVE_TOOL,
    OURS_CLI,
    OURS_LIB,
    ours_cli_tool,
    ours_lib_tool,
)

from scenarios import Scenario

BOOKINGS_FULL = 50_000
BOOKINGS_QUICK = 5_000
SLOW_LATENCY_MS = 50.0
OURS = (OURS_LIB, OURS_CLI)

# Judged on wall time, paired run by run (run i of the other tool over run i of ours).
TARGET_SPEEDUP_50MS_DLT = 10.0
TARGET_SPEEDUP_50MS_NAIVE = 7.0
TARGET_SPEEDUP_0MS_DLT = 4.0
# At 0 ms the judge is CPU: ours per booking at most the naive script's, in the same run.
TARGET_CPU_OVER_NAIVE_0MS = 1.0
# A full window asks once per page of data, plus once per listing for the page that tells its
# size (the first page of each listing is data too); 1% for what rounding to pages leaves.
TARGET_REQUEST_RATIO = 1.01


def run(ctx: Context, latency_ms: float) -> dict[str, object]:
    bookings = ctx.size(BOOKINGS_FULL, BOOKINGS_QUICK)
    spec = SandboxSpec(bookings=bookings, latency_ms=latency_ms, anchor=ctx.anchor)
    tools = [ours_lib_tool(), ours_cli_tool(), NAIVE_TOOL, DLT_TOOL]
    name = f"extract_{int(latency_ms)}ms"
    scenario, per_tool = measure_tools(ctx, name, spec, tools, ctx.runs())
    scenario["ratios"] = {
        f"{other}/{ours}": paired_ratio(scenario, other, ours)
        for ours in OURS
        for other in (NAIVE, DLT)
    }
    # The same with imports and interpreter start excluded (the tools' own timers): informative.
    scenario["ratios_inner"] = {
        f"{other}/{OURS_LIB}": paired_ratio(scenario, other, OURS_LIB, "inner_s")
        for other in (NAIVE, DLT)
    }
    scenario["cpu_over_naive"] = {
        ours: paired_ratio(scenario, ours, NAIVE, "cpu_s") for ours in OURS
    }
    scenario["request_ratio"] = {ours: request_ratio(per_tool[ours]) for ours in OURS}
    return scenario


def _nested(scenario: Mapping[str, object], key: str, tool: str) -> float | None:
    found = scenario.get(key)
    value = found.get(tool) if isinstance(found, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


def _request_targets(name: str, scenario: Mapping[str, object]) -> list[Target]:
    return [
        Target(
            name,
            f"{ours} requests / (pages of the rows + listings)",
            _nested(scenario, "request_ratio", ours),
            "<=",
            TARGET_REQUEST_RATIO,
        )
        for ours in OURS
    ]


def targets_0ms(scenario: Mapping[str, object]) -> list[Target]:
    name = "extract_0ms"
    found = [
        Target(
            name,
            f"{ours} CPU / naive CPU, same rows (paired)",
            _nested(scenario, "cpu_over_naive", ours),
            "<=",
            TARGET_CPU_OVER_NAIVE_0MS,
        )
        for ours in OURS
    ]
    found += [
        Target(
            name,
            f"{ours} speed-up over dlt (wall, paired)",
            _nested(scenario, "ratios", f"{DLT}/{ours}"),
            ">=",
            TARGET_SPEEDUP_0MS_DLT,
        )
        for ours in OURS
    ]
    return found + _request_targets(name, scenario)


def targets_50ms(scenario: Mapping[str, object]) -> list[Target]:
    name = "extract_50ms"
    found = [
        Target(
            name,
            f"{ours} speed-up over {other} (wall, paired)",
            _nested(scenario, "ratios", f"{other}/{ours}"),
            ">=",
            threshold,
        )
        for ours in OURS
        for other, threshold in ((DLT, TARGET_SPEEDUP_50MS_DLT), (NAIVE, TARGET_SPEEDUP_50MS_NAIVE))
    ]
    return found + _request_targets(name, scenario)


SCENARIOS = (
    Scenario("extract_0ms", lambda ctx: run(ctx, 0.0), targets_0ms),
    Scenario("extract_50ms", lambda ctx: run(ctx, SLOW_LATENCY_MS), targets_50ms),
)
