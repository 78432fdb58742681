"""Row checksums that hold a warehouse to its Parquet partitions: equal for equal rows, whatever
each engine's types for timestamps and JSON; and one PostgreSQL value by SQL."""

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping

import psycopg

from jicoo_connector.extract import TABLES
from jicoo_connector.storage import ParquetStore

__all__ = ["checksum", "parquet_checksum", "postgres_checksum", "scalar"]


def _canonical(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return _canonical(json.loads(value))
        except ValueError:
            return value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def checksum(rows: Iterable[Mapping[str, object]]) -> tuple[int, str]:
    """(row count, SHA-256 of the sorted canonical rows): equal for equal multisets of rows,
    whatever the engine's types for timestamps and JSON."""
    lines = sorted(json.dumps(_canonical(dict(row)), sort_keys=True) for row in rows)
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return len(lines), digest


def parquet_checksum(store: ParquetStore, table: str) -> tuple[int, str]:
    rows: list[Mapping[str, object]] = []
    for value in store.list_partitions(TABLES[table].spec):
        rows.extend(store.read_partition(TABLES[table].spec, value).to_pylist())
    return checksum(rows)


def postgres_checksum(url: str, table: str) -> tuple[int, str]:
    columns = TABLES[table].spec.schema.names
    names = ", ".join(f'"{c}"' for c in columns)
    with psycopg.connect(url) as conn:
        fetched = conn.execute(f'SELECT {names} FROM "{table}"').fetchall()  # noqa: S608
    return checksum(dict(zip(columns, row, strict=True)) for row in fetched)


def scalar(url: str, sql: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]
