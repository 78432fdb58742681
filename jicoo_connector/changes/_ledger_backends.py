"""Where the ledger's rows live: an SQLite file (embedded default) or a PostgreSQL database.

Only connections, transactions, SQL dialect and the per-batch lock differ between the two; the
states, transitions, migrations and fencing live once, in ``ledger.py``. Statements arrive in
one dialect (``?`` placeholders, ``ON CONFLICT DO NOTHING``, ``RETURNING``) that both speak.
"""

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from jicoo_connector._postgres import CONNECT_TIMEOUT_S, POSTGRES_SCHEMES, SERVER_KEEPALIVE
from jicoo_connector.errors import LedgerError, LedgerNotFoundError
from jicoo_connector.redaction import UNPARSEABLE_HINT, SecretURL, scrub

if TYPE_CHECKING:
    import sqlite3

    import psycopg

__all__ = [
    "POSTGRES_SCHEMA",
    "Backend",
    "PostgresBackend",
    "Row",
    "SqliteBackend",
    "Synchronous",
    "Transaction",
    "is_postgres_url",
    "open_backend",
]

logger = logging.getLogger(__name__)

# The ledger's tables sit in their own schema, clear of anything else in the database.
POSTGRES_SCHEMA = "jicoo_ledger"
BUSY_TIMEOUT_MS = 30_000
WAL_SWITCH_RETRY_S = 0.01

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
Row = tuple[Any, ...]
Unlock = Callable[[], None]


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


class Transaction(Protocol):
    """One open transaction: statements in the shared dialect, rows back (``[]`` for none)."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...

    def execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...


class Backend(Protocol):
    kind: str
    where: str
    # Appended to the fencing read: makes a concurrent takeover wait for the write in flight.
    row_lock: str

    def transaction(self, *, schema: bool = False) -> AbstractContextManager[Transaction]: ...

    def read(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...

    def has_table(self, name: str) -> bool: ...

    def try_lock(self, batch_id: str) -> Unlock | None: ...

    def close(self) -> None: ...


def open_backend(
    location: str | os.PathLike[str], synchronous: Synchronous, *, read_only: bool = False
) -> Backend:
    """The backend for ``location``. ``read_only`` creates nothing (no file, no directory, no
    schema) and the database itself refuses writes; a file that is not there is
    ``LedgerNotFoundError``."""
    if is_postgres_url(location):
        return PostgresBackend(str(location), synchronous, read_only=read_only)
    return SqliteBackend(Path(location), synchronous, read_only=read_only)


def _lock_digest(batch_id: str) -> bytes:
    return hashlib.sha256(b"jicoo-ledger\x1f" + batch_id.encode()).digest()


class _DriverErrors:
    """The driver's errors (``_errors``) raised as ``LedgerError``, naming the ledger."""

    where: str
    _errors: type[Exception]
    # Whose secrets a driver message must not show (the PostgreSQL URL).
    _secret_urls: tuple[str, ...] = ()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            why = scrub(str(exc), self._secret_urls)
            # Not chained: the driver's own message could be shown by whoever logs the chain.
            raise LedgerError(f"ledger {self.where}: {type(exc).__name__}: {why}") from None


# -- SQLite ---------------------------------------------------------------------------------


class _SqliteTransaction:
    def __init__(self, db: "sqlite3.Connection") -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        cursor = self._db.execute(sql, params)
        rows = cursor.fetchall()
        cursor.close()
        return rows

    def execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._db.executemany(sql, rows)


class SqliteBackend(_DriverErrors):
    """A WAL file; writes are ``BEGIN IMMEDIATE`` (one writer at a time), the batch lock is an
    exclusive ``flock`` on a file beside it (the kernel drops it when the holder dies)."""

    kind = "sqlite"
    row_lock = ""

    def __init__(self, path: Path, synchronous: Synchronous, *, read_only: bool = False) -> None:
        import sqlite3

        self.path = path
        self.where = str(path)
        self._errors: type[Exception] = sqlite3.DatabaseError
        if read_only:
            if not path.is_file():
                raise LedgerNotFoundError(f"no ledger at {path}")
            # mode=ro: SQLite itself refuses every write on this connection.
            target: str | Path = f"{path.resolve().as_uri()}?mode=ro"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            target = path
        # Autocommit; every write opens its own BEGIN IMMEDIATE transaction.
        self.db = sqlite3.connect(
            target, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, uri=read_only
        )
        with self._translated():
            if not read_only:
                self._enter_wal(sqlite3)
            # FULL: a committed intent survives power loss, the whole point of writing it.
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA foreign_keys=ON")

    def _enter_wal(self, sqlite3: Any) -> None:
        # Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is
        # locked" at once there instead of waiting out busy_timeout: several workers opening
        # a new ledger together saw it. Wait for the switch as busy_timeout would.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(WAL_SWITCH_RETRY_S)

    @contextmanager
    def transaction(self, *, schema: bool = False) -> Iterator[Transaction]:
        # BEGIN IMMEDIATE already serializes schema changes with every other writer.
        with self._translated():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTransaction(self.db)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def read(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        with self._translated():
            return self.db.execute(sql, params).fetchall()

    def has_table(self, name: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(self.read(sql, (name,)))

    def lock_path(self, batch_id: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{_lock_digest(batch_id).hex()[:16]}.lock")

    def try_lock(self, batch_id: str) -> Unlock | None:
        fd = os.open(self.lock_path(batch_id), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None

        def unlock() -> None:
            try:
                os.close(fd)
            except OSError:
                logger.debug("ledger: lock fd already closed")

        return unlock

    def close(self) -> None:
        self.db.close()


# -- PostgreSQL -----------------------------------------------------------------------------


class _PostgresTransaction:
    def __init__(self, conn: "psycopg.Connection[Row]") -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        cursor = self._conn.execute(_pg(sql), params)
        return cursor.fetchall() if cursor.description is not None else []

    def execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_pg(sql), rows)


def _pg(sql: str) -> str:
    # Our statements hold no literal '?' or '%'; psycopg wants %s placeholders.
    return sql.replace("?", "%s")


def _advisory_key(batch_id: str) -> int:
    return int.from_bytes(_lock_digest(batch_id)[:8], "big", signed=True)


# Serializes schema migrations between workers that open a fresh database at the same time.
_MIGRATION_KEY = _advisory_key("\x00schema-migrations")


class PostgresBackend(_DriverErrors):
    """One connection (autocommit outside explicit transactions) to a database whose
    ``jicoo_ledger`` schema holds the tables. The batch lock is a session-level advisory lock on
    that same connection: it goes when the connection goes, and so do the writes."""

    kind = "postgresql"
    row_lock = " FOR SHARE"

    def __init__(self, url: str, synchronous: Synchronous, *, read_only: bool = False) -> None:
        parsed = SecretURL.parse(url)
        self.where = parsed.display
        self._secret_urls = (url,)
        if not parsed.parseable:
            # libpq would split it elsewhere than we do: refused before it reaches the driver.
            raise LedgerError(f"the ledger URL {UNPARSEABLE_HINT}")
        try:
            import psycopg
        except ImportError as exc:
            raise LedgerError(
                f"the ledger at {self.where} is a PostgreSQL database, which needs psycopg 3: "
                "pip install 'jicoo-connector[postgres]'"
            ) from exc
        self._errors: type[Exception] = psycopg.Error
        try:
            self.conn: psycopg.Connection[Row] = psycopg.connect(
                url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
        except psycopg.Error as exc:
            why = scrub(str(exc), [url])
            raise LedgerError(f"cannot open the ledger at {self.where}: {why}") from None
        settings = {
            "search_path": POSTGRES_SCHEMA,
            # OFF trades the last commits for speed, as SQLite's synchronous=OFF does.
            "synchronous_commit": "off" if synchronous == "OFF" else "on",
            "lock_timeout": f"{BUSY_TIMEOUT_MS}ms",
            **SERVER_KEEPALIVE,
        }
        if read_only:
            # The server refuses every write of this session, CREATE SCHEMA included.
            settings["default_transaction_read_only"] = "on"
        with self._translated():
            for name, value in settings.items():
                self.conn.execute("SELECT set_config(%s, %s, false)", (name, str(value)))

    @contextmanager
    def transaction(self, *, schema: bool = False) -> Iterator[Transaction]:
        with self._translated(), self.conn.transaction():
            if schema:
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_KEY,))
                self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {POSTGRES_SCHEMA}")
            yield _PostgresTransaction(self.conn)

    def read(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        with self._translated():
            return self.conn.execute(_pg(sql), params).fetchall()

    def has_table(self, name: str) -> bool:
        found = self.read("SELECT to_regclass(?)", (f"{POSTGRES_SCHEMA}.{name}",))
        return found[0][0] is not None

    def try_lock(self, batch_id: str) -> Unlock | None:
        key = _advisory_key(batch_id)
        with self._translated():
            found = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not found or not found[0]:
            return None

        def unlock() -> None:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except self._errors as exc:
                # The session is gone or going, and its locks with it; nothing to release.
                logger.warning("ledger %s: unlock of batch %s: %s", self.where, batch_id, exc)

        return unlock

    def close(self) -> None:
        self.conn.close()
