"""The PostgreSQL event store on a real server: once per event, and a cursor that many writers
cannot fool (an event whose transaction commits late is read late, never skipped)."""

import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from jicoo_connector.errors import WebhookStoreError
from jicoo_connector.webhooks import (
    PostgresEventStore,
    SQLiteEventStore,
    WebhookEvent,
    open_event_store,
)

WRITERS = 4
EVENTS_PER_WRITER = 150
READ_LIMIT = 7
HOLD_LOCK = 4242  # the advisory lock the test trigger waits on
WAIT_S = 20.0


def event(uid: str, created_at: str = "2026-11-30T01:02:03.456Z") -> WebhookEvent:
    return WebhookEvent("guest_booked", uid, created_at, None)


def read_all(store: PostgresEventStore, cursor: str = "") -> tuple[list[str], str]:
    uids: list[str] = []
    while (page := store.read(cursor, READ_LIMIT)).events:
        uids += [e.event.booking_uid for e in page.events]
        cursor = page.cursor
    return uids, cursor


def test_an_event_is_recorded_once_and_read_in_pages_after_the_cursor(postgres_url: str) -> None:
    with PostgresEventStore(postgres_url) as store:
        assert store.record(event("A"), b"{}")
        assert not store.record(event("A"), b"{}")  # a replay
        for uid in "BCDEFGHIJ":
            assert store.record(event(uid), b"{}")
        first = store.read("", 4)
        assert [e.event.booking_uid for e in first.events] == list("ABCD")
        rest, cursor = read_all(store, first.cursor)
        assert rest == list("EFGHIJ")
        assert store.read(cursor, 4).events == []
        assert store.read(cursor, 4).cursor == cursor
        # An SQLite cursor (a bare id) reads this store from its first event.
        assert [e.event.booking_uid for e in store.read("7", 2).events] == list("AB")
        store.check()


def test_a_reader_creates_nothing_and_finds_nothing_before_the_first_receiver(
    postgres_url: str,
) -> None:
    with PostgresEventStore(postgres_url, create=False) as reader:
        assert reader.read("", 10).events == []
        with pytest.raises(WebhookStoreError, match=r"no table jicoo_webhooks\.events"):
            reader.check()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT to_regnamespace('jicoo_webhooks')").fetchone() == (None,)


def _hold_trigger(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Inserts for booking SLOW wait, after their row has its id and before their commit,
    until the test releases advisory lock ``HOLD_LOCK``."""
    conn.execute(
        "CREATE FUNCTION jicoo_webhooks.hold() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({HOLD_LOCK}); RETURN NEW; END $$"
    )
    conn.execute(
        "CREATE TRIGGER hold AFTER INSERT ON jicoo_webhooks.events FOR EACH ROW "
        "WHEN (NEW.booking_uid = 'SLOW') EXECUTE FUNCTION jicoo_webhooks.hold()"
    )


def _wait_for_a_waiting_lock(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    deadline = time.monotonic() + WAIT_S
    sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    while conn.execute(sql).fetchone() != (1,):
        assert time.monotonic() < deadline, "the slow insert never reached its trigger"
        time.sleep(0.01)


def test_an_event_whose_transaction_commits_late_is_read_late_never_skipped(
    postgres_url: str,
) -> None:
    with (
        PostgresEventStore(postgres_url) as slow_writer,
        PostgresEventStore(postgres_url) as fast_writer,
        PostgresEventStore(postgres_url, create=False) as reader,
        psycopg.connect(postgres_url, autocommit=True) as admin,
    ):
        _hold_trigger(admin)
        admin.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
        slow = threading.Thread(target=slow_writer.record, args=(event("SLOW"), b"{}"))
        slow.start()
        _wait_for_a_waiting_lock(admin)
        assert fast_writer.record(event("FAST"), b"{}")  # committed, with the higher id
        visible = admin.execute("SELECT id, booking_uid FROM jicoo_webhooks.events").fetchall()
        assert [uid for _, uid in visible] == ["FAST"]  # SLOW's id is taken, its row unseen
        # A reader that kept the last id seen would now pass FAST's id, and SLOW's lower id
        # would never be read. This one reads nothing while SLOW's transaction is open.
        held = reader.read("", 10)
        assert held.events == []
        admin.execute("SELECT pg_advisory_unlock(%s)", (HOLD_LOCK,))
        slow.join(WAIT_S)
        page = reader.read(held.cursor, 10)
        assert [e.event.booking_uid for e in page.events] == ["SLOW", "FAST"]
        slow_id, fast_id = (e.id for e in page.events)
        assert slow_id < fast_id
        assert reader.read(page.cursor, 10).events == []


def test_many_writers_and_a_reader_at_once_every_event_read_exactly_once(
    postgres_url: str,
) -> None:
    PostgresEventStore(postgres_url).close()  # the table, before the writers race to it
    done = threading.Event()
    seen: list[str] = []

    def write(writer: int) -> None:
        with PostgresEventStore(postgres_url) as store:
            for n in range(EVENTS_PER_WRITER):
                store.record(event(f"W{writer}-{n}"), b"{}")

    def read() -> None:
        cursor = ""
        with PostgresEventStore(postgres_url, create=False) as store:
            while True:
                finished = done.is_set()  # before the read: a read after it sees every commit
                page = store.read(cursor, READ_LIMIT)
                seen.extend(e.event.booking_uid for e in page.events)
                cursor = page.cursor
                if finished and not page.events:
                    return

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join(WAIT_S * 3)
    expected = {f"W{w}-{n}" for w in range(WRITERS) for n in range(EVENTS_PER_WRITER)}
    assert Counter(seen) == Counter(expected)


def test_a_lost_connection_fails_one_call_and_the_next_reconnects(postgres_url: str) -> None:
    with (
        PostgresEventStore(postgres_url) as store,
        psycopg.connect(postgres_url, autocommit=True) as admin,
    ):
        assert store.record(event("BEFORE"), b"{}")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with pytest.raises(WebhookStoreError, match=r"webhook store postgresql://.*: record"):
            store.record(event("LOST"), b"{}")  # answered 500: the sender retries
        assert store.record(event("LOST"), b"{}")
        assert read_all(store)[0] == ["BEFORE", "LOST"]


def test_a_store_it_cannot_reach_is_named_without_its_password() -> None:
    with pytest.raises(WebhookStoreError) as raised:
        PostgresEventStore("postgresql://hooks:s3cret@127.0.0.1:1/jicoo?sslmode=disable")
    shown = "webhook store postgresql://hooks:***@127.0.0.1:1/jicoo?sslmode=disable: open"
    assert shown in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_open_event_store_picks_the_store_by_its_location(
    postgres_url: str, tmp_path: Path
) -> None:
    stores = [open_event_store(postgres_url), open_event_store(tmp_path / "e.sqlite")]
    try:
        assert [type(s) for s in stores] == [PostgresEventStore, SQLiteEventStore]
    finally:
        for store in stores:
            store.close()
