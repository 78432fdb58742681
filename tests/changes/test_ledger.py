"""Ledger: intent before outcome, re-run skip, changed file refused, one applier, fencing,
versioned schema. Every test that takes ``ledger`` runs on SQLite and on PostgreSQL."""

import datetime as dt
import itertools
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jicoo_connector.changes import (
    FINAL_STATES,
    Lease,
    Ledger,
    ParsedChangeSet,
    State,
    is_postgres_url,
    parse_changeset,
)
from jicoo_connector.changes._ledger import MIGRATIONS, SCHEMA_VERSION
from jicoo_connector.changes._ledger_backends import open_backend
from jicoo_connector.changes._machine import allowed
from jicoo_connector.errors import (
    BatchMismatchError,
    LedgerBusyError,
    LedgerError,
    LedgerNotFoundError,
    StaleLeaseError,
)
from tests.support.writeback_data import ledger_bytes

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
WORKERS = 4
LOCK_RELEASE_WAIT_S = 10
CSV = (
    "change_id,action,booking_uid,new_started_at,time_zone,cancel_reason\n"
    "r1,reschedule,bk1,2026-11-26T10:00+09:00,Asia/Tokyo,\n"
    "c1,cancel,bk2,,,guest asked\n"
)
BOOKING = {
    "uid": "bk1",
    "status": "open",
    "startedAt": "2026-11-20T01:00:00.000Z",
    "timeZone": "Asia/Tokyo",
    "updatedAt": "2026-10-01T00:00:00.000Z",
    "name": "Taro Yamada",
    "phoneNumber": "+81-90-0000-0000",
}


@pytest.fixture
def parsed() -> ParsedChangeSet:
    return parse_changeset(CSV.encode(), now=NOW)


@pytest.fixture
def ledger(ledger_location: str) -> Iterator[Ledger]:
    led = Ledger(ledger_location)
    yield led
    led.close()


def test_pragmas_are_wal_and_full(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as full, Ledger(tmp_path / "other.sqlite", synchronous="NORMAL") as normal:
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
        assert full._backend.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # type: ignore[attr-defined]
        assert normal._backend.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # type: ignore[attr-defined]


def test_intent_then_outcome_is_durable(
    ledger: Ledger, parsed: ParsedChangeSet, ledger_location: str
) -> None:
    assert ledger.open_batch("b1", parsed.content_hash, parsed.changes) == 2
    with ledger.lease("b1") as lease:
        assert ledger.record(lease, "r1", State.INTENT, booking_before=BOOKING) == 1
        # A second connection (another process after a crash) sees the intent already.
        with Ledger(ledger_location) as other:
            seen = other.entry("b1", "r1")
            assert seen is not None
            assert seen.state is State.INTENT
            assert seen.intent_at is not None
            assert seen.booking_before is not None
            assert seen.booking_before["startedAt"] == BOOKING["startedAt"]
        after = {**BOOKING, "startedAt": "2026-11-26T01:00:00.000Z"}
        ledger.record(lease, "r1", State.APPLIED, http_status=200, booking_after=after)
    entry = ledger.entry("b1", "r1")
    assert entry is not None
    assert (entry.state, entry.http_status, entry.attempts) == (State.APPLIED, 200, 1)
    assert entry.booking_after is not None
    assert entry.booking_after["startedAt"] == "2026-11-26T01:00:00.000Z"
    assert entry.outcome_at is not None
    assert ledger.counts("b1") == {"applied": 1, "pending": 1}


def test_personal_data_stays_out_of_the_ledger(
    ledger: Ledger, parsed: ParsedChangeSet, ledger_location: str
) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with ledger.lease("b1") as lease:
        ledger.record(lease, "r1", State.INTENT, booking_before=BOOKING)
    raw = ledger_bytes(ledger_location)
    assert b"Taro Yamada" not in raw
    assert b"+81-90" not in raw
    assert b"2026-11-20T01:00:00.000Z" in raw


def test_reopening_the_same_batch_adds_nothing(ledger: Ledger, parsed: ParsedChangeSet) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with ledger.lease("b1") as lease:
        ledger.record(lease, "c1", State.ALREADY_APPLIED, reason="already cancelled")
    assert ledger.open_batch("b1", parsed.content_hash, parsed.changes) == 0
    entry = ledger.entry("b1", "c1")
    assert entry is not None
    assert entry.state in FINAL_STATES


MOVES = list(itertools.product(State, State))


def _moves_csv() -> str:
    """One cancel per (state, state) pair of ``MOVES``: change ``m<i>`` for pair ``i``."""
    rows = [f"m{i},cancel,bk{i},,," for i in range(len(MOVES))]
    return "change_id,action,booking_uid,new_started_at,time_zone,cancel_reason\n" + "\n".join(rows)


def _path_to(state: State) -> list[State]:
    """The moves a run makes from pending to ``state``: through an intent where it must."""
    if state is State.PENDING:
        return []
    return [state] if allowed(State.PENDING, state) else [State.INTENT, state]


def test_the_ledger_refuses_every_move_the_state_machine_does_not_allow(ledger: Ledger) -> None:
    moves = parse_changeset(_moves_csv().encode(), now=NOW)
    ledger.open_batch("moves", moves.content_hash, moves.changes)
    refused = 0
    with ledger.lease("moves") as lease:
        for i, (old, new) in enumerate(MOVES):
            key = f"m{i}"
            for step in _path_to(old):
                ledger.record(lease, key, step, booking_before=BOOKING)
            entry = ledger.entry("moves", key)
            assert entry is not None
            assert entry.state is old
            if allowed(old, new):
                ledger.record(lease, key, new, reason="moved")
                expected = new
            else:
                refused += 1
                with pytest.raises(LedgerError, match=f"is {old.value}: .* never moves it to"):
                    ledger.record(lease, key, new, reason="moved")
                expected = old
            entry = ledger.entry("moves", key)
            assert entry is not None
            assert entry.state is expected, key
    # Finals go nowhere (4 x 7), and pending reaches neither applied nor in_doubt unsent.
    assert refused == len(FINAL_STATES) * len(State) + 2


def test_a_change_outside_the_batch_is_refused(ledger: Ledger, parsed: ParsedChangeSet) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with ledger.lease("b1") as lease, pytest.raises(LedgerError, match="not in batch"):
        ledger.record(lease, "nope", State.INTENT, booking_before=BOOKING)


def test_a_changed_file_under_the_same_batch_id_is_refused(
    ledger: Ledger, parsed: ParsedChangeSet
) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    edited = parse_changeset(CSV.replace("guest asked", "host ill").encode(), now=NOW)
    with pytest.raises(BatchMismatchError, match="different change-set file"):
        ledger.open_batch("b1", edited.content_hash, edited.changes)
    assert ledger.entry("b1", "c1") is not None
    entry = ledger.entry("b1", "c1")
    assert entry is not None
    assert entry.cancel_reason == "guest asked"
    # A new batch id is fine.
    assert ledger.open_batch("b2", edited.content_hash, edited.changes) == 2


def test_two_appliers_exactly_one_gets_the_lock(
    ledger: Ledger, parsed: ParsedChangeSet, ledger_location: str
) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with Ledger(ledger_location) as second:
        lease = ledger.acquire("b1")
        with pytest.raises(LedgerBusyError, match=f"pid {os.getpid()}, since"):
            second.acquire("b1")
        # The holder itself cannot take the batch twice either.
        with pytest.raises(LedgerBusyError):
            ledger.acquire("b1")
        ledger.release(lease)
        again = second.acquire("b1")
        assert again.epoch == lease.epoch + 1
        second.release(again)


def _hold_lock_then_die(path: str, ready: "multiprocessing.synchronize.Event") -> None:
    led = Ledger(path)
    led.acquire("b1")
    ready.set()
    signal.pause()


def test_the_lock_dies_with_its_holder(
    ledger: Ledger, parsed: ParsedChangeSet, ledger_location: str
) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock_then_die, args=(ledger_location, ready))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(LedgerBusyError):
            ledger.acquire("b1")
    finally:
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
    lease = _acquire_once_free(ledger, "b1")
    assert lease.epoch == 2
    ledger.release(lease)


def _acquire_once_free(ledger: Ledger, batch_id: str) -> Lease:
    # The kernel closes a killed holder's socket at once, but the server ends its session (and
    # drops its advisory lock) a moment later: poll briefly, as a second worker would.
    deadline = time.monotonic() + LOCK_RELEASE_WAIT_S
    while True:
        try:
            return ledger.acquire(batch_id)
        except LedgerBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_a_stale_applier_cannot_write(
    ledger: Ledger, parsed: ParsedChangeSet, ledger_location: str
) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    stale = ledger.acquire("b1")
    # The stale holder lost its lock (e.g. the lock file was removed under it) and a new
    # applier took over; the fencing epoch is what refuses the stale writes.
    ledger.release(stale)
    with Ledger(ledger_location) as newer:
        fresh = newer.acquire("b1")
        with pytest.raises(StaleLeaseError):
            ledger.record(stale, "r1", State.INTENT, booking_before=BOOKING)
        with pytest.raises(StaleLeaseError):
            ledger.record(stale, "r1", State.APPLIED, http_status=200)
        newer.record(fresh, "r1", State.FAILED, http_status=422, reason="slot")
        newer.release(fresh)
    entry = ledger.entry("b1", "r1")
    assert entry is not None
    assert (entry.state, entry.attempts, entry.reason) == (State.FAILED, 0, "slot")


def test_export_inverse_moves_applied_reschedules_back(
    ledger: Ledger, parsed: ParsedChangeSet, tmp_path: Path
) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with ledger.lease("b1") as lease:
        ledger.record(lease, "r1", State.INTENT, booking_before=BOOKING)
        ledger.record(lease, "r1", State.APPLIED, http_status=200)
        ledger.record(lease, "c1", State.INTENT, booking_before={**BOOKING, "uid": "bk2"})
        ledger.record(lease, "c1", State.APPLIED, http_status=200)
    rows = ledger.export_inverse("b1")
    assert len(rows) == 1
    (undo,) = rows
    assert undo["booking_uid"] == "bk1"
    assert undo["new_started_at"] == BOOKING["startedAt"]
    assert undo["time_zone"] == "Asia/Tokyo"
    assert undo["change_id"].startswith("undo-")
    # The inverse is itself a valid change set.
    header = list(undo)
    text = ",".join(header) + "\n" + ",".join(undo[h] for h in header) + "\n"
    back = parse_changeset(text.encode(), now=NOW)
    assert back.rejected == []
    assert back.changes[0].target == BOOKING["startedAt"]


def test_failed_reschedules_are_not_inverted(ledger: Ledger, parsed: ParsedChangeSet) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with ledger.lease("b1") as lease:
        ledger.record(lease, "r1", State.INTENT, booking_before=BOOKING)
        ledger.record(lease, "r1", State.FAILED, http_status=422)
    assert ledger.export_inverse("b1") == []


def test_the_ledger_says_which_schema_version_it_holds(ledger: Ledger) -> None:
    assert ledger.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert ledger.backend in ("sqlite", "postgresql")


def _version_1_ledger(location: str, content_hash: str) -> None:
    """A ledger as the first release wrote it: version 1 tables, one batch with a change."""
    old = open_backend(location, "FULL")
    with old.transaction(schema=True) as tx:
        tx.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        tx.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        for statement in MIGRATIONS[0]:
            tx.execute(statement)
        tx.execute("INSERT INTO batches VALUES ('b1', ?, '2026-10-01T00:00:00+00:00', 3)", (
            content_hash,
        ))  # fmt: skip
        tx.execute(
            "INSERT INTO changes(batch_id, key, row, action, booking_uid, state) "
            "VALUES ('b1', 'c1', 3, 'cancel', 'bk2', 'applied')"
        )
    old.close()


def test_a_version_1_ledger_is_migrated_and_keeps_its_batches(
    ledger_location: str, parsed: ParsedChangeSet
) -> None:
    _version_1_ledger(ledger_location, parsed.content_hash)
    with Ledger(ledger_location) as ledger:
        assert ledger.schema_version == 2
        assert ledger.batch_holder("b1") == (3, None, None)
        assert ledger.open_batch("b1", parsed.content_hash, parsed.changes) == 1
        assert ledger.counts("b1") == {"applied": 1, "pending": 1}
        with ledger.lease("b1") as lease:
            assert lease.epoch == 4
        holder = ledger.batch_holder("b1")
        assert holder is not None
        assert holder[1] is not None
        assert holder[1].endswith(f"pid {os.getpid()}")


def test_a_ledger_newer_than_this_code_is_refused(ledger_location: str) -> None:
    Ledger(ledger_location).close()
    backend = open_backend(ledger_location, "FULL")
    with backend.transaction() as tx:
        tx.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    backend.close()
    with pytest.raises(LedgerError, match="schema version 99, newer than"):
        Ledger(ledger_location)


def _storage(location: str) -> object:
    """What the location holds, as its storage lists it: the file's tables and journal mode
    (None: no file), or the database's schemas and tables."""
    if is_postgres_url(location):
        with psycopg.connect(location) as conn:
            return conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') UNION ALL "
                "SELECT schema_name, '' FROM information_schema.schemata ORDER BY 1, 2"
            ).fetchall()
    path = Path(location)
    if not path.exists():
        return None
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        tables = db.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
        return tables, db.execute("PRAGMA journal_mode").fetchone()
    finally:
        db.close()


@pytest.mark.parametrize("occupied", [False, True], ids=["empty", "another_apps_tables"])
def test_a_read_only_open_where_there_is_no_ledger_creates_nothing(
    ledger_location: str, occupied: bool
) -> None:
    # Empty: no file, or a database with nothing in it. Occupied: someone else's table there.
    if occupied and is_postgres_url(ledger_location):
        with psycopg.connect(ledger_location) as conn:
            conn.execute("CREATE TABLE other (x int)")
    elif occupied:
        sqlite3.connect(ledger_location).execute("CREATE TABLE other (x int)").connection.close()
    before = _storage(ledger_location)
    with pytest.raises(LedgerNotFoundError, match=r"^no ledger at "):
        Ledger(ledger_location, read_only=True)
    assert _storage(ledger_location) == before


def test_a_read_only_ledger_reads_and_writes_nothing(
    ledger_location: str, parsed: ParsedChangeSet
) -> None:
    with Ledger(ledger_location) as ledger:
        ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    before = ledger_bytes(ledger_location)
    with Ledger(ledger_location, read_only=True) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
        assert ledger.counts("b1") == {"pending": 2}
        with pytest.raises(LedgerError, match="opened read-only"):
            ledger.acquire("b1")
        with pytest.raises(LedgerError, match="opened read-only"):
            ledger.open_batch("b2", parsed.content_hash, parsed.changes)
        # Below that guard, the database itself refuses.
        refused = r"read-only|readonly"
        with pytest.raises(LedgerError, match=refused), ledger._backend.transaction() as tx:
            tx.execute("UPDATE batches SET epoch = 7")
    assert ledger_bytes(ledger_location) == before
    # Nor a batch lock file beside an SQLite ledger.
    assert not list(Path(ledger_location).parent.glob("*.lock"))


def test_a_read_only_open_migrates_no_old_ledger(
    ledger_location: str, parsed: ParsedChangeSet
) -> None:
    _version_1_ledger(ledger_location, parsed.content_hash)
    before = ledger_bytes(ledger_location)
    with pytest.raises(LedgerError, match=r"schema version 1, older than .*next apply migrates"):
        Ledger(ledger_location, read_only=True)
    assert ledger_bytes(ledger_location) == before
    backend = open_backend(ledger_location, "FULL", read_only=True)
    assert backend.read("SELECT value FROM meta") == [("1",)]
    backend.close()


def test_workers_opening_a_new_ledger_at_once_migrate_it_once(ledger_location: str) -> None:
    opened: list[int] = []
    failures: list[BaseException] = []
    start = threading.Barrier(WORKERS)

    def open_it() -> None:
        start.wait()
        try:
            with Ledger(ledger_location) as led:
                opened.append(led.schema_version)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert opened == [SCHEMA_VERSION] * WORKERS


def test_a_postgres_ledger_without_psycopg_says_what_to_install(postgres_url: str) -> None:
    # What a user without the [postgres] extra sees: a blocked import, as when it is absent.
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from jicoo_connector.changes import Ledger\n"
        "from jicoo_connector.errors import LedgerError\n"
        "try:\n"
        f"    Ledger({postgres_url.replace('postgres@', 'postgres:s3cret@')!r})\n"
        "except LedgerError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'jicoo-connector[postgres]'" in done.stdout
    assert "the ledger at postgresql://postgres:***@127.0.0.1:" in done.stdout
    assert "s3cret" not in done.stdout


def test_a_postgres_applier_whose_session_ends_loses_the_batch_and_cannot_write(
    postgres_url: str, parsed: ParsedChangeSet
) -> None:
    with Ledger(postgres_url) as first:
        first.open_batch("b1", parsed.content_hash, parsed.changes)
        stale = first.acquire("b1")
        # The server ends the holder's session (a partition, an idle timeout, an admin).
        backend_pid = first._backend.conn.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
        with Ledger(postgres_url) as second:
            fresh = _acquire_once_free(second, "b1")
            assert fresh.epoch == stale.epoch + 1
            with pytest.raises(LedgerError):
                first.record(stale, "r1", State.INTENT, booking_before=BOOKING)
            # Woken up on a new connection with its old lease, it is still refused.
            with Ledger(postgres_url) as revived, pytest.raises(StaleLeaseError):
                revived.record(stale, "r1", State.APPLIED, http_status=200)
            second.record(fresh, "r1", State.FAILED, http_status=422)
    with Ledger(postgres_url) as check:
        entry = check.entry("b1", "r1")
        assert entry is not None
        assert (entry.state, entry.attempts) == (State.FAILED, 0)
