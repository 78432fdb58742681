"""Ledger: intent before outcome, re-run skip, changed file refused, one applier, fencing."""

import datetime as dt
import multiprocessing
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from jicoo_connector.changes.changeset import ParsedChangeSet, parse_changeset
from jicoo_connector.changes.ledger import (
    FINAL_STATES,
    BatchMismatchError,
    ChangeState,
    Ledger,
    LedgerBusyError,
    StaleLeaseError,
)

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
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
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "ledger.sqlite")
    yield led
    led.close()


def test_pragmas_are_wal_and_full(ledger: Ledger, tmp_path: Path) -> None:
    db = sqlite3.connect(ledger.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Ledger(tmp_path / "other.sqlite", synchronous="NORMAL") as normal:
        assert normal._db.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_intent_then_outcome_is_durable(ledger: Ledger, parsed: ParsedChangeSet) -> None:
    assert ledger.open_batch("b1", parsed.content_hash, parsed.changes) == 2
    with ledger.lease("b1") as lease:
        assert ledger.record_intent(lease, "r1", BOOKING) == 1
        # A second connection (another process after a crash) sees the intent already.
        with Ledger(ledger.path) as other:
            seen = other.entry("b1", "r1")
            assert seen is not None
            assert seen.state is ChangeState.INTENT
            assert seen.intent_at is not None
            assert seen.booking_before is not None
            assert seen.booking_before["startedAt"] == BOOKING["startedAt"]
        after = {**BOOKING, "startedAt": "2026-11-26T01:00:00.000Z"}
        ledger.record_outcome(
            lease, "r1", ChangeState.APPLIED, http_status=200, booking_after=after
        )
    entry = ledger.entry("b1", "r1")
    assert entry is not None
    assert (entry.state, entry.http_status, entry.attempts) == (ChangeState.APPLIED, 200, 1)
    assert entry.booking_after is not None
    assert entry.booking_after["startedAt"] == "2026-11-26T01:00:00.000Z"
    assert entry.outcome_at is not None
    assert ledger.counts("b1") == {"applied": 1, "pending": 1}


def test_personal_data_stays_out_of_the_ledger(ledger: Ledger, parsed: ParsedChangeSet) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with ledger.lease("b1") as lease:
        ledger.record_intent(lease, "r1", BOOKING)
    raw = ledger.path.read_bytes() + Path(f"{ledger.path}-wal").read_bytes()
    assert b"Taro Yamada" not in raw
    assert b"+81-90" not in raw
    assert b"2026-11-20T01:00:00.000Z" in raw


def test_reopening_the_same_batch_adds_nothing(ledger: Ledger, parsed: ParsedChangeSet) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with ledger.lease("b1") as lease:
        ledger.record_outcome(lease, "c1", ChangeState.APPLIED, http_status=200)
    assert ledger.open_batch("b1", parsed.content_hash, parsed.changes) == 0
    entry = ledger.entry("b1", "c1")
    assert entry is not None
    assert entry.state in FINAL_STATES


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


def test_two_appliers_exactly_one_gets_the_lock(ledger: Ledger, parsed: ParsedChangeSet) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with Ledger(ledger.path) as second:
        lease = ledger.acquire("b1")
        with pytest.raises(LedgerBusyError):
            second.acquire("b1")
        ledger.release(lease)
        again = second.acquire("b1")
        assert again.epoch == lease.epoch + 1
        second.release(again)


def _hold_lock_then_die(path: str, ready: "multiprocessing.synchronize.Event") -> None:
    led = Ledger(path)
    led.acquire("b1")
    ready.set()
    signal.pause()


def test_the_lock_dies_with_its_holder(ledger: Ledger, parsed: ParsedChangeSet) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock_then_die, args=(str(ledger.path), ready))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(LedgerBusyError):
            ledger.acquire("b1")
    finally:
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
    lease = ledger.acquire("b1")
    assert lease.epoch == 2
    ledger.release(lease)


def test_a_stale_applier_cannot_write(ledger: Ledger, parsed: ParsedChangeSet) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    stale = ledger.acquire("b1")
    # The stale holder lost its lock (e.g. the lock file was removed under it) and a new
    # applier took over; the fencing epoch is what refuses the stale writes.
    ledger.release(stale)
    with Ledger(ledger.path) as newer:
        fresh = newer.acquire("b1")
        with pytest.raises(StaleLeaseError):
            ledger.record_intent(stale, "r1", BOOKING)
        with pytest.raises(StaleLeaseError):
            ledger.record_outcome(stale, "r1", ChangeState.APPLIED, http_status=200)
        newer.record_outcome(fresh, "r1", ChangeState.FAILED, http_status=422, reason="slot")
        newer.release(fresh)
    entry = ledger.entry("b1", "r1")
    assert entry is not None
    assert (entry.state, entry.attempts, entry.reason) == (ChangeState.FAILED, 0, "slot")


def test_export_inverse_moves_applied_reschedules_back(
    ledger: Ledger, parsed: ParsedChangeSet, tmp_path: Path
) -> None:
    ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    with ledger.lease("b1") as lease:
        ledger.record_intent(lease, "r1", BOOKING)
        ledger.record_outcome(lease, "r1", ChangeState.APPLIED, http_status=200)
        ledger.record_intent(lease, "c1", {**BOOKING, "uid": "bk2"})
        ledger.record_outcome(lease, "c1", ChangeState.APPLIED, http_status=200)
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
        ledger.record_intent(lease, "r1", BOOKING)
        ledger.record_outcome(lease, "r1", ChangeState.FAILED, http_status=422)
    assert ledger.export_inverse("b1") == []
