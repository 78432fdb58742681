"""contacts: 5,000 bookings at 50 ms latency, our library extracting bookings and
booking_contacts (one contacts call per booking): requests per second and rows. No target:
the figures show what the fan-out costs."""

from collections.abc import Mapping

from harness.base import median
from harness.measure import Context, measure_tools
from harness.report import Target
from harness.sandbox import SandboxSpec
from harness.tools import OURS_LIB, ours_lib_tool

from scenarios import Scenario

BOOKINGS = 5_000
LATENCY_MS = 50.0


def run(ctx: Context) -> dict[str, object]:
    spec = SandboxSpec(bookings=BOOKINGS, latency_ms=LATENCY_MS, anchor=ctx.anchor)
    tool = ours_lib_tool(tables="bookings,booking_contacts")
    scenario, results = measure_tools(ctx, "contacts", spec, [tool], ctx.runs())
    good = [run for run in results.get(OURS_LIB, []) if run.ok and run.requests]
    scenario["requests_per_s"] = median(
        [run.requests["total"] / (run.inner_s or run.wall_s) for run in good if run.requests]
    )
    contact_rows = [run.extra.get("rows_booking_contacts") for run in good]
    scenario["booking_contacts_rows"] = [r for r in contact_rows if r is not None]
    return scenario


def targets(scenario: Mapping[str, object]) -> list[Target]:
    return []


SCENARIO = Scenario("contacts", run, targets)
