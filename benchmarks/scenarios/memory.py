"""memory: peak RSS of our library at 500,000 bookings over its peak at 50,000 (the
extract_0ms run, else a run of its own): memory must follow the rows in flight, not the size
of the extract. Skipped by --quick unless --memory-bookings says a size."""

from collections.abc import Mapping

from harness.measure import Context, measure_tools, median_of
from harness.report import Target
from harness.sandbox import SandboxSpec
from harness.tools import OURS_LIB, ours_lib_tool

from scenarios import Scenario
from scenarios.extract import BOOKINGS_FULL, BOOKINGS_QUICK

BIG_BOOKINGS = 500_000
TARGET_MEMORY_RATIO = 1.3


def run(ctx: Context) -> dict[str, object]:
    chosen = ctx.options.get("memory_bookings")
    big_bookings = chosen if isinstance(chosen, int) else (None if ctx.quick else BIG_BOOKINGS)
    if big_bookings is None:
        return {"skipped": {OURS_LIB: "skipped in --quick"}}
    small_bookings = ctx.size(BOOKINGS_FULL, BOOKINGS_QUICK)
    big = SandboxSpec(bookings=big_bookings, anchor=ctx.anchor)
    scenario, _ = measure_tools(ctx, "memory", big, [ours_lib_tool()], ctx.runs())
    small_rss = median_of(ctx.results.get("extract_0ms"), OURS_LIB, "max_rss_mib")
    if small_rss is None:  # extract_0ms was not run (or failed): measure the small point here
        small = SandboxSpec(bookings=small_bookings, anchor=ctx.anchor)
        scenario["small"], _ = measure_tools(ctx, "memory_small", small, [ours_lib_tool()], 1)
        small_rss = median_of(scenario["small"], OURS_LIB, "max_rss_mib")
    big_rss = median_of(scenario, OURS_LIB, "max_rss_mib")
    scenario["peak_rss_mib"] = {"small": small_rss, "big": big_rss}
    scenario["bookings"] = {"small": small_bookings, "big": big_bookings}
    scenario["memory_ratio"] = big_rss / small_rss if big_rss and small_rss else None
    return scenario


def targets(scenario: Mapping[str, object]) -> list[Target]:
    if "skipped" in scenario and "memory_ratio" not in scenario:
        return []
    sizes = scenario.get("bookings")
    label = (
        f"{sizes.get('big'):,} / {sizes.get('small'):,}" if isinstance(sizes, Mapping) else "? / ?"
    )
    value = scenario.get("memory_ratio")
    return [
        Target(
            "memory",
            f"peak RSS {label} bookings",
            float(value) if isinstance(value, int | float) else None,
            "<=",
            TARGET_MEMORY_RATIO,
        )
    ]


SCENARIO = Scenario("memory", run, targets)
