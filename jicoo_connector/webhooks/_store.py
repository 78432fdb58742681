"""Where received events are recorded: the ``EventStore`` interface and its SQLite home.

A delivery is answered 2xx only after its record is committed and fsync'd (WAL,
``synchronous=FULL``), so a receiver killed at any moment loses nothing it acknowledged; the
unique key makes every replay a no-op. Record ids only grow, in commit order (SQLite has one
writer at a time), so the SQLite store's cursor is simply the last id a reader handled. The
PostgreSQL store (``_pg_store.py``), with many writers at once, needs another cursor; both hide
it behind ``read``.
"""

import datetime as dt
import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from jicoo_connector._compat import parse_datetime
from jicoo_connector.webhooks._events import WebhookEvent

__all__ = [
    "EventPage",
    "EventStore",
    "SQLiteEventStore",
    "StoredEvent",
    "stored_event",
]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS: Final = 10_000

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS webhook_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    booking_uid TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    received_at TEXT NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (event, booking_uid, created_at)
)
"""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A recorded event with its store id (the sensor's cursor) and when it arrived."""

    id: int
    event: WebhookEvent
    received_at: str


def stored_event(row: Sequence[Any]) -> StoredEvent:
    """A store's row (id, event, booking_uid, created_at, started_at, received_at)."""
    return StoredEvent(
        id=int(row[0]),
        event=WebhookEvent(
            event=row[1],
            booking_uid=row[2],
            created_at=row[3],
            started_at=None if row[4] is None else parse_datetime(row[4]),
        ),
        received_at=row[5],
    )


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events read after a cursor, oldest first, and the cursor that follows them (the same
    cursor when there were none). A cursor is the store's own opaque text: keep it, pass it back.
    """

    events: list[StoredEvent]
    cursor: str


class EventStore(Protocol):
    """What the receiver and the sensor need of a store (SQLite, or PostgreSQL for receivers
    on several machines)."""

    def record(self, event: WebhookEvent, body: bytes) -> bool:
        """Commit the event durably; False if it was already recorded (a replay)."""
        ...

    def read(self, cursor: str, limit: int) -> EventPage:
        """At most ``limit`` events recorded after ``cursor`` (``""``: from the first), oldest
        first, each once over successive calls however many receivers write at once. A cursor
        of another kind of store reads this one from its first event."""
        ...

    def check(self) -> None:
        """Raise if the store cannot be used now (the receiver's health endpoint)."""
        ...

    def close(self) -> None: ...


class SQLiteEventStore:
    """Events in a SQLite file (WAL, fsync'd commits). Use as a context manager.

    >>> with SQLiteEventStore("data/webhook_events.sqlite") as store:  # doctest: +SKIP
    ...     store.record(parse_event(body), body)
    True
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: the receiver hands every call to its one store thread.
        self._db = sqlite3.connect(
            self.path,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: in WAL mode NORMAL may lose the last commits on power loss; we answered 2xx.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute(_SCHEMA)

    def __enter__(self) -> "SQLiteEventStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def record(self, event: WebhookEvent, body: bytes) -> bool:
        cursor = self._db.execute(
            "INSERT INTO webhook_events(event, booking_uid, created_at, started_at, received_at,"
            " body) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                event.event,
                event.booking_uid,
                event.created_at,
                None if event.started_at is None else event.started_at.isoformat(),
                dt.datetime.now(dt.timezone.utc).isoformat(),
                body,
            ),
        )
        return cursor.rowcount == 1

    def read(self, cursor: str, limit: int) -> EventPage:
        after = 0
        if cursor:
            if cursor.isdigit():
                after = int(cursor)
            else:
                logger.warning("cursor %r is not an SQLite event id: reading from the first event",
                               cursor)  # fmt: skip
        events = self.events_after(after, limit)
        return EventPage(events, str(events[-1].id) if events else str(after))

    def check(self) -> None:
        self._db.execute("SELECT 1 FROM webhook_events LIMIT 1").fetchall()

    def events_after(self, cursor: int, limit: int) -> list[StoredEvent]:
        """Events with ``id > cursor`` in id order (the order they were committed in)."""
        rows = self._db.execute(
            "SELECT id, event, booking_uid, created_at, started_at, received_at"
            " FROM webhook_events WHERE id > ? ORDER BY id LIMIT ?",
            (cursor, limit),
        ).fetchall()
        return [stored_event(row) for row in rows]
