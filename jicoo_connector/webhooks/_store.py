"""Where received events are recorded: the ``EventStore`` interface and its SQLite home.

A delivery is answered 2xx only after its record is committed and fsync'd (WAL,
``synchronous=FULL``), so a receiver killed at any moment loses nothing it acknowledged; the
unique key makes every replay a no-op. Record ids only grow, in commit order (one writer at a
time), so a reader's cursor is simply the last id it handled.
"""

import datetime as dt
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from jicoo_connector._compat import parse_datetime
from jicoo_connector.webhooks._events import WebhookEvent

__all__ = [
    "EventStore",
    "SQLiteEventStore",
    "StoredEvent",
]

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


class EventStore(Protocol):
    """What the receiver and the sensor need of a store (SQLite here; Postgres can follow)."""

    def record(self, event: WebhookEvent, body: bytes) -> bool:
        """Commit the event durably; False if it was already recorded (a replay)."""
        ...

    def events_after(self, cursor: int, limit: int) -> list[StoredEvent]:
        """Recorded events with ``id > cursor``, oldest first, at most ``limit``."""
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

    def events_after(self, cursor: int, limit: int) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT id, event, booking_uid, created_at, started_at, received_at"
            " FROM webhook_events WHERE id > ? ORDER BY id LIMIT ?",
            (cursor, limit),
        ).fetchall()
        return [
            StoredEvent(
                id=row[0],
                event=WebhookEvent(
                    event=row[1],
                    booking_uid=row[2],
                    created_at=row[3],
                    started_at=None if row[4] is None else parse_datetime(row[4]),
                ),
                received_at=row[5],
            )
            for row in rows
        ]
