"""The write-back ledger: each change's state, durably, and one applier per batch.

The schema, its migrations and the fencing live here, once. The states and the moves between
them are the state machine's (``machine``): ``record`` refuses every other move.
``ledger_backends`` holds what differs between the SQLite file (embedded default) and
PostgreSQL (shared by several workers): connections, transactions and the batch lock. Knows
nothing of HTTP.
"""

import datetime as dt
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from jicoo_connector.changes._changeset import Action, Change
from jicoo_connector.changes._ledger_backends import (
    Synchronous,
    Transaction,
    is_postgres_url,
    open_backend,
)
from jicoo_connector.changes._machine import DONE_STATES, State, sources
from jicoo_connector.errors import (
    BatchMismatchError,
    LedgerBusyError,
    LedgerError,
    LedgerNotFoundError,
    StaleLeaseError,
)

__all__ = [
    "BOOKING_SNAPSHOT_FIELDS",
    "DEFAULT_SYNCHRONOUS",
    "SCHEMA_VERSION",
    "Lease",
    "Ledger",
    "LedgerEntry",
    "Synchronous",
    "booking_snapshot",
    "is_postgres_url",
]

logger = logging.getLogger(__name__)

# FULL: a committed intent survives power loss, which is the whole point of writing it first.
DEFAULT_SYNCHRONOUS: Synchronous = "FULL"
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


# Versioned schema, in the dialect both backends speak: MIGRATIONS[n - 1] takes a ledger from
# version n - 1 to n, and `meta.schema_version` says which version a ledger holds. Append only.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS batches (
            batch_id     TEXT PRIMARY KEY,
            content_hash TEXT NOT NULL,
            created_at   TEXT NOT NULL,
            epoch        INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE IF NOT EXISTS changes (
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
        )""",
    ),
    # 2: who took the batch last (host and process) and when, for the busy message and status.
    (
        "ALTER TABLE batches ADD COLUMN holder TEXT",
        "ALTER TABLE batches ADD COLUMN acquired_at TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def _holder() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def _move_statement(intent: bool, sources: int) -> str:
    """The UPDATE of one change, only from one of ``sources`` states (placeholders)."""
    stamp = "attempts = attempts + 1, intent_at = ?" if intent else "outcome_at = ?"
    marks = ", ".join("?" * sources)
    # Built from constants and placeholders only, never from input.
    return (
        f"UPDATE changes SET state = ?, reason = ?, http_status = ?, {stamp}, "  # noqa: S608
        "booking_before = COALESCE(booking_before, ?), booking_after = COALESCE(?, booking_after) "
        f"WHERE batch_id = ? AND key = ? AND state IN ({marks}) RETURNING attempts"
    )


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


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
    state: State
    http_status: int | None
    reason: str | None
    attempts: int
    booking_before: dict[str, object] | None
    booking_after: dict[str, object] | None
    intent_at: str | None
    outcome_at: str | None


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this process holds a batch: the fencing epoch it took the batch with."""

    batch_id: str
    epoch: int


class Ledger:
    """The write-back ledger at ``location``: an SQLite file path (embedded default) or a
    ``postgresql://`` URL shared by every worker. Use as a context manager.

    Opening creates the ledger, or migrates it to ``SCHEMA_VERSION``. With ``read_only=True``
    it does neither (for status and undo): no ledger there is ``LedgerNotFoundError``, one of
    another schema version a ``LedgerError``, and the database refuses any write.

    >>> with Ledger("data/ledger.sqlite") as ledger:  # doctest: +SKIP
    ...     ledger.open_batch("b1", parsed.content_hash, parsed.changes)
    ...     with ledger.lease("b1") as lease:
    ...         ledger.record(lease, key, State.INTENT, booking_before=booking)
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        synchronous: Synchronous = DEFAULT_SYNCHRONOUS,
        read_only: bool = False,
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise LedgerError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous}")
        self._backend = open_backend(location, synchronous, read_only=read_only)
        self._read_only = read_only
        self._held: dict[str, Callable[[], None]] = {}
        try:
            self.schema_version = self._check_schema() if read_only else self._migrate()
        except BaseException:
            self._backend.close()
            raise

    @property
    def where(self) -> str:
        """The ledger's location, fit for a message (a URL's password is left out)."""
        return self._backend.where

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._backend.kind

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _writable(self) -> None:
        # Before any side effect (SQLite's lock file sits beside the database, outside it).
        if self._read_only:
            raise LedgerError(f"the ledger at {self.where} was opened read-only")

    def close(self) -> None:
        for unlock in self._held.values():
            unlock()
        self._held.clear()
        self._backend.close()

    def _too_new(self, version: int) -> LedgerError:
        return LedgerError(
            f"the ledger at {self.where} holds schema version {version}, newer than this "
            f"jicoo-connector knows ({SCHEMA_VERSION}); upgrade jicoo-connector"
        )

    def _check_schema(self) -> int:
        """The version of the ledger that is there, which must be ``SCHEMA_VERSION``."""
        found = (
            self._backend.read("SELECT value FROM meta WHERE name = 'schema_version'")
            if self._backend.has_table("meta")
            else []
        )
        if not found:
            raise LedgerNotFoundError(f"no ledger at {self.where}")
        version = int(found[0][0])
        if version > SCHEMA_VERSION:
            raise self._too_new(version)
        if version < SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger at {self.where} holds schema version {version}, older than this "
                f"jicoo-connector's ({SCHEMA_VERSION}); the next apply migrates it"
            )
        return version

    def _migrate(self) -> int:
        """Bring the schema to ``SCHEMA_VERSION``, one numbered step per transaction."""
        with self._backend.transaction(schema=True) as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            found = tx.execute("SELECT value FROM meta WHERE name = 'schema_version'")
            version = int(found[0][0]) if found else 0
            if version > SCHEMA_VERSION:
                raise self._too_new(version)
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO meta(name, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (str(number),),
                )
                logger.info("ledger: %s migrated to schema version %d", self.where, number)
        return SCHEMA_VERSION

    # -- batches ----------------------------------------------------------------------------

    def open_batch(self, batch_id: str, content_hash: str, changes: Sequence[Change]) -> int:
        """Create the batch (or check it is the same file) and add its changes as pending.

        Returns how many changes were new. A batch id reused with another file is refused.
        """
        self._writable()
        with self._backend.transaction() as tx:
            tx.execute(
                "INSERT INTO batches(batch_id, content_hash, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (batch_id) DO NOTHING",
                (batch_id, content_hash, _now()),
            )
            found = tx.execute("SELECT content_hash FROM batches WHERE batch_id = ?", (batch_id,))
            if found[0][0] != content_hash:
                raise BatchMismatchError(
                    f"batch {batch_id!r} was started from a different change-set file "
                    f"(sha256 {found[0][0][:12]}…, now {content_hash[:12]}…); use a new batch id"
                )
            before = self._count(tx, batch_id)
            tx.execute_many(
                "INSERT INTO changes(batch_id, key, row, action, booking_uid, "
                "target_started_at, time_zone, cancel_reason, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (batch_id, key) DO NOTHING",
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
                        State.PENDING.value,
                    )
                    for c in changes
                ],
            )
            return self._count(tx, batch_id) - before

    @staticmethod
    def _count(tx: Transaction, batch_id: str) -> int:
        return int(tx.execute("SELECT COUNT(*) FROM changes WHERE batch_id = ?", (batch_id,))[0][0])

    def batch_hash(self, batch_id: str) -> str | None:
        found = self._backend.read(
            "SELECT content_hash FROM batches WHERE batch_id = ?", (batch_id,)
        )
        return str(found[0][0]) if found else None

    def batch_holder(self, batch_id: str) -> tuple[int, str | None, str | None] | None:
        """The batch's fencing epoch, and who took it last and when (None: no such batch)."""
        found = self._backend.read(
            "SELECT epoch, holder, acquired_at FROM batches WHERE batch_id = ?", (batch_id,)
        )
        return (int(found[0][0]), found[0][1], found[0][2]) if found else None

    # -- the lease --------------------------------------------------------------------------

    def acquire(self, batch_id: str) -> Lease:
        """Take the batch: the backend's exclusive lock (it goes when the holder dies) and a new
        fencing epoch. Raises ``LedgerBusyError`` at once if another applier holds it."""
        self._writable()
        unlock = None if batch_id in self._held else self._backend.try_lock(batch_id)
        if unlock is None:
            holder = self.batch_holder(batch_id)
            by = f" ({holder[1]}, since {holder[2]})" if holder and holder[1] else ""
            raise LedgerBusyError(f"batch {batch_id!r} is being applied by another process{by}")
        try:
            with self._backend.transaction() as tx:
                found = tx.execute(
                    "UPDATE batches SET epoch = epoch + 1, holder = ?, acquired_at = ? "
                    "WHERE batch_id = ? RETURNING epoch",
                    (_holder(), _now(), batch_id),
                )
            if not found:
                raise LedgerError(f"batch {batch_id!r} is not in the ledger; open it first")
        except BaseException:
            unlock()
            raise
        self._held[batch_id] = unlock
        logger.info("ledger: batch %s acquired with epoch %d", batch_id, found[0][0])
        return Lease(batch_id=batch_id, epoch=int(found[0][0]))

    def release(self, lease: Lease) -> None:
        # The lock goes; the epoch stays, so late writes of this lease stay fenced.
        unlock = self._held.pop(lease.batch_id, None)
        if unlock is not None:
            unlock()

    @contextmanager
    def lease(self, batch_id: str) -> Iterator[Lease]:
        held = self.acquire(batch_id)
        try:
            yield held
        finally:
            self.release(held)

    def _check_epoch(self, tx: Transaction, lease: Lease) -> None:
        found = tx.execute(
            # row_lock is the backend's constant (" FOR SHARE" or ""), never input.
            "SELECT epoch FROM batches WHERE batch_id = ?" + self._backend.row_lock,  # noqa: S608
            (lease.batch_id,),
        )
        if not found or int(found[0][0]) != lease.epoch:
            raise StaleLeaseError(
                f"batch {lease.batch_id!r}: lease epoch {lease.epoch} is stale "
                f"(current {found[0][0] if found else None}); another applier took over"
            )

    # -- recording ---------------------------------------------------------------------------

    def record(
        self,
        lease: Lease,
        key: str,
        state: State,
        *,
        reason: str | None = None,
        http_status: int | None = None,
        booking_before: Mapping[str, object] | None = None,
        booking_after: Mapping[str, object] | None = None,
    ) -> int:
        """Move ``key`` to ``state``, durably; returns the POSTs counted for it (an ``intent``
        counts one, written before the POST leaves).

        Refused with ``LedgerError`` when the state machine allows no move from the change's
        state to ``state`` (a final state is never left; ``applied`` needs an intent first),
        and with ``StaleLeaseError`` for a stale lease. The first ``booking_before`` is kept;
        ``booking_after`` keeps the last one given.
        """
        intent = state is State.INTENT
        # Only from a state the machine allows: the condition is the check, in one statement.
        movable = sorted(source.value for source in sources(state))
        with self._backend.transaction() as tx:
            self._check_epoch(tx, lease)
            found = tx.execute(
                _move_statement(intent, len(movable)),
                (
                    state.value,
                    reason,
                    http_status,
                    _now(),
                    _dump(booking_before),
                    _dump(booking_after),
                    lease.batch_id,
                    key,
                    *movable,
                ),
            )
            if not found:
                raise self._refused(tx, lease.batch_id, key, state)
        return int(found[0][0])

    @staticmethod
    def _refused(tx: Transaction, batch_id: str, key: str, state: State) -> LedgerError:
        found = tx.execute(
            "SELECT state FROM changes WHERE batch_id = ? AND key = ?", (batch_id, key)
        )
        if not found:
            return LedgerError(f"change {key!r} is not in batch {batch_id!r}")
        return LedgerError(
            f"change {key!r} of batch {batch_id!r} is {found[0][0]}: the write-back never "
            f"moves it to {state} (refused)"
        )

    # -- reading ----------------------------------------------------------------------------

    def entries(self, batch_id: str) -> list[LedgerEntry]:
        rows = self._backend.read(
            "SELECT batch_id, key, row, action, booking_uid, target_started_at, time_zone, "
            "cancel_reason, state, http_status, reason, attempts, booking_before, "
            "booking_after, intent_at, outcome_at FROM changes WHERE batch_id = ? ORDER BY row",
            (batch_id,),
        )
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
                state=State(r[8]),
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
        rows = self._backend.read(
            "SELECT state, COUNT(*) FROM changes WHERE batch_id = ? GROUP BY state", (batch_id,)
        )
        return {str(state): int(n) for state, n in rows}

    def export_inverse(self, batch_id: str) -> list[dict[str, str]]:
        """The change set that undoes the batch's reschedules: each applied reschedule back to
        the booking's start and zone before it. Cancels cannot be undone through the API."""
        rows: list[dict[str, str]] = []
        for entry in self.entries(batch_id):
            if entry.action is not Action.RESCHEDULE:
                continue
            if entry.state not in DONE_STATES:
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
