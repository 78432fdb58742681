"""Extract assets through Dagster against the sandbox: tables equal the sandbox's data.

One module-scoped scenario (four runs) feeds every test: a clean range run of the daily
tables, the snapshot tables and warehouse, then the same range again under injected faults,
then the snapshots and warehouse again.
"""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg
import duckdb
import httpx
import pyarrow as pa
import pytest

from jicoo_connector.extract import TABLES, day_window
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import EXTRACTED_AT_COLUMN, RUN_ID_COLUMN
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import (
    NAMES,
    check_evaluations,
    definitions,
    materializations,
    materialize,
    observations,
    range_tags,
    store_of,
    warehouse_of,
)
from tests.support.sandbox import TOKYO, tokyo_today

# Every test reads the one scenario, run on a sandbox on the system clock.
pytestmark = pytest.mark.system_clock(
    "the snapshot assets take their day, and the available slots' window, from the system clock"
)
CONTACTS_OP = NAMES.op("booking_contacts")

LINEAGE = (EXTRACTED_AT_COLUMN, RUN_ID_COLUMN)
DAILY = ("bookings", "booking_contacts")
SNAPSHOTS = ("schedules", "availability_calendars", "available_slots", "event_types", "users")
# 20% of GETs answer 503 and a burst of 429s arrives first: the client must still get every row.
FAULTS: Mapping[str, object] = {
    "seed": 11,
    "rules": [
        {"kind": "rate_limited", "retry_after": 1, "after": 5, "burst": 3},
        # Every other bookings listing fails, so the bookings asset surely retries.
        {"kind": "status", "status": 502, "methods": ["GET"], "path": "^/v1/bookings$", "every": 2},
        {"kind": "status", "status": 503, "methods": ["GET"], "probability": 0.2},
    ],
}
HALF_PAST_MIDNIGHT = dt.time(0, 30)
BUSY_DAYS_SEARCH = 14
SNAPSHOTS_AND_WAREHOUSE = (*SNAPSHOTS, "warehouse")
FULL = {"ops": {CONTACTS_OP: {"config": {"full": True}}}}


def _instant(value: object) -> dt.datetime:
    assert isinstance(value, str)
    return dt.datetime.fromisoformat(value)


@dataclass
class Scenario:
    days: list[dt.date]
    store: ParquetStore
    duckdb_path: str
    oracle: list[dict[str, object]]  # every sandbox booking, as the API showed it
    contacts: dict[str, list[dict[str, object]]]
    snapshot_counts: dict[str, int]
    moved_uid: str
    moved_day: dt.date
    clean: dg.ExecuteInProcessResult
    snapshots: dg.ExecuteInProcessResult
    first_tables: dict[str, pa.Table]
    faulted: dg.ExecuteInProcessResult
    faults_injected: dict[str, int]
    snapshots_again: dg.ExecuteInProcessResult

    def expected_uids(self, day: dt.date) -> list[str]:
        start, end = day_window(day, TOKYO)
        return sorted(str(b["uid"]) for b in self.oracle if start <= _instant(b["startedAt"]) < end)


def _busy_days(sandbox: SandboxServer) -> list[dt.date]:
    """Three Tokyo days in a row from the sandbox's yesterday on, each with seeded bookings
    (weekends have none, so "yesterday, today, tomorrow" would be empty on some days)."""
    starts = [_instant(b["startedAt"]) for b in sandbox.store.all_bookings()]

    def busy(day: dt.date) -> bool:
        lo, hi = day_window(day, TOKYO)
        return any(lo <= start < hi for start in starts)

    first = tokyo_today(sandbox) - dt.timedelta(days=1)
    for _ in range(BUSY_DAYS_SEARCH):
        days = [first + dt.timedelta(days=i) for i in range(3)]
        if all(map(busy, days)):
            return days
        first += dt.timedelta(days=1)
    raise AssertionError("the seeded sandbox has no three busy days in a row")


def _move_to_half_past_midnight(sandbox: SandboxServer, day: dt.date) -> str:
    """PATCH a booking of another day to 00:30 Tokyo on ``day`` (same length); its uid."""
    booking = next(
        b
        for b in sandbox.store.all_bookings()
        if _instant(b["startedAt"]) > day_window(day + dt.timedelta(days=3), TOKYO)[0]
    )
    start = dt.datetime.combine(day, HALF_PAST_MIDNIGHT, tzinfo=TOKYO)
    length = _instant(booking["endedAt"]) - _instant(booking["startedAt"])
    response = httpx.patch(
        f"{sandbox.base_url}/v1/bookings/{booking['uid']}",
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        json={"startedAt": start.isoformat(), "endedAt": (start + length).isoformat()},
    )
    assert response.status_code == httpx.codes.OK, response.text
    return str(booking["uid"])


def _rule_rows(calendar: Mapping[str, object]) -> int:
    """Rows a template becomes: one per weekly rule, one if it has none."""
    rules = calendar["calendars"]
    return len(rules) if isinstance(rules, list) and rules else 1


def _read(store: ParquetStore, table: str, days: list[dt.date]) -> pa.Table:
    return pa.concat_tables([store.read_partition(TABLES[table].spec, day) for day in days])


@pytest.fixture(scope="module")
def scenario(system_sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    # Dagster's daily partitions end FUTURE_DAYS after the system clock's today, and snapshot
    # assets are dated by it: a sandbox on the system clock, its busy days picked from its data.
    sandbox = system_sandbox
    root = tmp_path_factory.mktemp("extract")
    days = _busy_days(sandbox)
    moved_day = days[-1]
    moved_uid = _move_to_half_past_midnight(sandbox, moved_day)
    store = sandbox.store
    oracle = store.all_bookings()
    contacts = {str(b["uid"]): store.contacts(str(b["uid"])) or [] for b in oracle}
    users = store.users()
    snapshot_counts = {
        "users": len(users),
        "event_types": len(store.event_types()),
        "schedules": store.schedule_total(),
        "availability_calendars": sum(
            _rule_rows(calendar) for user in users for calendar in store.calendars(str(user["uid"]))
        ),
    }
    defs = definitions(sandbox, root)
    tags = range_tags(days[0], days[-1])
    parquet = store_of(defs)
    clean = materialize(defs, DAILY, tags=tags)
    first_tables = {table: _read(parquet, table, days) for table in DAILY}
    snapshots = materialize(defs, SNAPSHOTS_AND_WAREHOUSE)
    sandbox.clear_requests()
    sandbox.set_faults(FAULTS)
    try:
        # Full: every contacts call is made again, under the faults too.
        faulted = materialize(defs, DAILY, tags=tags, run_config=FULL)
        injected: dict[str, int] = {}
        for entry in sandbox.requests():
            fault = entry["fault"]
            if isinstance(fault, str):
                injected[fault] = injected.get(fault, 0) + 1
    finally:
        sandbox.clear_faults()
    snapshots_again = materialize(defs, SNAPSHOTS_AND_WAREHOUSE)
    return Scenario(
        days=days,
        store=parquet,
        duckdb_path=warehouse_of(defs).duckdb_path,
        oracle=oracle,
        contacts=contacts,
        snapshot_counts=snapshot_counts,
        moved_uid=moved_uid,
        moved_day=moved_day,
        clean=clean,
        snapshots=snapshots,
        first_tables=first_tables,
        faulted=faulted,
        faults_injected=injected,
        snapshots_again=snapshots_again,
    )


def test_bookings_equal_the_sandbox_per_tokyo_day(scenario: Scenario) -> None:
    by_uid = {str(b["uid"]): b for b in scenario.oracle}
    for day in scenario.days:
        table = scenario.store.read_partition(TABLES["bookings"].spec, day)
        assert sorted(map(str, table.column("uid").to_pylist())) == scenario.expected_uids(day)
        assert set(table.column("day").to_pylist()) == {day}
        for row in table.to_pylist():
            api = by_uid[row["uid"]]
            assert row["started_at"] == _instant(api["startedAt"])
            assert row["ended_at"] == _instant(api["endedAt"])
            assert row["updated_at"] == _instant(api["updatedAt"])
            assert row["status"] == api["status"]
            assert row["name"] == api["name"]
            assert row["time_zone"] == api["timeZone"]
            assert row["event_type_id"] == api["eventTypeId"]
            assert row["cancel_reason"] == api["cancelReason"]
            assert row["hosts"] == [
                {"user_id": h["userId"], "role": h["role"]}
                for h in api["hosts"]  # type: ignore[attr-defined]
            ]
            assert row["_extra"] is None
    assert sum(len(scenario.expected_uids(day)) for day in scenario.days) > 0


def test_a_booking_at_half_past_midnight_tokyo_lands_in_that_day(scenario: Scenario) -> None:
    day_before = scenario.moved_day - dt.timedelta(days=1)
    moved_day_uids = scenario.store.read_partition(TABLES["bookings"].spec, scenario.moved_day)
    assert scenario.moved_uid in moved_day_uids.column("uid").to_pylist()
    # 00:30 JST is 15:30 UTC of the day before: a UTC-day split would put it there.
    assert (
        scenario.moved_uid
        not in scenario.store.read_partition(TABLES["bookings"].spec, day_before)
        .column("uid")
        .to_pylist()
    )


def test_contacts_equal_the_sandbox_contacts_of_those_bookings(scenario: Scenario) -> None:
    for day in scenario.days:
        table = scenario.store.read_partition(TABLES["booking_contacts"].spec, day)
        expected = sorted(
            (uid, index, contact["email"], contact["name"])
            for uid in scenario.expected_uids(day)
            for index, contact in enumerate(scenario.contacts[uid])
        )
        got = sorted(
            (r["booking_uid"], r["contact_index"], r["email"], r["name"]) for r in table.to_pylist()
        )
        assert got == expected, day
        assert got


def test_snapshot_tables_hold_every_sandbox_row(scenario: Scenario) -> None:
    for table, count in scenario.snapshot_counts.items():
        (event,) = materializations(scenario.snapshots, NAMES.asset_key(table))
        assert event.metadata["dagster/row_count"] == dg.IntMetadataValue(count), table
    (slots,) = materializations(scenario.snapshots, NAMES.asset_key("available_slots"))
    assert isinstance(slots.metadata["dagster/row_count"], dg.IntMetadataValue)
    assert (slots.metadata["dagster/row_count"].value or 0) > 0


def _expected_schema(table: str) -> dg.TableSchema:
    described = TABLES[table].spec.column_descriptions()
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.type),
                description=described[f.name],
                constraints=dg.TableColumnConstraints(nullable=f.nullable),
            )
            for f in TABLES[table].spec.schema
        ]
    )


RUN_FIGURES = ("jicoo/rows_by_partition", "jicoo/partitions", "jicoo/requests", "jicoo/pages")


def test_a_partitions_metadata_describes_that_partition_and_the_run_is_one_observation(
    scenario: Scenario,
) -> None:
    for table in DAILY:
        key = NAMES.asset_key(table)
        events = materializations(scenario.clean, key)
        assert sorted(str(e.partition) for e in events) == [str(d) for d in scenario.days]
        per_day = {
            str(d): scenario.store.read_partition(TABLES[table].spec, d).num_rows
            for d in scenario.days
        }
        for event in events:
            metadata = event.metadata
            # Each partition's page shows its own row count, file and preview, and nothing
            # of the other partitions of its run.
            day = str(event.partition)
            assert metadata["dagster/row_count"] == dg.IntMetadataValue(per_day[day])
            assert metadata["dagster/uri"] == dg.TextMetadataValue(
                scenario.store.partition_path(TABLES[table].spec, dt.date.fromisoformat(day))
            )
            assert metadata["dagster/column_schema"] == dg.TableSchemaMetadataValue(
                _expected_schema(table)
            )
            assert not set(RUN_FIGURES) & set(metadata), (table, day)
        # The run's figures, once: one observation of the asset, no partition.
        (run,) = observations(scenario.clean, key)
        assert run.partition is None
        assert run.metadata["jicoo/rows_by_partition"] == dg.JsonMetadataValue(per_day)
        assert run.metadata["jicoo/rows"] == dg.IntMetadataValue(sum(per_day.values()))
        for counter in ("requests", "pages", "retries", "server_errors", "rate_limited"):
            assert isinstance(run.metadata[f"jicoo/{counter}"], dg.IntMetadataValue)
        requests = run.metadata["jicoo/requests"]
        assert isinstance(requests, dg.IntMetadataValue)
        # Days are listed in chunks (several days per listing), so at least one request.
        assert (requests.value or 0) >= 1
    schema = _expected_schema("bookings")
    started = next(c for c in schema.columns if c.name == "started_at")
    assert (started.type, started.constraints.nullable) == ("timestamp[ms, tz=UTC]", False)
    for table in SNAPSHOTS:
        (event,) = materializations(scenario.snapshots, NAMES.asset_key(table))
        # A snapshot's run is its one partition: both kinds of figures on its materialization.
        assert event.metadata["dagster/column_schema"] == dg.TableSchemaMetadataValue(
            _expected_schema(table)
        )
        assert {"dagster/row_count", "jicoo/requests"} <= set(event.metadata)
        assert observations(scenario.snapshots, NAMES.asset_key(table)) == []


def test_contacts_counters_are_the_partitions_own_and_sum_to_the_runs(scenario: Scenario) -> None:
    key = NAMES.asset_key("booking_contacts")
    events = materializations(scenario.clean, key)
    (run,) = observations(scenario.clean, key)
    for counter in ("contacts_fetched", "contacts_reused"):
        per_day = [e.metadata[f"jicoo/{counter}"].value for e in events]
        assert run.metadata[f"jicoo/{counter}"] == dg.IntMetadataValue(sum(per_day))  # type: ignore[arg-type]
    fetched = {str(e.partition): e.metadata["jicoo/contacts_fetched"].value for e in events}
    # A first extract reads every booking's contacts: each day's count is its own bookings'.
    assert fetched == {str(day): len(scenario.expected_uids(day)) for day in scenario.days}


def test_every_asset_check_ran_and_passed(scenario: Scenario) -> None:
    checks = {
        **check_evaluations(scenario.clean),
        **check_evaluations(scenario.snapshots),
    }
    assert checks == {
        "jicoo/test/bookings/key_unique_not_null": True,
        "jicoo/test/bookings/extra_empty": True,
        "jicoo/test/bookings/ended_after_started": True,
        "jicoo/test/bookings/rows_match_total": True,
        "jicoo/test/booking_contacts/key_unique_not_null": True,
        "jicoo/test/booking_contacts/extra_empty": True,
        "jicoo/test/booking_contacts/contacts_reference_bookings": True,
        "jicoo/test/schedules/key_unique_not_null": True,
        "jicoo/test/schedules/extra_empty": True,
        "jicoo/test/schedules/ended_after_started": True,
        "jicoo/test/availability_calendars/key_unique_not_null": True,
        "jicoo/test/availability_calendars/extra_empty": True,
        "jicoo/test/available_slots/key_unique_not_null": True,
        "jicoo/test/available_slots/extra_empty": True,
        "jicoo/test/event_types/key_unique_not_null": True,
        "jicoo/test/event_types/extra_empty": True,
        "jicoo/test/users/key_unique_not_null": True,
        "jicoo/test/users/extra_empty": True,
    }


def test_a_faulted_rerun_gives_the_same_data_with_new_lineage(scenario: Scenario) -> None:
    assert scenario.faulted.success
    assert scenario.faults_injected.get("status", 0) > 0
    assert scenario.faults_injected.get("rate_limited", 0) > 0
    (run,) = observations(scenario.faulted, NAMES.asset_key("bookings"))
    for counter in ("retries", "server_errors"):
        value = run.metadata[f"jicoo/{counter}"]
        assert isinstance(value, dg.IntMetadataValue)
        assert (value.value or 0) > 0, counter
    clean_checks = check_evaluations(scenario.clean)
    assert check_evaluations(scenario.faulted) == dict.fromkeys(clean_checks, True)
    for table in DAILY:
        again = _read(scenario.store, table, scenario.days)
        first = scenario.first_tables[table]
        assert again.drop_columns(list(LINEAGE)).equals(first.drop_columns(list(LINEAGE)))
        assert set(first.column(RUN_ID_COLUMN).to_pylist()) == {scenario.clean.run_id}
        assert set(again.column(RUN_ID_COLUMN).to_pylist()) == {scenario.faulted.run_id}


def test_the_warehouse_after_two_loads_has_each_row_once(scenario: Scenario) -> None:
    assert scenario.snapshots_again.success
    (event,) = materializations(scenario.snapshots_again, NAMES.asset_key("warehouse"))
    with duckdb.connect(scenario.duckdb_path, read_only=True) as con:
        for table in (*DAILY, *SNAPSHOTS):
            parquet_rows = sum(
                scenario.store.read_partition(TABLES[table].spec, day).num_rows
                for day in scenario.store.list_partitions(TABLES[table].spec)
            )
            row = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # noqa: S608
            assert row == (parquet_rows,), table
        row = con.execute("SELECT count(*), count(DISTINCT uid) FROM bookings").fetchone()
        assert row is not None
        assert row[0] == row[1] == sum(len(scenario.expected_uids(d)) for d in scenario.days)
        (total,) = con.execute(
            "SELECT sum(n) FROM (SELECT count(*) AS n FROM bookings UNION ALL "
            "SELECT count(*) FROM booking_contacts UNION ALL SELECT count(*) FROM schedules "
            "UNION ALL SELECT count(*) FROM availability_calendars UNION ALL "
            "SELECT count(*) FROM available_slots UNION ALL SELECT count(*) FROM event_types "
            "UNION ALL SELECT count(*) FROM users)"
        ).fetchone() or (None,)
    assert event.metadata["dagster/row_count"] == dg.IntMetadataValue(int(total))
