"""Webhook events in PostgreSQL: receivers on several machines behind one load balancer.

The table ``jicoo_webhooks.events`` has the SQLite store's columns, the same unique key (a
replay delivered to another receiver is recorded once: the second insert waits for the first
to commit, then does nothing), and ``tx``: the id of the transaction that recorded the row.

The cursor. An id is drawn when a row is inserted, but the row becomes visible when its
transaction commits, and with several writers those orders differ: a receiver may take id 5,
another id 6 and commit first. A reader that kept "the last id seen" would read 6, move its
cursor past 5, and never see 5 once it commits. So ``read`` returns only rows whose
transaction is older than the oldest transaction still running on the server
(``pg_snapshot_xmin(pg_current_snapshot())``): every such transaction has ended, committed or
not, so no row can later appear at or before that horizon. The cursor is the last
``(tx, id)`` read; rows are read in that order. The price: an event is read once every
transaction that took its id before its own has ended (only writing transactions take one),
so a writing transaction left open on the same server (any database) holds the events back,
never loses them.
"""

import datetime as dt
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from jicoo_connector._postgres import CONNECT_TIMEOUT_S, SERVER_KEEPALIVE
from jicoo_connector.errors import WebhookStoreError
from jicoo_connector.redaction import UNPARSEABLE_HINT, SecretURL, scrub
from jicoo_connector.webhooks._events import WebhookEvent
from jicoo_connector.webhooks._store import EventPage, stored_event

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA", "PostgresEventStore"]

logger = logging.getLogger(__name__)

SCHEMA: Final = "jicoo_webhooks"  # spelled out in the SQL below
# Serializes the schema's creation between receivers that start together on a new database.
_DDL_LOCK: Final = 0x6A69636F6F5F7768  # "jicoo_wh"
_DDL: Final = (
    "CREATE SCHEMA IF NOT EXISTS jicoo_webhooks",
    """CREATE TABLE IF NOT EXISTS jicoo_webhooks.events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
        event text NOT NULL,
        booking_uid text NOT NULL,
        created_at text NOT NULL,
        started_at text,
        received_at text NOT NULL,
        body bytea NOT NULL,
        UNIQUE (event, booking_uid, created_at)
    )""",
    "CREATE INDEX IF NOT EXISTS events_tx_id ON jicoo_webhooks.events (tx, id)",
)
_INSERT: Final = (
    "INSERT INTO jicoo_webhooks.events (event, booking_uid, created_at, started_at,"
    " received_at, body) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
# ORDER BY names the table's columns: a bare "tx" would be the text column of the SELECT list,
# where "1000" sorts before "866".
_READ: Final = (
    "SELECT e.tx::text, e.id, e.event, e.booking_uid, e.created_at, e.started_at, e.received_at"
    " FROM jicoo_webhooks.events AS e"
    " WHERE e.tx < pg_snapshot_xmin(pg_current_snapshot()) AND (e.tx, e.id) > (%s::xid8, %s)"
    " ORDER BY e.tx, e.id LIMIT %s"
)
_CURSOR: Final = re.compile(r"pg:(\d+):(\d+)")
_START: Final = ("0", 0)


def _parse_cursor(cursor: str) -> tuple[str, int]:
    if not cursor:
        return _START
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        logger.warning("cursor %r is not a PostgreSQL event cursor: reading from the first event",
                       cursor)  # fmt: skip
        return _START
    return match.group(1), int(match.group(2))


class PostgresEventStore:
    """Events in a PostgreSQL database (schema ``jicoo_webhooks``). Use as a context manager.

    ``create=False`` (a reader) creates nothing: before the first receiver made the table,
    ``read`` finds no events. One connection, reopened on the next call after it broke.

    >>> with PostgresEventStore("postgresql://hooks@db/jicoo") as store:  # doctest: +SKIP
    ...     store.record(parse_event(body), body)
    True
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        parsed = SecretURL.parse(url)
        self.where = parsed.display
        if not parsed.parseable:
            # libpq would split it elsewhere than we do: refused before it reaches the driver.
            raise WebhookStoreError(f"the webhook store URL {UNPARSEABLE_HINT}")
        try:
            import psycopg
        except ImportError as exc:
            raise WebhookStoreError(
                f"the webhook store {self.where} is PostgreSQL, which needs psycopg 3: "
                "pip install 'jicoo-connector[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None
        with self._translated("open"):
            conn = self._connection()
            if create:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                    for statement in _DDL:
                        conn.execute(statement)

    def __enter__(self) -> "PostgresEventStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except self._psycopg.Error as exc:
            why = scrub(str(exc), [self._url])
            raise WebhookStoreError(
                f"webhook store {self.where}: {doing}: {type(exc).__name__}: {why}"
            ) from None

    def _connection(self) -> "psycopg.Connection[Any]":
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            conn = self._psycopg.connect(
                self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
            # on: the 2xx goes out only once the event is on the server's disk.
            for name, value in {"synchronous_commit": "on", **SERVER_KEEPALIVE}.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
            self._conn = conn
        return self._conn

    def record(self, event: WebhookEvent, body: bytes) -> bool:
        started = None if event.started_at is None else event.started_at.isoformat()
        received = dt.datetime.now(dt.timezone.utc).isoformat()
        with self._translated("record"):
            cursor = self._connection().execute(
                _INSERT,
                (event.event, event.booking_uid, event.created_at, started, received, body),
            )
        return cursor.rowcount == 1

    def read(self, cursor: str, limit: int) -> EventPage:
        tx, after = _parse_cursor(cursor)
        with self._translated("read"):
            conn = self._connection()
            if not self._has_table(conn):
                return EventPage([], cursor)
            rows = conn.execute(_READ, (tx, after, limit)).fetchall()
        if not rows:
            return EventPage([], cursor)
        return EventPage([stored_event(row[1:]) for row in rows], f"pg:{rows[-1][0]}:{rows[-1][1]}")

    def check(self) -> None:
        with self._translated("check"):
            conn = self._connection()
            if not self._has_table(conn):
                raise WebhookStoreError(f"webhook store {self.where}: no table {SCHEMA}.events")

    @staticmethod
    def _has_table(conn: "psycopg.Connection[Any]") -> bool:
        found = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.events",)).fetchone()
        return found is not None and found[0] is not None
