"""extract_1m: 1,000,000 bookings at 50 ms latency, our library only: wall, CPU, peak RSS and
requests of a full-window extract at a size where memory and requests per booking show."""

from collections.abc import Mapping

from harness.measure import Context, measure_tools, median_of, request_ratio
from harness.report import Target
from harness.sandbox import SandboxSpec
from harness.tools import OURS_LIB, ours_lib_tool

from scenarios import Scenario

BOOKINGS = 1_000_000
LATENCY_MS = 50.0
TARGET_WALL_S = 60.0
TARGET_PEAK_RSS_MIB = 1024.0
TARGET_REQUEST_RATIO = 1.01


def run(ctx: Context) -> dict[str, object]:
    spec = SandboxSpec(bookings=BOOKINGS, latency_ms=LATENCY_MS, anchor=ctx.anchor)
    scenario, per_tool = measure_tools(ctx, "extract_1m", spec, [ours_lib_tool()], ctx.runs())
    scenario["request_ratio"] = request_ratio(per_tool[OURS_LIB])
    return scenario


def targets(scenario: Mapping[str, object]) -> list[Target]:
    ratio = scenario.get("request_ratio")
    return [
        Target(
            "extract_1m",
            "wall s, median (process start to exit)",
            median_of(scenario, OURS_LIB, "wall_s"),
            "<",
            TARGET_WALL_S,
        ),
        Target(
            "extract_1m",
            "peak RSS MiB, median",
            median_of(scenario, OURS_LIB, "max_rss_mib"),
            "<",
            TARGET_PEAK_RSS_MIB,
        ),
        Target(
            "extract_1m",
            "requests / (pages of the rows + listings)",
            float(ratio) if isinstance(ratio, int | float) else None,
            "<=",
            TARGET_REQUEST_RATIO,
        ),
    ]


SCENARIO = Scenario("extract_1m", run, targets, in_quick=False)
