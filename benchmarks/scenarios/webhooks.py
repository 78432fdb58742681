"""webhooks: benchmarks/webhook_freshness.py (also runnable alone): sandbox, `jicoo webhook
serve` and `dagster-daemon run`; 60 [20] reschedules at 1 per second, each timed from the
change's answer to its row in the day's Parquet. Left out of --quick unless named."""

from collections.abc import Mapping

from harness.measure import Context
from harness.report import Target, targets_of

from scenarios import Scenario

CHANGES_FULL = 60
CHANGES_QUICK = 20


def run(ctx: Context) -> dict[str, object]:
    from webhook_freshness import run as run_freshness

    # The sensor at its default interval.
    return run_freshness(ctx.size(CHANGES_FULL, CHANGES_QUICK))


def targets(scenario: Mapping[str, object]) -> list[Target]:
    from webhook_freshness import TARGET_P95_S

    return targets_of(
        "webhooks",
        scenario,
        (
            "change -> row in Parquet, p95 s (1 change/s, daemon)",
            "freshness_p95_s",
            "<=",
            TARGET_P95_S,
        ),
    )


SCENARIO = Scenario("webhooks", run, targets, in_quick=False)
