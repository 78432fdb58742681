"""The suite runs on any day: the shared fixtures move every clock a test can take, and the
few tests that cannot be moved say why and are listed in CONTRIBUTING.md.

``make test-dates`` runs the whole fast tier with ``JICOO_TEST_TODAY`` on other days; these
tests check the machinery itself (on whatever day this session runs).
"""

import ast
import datetime as dt
import gc
import re
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from assets.definitions import build_definitions
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster import JicooNames
from jicoo_sandbox.config import Clock
from jicoo_sandbox.server import SandboxServer

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
MARK = "system_clock"
# "- `tests/x.py::test_y`: why" or "- `tests/x.py` (every test): why"
LISTED = re.compile(r"^- `(tests/[^`]+)`(?: \(every test\))?: (.+)$")


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(TESTS.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), _parsed(path.read_text(encoding="utf-8"))


def _parsed(source: str) -> ast.Module:
    # No garbage collection while parsing: CPython 3.11 keeps the AST constructor's recursion
    # depth in global state, and a finalizer the collector ran meanwhile (an earlier test's
    # pooled database connection) logged a traceback, whose formatting parses source too: the
    # parse failed with "AST constructor recursion depth mismatch".
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if enabled:
            gc.enable()


def _reason(node: ast.expr, named: dict[str, str]) -> str | None:
    """The reason of a ``pytest.mark.system_clock("...")`` expression (or a name bound to one)."""
    if isinstance(node, ast.Name):
        return named.get(node.id)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == MARK
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def marked_tests() -> dict[str, str]:
    """Node id (or file, for a module-wide mark) -> reason, for every system_clock mark."""
    out: dict[str, str] = {}
    for name, module in _modules():
        named: dict[str, str] = {}
        for statement in module.body:
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target, reason = statement.targets[0], _reason(statement.value, {})
                if isinstance(target, ast.Name) and reason is not None:
                    named[target.id] = reason
        if "pytestmark" in named:
            out[name] = named["pytestmark"]
        for statement in module.body:
            if isinstance(statement, ast.FunctionDef) and statement.name.startswith("test_"):
                for decorator in statement.decorator_list:
                    if (reason := _reason(decorator, named)) is not None:
                        out[f"{name}::{statement.name}"] = reason
    return out


def listed_tests() -> dict[str, str]:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("\n### Tests on the system clock\n", 1)[1].split("\n#", 1)[0]
    return {m[1]: m[2] for line in section.splitlines() if (m := LISTED.match(line))}


def test_every_test_on_the_system_clock_is_listed_in_contributing_with_its_reason() -> None:
    marked = marked_tests()
    assert marked, "no test carries the system_clock mark: the list below would be empty"
    assert listed_tests() == marked


def test_every_sandbox_a_test_starts_names_its_clock_or_a_fixed_anchor() -> None:
    # SandboxConfig's own default is the system clock: a test's sandbox takes the `clock`
    # fixture (the test day), or pins its data with anchor_date.
    unnamed = [
        f"{name}:{node.lineno}"
        for name, module in _modules()
        for node in ast.walk(module)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "SandboxConfig"
        and not {k.arg for k in node.keywords} & {"clock", "anchor_date", None}
    ]
    assert unnamed == []


def test_the_shared_sandbox_and_dagster_run_on_the_test_clock(
    sandbox: SandboxServer, clock: Clock
) -> None:
    assert sandbox.config.clock is clock
    # The store's anchor is fixed when the session starts it; the session may since have crossed
    # midnight (a system-clock run started late in the UTC evening, or a slow shifted one).
    today = clock().astimezone(dt.UTC).date()
    assert sandbox.store.anchor in {today, today - dt.timedelta(days=1)}
    config = ConnectorConfig()
    zone = ZoneInfo(config.timezone)
    bookings = JicooNames(config.organization).asset_key("bookings")
    partitions = build_definitions(config).resolve_assets_def(bookings).partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    before = clock().astimezone(zone).date()
    last = dt.date.fromisoformat(partitions.get_last_partition_key() or "")
    after = clock().astimezone(zone).date()
    # Dagster's last daily partition: the test day's, JICOO_FUTURE_DAYS - 1 days ahead.
    ahead = dt.timedelta(days=config.future_days - 1)
    assert last in {before + ahead, after + ahead}


def _moment(raw: str) -> dt.datetime:
    """A TEST_DATES entry as the instant it starts the clock at (a bare date: during its day)."""
    if "T" in raw:
        return dt.datetime.fromisoformat(raw)
    return dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(3), dt.UTC)


def _changes_clocks(day: dt.date, zone: ZoneInfo) -> bool:
    start = dt.datetime.combine(day, dt.time(0), zone)
    return start.utcoffset() != (start + dt.timedelta(days=1)).utcoffset()


def test_make_test_dates_runs_the_whole_fast_tier_on_each_kind_of_day() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = re.search(r"^TEST_DATES \?= (.+)$", makefile, re.M)
    assert found is not None
    moments = [_moment(raw) for raw in found[1].split()]
    recipe = makefile.split("\ntest-dates:", 1)[1].split("\n\n", 1)[0]
    assert '-m "not slow"' in recipe
    assert "dates" not in recipe.replace("TEST_DATES", "").replace("test-dates", "")
    tokyo = ZoneInfo("Asia/Tokyo")
    days = [m.astimezone(dt.UTC).date() for m in moments]
    assert any((day + dt.timedelta(days=1)).day == 1 for day in days), "a month end"
    assert any((day.month, day.day) == (2, 29) for day in days), "a leap day"
    assert any(m.astimezone(dt.UTC).year < m.astimezone(tokyo).year for m in moments), (
        "a year end late in the UTC evening, already the next year in Tokyo"
    )
    zones = (ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin"))
    assert any(
        day.weekday() == 6 and any(_changes_clocks(day, zone) for zone in zones) for day in days
    ), "a Sunday with a daylight saving change"
