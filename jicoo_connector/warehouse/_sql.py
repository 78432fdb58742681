"""The SQL each backend is sent: DDL, introspection, the per-table lock and the merge.

Pure string building, so the Snowflake and BigQuery dialects are tested without a server. Only
names from the table registry and values of known shape (dates, counts, fingerprints, run ids
checked by ``text``) are interpolated, always quoted.
"""

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from jicoo_connector.errors import WarehouseError
from jicoo_connector.names import fitted_name
from jicoo_connector.warehouse._ident import quote_identifier
from jicoo_connector.warehouse._types import (
    JSON_FROM_TEXT,
    ArrowField,
    SqlType,
    logical_type,
    sql_type,
)
from jicoo_connector.warehouse._url import Backend

__all__ = ["LOADS_TABLE", "Dialect", "LoadRecord"]

LOADS_TABLE = "_jicoo_loads"
STAGE_PREFIX = "_jicoo_stage_"
# BigQuery has no session temp tables for a load job: a crashed loader's staging table expires.
BIGQUERY_STAGE_HOURS = 24
_SAFE_TEXT = re.compile(r"[A-Za-z0-9_.:@+/=-]*")
_LOCK_NAMESPACE = "jicoo-connector:load:"

_LOADS_FIELDS: list[ArrowField] = [
    pa.field("table_name", pa.string(), nullable=False),
    pa.field("partition_value", pa.date32(), nullable=False),
    pa.field("fingerprint", pa.string(), nullable=False),
    pa.field("row_count", pa.int64(), nullable=False),
    pa.field("loaded_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("run_id", pa.string()),
    # The IANA zone the partition's days were cut in (storage.ZONE_KEY); null before it was
    # recorded. Added to older warehouses' load state on the next load.
    pa.field("time_zone", pa.string()),
]
LOADS_SCHEMA = pa.schema(_LOADS_FIELDS)


@dataclass(frozen=True, slots=True)
class LoadRecord:
    """One row of ``_jicoo_loads``: which file version of a partition the warehouse holds."""

    table: str
    partition_value: dt.date
    fingerprint: str
    rows: int
    time_zone: str | None = None


@dataclass(frozen=True, slots=True)
class Dialect:
    """SQL text for one backend; ``prefix`` qualifies table names (BigQuery's project.dataset)."""

    backend: Backend
    prefix: str = ""

    # -- quoting ---------------------------------------------------------------------------

    def ident(self, name: str) -> str:
        return quote_identifier(self.backend, name)

    def table(self, name: str) -> str:
        return self.ident(f"{self.prefix}.{name}" if self.prefix else name)

    @staticmethod
    def date(value: dt.date) -> str:
        return f"DATE '{value.isoformat()}'"

    @staticmethod
    def text(value: str | None) -> str:
        """A string literal of our own making (names, fingerprints, run ids): checked, not escaped,
        because the backends escape quotes differently (BigQuery uses backslashes)."""
        if value is None:
            return "NULL"
        if not _SAFE_TEXT.fullmatch(value):
            raise WarehouseError(f"refusing to inline {value!r} into SQL")
        return f"'{value}'"

    # -- DDL and introspection --------------------------------------------------------------

    def column_type(self, field: ArrowField) -> SqlType:
        return sql_type(field, self.backend)

    def create_table(self, name: str, schema: pa.Schema, partition_column: str | None) -> list[str]:
        columns = ", ".join(f"{self.ident(f.name)} {self.column_type(f).ddl}" for f in schema)
        create = f"CREATE TABLE IF NOT EXISTS {self.table(name)} ({columns})"
        if partition_column is None:
            return [create]
        if self.backend == "bigquery":
            return [f"{create} PARTITION BY {self.ident(partition_column)}"]
        if self.backend == "postgresql":
            index = self.ident(fitted_name(f"{name}_{partition_column}_idx"))
            on = f"{self.table(name)} ({self.ident(partition_column)})"
            return [create, f"CREATE INDEX IF NOT EXISTS {index} ON {on}"]
        return [create]

    def add_column(self, name: str, field: ArrowField) -> str:
        column = f"{self.ident(field.name)} {self.column_type(field).ddl}"
        return f"ALTER TABLE {self.table(name)} ADD COLUMN IF NOT EXISTS {column}"

    def columns_query(self, name: str) -> str:
        """(column_name, data_type) of a table in the target schema, in column order."""
        if self.backend == "bigquery":
            source = f"{self.ident(self.prefix)}.INFORMATION_SCHEMA.COLUMNS"
            where = f"table_name = {self.text(name)}"
        else:
            source = "information_schema.columns"
            where = f"table_schema = current_schema() AND table_name = {self.text(name)}"
        return (
            f"SELECT column_name, data_type FROM {source} WHERE {where} "  # noqa: S608
            "ORDER BY ordinal_position"
        )

    def loads_table(self) -> list[str]:
        return self.create_table(LOADS_TABLE, LOADS_SCHEMA, None)

    def zones_query(self, table: str) -> str:
        """The zones the warehouse's partitions of ``table`` were cut in."""
        zone = self.ident("time_zone")
        return (
            f"SELECT DISTINCT {zone} FROM {self.table(LOADS_TABLE)} "  # noqa: S608
            f"WHERE {self.ident('table_name')} = {self.text(table)} AND {zone} IS NOT NULL"
        )

    def loads_query(self, table: str) -> str:
        return (
            f"SELECT {self.ident('partition_value')}, {self.ident('fingerprint')} "  # noqa: S608
            f"FROM {self.table(LOADS_TABLE)} WHERE {self.ident('table_name')} = {self.text(table)}"
        )

    # -- staging and merge ------------------------------------------------------------------

    @property
    def nested_as_json(self) -> bool:
        """Whether nested columns are staged as JSON text (every backend but DuckDB)."""
        return self.backend != "duckdb"

    @property
    def temporary_stage(self) -> bool:
        return self.backend != "bigquery"

    def after_ingest(self, stage: str) -> list[str]:
        if self.backend != "bigquery":
            return []
        expiry = f"TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {BIGQUERY_STAGE_HOURS} HOUR)"
        return [f"ALTER TABLE {self.table(stage)} SET OPTIONS (expiration_timestamp = {expiry})"]

    def lock(self, table: str) -> list[str]:
        """Serialize loaders of one table until commit; readers are never blocked.

        PostgreSQL: a transaction-scoped advisory lock (without it two loaders' DELETEs both run
        before either INSERT is visible and the rows end up twice). DuckDB allows one writing
        process per file; Snowflake and BigQuery serialize DML on a table themselves.
        """
        if self.backend != "postgresql":
            return []
        digest = hashlib.sha256(f"{_LOCK_NAMESPACE}{table}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        return [f"SELECT pg_advisory_xact_lock({key})"]

    def stage_expression(self, field: ArrowField) -> str:
        """The staged column, converted to the target column's type."""
        column = self.ident(field.name)
        if logical_type(field) == "nested" and self.nested_as_json:
            return JSON_FROM_TEXT[self.backend].format(column)
        return f"CAST({column} AS {self.column_type(field).ddl})"

    def merge(
        self,
        table: str,
        stage: str,
        schema: pa.Schema,
        partition_column: str,
        records: Sequence[LoadRecord],
        run_id: str | None,
    ) -> list[str]:
        """One transaction: the partitions' rows replaced, then their load records."""
        values = ", ".join(self.date(r.partition_value) for r in records)
        columns = ", ".join(self.ident(f.name) for f in schema)
        selected = ", ".join(self.stage_expression(f) for f in schema)
        loads = self.table(LOADS_TABLE)
        load_columns = ", ".join(self.ident(f.name) for f in LOADS_SCHEMA)
        rows = ", ".join(
            f"({self.text(table)}, {self.date(r.partition_value)}, {self.text(r.fingerprint)}, "
            f"{int(r.rows)}, CURRENT_TIMESTAMP, {self.text(run_id)}, {self.text(r.time_zone)})"
            for r in records
        )
        statements = [
            *self.lock(table),
            f"DELETE FROM {self.table(table)} WHERE {self.ident(partition_column)} IN ({values})",  # noqa: S608
            f"INSERT INTO {self.table(table)} ({columns}) "  # noqa: S608
            f"SELECT {selected} FROM {self.table(stage)}",
            f"DELETE FROM {loads} WHERE {self.ident('table_name')} = {self.text(table)} "  # noqa: S608
            f"AND {self.ident('partition_value')} IN ({values})",
            f"INSERT INTO {loads} ({load_columns}) VALUES {rows}",  # noqa: S608
        ]
        return self.transaction(statements)

    def transaction(self, statements: list[str]) -> list[str]:
        """Statements as one transaction: PostgreSQL and DuckDB run inside the driver's own
        transaction (committed by the caller); Snowflake gets BEGIN/COMMIT in its autocommit
        session; BigQuery needs one multi-statement script for a transaction."""
        if self.backend == "snowflake":
            return ["BEGIN", *statements, "COMMIT"]
        if self.backend == "bigquery":
            return [";\n".join(["BEGIN TRANSACTION", *statements, "COMMIT TRANSACTION"]) + ";"]
        return statements

    def drop(self, name: str) -> str:
        return f"DROP TABLE IF EXISTS {self.table(name)}"
