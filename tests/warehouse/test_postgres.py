"""Warehouse loads into a real PostgreSQL server (the session's, a fresh database per test).

The data is a real extract of the session's sandbox; the Parquet files are the oracle: row
counts and a checksum of every column of every row must equal theirs after each load.
"""

import datetime as dt
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest

from jicoo_connector.errors import SchemaChangeError, WarehouseError
from jicoo_connector.extract import TABLES
from jicoo_connector.storage import ParquetStore
from jicoo_connector.warehouse import LOADS_TABLE, load_warehouse, partition_files
from jicoo_sandbox.server import SandboxServer
from tests.support.checksums import parquet_checksum, postgres_checksum, scalar
from tests.warehouse.support import around_today, extract_days, run_load, start_load

if TYPE_CHECKING:
    import subprocess

WAIT_S = 60.0
POLL_S = 0.02
SECRET = "pw-never-shown-4711"

BOOKINGS = TABLES["bookings"].spec


@pytest.fixture(scope="module")
def extracted(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven days of day tables and today's snapshots, extracted once for the module."""
    root = tmp_path_factory.mktemp("extract") / "wh"
    extract_days(sandbox, root, around_today(sandbox, 3, 3))
    return root


@pytest.fixture
def store_root(extracted: Path, tmp_path: Path) -> Path:
    """A private copy of the extract, which the test may re-write."""
    root = tmp_path / "wh"
    shutil.copytree(extracted, root)
    return root


def _days(store: ParquetStore) -> list[dt.date]:
    """The extracted days (seven, around the sandbox's day)."""
    return store.list_partitions(BOOKINGS)


def _assert_equal_to_parquet(url: str, store: ParquetStore, tables: list[str]) -> None:
    for table in tables:
        expected = parquet_checksum(store, table)
        assert expected[0] > 0, table
        assert postgres_checksum(url, table) == expected, table


def _loads(url: str) -> dict[tuple[str, dt.date], str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT table_name, partition_value, fingerprint FROM {LOADS_TABLE}"  # noqa: S608
        ).fetchall()
    return {(table, value): fingerprint for table, value, fingerprint in rows}


def test_a_load_equals_the_parquet_files_and_a_second_load_skips_everything(
    postgres_url: str, store_root: Path
) -> None:
    store = ParquetStore(store_root)
    first = load_warehouse(postgres_url, store, run_id="run-1")
    assert first.skipped == 0
    assert first.loaded == sum(len(store.list_partitions(TABLES[t].spec)) for t in TABLES)
    _assert_equal_to_parquet(postgres_url, store, list(TABLES))
    with psycopg.connect(postgres_url) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'bookings'"
            ).fetchall()
        )
    assert types["started_at"] == "timestamp with time zone"
    assert types["hosts"] == "jsonb"
    assert types["day"] == "date"
    assert types["capacity"] == "integer"
    expected = {
        (table, f.value): f.fingerprint
        for table in TABLES
        for f in partition_files(store, TABLES[table].spec)
    }
    assert _loads(postgres_url) == expected

    second = load_warehouse(postgres_url, store, run_id="run-2")
    assert (second.loaded, second.rows, second.skipped) == (0, 0, first.loaded)
    assert second.total_rows == first.total_rows == first.rows
    assert scalar(postgres_url, f"SELECT count(DISTINCT run_id) FROM {LOADS_TABLE}") == 1  # noqa: S608


def test_three_reextracted_days_replace_only_their_partitions(
    sandbox: SandboxServer, postgres_url: str, store_root: Path
) -> None:
    store = ParquetStore(store_root)
    load_warehouse(postgres_url, store)
    before = _loads(postgres_url)
    days = _days(store)
    # Three consecutive days whose first has bookings (weekends may have none): a booking of
    # the first moves to the last; after the load it must be there once, gone from its old day.
    start = next(
        i for i in range(len(days) - 2) if store.read_partition(BOOKINGS, days[i]).num_rows
    )
    changed = days[start : start + 3]
    booking = store.read_partition(BOOKINGS, changed[0]).to_pylist()[0]
    length = booking["ended_at"] - booking["started_at"]
    new_start = booking["started_at"] + dt.timedelta(days=2)
    response = httpx.patch(
        f"{sandbox.base_url}/v1/bookings/{booking['uid']}",
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        json={
            "startedAt": new_start.isoformat(),
            "endedAt": (new_start + length).isoformat(),
        },
    )
    assert response.status_code == httpx.codes.OK, response.text
    extract_days(sandbox, store_root, changed)

    report = load_warehouse(postgres_url, store, tables=["bookings", "booking_contacts"])
    for table in ("bookings", "booking_contacts"):
        assert report.tables[table].loaded == changed
        assert report.tables[table].skipped == [d for d in days if d not in changed]
    after = _loads(postgres_url)
    for key, fingerprint in before.items():
        table, value = key
        if table in ("bookings", "booking_contacts") and value in changed:
            assert after[key] != fingerprint
        else:
            assert after[key] == fingerprint
    _assert_equal_to_parquet(postgres_url, store, ["bookings", "booking_contacts"])
    uid = booking["uid"]
    assert scalar(postgres_url, f"SELECT count(*) FROM bookings WHERE uid = '{uid}'") == 1  # noqa: S608
    moved_day = scalar(postgres_url, f"SELECT day FROM bookings WHERE uid = '{uid}'")  # noqa: S608
    assert moved_day == changed[2]
    assert scalar(postgres_url, "SELECT count(*) - count(DISTINCT uid) FROM bookings") == 0


def _rewrite(store: ParquetStore, table: str, days: list[dt.date], keep: int) -> None:
    """Re-write partitions with their first ``keep`` rows: new files, new content."""
    for day in days:
        data = store.read_partition(TABLES[table].spec, day)
        store.write_partition(TABLES[table].spec, day, data.slice(0, keep).to_batches())


def _priorities_set(store: ParquetStore, day: dt.date) -> int:
    priority = store.read_partition(BOOKINGS, day, ["priority"]).column("priority")
    return len(priority) - priority.null_count


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def _wait_for(condition_sql: str, url: str, expected: int) -> None:
    deadline = time.monotonic() + WAIT_S
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(condition_sql).fetchone()  # type: ignore[arg-type]
            if row is not None and row[0] >= expected:
                return
            time.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {condition_sql!r} to reach {expected}")


WAITING_LOCKS = "SELECT count(*) FROM pg_locks WHERE NOT granted"
WAITING_QUERIES = "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'"


@contextmanager
def _loaders_held_in_their_merge(
    url: str, root: Path, count: int
) -> Iterator[tuple[psycopg.Connection, list["subprocess.Popen[str]"]]]:
    """``count`` `jicoo load --tables bookings` children, all inside their merge transaction.

    The holder locks the load records: a loader deletes and inserts the bookings, then waits at
    its write to _jicoo_loads (later ones wait for it); readers may still read. Committing the
    holder lets them go on.
    """
    with psycopg.connect(url) as holder:
        holder.execute(f"LOCK TABLE {LOADS_TABLE} IN SHARE MODE")
        children = [start_load(url, root, "--tables", "bookings") for _ in range(count)]
        try:
            _wait_for(WAITING_LOCKS, url, count)
            yield holder, children
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                if child.stdout is not None and not child.stdout.closed:
                    child.communicate(timeout=WAIT_S)


# Slow tier: child processes killed and raced (like the write-back crash tests).
@pytest.mark.slow
def test_a_loader_killed_mid_merge_leaves_the_old_rows_and_the_next_load_completes(
    postgres_url: str, store_root: Path
) -> None:
    store = ParquetStore(store_root)
    load_warehouse(postgres_url, store, tables=["bookings"])
    old = postgres_checksum(postgres_url, "bookings")
    days = _days(store)[:3]
    _rewrite(store, "bookings", days, keep=1)

    with _loaders_held_in_their_merge(postgres_url, store_root, 1) as (_, (child,)):
        (waiting,) = _rows(postgres_url, WAITING_QUERIES)
        # Its bookings are deleted and re-inserted, uncommitted, and it waits for the records.
        assert str(waiting[0]).startswith(f'DELETE FROM "{LOADS_TABLE}"')  # noqa: S608
        assert postgres_checksum(postgres_url, "bookings") == old  # readers see the old rows
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=WAIT_S)
        assert child.returncode == -signal.SIGKILL
    assert postgres_checksum(postgres_url, "bookings") == old

    done = run_load(postgres_url, store_root, "--tables", "bookings")
    assert done.returncode == 0, done.stderr
    assert "3 partitions loaded" in done.stdout
    assert postgres_checksum(postgres_url, "bookings") == parquet_checksum(store, "bookings")


# Slow tier: child processes killed and raced (like the write-back crash tests).
@pytest.mark.slow
def test_two_loaders_at_once_load_each_row_once(postgres_url: str, store_root: Path) -> None:
    store = ParquetStore(store_root)
    load_warehouse(postgres_url, store, tables=["bookings"])
    _rewrite(store, "bookings", _days(store), keep=2)
    with _loaders_held_in_their_merge(postgres_url, store_root, 2) as (holder, children):
        holder.commit()
        outcomes = [child.communicate(timeout=WAIT_S) for child in children]
    assert [child.returncode for child in children] == [0, 0], outcomes
    assert postgres_checksum(postgres_url, "bookings") == parquet_checksum(store, "bookings")
    assert scalar(postgres_url, f"SELECT count(*) FROM {LOADS_TABLE}") == len(  # noqa: S608
        store.list_partitions(BOOKINGS)
    )


def _loaded_then(url: str, root: Path, statement: str) -> ParquetStore:
    """Bookings loaded into ``url``, then ``statement`` run there; the store."""
    store = ParquetStore(root)
    load_warehouse(url, store, tables=["bookings"])
    with psycopg.connect(url) as conn:
        conn.execute(statement)  # type: ignore[arg-type]
    return store


def test_a_column_missing_in_the_warehouse_is_added_and_filled_by_the_next_loads(
    postgres_url: str, store_root: Path
) -> None:
    # A warehouse table created by a version whose schema had no `priority` column.
    store = _loaded_then(postgres_url, store_root, "ALTER TABLE bookings DROP COLUMN priority")
    # The seed leaves some priorities null, and which bookings fall on a day moves with the
    # date: the day with the most priorities set is re-written, and its Parquet is the oracle.
    day = max(_days(store), key=lambda d: _priorities_set(store, d))
    assert _priorities_set(store, day) > 0, "no extracted booking has a priority"
    _rewrite(store, "bookings", [day], keep=10_000)

    report = load_warehouse(postgres_url, store, tables=["bookings"])
    assert report.tables["bookings"].columns_added == ["priority"]
    assert report.tables["bookings"].loaded == [day]
    filled = f"SELECT uid, priority FROM bookings WHERE day = DATE '{day}'"  # noqa: S608
    expected = store.read_partition(BOOKINGS, day, ["uid", "priority"]).to_pylist()
    assert sorted(_rows(postgres_url, filled)) == sorted(
        (row["uid"], row["priority"]) for row in expected
    )
    # The other partitions keep their rows (priority unknown) until a full reload.
    unknown = sum(store.read_partition(BOOKINGS, d).num_rows for d in _days(store) if d != day)
    assert unknown > 0
    nulls = unknown + len(expected) - _priorities_set(store, day)
    assert scalar(postgres_url, "SELECT count(*) - count(priority) FROM bookings") == nulls
    full = load_warehouse(postgres_url, store, tables=["bookings"], full=True)
    assert full.tables["bookings"].columns_added == []
    _assert_equal_to_parquet(postgres_url, store, ["bookings"])


def test_a_changed_column_type_is_refused_by_name_and_nothing_is_loaded(
    postgres_url: str, store_root: Path
) -> None:
    store = _loaded_then(
        postgres_url, store_root, "ALTER TABLE bookings ALTER COLUMN capacity TYPE text"
    )
    before = postgres_checksum(postgres_url, "bookings"), _loads(postgres_url)
    _rewrite(store, "bookings", _days(store)[:2], keep=1)
    with pytest.raises(SchemaChangeError, match=r"bookings\.capacity.*text.*integer") as caught:
        load_warehouse(postgres_url, store, tables=["bookings"])
    assert (caught.value.table, caught.value.column) == ("bookings", "capacity")
    assert (postgres_checksum(postgres_url, "bookings"), _loads(postgres_url)) == before


def test_an_unreadable_partition_fails_the_table_and_changes_nothing(
    postgres_url: str, store_root: Path
) -> None:
    store = ParquetStore(store_root)
    load_warehouse(postgres_url, store, tables=["bookings"])
    before = postgres_checksum(postgres_url, "bookings"), _loads(postgres_url)
    first, second = _days(store)[3:5]
    _rewrite(store, "bookings", [first, second], keep=1)
    good = Path(store.partition_path(BOOKINGS, second)).read_bytes()
    Path(store.partition_path(BOOKINGS, second)).write_bytes(b"PAR1 not really parquet")
    bad = f"bookings day={second}: cannot read {store.partition_path(BOOKINGS, second)}: "
    with pytest.raises(WarehouseError, match="^" + re.escape(bad) + ".*Parquet magic bytes"):
        load_warehouse(postgres_url, store, tables=["bookings"])
    assert (postgres_checksum(postgres_url, "bookings"), _loads(postgres_url)) == before

    Path(store.partition_path(BOOKINGS, second)).write_bytes(good)
    report = load_warehouse(postgres_url, store, tables=["bookings"])
    assert report.tables["bookings"].loaded == [first, second]
    _assert_equal_to_parquet(postgres_url, store, ["bookings"])


def test_the_cli_never_prints_the_password(postgres_url: str, store_root: Path) -> None:
    # The test server trusts loopback, so any password gets in: it must still never be shown.
    with_password = postgres_url.replace("postgres@", f"postgres:{SECRET}@", 1)
    done = run_load(with_password, store_root, "--tables", "users")
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert "postgres:***@" in done.stdout
    assert "1 partitions loaded" in done.stdout

    port = with_password.split("@127.0.0.1:", 1)[1].split("/", 1)[0]
    unreachable = with_password.replace(f":{port}/", ":1/", 1)
    failed = run_load(unreachable, store_root, "--tables", "users")
    assert failed.returncode == 2
    assert SECRET not in failed.stdout + failed.stderr
    assert "postgres:***@127.0.0.1:1/" in failed.stderr
