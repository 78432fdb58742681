"""What a write-back run did: one apply-log row per change, the counts, and the run's tally.

Builds rows from the ledger's entries, a plan, and the rows the parser rejected; writes the
apply log as Parquet. Sends nothing.
"""

import datetime as dt
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jicoo_connector._compat import parse_datetime
from jicoo_connector.atomic import atomic_path
from jicoo_connector.changes._apply_log import APPLY_LOG
from jicoo_connector.changes._changeset import ParsedChangeSet, RejectedRow, parse_instant
from jicoo_connector.changes._ledger import LedgerEntry
from jicoo_connector.changes._machine import DONE_STATES, PLAN_OK_VERDICTS
from jicoo_connector.changes._plan import Plan, PlannedChange
from jicoo_connector.errors import ApplyIncompleteError

__all__ = ["REJECTED_STATE", "ApplyReport", "ApplyRow", "RunTally"]

# The apply log's word for a row the parser rejected (it never reached the ledger).
REJECTED_STATE = "rejected"
# Rows in these states need nobody: done, or planned to go through.
_FINE: frozenset[str] = frozenset({*DONE_STATES, *PLAN_OK_VERDICTS})


@dataclass(frozen=True, slots=True)
class ApplyRow:
    """One line of the apply log."""

    batch_id: str
    row: int
    key: str | None
    action: str | None
    booking_uid: str | None
    before_started_at: dt.datetime | None
    before_status: str | None
    target_started_at: dt.datetime | None
    after_started_at: dt.datetime | None
    after_status: str | None
    state: str
    http_status: int | None
    reason: str | None
    attempts: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def of_entry(cls, entry: LedgerEntry) -> "ApplyRow":
        before, after = entry.booking_before or {}, entry.booking_after or {}
        return cls(
            batch_id=entry.batch_id,
            row=entry.row,
            key=entry.key,
            action=entry.action.value,
            booking_uid=entry.booking_uid,
            before_started_at=parse_instant(before.get("startedAt")),
            before_status=_text(before.get("status")),
            target_started_at=parse_instant(entry.target_started_at),
            after_started_at=parse_instant(after.get("startedAt")),
            after_status=_text(after.get("status")),
            state=entry.state.value,
            http_status=entry.http_status,
            reason=entry.reason,
            attempts=entry.attempts,
            started_at=_stamp(entry.intent_at),
            finished_at=_stamp(entry.outcome_at),
        )

    @classmethod
    def of_planned(cls, batch_id: str, item: PlannedChange) -> "ApplyRow":
        before = item.precondition
        return cls(
            batch_id=batch_id,
            row=item.row,
            key=item.key,
            action=item.action,
            booking_uid=item.booking_uid,
            before_started_at=parse_instant(before.started_at) if before else None,
            before_status=before.status if before else None,
            target_started_at=parse_instant(item.target),
            after_started_at=None,
            after_status=None,
            state=item.verdict.value,
            http_status=None,
            reason=item.reason,
            attempts=0,
            started_at=None,
            finished_at=None,
        )

    @classmethod
    def of_rejected(cls, batch_id: str, rejected: RejectedRow) -> "ApplyRow":
        return cls(
            batch_id=batch_id,
            row=rejected.row,
            key=None,
            action=rejected.cells.get("action"),
            booking_uid=rejected.cells.get("booking_uid"),
            before_started_at=None,
            before_status=None,
            target_started_at=None,
            after_started_at=None,
            after_status=None,
            state=REJECTED_STATE,
            http_status=None,
            reason=f"{rejected.column or 'row'}: {rejected.reason}",
            attempts=0,
            started_at=None,
            finished_at=None,
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _stamp(value: str | None) -> dt.datetime | None:
    return parse_datetime(value) if value else None


@dataclass(slots=True)
class RunTally:
    """What one run did with the changes it set out to finish (those not final before it)."""

    changes: int = 0
    # Decided applied by this run: the POST was answered, or a read-back showed the target.
    applied: int = 0
    # Changes whose outcome for this run is committed in the ledger.
    recorded: int = 0
    # Sent by this run without a recorded outcome: the ledger holds their intent, so the next
    # run reads them back before anything is resent.
    unrecorded: int = 0

    @property
    def not_attempted(self) -> int:
        """Changes this run sent nothing for and recorded nothing of."""
        return self.changes - self.recorded - self.unrecorded

    def describe(self) -> str:
        return (
            f"{self.applied} of {self.changes} changes applied, {self.recorded} recorded in the "
            f"ledger, {self.unrecorded} sent but not recorded (in doubt), "
            f"{self.not_attempted} not attempted"
        )

    def incomplete(self, failure: str, *, posts_sent: int, rerun: str) -> ApplyIncompleteError:
        """The error of a run that stopped after POSTs left: ``failure`` says what failed,
        ``rerun`` why running the same command again is safe."""
        return ApplyIncompleteError(
            f"{failure}: {self.describe()}; {posts_sent} POSTs sent. {rerun}",
            applied=self.applied,
            recorded=self.recorded,
            unrecorded=self.unrecorded,
            not_attempted=self.not_attempted,
            posts_sent=posts_sent,
            rerun_safe=True,
        )


@dataclass(slots=True)
class ApplyReport:
    """What a run did: per-state counts, one row per change, and how many POSTs it sent."""

    batch_id: str
    dry_run: bool
    rows: list[ApplyRow]
    posts_sent: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    # The API answered 401 or 403 to our reads: the key is wrong; the rest were not tried.
    key_refused: bool = False
    tally: RunTally = field(default_factory=RunTally)

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = dict(sorted(Counter(row.state for row in self.rows).items()))

    @classmethod
    def of_plan(cls, batch_id: str, plan: Plan) -> "ApplyReport":
        """A dry run's report: each row as the plan has it."""
        rows = [ApplyRow.of_planned(batch_id, item) for item in plan.items]
        return cls(batch_id=batch_id, dry_run=True, rows=rows)

    @classmethod
    def of_run(
        cls,
        batch_id: str,
        parsed: ParsedChangeSet,
        entries: Sequence[LedgerEntry],
        *,
        posts_sent: int,
        tally: RunTally,
        key_refused: bool,
    ) -> "ApplyReport":
        """A run's report: every change as the ledger holds it, plus the rejected rows."""
        rows = [ApplyRow.of_entry(entry) for entry in entries]
        rows.extend(ApplyRow.of_rejected(batch_id, rejected) for rejected in parsed.rejected)
        rows.sort(key=lambda row: row.row)
        return cls(
            batch_id=batch_id,
            dry_run=False,
            rows=rows,
            posts_sent=posts_sent,
            key_refused=key_refused,
            tally=tally,
        )

    def to_rows(self) -> list[dict[str, object]]:
        return [asdict(row) for row in self.rows]

    def to_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.to_rows(), schema=APPLY_LOG.schema)

    def write_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the apply log (``APPLY_LOG``) atomically."""
        with atomic_path(path) as temp:
            pq.write_table(self.to_table(), temp)
        return Path(path)

    def summary(self) -> str:
        """A few lines for a terminal: counts, then every row that needs a human."""
        mode = "dry run" if self.dry_run else "apply"
        counts = ", ".join(f"{state} {n}" for state, n in self.counts.items()) or "nothing"
        sent = f"POSTs sent: {self.posts_sent}" if self.posts_sent else "nothing was sent"
        lines = [f"batch {self.batch_id} ({mode}): {counts}; {sent}"]
        if self.key_refused:
            lines.append("  the API refused the key (HTTP 401/403)")
        lines.extend(
            f"  row {row.row}: {row.state} {row.action or '?'} "
            f"{row.booking_uid or '?'}: {row.reason or ''}".rstrip()
            for row in self.rows
            if row.state not in _FINE
        )
        return "\n".join(lines)
