"""dagster: the daily refresh through Dagster (benchmarks/dagster_refresh.py, one run: it seeds
a day's state first, so a run is minutes): requests by endpoint, wall time, 429s, load."""

from collections.abc import Mapping

from harness.base import BENCH, PYTHON, child_env
from harness.children import last_json_line, run_child
from harness.measure import Context
from harness.report import Target, targets_of

from scenarios import Scenario

BOOKINGS_FULL = 50_000
BOOKINGS_QUICK = 5_000
TARGET_REQUEST_RATIO = 1.05
TARGET_WALL_RATIO = 1.2
TARGET_429_SHARE = 0.02


def run(ctx: Context) -> dict[str, object]:
    bookings = ctx.size(BOOKINGS_FULL, BOOKINGS_QUICK)
    argv = [PYTHON, str(BENCH / "dagster_refresh.py"), "--bookings", str(bookings)]
    logs = ctx.work / "dagster"
    child = run_child("dagster_refresh", 1, argv, child_env(), logs)
    if not child.ok:
        return {"error": child.error, "wall_s": child.wall_s}
    summary = last_json_line((logs / "dagster_refresh-1.out").read_text(encoding="utf-8"))
    if summary is None:
        return {"error": "dagster_refresh.py printed no JSON summary"}
    return {**summary, "harness_wall_s": child.wall_s}


def targets(scenario: Mapping[str, object]) -> list[Target]:
    alone, both = scenario.get("alone"), scenario.get("with_snapshots")
    return [
        *targets_of(
            "dagster",
            alone if isinstance(alone, Mapping) else {},
            ("requests / (listing pages + changed)", "request_ratio", "<=", TARGET_REQUEST_RATIO),
            ("wall / (requests / 10 rps)", "wall_ratio", "<=", TARGET_WALL_RATIO),
        ),
        *targets_of(
            "dagster",
            both if isinstance(both, Mapping) else {},
            ("429s / requests, daily + snapshots at once", "share_429", "<", TARGET_429_SHARE),
        ),
    ]


SCENARIO = Scenario("dagster", run, targets)
