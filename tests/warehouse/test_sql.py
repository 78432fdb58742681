"""The type table and the SQL each backend is sent, checked as text.

Snowflake and BigQuery cannot be reached from here: these tests are what covers them (the
README says so). PostgreSQL and DuckDB run the same statements live in the other tests.
"""

import datetime as dt
import sys

import pyarrow as pa
import pytest

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.errors import SchemaChangeError, WarehouseError
from jicoo_connector.extract import TABLES
from jicoo_connector.storage import ParquetStore
from jicoo_connector.warehouse import WarehouseTarget, load_warehouse
from jicoo_connector.warehouse._session import open_session
from jicoo_connector.warehouse._sql import Dialect, LoadRecord
from jicoo_connector.warehouse._types import TYPE_TABLE, sql_type

BACKENDS = ("duckdb", "postgresql", "snowflake", "bigquery")
DAY = dt.date(2026, 11, 30)
RECORDS = [
    LoadRecord("bookings", DAY, "1234:5678", 10, "Asia/Tokyo"),
    LoadRecord("bookings", DAY + dt.timedelta(days=1), "99:100", 0),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_column_of_every_table_has_an_explicit_type(backend: str) -> None:
    for spec in (source.spec for source in TABLES.values()):
        for field in spec.schema:
            assert sql_type(field, backend).ddl, (spec.name, field.name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arrow", "expected"),
    [
        (pa.string(), ("VARCHAR", "text", "VARCHAR", "STRING")),
        (pa.bool_(), ("BOOLEAN", "boolean", "BOOLEAN", "BOOL")),
        (pa.int8(), ("TINYINT", "smallint", "NUMBER(3,0)", "INT64")),
        (pa.int32(), ("INTEGER", "integer", "NUMBER(10,0)", "INT64")),
        (pa.int64(), ("BIGINT", "bigint", "NUMBER(19,0)", "INT64")),
        (pa.date32(), ("DATE", "date", "DATE", "DATE")),
        (
            pa.timestamp("ms", tz="UTC"),
            ("TIMESTAMP WITH TIME ZONE", "timestamp with time zone", "TIMESTAMP_TZ", "TIMESTAMP"),
        ),
        (pa.list_(pa.string()), ("VARCHAR[]", "jsonb", "VARIANT", "JSON")),
        (
            TABLES["bookings"].spec.schema.field("hosts").type,
            ('STRUCT("user_id" VARCHAR, "role" VARCHAR)[]', "jsonb", "VARIANT", "JSON"),
        ),
    ],
)
def test_the_type_table(arrow: pa.DataType, expected: tuple[str, ...]) -> None:
    field = pa.field("c", arrow)
    assert tuple(sql_type(field, b).ddl for b in BACKENDS) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "arrow", [pa.timestamp("ms"), pa.timestamp("ms", tz="Asia/Tokyo"), pa.float64(), pa.binary()]
)
def test_types_without_a_mapping_are_refused_by_column(arrow: pa.DataType) -> None:
    with pytest.raises(WarehouseError, match="column 'c'"):
        sql_type(pa.field("c", arrow), "postgresql")


def test_snowflake_reports_every_integer_as_number_and_text_as_text() -> None:
    assert {TYPE_TABLE[t]["snowflake"].reported for t in ("int8", "int32", "int64")} == {"NUMBER"}
    assert TYPE_TABLE["string"]["snowflake"].reported == "TEXT"


def test_snowflake_merge_is_one_explicit_transaction() -> None:
    spec = TABLES["bookings"].spec
    sql = Dialect("snowflake").merge(
        "bookings", "_jicoo_stage_bookings_x", spec.schema, "day", RECORDS, "run-1"
    )
    assert sql[0] == "BEGIN"
    assert sql[-1] == "COMMIT"
    days = "DATE '2026-11-30', DATE '2026-12-01'"
    assert sql[1] == f'DELETE FROM "bookings" WHERE "day" IN ({days})'  # noqa: S608
    assert sql[2].startswith('INSERT INTO "bookings" ("uid", "event_type_id", ')
    assert 'PARSE_JSON("hosts")' in sql[2]
    assert 'CAST("started_at" AS TIMESTAMP_TZ)' in sql[2]
    assert sql[2].endswith('FROM "_jicoo_stage_bookings_x"')
    assert sql[3] == (
        f'DELETE FROM "_jicoo_loads" WHERE "table_name" = \'bookings\' '  # noqa: S608
        f'AND "partition_value" IN ({days})'
    )
    assert sql[4] == (
        'INSERT INTO "_jicoo_loads" ("table_name", "partition_value", "fingerprint", '
        '"row_count", "loaded_at", "run_id", "time_zone") VALUES '
        "('bookings', DATE '2026-11-30', '1234:5678', 10, CURRENT_TIMESTAMP, 'run-1', "
        "'Asia/Tokyo'), "
        "('bookings', DATE '2026-12-01', '99:100', 0, CURRENT_TIMESTAMP, 'run-1', NULL)"
    )


def test_bigquery_merge_is_one_script_with_a_transaction_and_qualified_names() -> None:
    spec = TABLES["users"].spec
    dialect = Dialect("bigquery", "acme-prod.jicoo")
    (script,) = dialect.merge(
        "users", "_jicoo_stage_users_x", spec.schema, "snapshot_date", RECORDS[:1], None
    )
    statements = script.rstrip(";").split(";\n")
    assert statements[0] == "BEGIN TRANSACTION"
    assert statements[-1] == "COMMIT TRANSACTION"
    assert statements[1] == (
        "DELETE FROM `acme-prod.jicoo.users` WHERE `snapshot_date` IN (DATE '2026-11-30')"
    )
    assert "CAST(`created_at` AS TIMESTAMP)" in statements[2]
    assert statements[2].endswith("FROM `acme-prod.jicoo._jicoo_stage_users_x`")
    assert statements[4].endswith("10, CURRENT_TIMESTAMP, NULL, 'Asia/Tokyo')")
    assert dialect.columns_query("users") == (
        "SELECT column_name, data_type FROM `acme-prod.jicoo`.INFORMATION_SCHEMA.COLUMNS "
        "WHERE table_name = 'users' ORDER BY ordinal_position"
    )
    assert dialect.after_ingest("_jicoo_stage_users_x") == [
        "ALTER TABLE `acme-prod.jicoo._jicoo_stage_users_x` SET OPTIONS (expiration_timestamp = "
        "TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 24 HOUR))"
    ]


def test_create_and_alter_per_backend() -> None:
    schema = pa.schema([pa.field("uid", pa.string()), pa.field("day", pa.date32())])
    assert Dialect("bigquery", "p.d").create_table("t", schema, "day") == [
        "CREATE TABLE IF NOT EXISTS `p.d.t` (`uid` STRING, `day` DATE) PARTITION BY `day`"
    ]
    assert Dialect("snowflake").create_table("t", schema, "day") == [
        'CREATE TABLE IF NOT EXISTS "t" ("uid" VARCHAR, "day" DATE)'
    ]
    assert Dialect("postgresql").create_table("t", schema, "day") == [
        'CREATE TABLE IF NOT EXISTS "t" ("uid" text, "day" date)',
        'CREATE INDEX IF NOT EXISTS "t_day_idx" ON "t" ("day")',
    ]
    hosts = TABLES["bookings"].spec.schema.field("hosts")
    assert Dialect("snowflake").add_column("bookings", hosts) == (
        'ALTER TABLE "bookings" ADD COLUMN IF NOT EXISTS "hosts" VARIANT'
    )
    assert Dialect("postgresql").lock("bookings")[0].startswith("SELECT pg_advisory_xact_lock(")
    assert Dialect("snowflake").lock("bookings") == []


@pytest.mark.parametrize("value", ["it's", "a;b", "x\ny", "'; DROP TABLE bookings; --"])
def test_only_values_of_known_shape_are_inlined(value: str) -> None:
    with pytest.raises(WarehouseError, match="refusing"):
        Dialect.text(value)


@pytest.mark.parametrize(
    ("url", "backend", "shown"),
    [
        ("data/warehouse.duckdb", "duckdb", "data/warehouse.duckdb"),
        ("postgresql://loader:s3cr%40t@db:5432/analytics", "postgresql", "postgresql://loader:***@db:5432/analytics"),
        ("postgres://db/analytics", "postgresql", "postgres://db/analytics"),
        ("snowflake://me:pw@acme-xy123/JICOO/RAW?warehouse=LOAD", "snowflake", "snowflake://me:***@acme-xy123/JICOO/RAW?warehouse=LOAD"),
        ("bigquery://acme-prod/jicoo", "bigquery", "bigquery://acme-prod/jicoo"),
    ],
)  # fmt: skip
def test_warehouse_urls(url: str, backend: str, shown: str) -> None:
    target = WarehouseTarget.parse(url)
    assert target.backend == backend
    assert target.describe() == shown
    assert "s3cr" not in repr(target)


def test_url_details() -> None:
    snowflake = WarehouseTarget.parse("snowflake://me:pw@acme-xy123/JICOO/RAW?warehouse=LOAD")
    assert snowflake.password == "pw"
    bigquery = WarehouseTarget.parse("bigquery://acme-prod/jicoo?location=asia-northeast1")
    assert (bigquery.project, bigquery.dataset) == ("acme-prod", "jicoo")
    assert bigquery.query() == {"location": "asia-northeast1"}
    assert snowflake.scrub("failed: postgresql://a:b@h/d and snowflake://c:d@e") == (
        "failed: postgresql://a:***@h/d and snowflake://c:***@e"
    )


def test_a_password_from_the_environment_reaches_the_url_through_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JICOO_WAREHOUSE_PASSWORD", "p@ss word")
    config = ConnectorConfig.from_env()
    target = WarehouseTarget.parse(
        "postgresql://loader@db/analytics", password=config.warehouse_password
    )
    assert target.libpq_uri() == "postgresql://loader:p%40ss%20word@db/analytics"
    assert target.password == "p@ss word"
    assert "p@ss" not in target.describe()
    assert "p@ss" not in repr(target)
    # The warehouse reads no environment: without the argument there is no password.
    alone = WarehouseTarget.parse("postgresql://loader@db/analytics")
    assert alone.password is None
    assert alone.libpq_uri() == "postgresql://loader@db/analytics"
    # A password in the URL wins over the one given apart.
    inline = WarehouseTarget.parse("postgresql://loader:inline@db/analytics", password="apart")
    assert (inline.password, inline.libpq_uri()) == (
        "inline",
        "postgresql://loader:inline@db/analytics",
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("mysql://db/x", "unknown scheme 'mysql'"),
        ("bigquery://project-only", "expected bigquery://PROJECT/DATASET"),
        ("postgresql:///nohost", "has no host"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(WarehouseError, match=message):
        WarehouseTarget.parse(url)


def test_a_missing_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the package were not installed: Python's import system refuses a None entry.
    monkeypatch.setitem(sys.modules, "adbc_driver_snowflake.dbapi", None)
    with (
        pytest.raises(WarehouseError, match=r"pip install 'jicoo-connector\[snowflake\]'"),
        open_session(WarehouseTarget.parse("snowflake://me@acme/DB/SCHEMA")),
    ):
        pass


def test_unknown_tables_are_refused() -> None:
    with pytest.raises(WarehouseError, match=r"unknown tables \['bokings'\]"):
        load_warehouse("unused.duckdb", ParquetStore("unused"), tables=["bokings"])


def test_schema_change_error_names_table_column_and_types() -> None:
    error = SchemaChangeError("bookings", "capacity", "text", "integer")
    assert str(error).startswith(
        "bookings.capacity: the warehouse column is text, the table schema now needs integer"
    )
