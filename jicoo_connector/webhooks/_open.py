"""The event store at a location: a ``postgresql://`` URL, else an SQLite file path."""

import os
from pathlib import Path

from jicoo_connector.changes import is_postgres_url
from jicoo_connector.webhooks._pg_store import PostgresEventStore
from jicoo_connector.webhooks._store import EventStore, SQLiteEventStore

__all__ = ["event_store_exists", "open_event_store"]


def open_event_store(location: str | os.PathLike[str], *, create: bool = True) -> EventStore:
    """``JICOO_WEBHOOK_DB_URL`` or ``JICOO_WEBHOOK_DB`` (``ConnectorConfig.webhook_store()``).

    ``create=False`` is for readers: PostgreSQL gets no schema; an SQLite file must exist
    (``event_store_exists``), as the receiver makes it.
    """
    if is_postgres_url(location):
        return PostgresEventStore(str(location), create=create)
    return SQLiteEventStore(location)


def event_store_exists(location: str | os.PathLike[str]) -> bool:
    """False only for an SQLite file no receiver has made yet (a URL may hold events)."""
    return is_postgres_url(location) or Path(location).exists()
