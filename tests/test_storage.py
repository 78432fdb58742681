"""Atomic Parquet partitions (local and S3 through moto on loopback) and their DuckDB load."""

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from jicoo_connector.extract import TABLES
from jicoo_connector.storage import STALE_TEMP_SECONDS, ParquetStore, file_schema
from jicoo_connector.tables import to_record_batch
from jicoo_connector.warehouse import load_warehouse
from tests.support.s3_server import moto_s3

DAY = dt.date(2024, 3, 1)
NEXT_DAY = dt.date(2024, 3, 2)
EXTRACTED_AT = dt.datetime(2024, 3, 2, 0, 0, tzinfo=dt.UTC)
BUCKET = "jicoo-test"
BOOKINGS = TABLES["bookings"].spec
USERS = TABLES["users"].spec


def _bookings(count: int, *, prefix: str = "b", day: dt.date = DAY) -> pa.RecordBatch:
    start = dt.datetime.combine(day, dt.time(1), tzinfo=dt.UTC)
    records = [
        {
            "uid": f"{prefix}{i:05d}",
            "name": f"meeting {i}",
            "status": "open",
            "startedAt": (start + dt.timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
            "hosts": [{"userId": "u1", "role": "admin"}],
        }
        for i in range(count)
    ]
    return to_record_batch(
        BOOKINGS, records, extracted_at=EXTRACTED_AT, run_id="r1", partition_value=day
    )


class _BoomError(RuntimeError):
    pass


def _dies_midway(first: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    yield first
    raise _BoomError("writer killed mid-write")


def _uids(store: ParquetStore, day: dt.date = DAY) -> list[str]:
    return [str(uid) for uid in store.read_partition(BOOKINGS, day).column("uid").to_pylist()]


def test_write_uses_hive_layout_and_reads_back(tmp_path: Path) -> None:
    store = ParquetStore(str(tmp_path / "wh"))
    result = store.write_partition(BOOKINGS, DAY, [_bookings(3), _bookings(2, prefix="c")])
    expected = tmp_path / "wh" / "bookings" / "day=2024-03-01" / "data.parquet"
    assert Path(result.path) == expected
    assert result.rows == 5
    assert result.bytes == expected.stat().st_size
    assert pq.ParquetFile(expected).metadata.row_group(0).column(0).compression == "ZSTD"
    table = store.read_partition(BOOKINGS, DAY)
    assert table.schema == BOOKINGS.schema
    assert table.column("uid").to_pylist() == ["b00000", "b00001", "b00002", "c00000", "c00001"]
    # The partition value lives in the hive path only, so generic hive readers just work.
    alone = pq.ParquetFile(expected).read()
    assert "day" not in alone.column_names
    assert alone.schema == file_schema(BOOKINGS)
    by_pandas = pd.read_parquet(tmp_path / "wh" / "bookings")
    assert sorted(by_pandas["uid"]) == sorted(table.column("uid").to_pylist())
    by_duckdb = duckdb.sql(
        f"SELECT DISTINCT day FROM read_parquet('{tmp_path}/wh/bookings/*/*.parquet', "  # noqa: S608
        "hive_partitioning = true)"
    ).fetchall()
    assert by_duckdb == [(DAY,)]
    store.write_partition(BOOKINGS, NEXT_DAY, [_bookings(1, day=NEXT_DAY)])
    assert store.list_partitions(BOOKINGS) == [DAY, NEXT_DAY]
    assert store.list_partitions(USERS) == []
    whole = store.dataset(BOOKINGS).to_table()
    assert whole.schema == BOOKINGS.schema
    assert whole.column("day").to_pylist() == [DAY] * 5 + [NEXT_DAY]


def test_a_writer_dying_midway_leaves_the_old_partition_intact(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write_partition(BOOKINGS, DAY, [_bookings(10)])
    path = Path(store.partition_path(BOOKINGS, DAY))
    before = path.read_bytes()
    with pytest.raises(_BoomError):
        store.write_partition(BOOKINGS, DAY, _dies_midway(_bookings(500, prefix="new")))
    assert path.read_bytes() == before
    assert len(_uids(store)) == 10
    assert [p.name for p in path.parent.iterdir()] == [
        "data.parquet"
    ]  # the failed writer cleaned its temp file


def test_a_batch_with_the_wrong_schema_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write_partition(BOOKINGS, DAY, [_bookings(2)])
    wrong = pa.RecordBatch.from_pydict({"uid": ["x"]})
    with pytest.raises(ValueError, match="does not match the table schema"):
        store.write_partition(BOOKINGS, DAY, [_bookings(1), wrong])
    assert _uids(store) == ["b00000", "b00001"]


def test_stale_temp_files_of_killed_writers_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    directory = Path(store.partition_dir(BOOKINGS, DAY))
    directory.mkdir(parents=True)
    # One left by this version (hidden), one by an earlier version's writer.
    stale = [directory / ".data.parquet.tmp-dead", directory / "data.parquet.tmp-dead"]
    fresh = directory / ".data.parquet.tmp-running"
    for path in stale:
        path.write_bytes(b"half a parquet file")
    fresh.write_bytes(b"another writer, still going")
    old = time.time() - STALE_TEMP_SECONDS - 60
    for path in stale:
        os.utime(path, (old, old))
    store.write_partition(BOOKINGS, DAY, [_bookings(1)])
    assert sorted(p.name for p in directory.iterdir()) == [
        ".data.parquet.tmp-running",
        "data.parquet",
    ]
    # A leftover temp file is never mistaken for a partition.
    assert store.list_partitions(BOOKINGS) == [DAY]


def test_identical_input_gives_identical_bytes(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write_partition(BOOKINGS, DAY, [_bookings(50)])
    first = Path(store.partition_path(BOOKINGS, DAY)).read_bytes()
    store.write_partition(BOOKINGS, DAY, [_bookings(50)])
    assert Path(store.partition_path(BOOKINGS, DAY)).read_bytes() == first


def test_an_empty_partition_is_written_as_a_zero_row_file(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write_partition(BOOKINGS, DAY, [_bookings(5)])
    result = store.write_partition(BOOKINGS, DAY, [])
    assert result.rows == 0
    assert store.read_partition(BOOKINGS, DAY).num_rows == 0
    assert store.has_partition(BOOKINGS, DAY)


def test_memory_does_not_follow_the_row_count(tmp_path: Path) -> None:
    # Many small batches are written one row group at a time; the file holds them all.
    store = ParquetStore(tmp_path)
    result = store.write_partition(
        BOOKINGS, DAY, (_bookings(1000, prefix=f"p{i}-") for i in range(40))
    )
    assert result.rows == 40_000
    assert pq.ParquetFile(store.partition_path(BOOKINGS, DAY)).metadata.num_rows == 40_000


def _duck_count(path: Path, sql: str) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute(sql).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


def test_duckdb_loads_are_incremental_and_follow_rematerialisation(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path / "wh")
    store.write_partition(BOOKINGS, DAY, [_bookings(30)])
    store.write_partition(BOOKINGS, NEXT_DAY, [_bookings(20, prefix="n", day=NEXT_DAY)])
    db = tmp_path / "warehouse.duckdb"
    first = load_warehouse(str(db), store, tables=["bookings"])
    assert (first.loaded, first.rows, first.total_rows) == (2, 50, 50)
    again = load_warehouse(str(db), store, tables=["bookings"])
    assert (again.loaded, again.skipped, again.total_rows) == (0, 2, 50)
    assert _duck_count(db, "SELECT count(DISTINCT uid) FROM bookings") == 50

    # Re-materialised with fewer rows: the partition is replaced, never appended to.
    store.write_partition(BOOKINGS, DAY, [_bookings(7)])
    third = load_warehouse(str(db), store, tables=["bookings"])
    assert (third.tables["bookings"].loaded, third.total_rows) == ([DAY], 27)
    assert _duck_count(db, "SELECT count(*) FROM bookings WHERE day = DATE '2024-03-02'") == 20
    full = load_warehouse(str(db), store, tables=["bookings"], full=True)
    assert (full.loaded, full.total_rows) == (2, 27)

    con = duckdb.connect(str(db), read_only=True)
    try:
        types = dict(
            con.execute("SELECT column_name, column_type FROM (DESCRIBE bookings)").fetchall()
        )
    finally:
        con.close()
    assert types["started_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["day"] == "DATE"
    assert types["hosts"].startswith('STRUCT(user_id VARCHAR, "role" VARCHAR)[]')


def test_a_table_without_partitions_is_not_created(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path / "wh")
    db = tmp_path / "w.duckdb"
    report = load_warehouse(str(db), store, tables=["users"])
    assert (report.loaded, report.total_rows) == (0, 0)
    store.write_partition(BOOKINGS, NEXT_DAY, [_bookings(3, day=NEXT_DAY)])
    assert load_warehouse(str(db), store, tables=["bookings"]).total_rows == 3
    assert (
        _duck_count(db, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'")
        == 0
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[pafs.S3FileSystem]:
    with moto_s3(BUCKET) as (_, fs):
        yield fs


def test_s3_write_read_replace_and_load(s3: pafs.S3FileSystem, tmp_path: Path) -> None:
    store = ParquetStore(f"s3://{BUCKET}/lake", filesystem=s3)
    result = store.write_partition(BOOKINGS, DAY, [_bookings(12)])
    assert result.path == f"s3://{BUCKET}/lake/bookings/day=2024-03-01/data.parquet"
    assert result.rows == 12
    assert result.bytes > 0
    assert len(_uids(store)) == 12

    # A writer dying midway never publishes: the old object stays whole.
    with pytest.raises(_BoomError):
        store.write_partition(BOOKINGS, DAY, _dies_midway(_bookings(300, prefix="new")))
    assert len(_uids(store)) == 12

    store.write_partition(BOOKINGS, DAY, [_bookings(4, prefix="v2-")])
    assert _uids(store) == ["v2-00000", "v2-00001", "v2-00002", "v2-00003"]
    store.write_partition(BOOKINGS, NEXT_DAY, [_bookings(2, day=NEXT_DAY)])
    assert store.list_partitions(BOOKINGS) == [DAY, NEXT_DAY]

    db = str(tmp_path / "remote.duckdb")
    assert load_warehouse(db, store, tables=["bookings"]).total_rows == 6
    store.write_partition(BOOKINGS, NEXT_DAY, [])
    emptied = load_warehouse(db, store, tables=["bookings"])
    assert (emptied.tables["bookings"].loaded, emptied.total_rows) == ([NEXT_DAY], 4)


def test_the_layers_below_the_extractor_load_none_of_it() -> None:
    # They are handed a TableSpec; none looks a table up in the registry, so none imports it.
    script = (
        "import sys\n"
        "import jicoo_connector.pages, jicoo_connector.quality, jicoo_connector.storage\n"
        "import jicoo_connector.changes\n"
        "print(sorted(m for m in sys.modules if m.startswith('jicoo_connector.extract')))\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
