"""Incremental loads of Parquet partitions into a warehouse: stage, then merge in one transaction.

For each table: list its partition files with a fingerprint (size and modification time), compare
with ``_jicoo_loads`` in the warehouse, stream the changed partitions into a staging table
(ADBC bulk ingest; DuckDB scans Arrow directly), then in ONE transaction delete those partitions'
rows, insert the staged ones and record the new fingerprints. Readers see the old partitions until
the commit; a crash before it leaves them as they were.
"""

import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs

from jicoo_connector.errors import SchemaChangeError, WarehouseError
from jicoo_connector.extract import TABLES
from jicoo_connector.names import check_column_names, check_table_name, fitted_name
from jicoo_connector.storage import ZONE_KEY, ParquetStore
from jicoo_connector.tables import TableSpec
from jicoo_connector.warehouse._ident import quote_identifier
from jicoo_connector.warehouse._session import Session, open_session
from jicoo_connector.warehouse._sql import (
    LOADS_SCHEMA,
    LOADS_TABLE,
    STAGE_PREFIX,
    Dialect,
    LoadRecord,
)
from jicoo_connector.warehouse._types import ArrowField, logical_type, normalized
from jicoo_connector.warehouse._url import WarehouseTarget

__all__ = ["LoadReport", "PartitionFile", "TableLoad", "load_warehouse", "partition_files"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionFile:
    """A partition's Parquet file and the fingerprint of this version of it."""

    value: dt.date
    path: str
    fingerprint: str


@dataclass(slots=True)
class TableLoad:
    """What one table's load did: partitions replaced, partitions already up to date."""

    table: str
    loaded: list[dt.date] = field(default_factory=list)
    skipped: list[dt.date] = field(default_factory=list)
    rows: int = 0
    columns_added: list[str] = field(default_factory=list)
    seconds: float = 0.0
    total_rows: int = 0  # in the warehouse table after the load


@dataclass(slots=True)
class LoadReport:
    """Every table's :class:`TableLoad`; ``warehouse`` is where they went (no password)."""

    warehouse: str
    tables: dict[str, TableLoad] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def loaded(self) -> int:
        return sum(len(t.loaded) for t in self.tables.values())

    @property
    def skipped(self) -> int:
        return sum(len(t.skipped) for t in self.tables.values())

    @property
    def total_rows(self) -> int:
        return sum(t.total_rows for t in self.tables.values())

    def summary(self) -> str:
        return (
            f"{self.loaded} partitions loaded ({self.rows} rows), {self.skipped} unchanged "
            f"and skipped, into {self.warehouse}"
        )


def partition_files(store: ParquetStore, spec: TableSpec) -> list[PartitionFile]:
    """The table's partitions with fingerprints, taken before any read: if a file is replaced
    while it is loaded, the older fingerprint is recorded and the next load reloads it."""
    values = store.list_partitions(spec)
    paths = [store.partition_path(spec, value) for value in values]
    found: list[PartitionFile] = []
    for value, path, info in zip(values, paths, store.filesystem.get_file_info(paths), strict=True):
        if info.type != pafs.FileType.File:
            continue  # removed since the listing
        found.append(PartitionFile(value, path, f"{info.size}:{info.mtime_ns}"))
    return found


def load_warehouse(
    target: WarehouseTarget | str,
    store: ParquetStore,
    *,
    tables: Sequence[str] | None = None,
    full: bool = False,
    run_id: str | None = None,
    progress: Callable[[TableLoad], None] | None = None,
) -> LoadReport:
    """Load the partitions of ``tables`` (default: all) written since their last load.

    ``full`` reloads every partition in the store. Partitions in the warehouse that are no
    longer in the store are left alone (never deleted). Raises ``SchemaChangeError`` when a
    column's type differs from the warehouse's, before that table is touched.

    >>> store = ParquetStore("data/warehouse")
    >>> load_warehouse("postgresql://loader@db/analytics", store)  # doctest: +SKIP
    """
    warehouse = target if isinstance(target, WarehouseTarget) else WarehouseTarget.parse(target)
    names = list(tables) if tables else list(TABLES)
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        raise WarehouseError(f"unknown tables {unknown}; known: {sorted(TABLES)}")
    report = LoadReport(warehouse.describe())
    with open_session(warehouse) as session:
        _ensure_loads_table(session)
        for name in names:
            result = _load_table(session, TABLES[name].spec, store, full=full, run_id=run_id)
            report.tables[name] = result
            logger.info(
                "%s: %d partitions loaded (%d rows), %d skipped",
                name,
                len(result.loaded),
                result.rows,
                len(result.skipped),
            )
            if progress is not None:
                progress(result)
    return report


def _ensure_loads_table(session: Session) -> None:
    dialect = session.dialect
    for statement in [*dialect.lock(LOADS_TABLE), *dialect.loads_table()]:
        session.execute(statement)
    session.commit()
    found = {str(name) for name, _ in session.query(dialect.columns_query(LOADS_TABLE))}
    missing = [column for column in LOADS_SCHEMA if column.name not in found]
    if missing:  # a load state written by an older version
        for statement in [*dialect.lock(LOADS_TABLE), *map(_add_to_loads(dialect), missing)]:
            session.execute(statement)
        session.commit()


def _zone_of(store: ParquetStore, spec: TableSpec, value: dt.date) -> str | None:
    try:
        return (store.partition_metadata(spec, value) or {}).get(ZONE_KEY)
    except (pa.ArrowException, OSError):
        return None  # unreadable: the staging read says so, naming the file


def _add_to_loads(dialect: Dialect) -> Callable[[ArrowField], str]:
    return lambda column: dialect.add_column(LOADS_TABLE, column)


def _zones(
    session: Session, spec: TableSpec, store: ParquetStore, stale: Sequence[PartitionFile]
) -> dict[dt.date, str | None]:
    """The zone each partition to load was cut in; refuses a mix, within the files or with the
    days the warehouse already holds (one booking would then sit on two days)."""
    zones = {f.value: _zone_of(store, spec, f.value) for f in stale}
    held = {str(zone) for (zone,) in session.query(session.dialect.zones_query(spec.name))}
    session.commit()
    cut = {zone for zone in zones.values() if zone is not None}
    if len(cut | held) > 1:
        raise WarehouseError(
            f"{spec.name}: days cut in {', '.join(sorted(held)) or 'no recorded zone'} are in "
            f"the warehouse, and these partitions were cut in {', '.join(sorted(cut))}: load "
            "them into another warehouse, or extract again in the warehouse's zone"
        )
    return zones


def _load_table(
    session: Session, spec: TableSpec, store: ParquetStore, *, full: bool, run_id: str | None
) -> TableLoad:
    started = time.monotonic()
    result = TableLoad(spec.name)
    files = partition_files(store, spec)
    state = dict(session.query(session.dialect.loads_query(spec.name)))
    stale = [f for f in files if full or state.get(f.value) != f.fingerprint]
    result.skipped = [f.value for f in files if f not in stale]
    if stale:
        _replace(session, spec, store, stale, result, run_id)
    result.total_rows = _count(session, spec.name)
    result.seconds = time.monotonic() - started
    return result


def _replace(
    session: Session,
    spec: TableSpec,
    store: ParquetStore,
    stale: Sequence[PartitionFile],
    result: TableLoad,
    run_id: str | None,
) -> None:
    zones = _zones(session, spec, store, stale)
    result.columns_added = _evolve(session, spec)
    # The random part first: a warehouse that cuts long names keeps two stages apart.
    stage = fitted_name(f"{STAGE_PREFIX}{uuid.uuid4().hex[:12]}_{spec.name}")
    counts: dict[dt.date, int] = {}
    unreadable: list[str] = []
    staged = _staged(spec, store, stale, counts, unreadable, json=session.dialect.nested_as_json)
    try:
        session.ingest(stage, staged)
    except WarehouseError:
        if unreadable:  # the driver's message wraps ours in its own: say it plainly
            raise WarehouseError(unreadable[0]) from None
        raise
    records = [
        LoadRecord(spec.name, f.value, f.fingerprint, counts.get(f.value, 0), zones[f.value])
        for f in stale
    ]
    try:
        for statement in session.dialect.merge(
            spec.name, stage, spec.schema, spec.partition_column, records, run_id
        ):
            session.execute(statement)
        session.commit()
    except BaseException:
        # A failed statement aborts the transaction: roll back first (a temporary stage goes
        # with it), then drop a permanent one (BigQuery) as best we can; the error is the news.
        with contextlib.suppress(WarehouseError):
            session.rollback()
            session.execute(session.dialect.drop(stage))
            session.commit()
        raise
    session.execute(session.dialect.drop(stage))
    session.commit()
    result.loaded = [f.value for f in stale]
    result.rows = sum(r.rows for r in records)


def _count(session: Session, table: str) -> int:
    dialect = session.dialect
    if not session.query(dialect.columns_query(table)):
        return 0
    (row,) = session.query(f"SELECT count(*) FROM {dialect.table(table)}")  # noqa: S608
    session.commit()  # end the read: a transaction left open would hold the table's read lock
    return int(row[0])


def _evolve(session: Session, spec: TableSpec) -> list[str]:
    """Create the table, or add the schema's new columns; refuse a changed type or a name some
    warehouse would not keep. Committed before the merge, so readers are blocked by DDL only
    for an instant."""
    check_table_name(spec.name)
    check_column_names(spec.name, spec.schema)
    dialect = session.dialect
    found = {str(name): str(kind) for name, kind in session.query(dialect.columns_query(spec.name))}
    for column in spec.schema:
        expected = dialect.column_type(column).reported
        if column.name in found and normalized(found[column.name]) != normalized(expected):
            raise SchemaChangeError(spec.name, column.name, found[column.name], expected)
    if not found:
        statements = dialect.create_table(spec.name, spec.schema, spec.partition_column)
        added: list[str] = []
    else:
        missing = [column for column in spec.schema if column.name not in found]
        if not missing:
            return []
        statements = [dialect.add_column(spec.name, column) for column in missing]
        added = [column.name for column in missing]
        logger.warning("%s: adding columns %s to the warehouse table", spec.name, added)
    for statement in [*dialect.lock(spec.name), *statements]:
        session.execute(statement)
    session.commit()
    return added


def _staged(
    spec: TableSpec,
    store: ParquetStore,
    files: Sequence[PartitionFile],
    counts: dict[dt.date, int],
    unreadable: list[str],
    *,
    json: bool,
) -> pa.RecordBatchReader:
    """The files' rows as one stream, one partition in memory at a time; nested columns as JSON
    text when the backend takes them that way. Fills ``counts`` (rows per partition) as read,
    and ``unreadable`` with what stopped the stream, if a file could not be read."""
    nested = [f.name for f in spec.schema if logical_type(f) == "nested"] if json else []
    schema = pa.schema(
        [pa.field(f.name, pa.string(), f.nullable) if f.name in nested else f for f in spec.schema]
    )

    def batches() -> Iterator[pa.RecordBatch]:
        encoder = _JsonEncoder() if nested else None
        try:
            for file in files:
                try:
                    data = store.read_partition(spec, file.value)
                except (pa.ArrowException, OSError) as exc:
                    where = f"{spec.name} {spec.partition_column}={file.value}"
                    unreadable.append(f"{where}: cannot read {file.path}: {exc}")
                    raise
                counts[file.value] = data.num_rows
                for batch in data.to_batches():
                    yield encoder.encode(batch, nested, schema) if encoder else batch
        finally:
            if encoder is not None:
                encoder.close()

    return pa.RecordBatchReader.from_batches(schema, batches())


_ENCODER_BATCH = "_jicoo_batch"


def _duckdb(name: str) -> str:
    return quote_identifier("duckdb", name)


class _JsonEncoder:
    """Nested Arrow columns to JSON text, in DuckDB's vectorized ``to_json``: no Python object
    per value, as converting through Python objects and orjson would make."""

    def __init__(self) -> None:
        import duckdb  # lazy: see storage.py

        self._con: duckdb.DuckDBPyConnection = duckdb.connect()

    def encode(self, batch: pa.RecordBatch, nested: list[str], schema: pa.Schema) -> pa.RecordBatch:
        self._con.register(_ENCODER_BATCH, batch)
        try:
            select = ", ".join(
                f"to_json({_duckdb(name)})::VARCHAR AS {_duckdb(name)}" for name in nested
            )
            sql = f"SELECT {select} FROM {_duckdb(_ENCODER_BATCH)}"  # noqa: S608
            encoded = self._con.execute(sql).to_arrow_table()
        finally:
            self._con.unregister(_ENCODER_BATCH)
        arrays = [
            encoded.column(name).combine_chunks() if name in nested else batch.column(name)
            for name in schema.names
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def close(self) -> None:
        self._con.close()
