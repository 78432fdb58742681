"""throttled: 20,000 bookings [5,000] from a sandbox limited to 10 req/s (burst 10), our
library at the same limit: the share of the allowed rate it achieves and the 429s it meets."""

from collections.abc import Mapping

from harness.base import median
from harness.measure import Context, measure_tools
from harness.report import Target, targets_of
from harness.sandbox import SandboxSpec
from harness.tools import OURS_LIB, ours_lib_tool

from scenarios import Scenario

BOOKINGS_FULL = 20_000
BOOKINGS_QUICK = 5_000
THROTTLE_RPS = 10.0
THROTTLE_BURST = 10
TARGET_THROTTLE_SHARE = 0.95
TARGET_THROTTLE_429_SHARE = 0.02


def run(ctx: Context) -> dict[str, object]:
    spec = SandboxSpec(
        bookings=ctx.size(BOOKINGS_FULL, BOOKINGS_QUICK),
        rate_limit=THROTTLE_RPS,
        burst=THROTTLE_BURST,
        anchor=ctx.anchor,
    )
    tool = ours_lib_tool(rate=THROTTLE_RPS, burst=THROTTLE_BURST)
    scenario, results = measure_tools(ctx, "throttled", spec, [tool], ctx.runs())
    shares, too_many, rates = [], [], []
    for run in results.get(OURS_LIB, []):
        if not run.ok or not run.requests or not run.requests["total"]:
            continue
        total, n429 = run.requests["total"], run.requests["429"]
        span = run.extra.get("server_span_s")
        ok_requests = total - n429
        # Server timestamps: n requests span n - 1 intervals. Otherwise the in-process time.
        seconds = run.inner_s or run.wall_s
        rate = (ok_requests - 1) / span if isinstance(span, float) else ok_requests / seconds
        rates.append(rate)
        shares.append(rate / THROTTLE_RPS)
        too_many.append(n429 / total)
    scenario["achieved_rps"] = median(rates)
    scenario["share_of_limit"] = median(shares)
    scenario["share_429"] = median(too_many)
    scenario["rate_basis"] = (
        "non-429 requests over the first-to-last request span seen by the sandbox, else over "
        "the seconds inside extract_range (imports excluded)"
    )
    return scenario


def targets(scenario: Mapping[str, object]) -> list[Target]:
    return targets_of(
        "throttled",
        scenario,
        ("achieved req/s / 10", "share_of_limit", ">=", TARGET_THROTTLE_SHARE),
        ("429s / requests", "share_429", "<", TARGET_THROTTLE_429_SHARE),
    )


SCENARIO = Scenario("throttled", run, targets)
