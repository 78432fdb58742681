"""The write-back ledger: durable intent/outcome per change in SQLite, one applier per batch.

Imports changeset and errors only; knows nothing of HTTP.
"""

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from jicoo_connector.changes.changeset import Action, Change
from jicoo_connector.errors import (
    BatchMismatchError,
    LedgerBusyError,
    LedgerError,
    StaleLeaseError,
)

__all__ = [
    "BOOKING_SNAPSHOT_FIELDS",
    "DEFAULT_SYNCHRONOUS",
    "FINAL_STATES",
    "BatchMismatchError",
    "ChangeState",
    "Lease",
    "Ledger",
    "LedgerBusyError",
    "LedgerEntry",
    "LedgerError",
    "StaleLeaseError",
    "booking_snapshot",
]

logger = logging.getLogger(__name__)

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
# FULL: a committed intent survives power loss, which is the whole point of writing it first.
DEFAULT_SYNCHRONOUS: Synchronous = "FULL"
BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 1
# What the ledger keeps of a booking: enough to reconcile and undo, no personal data
# (name, description, phone, address and meeting URL stay out).
BOOKING_SNAPSHOT_FIELDS = (
    "uid",
    "status",
    "startedAt",
    "endedAt",
    "timeZone",
    "eventTypeId",
    "updatedAt",
    "cancelReason",
    "cancelledAt",
    "cancelledBy",
    "hosts",
)


class ChangeState(StrEnum):
    PENDING = "pending"
    INTENT = "intent"
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    FAILED = "failed"
    CONFLICT = "conflict"
    IN_DOUBT = "in_doubt"


# Final states are never revisited: a re-run of the batch sends nothing for them.
FINAL_STATES = frozenset(
    {ChangeState.APPLIED, ChangeState.ALREADY_APPLIED, ChangeState.FAILED, ChangeState.CONFLICT}
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    batch_id     TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    epoch        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS changes (
    batch_id          TEXT NOT NULL REFERENCES batches(batch_id),
    key               TEXT NOT NULL,
    row               INTEGER NOT NULL,
    action            TEXT NOT NULL,
    booking_uid       TEXT NOT NULL,
    target_started_at TEXT,
    time_zone         TEXT,
    cancel_reason     TEXT,
    state             TEXT NOT NULL,
    http_status       INTEGER,
    reason            TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    booking_before    TEXT,
    booking_after     TEXT,
    intent_at         TEXT,
    outcome_at        TEXT,
    PRIMARY KEY (batch_id, key)
);
"""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def booking_snapshot(booking: Mapping[str, object] | None) -> dict[str, object] | None:
    """The part of a booking the ledger and reports keep (see ``BOOKING_SNAPSHOT_FIELDS``)."""
    if booking is None:
        return None
    return {name: booking[name] for name in BOOKING_SNAPSHOT_FIELDS if name in booking}


def _dump(booking: Mapping[str, object] | None) -> str | None:
    snapshot = booking_snapshot(booking)
    return None if snapshot is None else json.dumps(snapshot, sort_keys=True)


def _load(text: object) -> dict[str, object] | None:
    if not isinstance(text, str):
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One change as the ledger knows it."""

    batch_id: str
    key: str
    row: int
    action: Action
    booking_uid: str
    target_started_at: str | None
    time_zone: str | None
    cancel_reason: str | None
    state: ChangeState
    http_status: int | None
    reason: str | None
    attempts: int
    booking_before: dict[str, object] | None
    booking_after: dict[str, object] | None
    intent_at: str | None
    outcome_at: str | None


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this process holds a batch: the lock file descriptor and the fencing epoch."""

    batch_id: str
    epoch: int
    fd: int


class Ledger:
    """SQLite ledger at ``path`` (WAL). Use as a context manager.

    >>> with Ledger(":memory:") as ledger:  # doctest: +SKIP
    ...     ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    ...     with ledger.lease("b1") as lease:
    ...         ledger.record_intent(lease, key, booking)
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: Synchronous = DEFAULT_SYNCHRONOUS
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise LedgerError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit; every write below opens its own BEGIN IMMEDIATE transaction.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._write():
            # executescript() would COMMIT on its own; run the statements inside our transaction.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute(
                "INSERT OR IGNORE INTO meta(name, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- batches ----------------------------------------------------------------------------

    def open_batch(self, batch_id: str, content_hash: str, changes: Sequence[Change]) -> int:
        """Create the batch (or check it is the same file) and add its changes as pending.

        Returns how many changes were new. A batch id reused with another file is refused.
        """
        with self._write() as db:
            found = db.execute(
                "SELECT content_hash FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            if found is None:
                db.execute(
                    "INSERT INTO batches(batch_id, content_hash, created_at) VALUES (?, ?, ?)",
                    (batch_id, content_hash, _now()),
                )
            elif found[0] != content_hash:
                raise BatchMismatchError(
                    f"batch {batch_id!r} was started from a different change-set file "
                    f"(sha256 {found[0][:12]}…, now {content_hash[:12]}…); use a new batch id"
                )
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO changes(batch_id, key, row, action, booking_uid, "
                "target_started_at, time_zone, cancel_reason, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        batch_id,
                        c.key,
                        c.row,
                        c.action.value,
                        c.booking_uid,
                        c.target,
                        c.time_zone,
                        c.cancel_reason,
                        ChangeState.PENDING.value,
                    )
                    for c in changes
                ],
            )
            return db.total_changes - before

    def batch_hash(self, batch_id: str) -> str | None:
        found = self._db.execute(
            "SELECT content_hash FROM batches WHERE batch_id = ?", (batch_id,)
        ).fetchone()
        return None if found is None else str(found[0])

    # -- the lease --------------------------------------------------------------------------

    def lock_path(self, batch_id: str) -> Path:
        """One lock file per batch, all in ``<ledger>.locks/`` beside the ledger. They stay:
        unlinking a flock file on release lets two processes lock two different inodes."""
        digest = hashlib.sha256(batch_id.encode()).hexdigest()[:16]
        return self.path.with_name(f"{self.path.name}.locks") / f"{digest}.lock"

    def acquire(self, batch_id: str) -> Lease:
        """Take the batch: an exclusive ``flock`` (the kernel drops it if we die) and a new
        fencing epoch. Raises ``LedgerBusyError`` at once if another applier holds it."""
        lock = self.lock_path(batch_id)
        lock.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise LedgerBusyError(
                f"batch {batch_id!r} is being applied by another process"
            ) from exc
        try:
            with self._write() as db:
                cursor = db.execute(
                    "UPDATE batches SET epoch = epoch + 1 WHERE batch_id = ? RETURNING epoch",
                    (batch_id,),
                )
                found = cursor.fetchone()
                cursor.close()
            if found is None:
                raise LedgerError(f"batch {batch_id!r} is not in the ledger; open it first")
        except BaseException:
            os.close(fd)
            raise
        logger.info("ledger: batch %s acquired with epoch %d", batch_id, found[0])
        return Lease(batch_id=batch_id, epoch=int(found[0]), fd=fd)

    def release(self, lease: Lease) -> None:
        # Closing the descriptor drops the flock; the epoch stays, so late writes stay fenced.
        try:
            os.close(lease.fd)
        except OSError:
            logger.debug("ledger: lease fd already closed")

    @contextmanager
    def lease(self, batch_id: str) -> Iterator[Lease]:
        held = self.acquire(batch_id)
        try:
            yield held
        finally:
            self.release(held)

    def _check_epoch(self, db: sqlite3.Connection, lease: Lease) -> None:
        found = db.execute(
            "SELECT epoch FROM batches WHERE batch_id = ?", (lease.batch_id,)
        ).fetchone()
        if found is None or int(found[0]) != lease.epoch:
            raise StaleLeaseError(
                f"batch {lease.batch_id!r}: lease epoch {lease.epoch} is stale "
                f"(current {None if found is None else found[0]}); another applier took over"
            )

    # -- intent and outcome -----------------------------------------------------------------

    def record_intent(
        self, lease: Lease, key: str, booking_before: Mapping[str, object] | None
    ) -> int:
        """Durably note that a POST for ``key`` is about to leave; returns the attempt number."""
        with self._write() as db:
            self._check_epoch(db, lease)
            cursor = db.execute(
                "UPDATE changes SET state = ?, attempts = attempts + 1, intent_at = ?, "
                "booking_before = COALESCE(booking_before, ?) "
                "WHERE batch_id = ? AND key = ? RETURNING attempts",
                (ChangeState.INTENT.value, _now(), _dump(booking_before), lease.batch_id, key),
            )
            found = cursor.fetchone()
            cursor.close()
        if found is None:
            raise LedgerError(f"change {key!r} is not in batch {lease.batch_id!r}")
        return int(found[0])

    def record_outcome(
        self,
        lease: Lease,
        key: str,
        state: ChangeState,
        *,
        http_status: int | None = None,
        reason: str | None = None,
        booking_before: Mapping[str, object] | None = None,
        booking_after: Mapping[str, object] | None = None,
    ) -> None:
        """Write what happened to ``key``; refused with ``StaleLeaseError`` for a stale lease."""
        if state is ChangeState.INTENT:
            raise LedgerError("use record_intent to record an intent")
        with self._write() as db:
            self._check_epoch(db, lease)
            cursor = db.execute(
                "UPDATE changes SET state = ?, http_status = ?, reason = ?, outcome_at = ?, "
                "booking_before = COALESCE(booking_before, ?), "
                "booking_after = COALESCE(?, booking_after) WHERE batch_id = ? AND key = ?",
                (
                    state.value,
                    http_status,
                    reason,
                    _now(),
                    _dump(booking_before),
                    _dump(booking_after),
                    lease.batch_id,
                    key,
                ),
            )
            if cursor.rowcount != 1:
                raise LedgerError(f"change {key!r} is not in batch {lease.batch_id!r}")

    # -- reading ----------------------------------------------------------------------------

    def entries(self, batch_id: str) -> list[LedgerEntry]:
        rows = self._db.execute(
            "SELECT batch_id, key, row, action, booking_uid, target_started_at, time_zone, "
            "cancel_reason, state, http_status, reason, attempts, booking_before, "
            "booking_after, intent_at, outcome_at FROM changes WHERE batch_id = ? ORDER BY row",
            (batch_id,),
        ).fetchall()
        return [
            LedgerEntry(
                batch_id=r[0],
                key=r[1],
                row=r[2],
                action=Action(r[3]),
                booking_uid=r[4],
                target_started_at=r[5],
                time_zone=r[6],
                cancel_reason=r[7],
                state=ChangeState(r[8]),
                http_status=r[9],
                reason=r[10],
                attempts=r[11],
                booking_before=_load(r[12]),
                booking_after=_load(r[13]),
                intent_at=r[14],
                outcome_at=r[15],
            )
            for r in rows
        ]

    def entry(self, batch_id: str, key: str) -> LedgerEntry | None:
        return next((e for e in self.entries(batch_id) if e.key == key), None)

    def counts(self, batch_id: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT state, COUNT(*) FROM changes WHERE batch_id = ? GROUP BY state", (batch_id,)
        ).fetchall()
        return {str(state): int(n) for state, n in rows}

    def export_inverse(self, batch_id: str) -> list[dict[str, str]]:
        """The change set that undoes the batch's reschedules: each applied reschedule back to
        the booking's start and zone before it. Cancels cannot be undone through the API."""
        rows: list[dict[str, str]] = []
        for entry in self.entries(batch_id):
            if entry.action is not Action.RESCHEDULE:
                continue
            if entry.state not in (ChangeState.APPLIED, ChangeState.ALREADY_APPLIED):
                continue
            before = entry.booking_before or {}
            started, zone = before.get("startedAt"), before.get("timeZone")
            if not isinstance(started, str) or started == entry.target_started_at:
                continue
            undo_id = hashlib.sha256(f"{batch_id}\x1f{entry.key}".encode()).hexdigest()[:24]
            rows.append(
                {
                    "change_id": f"undo-{undo_id}",
                    "action": Action.RESCHEDULE.value,
                    "booking_uid": entry.booking_uid,
                    "new_started_at": started,
                    "time_zone": zone if isinstance(zone, str) else entry.time_zone or "UTC",
                    "cancel_reason": "",
                }
            )
        return rows
