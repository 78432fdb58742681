"""Every documented setting is honoured: the README's table and ConnectorConfig match both ways,
and each variable changes what the Dagster code location does (the CLI's side is in
tests/test_settings_cli.py).

The code location is loaded the way Dagster loads it (``assets.definitions:defs`` with the
variable set) and its resources, partitions and schedules are inspected (found by kind, as their
names carry the organization).
"""

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster import JicooResource, WarehouseResource, WriteBackResource
from tests.support.setting_examples import RECEIVER_EXAMPLES, VARIABLES, example_value

ROOT = Path(__file__).resolve().parent.parent
# A fixed tick: schedules are evaluated at it, so no result depends on today.
TICK = dt.datetime(2026, 6, 15, 3, 30, tzinfo=ZoneInfo("Asia/Tokyo"))


def readme_settings() -> dict[str, str]:
    """Variable -> its default as the README's settings table spells it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    out: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`(JICOO_[A-Z_]+)`", cells[0]) if len(cells) == 3 else []
        defaults = re.findall(r"`([^`]+)`", cells[1]) if names else []
        for index, name in enumerate(names):
            out[name] = defaults[index] if index < len(defaults) else cells[1]
    return out


def _spelled(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    return "(none)" if value is None else str(value)


def test_the_readme_table_and_the_config_object_match_both_ways() -> None:
    documented = readme_settings()
    assert set(documented) - set(VARIABLES) == set(), "documented but not read"
    assert set(VARIABLES) - set(documented) == set(), "read but not in the README"
    defaults = ConnectorConfig()
    for env, name in VARIABLES.items():
        expected = "(required)" if env == "JICOO_API_KEY" else _spelled(getattr(defaults, name))
        assert documented[env] == expected, env


def test_every_variable_is_read_when_called_not_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {env: example_value(env) for env in VARIABLES}
    for env, raw in values.items():
        monkeypatch.setenv(env, raw)
    config = ConnectorConfig.from_env()
    shown = config.to_env()
    for env, name in VARIABLES.items():
        if ConnectorConfig.specs()[name].secret:  # never spelled out, read all the same
            assert env not in shown
            value = getattr(config, name)
            assert (value.reveal() if env == "JICOO_API_KEY" else value) == values[env]
        else:
            assert shown[env] == values[env]


# -- the code location --------------------------------------------------------------------


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> dg.Definitions:
    monkeypatch.setenv("JICOO_API_KEY", "sk_some_other_key")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from assets.definitions import defs

    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    return loaded


R = TypeVar("R", JicooResource, WarehouseResource, WriteBackResource)


def _one(d: dg.Definitions, kind: type[R]) -> R:
    """The location's one resource of ``kind``, as a run gets it (EnvVars read)."""
    (resource,) = [r for r in (d.resources or {}).values() if isinstance(r, kind)]
    initialized = resource.process_config_and_initialize()
    assert isinstance(initialized, kind)
    return initialized


def _ending(names: Iterable[str], suffix: str) -> str:
    (name,) = [n for n in names if n.endswith(suffix)]
    return name


def _schedule(d: dg.Definitions, kind: str) -> dg.ScheduleDefinition:
    names = [s.name for s in d.get_repository_def().schedule_defs]
    return d.resolve_schedule_def(_ending(names, f"_{kind}_schedule"))


def _sensor(d: dg.Definitions, kind: str) -> dg.SensorDefinition:
    names = [s.name for s in d.get_repository_def().sensor_defs]
    return d.resolve_sensor_def(_ending(names, f"_{kind}_sensor"))


def _partitions(defs: dg.Definitions) -> dg.DailyPartitionsDefinition:
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    (bookings,) = [key for key in keys if key.path[-1] == "bookings"]
    partitions = defs.resolve_assets_def(bookings).partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    return partitions


def _range(defs: dg.Definitions, schedule: str) -> tuple[str, str]:
    context = dg.build_schedule_context(scheduled_execution_time=TICK)
    (request,) = _schedule(defs, schedule).evaluate_tick(context).run_requests or []
    tags = request.tags
    return tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]


def _organizations(d: dg.Definitions) -> list[str]:
    """The organizations the asset keys (jicoo/<organization>/<table>) name."""
    return sorted({key.path[1] for key in d.resolve_asset_graph().get_all_asset_keys()})


def _events_store(d: dg.Definitions) -> str | None:
    """The event store the webhook sensor reads: the file it says does not exist here, or the
    PostgreSQL server it names (redacted) when it cannot reach it."""
    try:
        with dg.build_sensor_context(resources=d.resources) as context:
            message = _sensor(d, "booking_events").evaluate_tick(context).skip_message or ""
    except Exception as exc:  # noqa: BLE001 - the error is what names the server
        message = str(exc)
        assert "s3cret" not in message
        found = re.search(r"webhook store (\S+):", message)
        return found[1] if found else message
    found = re.search(r"\((.+) does not exist\)", message)
    return found[1] if found else None


LOCATION: dict[str, Callable[[dg.Definitions], object]] = {
    "JICOO_ORGANIZATION": _organizations,
    "JICOO_API_KEY": lambda d: _one(d, JicooResource).api_key,
    "JICOO_BASE_URL": lambda d: _one(d, JicooResource).base_url,
    "JICOO_RATE_LIMIT": lambda d: str(_one(d, JicooResource).rate_limit),
    "JICOO_BURST": lambda d: str(_one(d, JicooResource).burst),
    "JICOO_REQUEST_DEADLINE": lambda d: str(_one(d, JicooResource).settings().request_deadline),
    "JICOO_PROXY_URL": lambda d: _one(d, JicooResource).settings().proxy_url,
    "JICOO_CA_BUNDLE": lambda d: _one(d, JicooResource).settings().ca_bundle,
    "JICOO_TLS_TRUST": lambda d: _one(d, JicooResource).settings().tls_trust,
    "JICOO_TIMEZONE": lambda d: (
        _partitions(d).timezone,
        _schedule(d, "refresh").execution_timezone,
    ),
    "JICOO_PARTITION_START": lambda d: _partitions(d).start.date().isoformat(),
    "JICOO_FUTURE_DAYS": lambda d: (_partitions(d).end_offset, _range(d, "sweep")),
    "JICOO_REFRESH_PAST_DAYS": lambda d: _range(d, "refresh"),
    "JICOO_REFRESH_FUTURE_DAYS": lambda d: _range(d, "refresh"),
    "JICOO_SWEEP_PAST_DAYS": lambda d: _range(d, "sweep"),
    "JICOO_WAREHOUSE_ROOT": lambda d: _one(d, WarehouseResource).root,
    "JICOO_DUCKDB_PATH": lambda d: _one(d, WarehouseResource).duckdb_path,
    "JICOO_WAREHOUSE_URL": lambda d: _one(d, WarehouseResource).warehouse().describe(),
    "JICOO_WAREHOUSE_PASSWORD": lambda d: _one(d, WarehouseResource).warehouse().password,
    "JICOO_LEDGER_PATH": lambda d: _one(d, WriteBackResource).ledger_path,
    "JICOO_APPLY_LOG_ROOT": lambda d: _one(d, WriteBackResource).apply_log_root,
    "JICOO_LEDGER_URL": lambda d: _one(d, WriteBackResource).ledger_location(),
    "JICOO_CHANGESET_INBOX": lambda d: _one(d, WriteBackResource).inbox,
    "JICOO_WEBHOOK_DB": _events_store,
    "JICOO_WEBHOOK_DB_URL": _events_store,
    "JICOO_WEBHOOK_INTERVAL_S": lambda d: str(
        _sensor(d, "booking_events").minimum_interval_seconds
    ),
}
# Read by the webhook receiver only (`jicoo webhook serve`, tests/test_settings_cli.py);
# Dagster never needs them.
NOT_IN_LOCATION = {"JICOO_WEBHOOK_SECRET", *RECEIVER_EXAMPLES}
EXPECTED_IN_LOCATION: dict[str, object] = {
    "JICOO_ORGANIZATION": ["acme"],
    "JICOO_RATE_LIMIT": "3.5",
    "JICOO_BURST": "3",
    "JICOO_TIMEZONE": ("Europe/Paris", "Europe/Paris"),
    "JICOO_FUTURE_DAYS": (9, ("2026-03-17", "2026-06-24")),  # the sweep: 90 back, 9 ahead
    "JICOO_REFRESH_PAST_DAYS": ("2026-06-13", "2026-06-29"),
    "JICOO_REFRESH_FUTURE_DAYS": ("2026-06-08", "2026-06-19"),
    "JICOO_SWEEP_PAST_DAYS": ("2026-05-13", "2026-07-15"),
    "JICOO_WEBHOOK_DB_URL": "postgresql://hooks:***@127.0.0.1:9/jicoo",  # the password never shows
}


# What a variable needs beside it to show its effect: a password only counts for a URL with none.
ALONGSIDE = {"JICOO_WAREHOUSE_PASSWORD": {"JICOO_WAREHOUSE_URL": "postgresql://loader@db/dwh"}}


def test_every_variable_has_a_code_location_check() -> None:
    assert set(LOCATION) | NOT_IN_LOCATION == set(VARIABLES)
    assert not set(LOCATION) & NOT_IN_LOCATION


@pytest.mark.parametrize("env", sorted(LOCATION))
def test_each_variable_changes_the_code_location(
    env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for other in VARIABLES:
        monkeypatch.delenv(other, raising=False)
    # The defaults are relative (data/...): checked as values, resolved under the test's folder,
    # never opened in the checkout's data/ (a user's events file may sit there).
    monkeypatch.chdir(tmp_path)
    value = example_value(env)
    before = LOCATION[env](_load(monkeypatch, **ALONGSIDE.get(env, {})))
    after = LOCATION[env](_load(monkeypatch, **ALONGSIDE.get(env, {}), **{env: value}))
    assert after != before
    assert after == EXPECTED_IN_LOCATION.get(env, value)


def test_a_bad_value_stops_the_code_location_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(Exception, match=r"^JICOO_FUTURE_DAYS='-1': '-1' is not a whole"):
        _load(monkeypatch, JICOO_FUTURE_DAYS="-1")


def test_every_field_has_its_variable_documented_in_help_or_readme() -> None:
    # The one-line rule for a new setting: a field here, a row in the README.
    assert [f.name for f in dataclasses.fields(ConnectorConfig)] == list(VARIABLES.values())
