"""One connection to a warehouse: DuckDB's own Python API, or an ADBC driver for the others.

Drivers are imported only when their backend is used; a missing one names the extra to install.
Driver errors are re-raised as ``WarehouseError`` with the URL's secrets masked (``redaction``).
"""

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import pyarrow as pa

from jicoo_connector.errors import WarehouseError
from jicoo_connector.warehouse._sql import Dialect
from jicoo_connector.warehouse._url import WarehouseTarget

__all__ = ["Session", "open_session", "query_warehouse"]

# DuckDB allows one writing process per file: a second loader waits for the first this long.
DUCKDB_LOCK_WAIT_S = 120.0
_DUCKDB_LOCK_POLL_S = 0.25
_DRIVERS = {
    "postgresql": ("adbc_driver_postgresql.dbapi", "postgres"),
    "snowflake": ("adbc_driver_snowflake.dbapi", "snowflake"),
    "bigquery": ("adbc_driver_bigquery.dbapi", "bigquery"),
}


class Session(Protocol):
    """What the loader needs of a connection. Statements run in the session's transaction."""

    dialect: Dialect

    def execute(self, sql: str) -> None: ...

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...

    def ingest(self, name: str, data: pa.RecordBatchReader) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


@contextmanager
def _driver_errors(target: WarehouseTarget) -> Iterator[None]:
    try:
        yield
    except WarehouseError:
        raise
    except Exception as exc:  # noqa: BLE001 - every driver error, re-raised without secrets
        # Driver messages can echo the connection string: never let its password through.
        raise WarehouseError(f"{target.describe()}: {target.scrub(str(exc))}") from None


class _DuckDBSession:
    def __init__(self, target: WarehouseTarget) -> None:
        import duckdb  # lazy: an extraction never needs it

        self.dialect = Dialect("duckdb")
        self._target = target
        Path(target.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + DUCKDB_LOCK_WAIT_S
        while True:
            try:
                self._con = duckdb.connect(target.path)
                break
            except duckdb.IOException as exc:
                # Another process (a second Dagster run) has the file open for writing.
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseError(f"{target.describe()}: {exc}") from None
                time.sleep(_DUCKDB_LOCK_POLL_S)
        self._con.begin()

    def execute(self, sql: str) -> None:
        with _driver_errors(self._target):
            self._con.execute(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with _driver_errors(self._target):
            return self._con.execute(sql).fetchall()

    def ingest(self, name: str, data: pa.RecordBatchReader) -> None:
        source = f"{name}_source"
        with _driver_errors(self._target):
            self._con.register(source, data)
            try:
                self._con.execute(
                    f"CREATE TEMP TABLE {self.dialect.ident(name)} AS "  # noqa: S608
                    f"SELECT * FROM {self.dialect.ident(source)}"
                )
            finally:
                self._con.unregister(source)

    def commit(self) -> None:
        with _driver_errors(self._target):
            self._con.commit()
            self._con.begin()

    def rollback(self) -> None:
        self._con.rollback()
        self._con.begin()

    def close(self) -> None:
        self._con.close()


def _driver(target: WarehouseTarget) -> ModuleType:
    module, extra = _DRIVERS[target.backend]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise WarehouseError(
            f"{target.backend} warehouse: its ADBC driver is not installed; "
            f"pip install 'jicoo-connector[{extra}]'"
        ) from None


def _connect_adbc(target: WarehouseTarget, driver: ModuleType) -> Any:
    if target.backend == "postgresql":
        # libpq also reads PGPASSWORD and ~/.pgpass itself.
        return driver.connect(target.libpq_uri())
    if target.backend == "snowflake":
        return driver.connect(db_kwargs=target.snowflake_options(), autocommit=True)
    options = {
        "adbc.bigquery.sql.project_id": target.project,
        "adbc.bigquery.sql.dataset_id": target.dataset,
    }
    if location := target.query().get("location"):
        options["adbc.bigquery.sql.location"] = location
    return driver.connect(db_kwargs=options, autocommit=True)


class _AdbcSession:
    """PostgreSQL runs in the driver's transaction (autocommit off); Snowflake and BigQuery in
    autocommit mode, their merges wrapped in explicit transactions by the dialect."""

    def __init__(self, target: WarehouseTarget) -> None:
        driver = _driver(target)
        prefix = f"{target.project}.{target.dataset}" if target.backend == "bigquery" else ""
        self.dialect = Dialect(target.backend, prefix)
        self._target = target
        with _driver_errors(target):
            self._conn = _connect_adbc(target, driver)
            self._cursor = self._conn.cursor()

    def execute(self, sql: str) -> None:
        with _driver_errors(self._target):
            self._cursor.execute(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with _driver_errors(self._target):
            self._cursor.execute(sql)
            rows: list[tuple[Any, ...]] = self._cursor.fetchall()
            return rows

    def ingest(self, name: str, data: pa.RecordBatchReader) -> None:
        with _driver_errors(self._target):
            self._cursor.adbc_ingest(
                name,
                data,
                mode="create",
                temporary=self.dialect.temporary_stage,
                **self._where(),
            )
        for statement in self.dialect.after_ingest(name):
            self.execute(statement)

    def _where(self) -> dict[str, str]:
        if self._target.backend == "bigquery":
            return {"db_schema_name": self._target.dataset}
        return {}

    def commit(self) -> None:
        with _driver_errors(self._target):
            self._conn.commit()

    def rollback(self) -> None:
        with _driver_errors(self._target):
            self._conn.rollback()

    def close(self) -> None:
        self._cursor.close()
        self._conn.close()


@contextmanager
def open_session(target: WarehouseTarget) -> Iterator[Session]:
    """A session on ``target``: rolled back if the block raises, always closed."""
    factory: Callable[[WarehouseTarget], Session] = (
        _DuckDBSession if target.backend == "duckdb" else _AdbcSession
    )
    session = factory(target)
    try:
        yield session
    except BaseException:
        # The connection may be gone; closing it ends the transaction anyway.
        with contextlib.suppress(WarehouseError):
            session.rollback()
        raise
    finally:
        session.close()


def query_warehouse(target: WarehouseTarget | str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one read-only query, on a short-lived session (the demo's summary, checks).

    >>> query_warehouse("data/warehouse.duckdb", "SELECT count(*) FROM bookings")  # doctest: +SKIP
    [(2000,)]
    """
    warehouse = target if isinstance(target, WarehouseTarget) else WarehouseTarget.parse(target)
    with open_session(warehouse) as session:
        rows = session.query(sql)
        session.rollback()
        return rows
