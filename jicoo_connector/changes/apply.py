"""Apply a change set exactly once: ledger intent, POST, ledger outcome; reconcile by read-back.

Imports changeset, plan, ledger, the client and errors. Logs uids and keys, never bodies.
"""

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jicoo_connector.atomic import atomic_path
from jicoo_connector.changes._apply_log import APPLY_LOG
from jicoo_connector.changes.changeset import Action, Change, ParsedChangeSet
from jicoo_connector.changes.ledger import (
    DEFAULT_SYNCHRONOUS,
    ChangeState,
    Lease,
    Ledger,
    LedgerEntry,
    Synchronous,
    booking_snapshot,
)
from jicoo_connector.changes.plan import (
    Plan,
    PlanError,
    PlannedChange,
    Verdict,
    parse_instant,
    plan_changeset,
)
from jicoo_connector.changes.reconcile import (
    Decision,
    ReadBack,
    ReadFailed,
    Step,
    at_target,
    decide_after_422,
    decide_readback,
)
from jicoo_connector.client import AsyncJicooClient
from jicoo_connector.errors import (
    APIStatusError,
    AuthenticationError,
    ChangeSetError,
    JicooError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ValidationError,
)
from jicoo_connector.settings import Settings

__all__ = [
    "APPLY_LOG",
    "DEFAULT_APPLY_CONCURRENCY",
    "DEFAULT_MAX_RESENDS",
    "ApplyReport",
    "ApplyRow",
    "PointHook",
    "apply_changeset",
    "apply_changeset_async",
]

logger = logging.getLogger(__name__)

DEFAULT_APPLY_CONCURRENCY = 4
# After an in-doubt POST whose read-back shows the booking untouched, send once more per run;
# a change still untouched after that stays pending and the next run reads it back and resends.
DEFAULT_MAX_RESENDS = 1
REJECTED_STATE = "rejected"

# Called with "after_intent", "after_post" or "after_outcome" each time a change passes there
# (the crash tests kill the process at a chosen one); the library itself passes nothing.
PointHook = Callable[[str], None]


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


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _stamp(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


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

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = dict(sorted(Counter(row.state for row in self.rows).items()))

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
            lines.append("  the API refused the key (HTTP 401/403): check JICOO_API_KEY")
        attention = {
            ChangeState.FAILED.value,
            ChangeState.CONFLICT.value,
            ChangeState.IN_DOUBT.value,
            ChangeState.PENDING.value,
            REJECTED_STATE,
            Verdict.CONFLICT.value,
            Verdict.SLOT_NOT_BOOKABLE.value,
            Verdict.INVALID.value,
        }
        for row in self.rows:
            if row.state in attention:
                lines.append(
                    f"  row {row.row}: {row.state} {row.action or '?'} "
                    f"{row.booking_uid or '?'}: {row.reason or ''}".rstrip()
                )
        return "\n".join(lines)


class _Applier:
    def __init__(
        self,
        client: AsyncJicooClient,
        ledger: Ledger,
        lease: Lease,
        plan: Plan | None,
        concurrency: int,
        max_resends: int,
        on_point: PointHook | None,
    ) -> None:
        self.client = client
        self.on_point = on_point
        self.ledger = ledger
        self.lease = lease
        self.planned: dict[str, PlannedChange] = plan.by_key() if plan is not None else {}
        self.use_plan = plan is not None
        self.gate = asyncio.Semaphore(max(1, concurrency))
        self.max_resends = max_resends
        self.posts_sent = 0
        self.key_refused = False

    def _outcome(
        self,
        change: Change,
        state: ChangeState,
        *,
        http_status: int | None = None,
        reason: str | None = None,
        before: Mapping[str, object] | None = None,
        after: Mapping[str, object] | None = None,
    ) -> None:
        self.ledger.record_outcome(
            self.lease,
            change.key,
            state,
            http_status=http_status,
            reason=reason,
            booking_before=before,
            booking_after=after,
        )
        logger.info("apply: row %d %s %s -> %s", change.row, change.action, change.key, state)
        self._point("after_outcome")

    def _point(self, name: str) -> None:
        if self.on_point is not None:
            self.on_point(name)

    async def _read(self, uid: str) -> Mapping[str, object] | None:
        try:
            return await self.client.get_booking(uid)
        except NotFoundError:
            return None

    async def _post(self, change: Change, before: Mapping[str, object]) -> Mapping[str, object]:
        self.posts_sent += 1
        if change.action is Action.CANCEL:
            return await self.client.cancel_booking(change.booking_uid, reason=change.cancel_reason)
        # A row without time_zone gave an offset; the booking keeps the zone it has.
        started, zone = change.new_started_at, change.time_zone or before.get("timeZone")
        if started is None or not isinstance(zone, str):
            raise ChangeSetError("a reschedule needs new_started_at and time_zone", row=change.row)
        return await self.client.reschedule_booking(
            change.booking_uid, started_at=started, time_zone=zone
        )

    # -- a change that has not been sent yet -------------------------------------------------

    async def apply(self, change: Change) -> None:
        async with self.gate:
            if self.key_refused:
                self._outcome(change, ChangeState.PENDING, reason="not sent: the key was refused")
                return
            try:
                booking = await self._read(change.booking_uid)
            except JicooError as exc:
                # A refused key refuses every row alike: do not ask again for each one.
                if isinstance(exc, AuthenticationError):
                    self.key_refused = True
                # Nothing was sent; the change stays pending for the next run.
                self._outcome(change, ChangeState.PENDING, reason=f"not sent: read failed: {exc}")
                return
            if booking is None:
                self._outcome(
                    change, ChangeState.CONFLICT, http_status=404, reason="booking not found"
                )
                return
            if self.use_plan and not self._plan_allows(change, booking):
                return
            if at_target(change, booking):
                what = (
                    "already cancelled" if change.action is Action.CANCEL else "already at target"
                )
                self._outcome(
                    change, ChangeState.ALREADY_APPLIED, reason=what, before=booking, after=booking
                )
                return
            if change.action is Action.RESCHEDULE and booking.get("status") == "cancel":
                self._outcome(
                    change, ChangeState.CONFLICT, reason="booking was cancelled", before=booking
                )
                return
            sends = self.ledger.record_intent(self.lease, change.key, booking_snapshot(booking))
            await self._deliver(change, booking, sends=sends, in_doubt=False)

    def _plan_allows(self, change: Change, booking: Mapping[str, object]) -> bool:
        item = self.planned.get(change.key)
        if item is None:
            self._outcome(change, ChangeState.CONFLICT, reason="change is not in the plan")
            return False
        if item.verdict in (Verdict.CONFLICT, Verdict.INVALID, Verdict.SLOT_NOT_BOOKABLE):
            state = ChangeState.CONFLICT if item.verdict is Verdict.CONFLICT else ChangeState.FAILED
            self._outcome(
                change, state, reason=f"plan: {item.verdict}: {item.reason}", before=booking
            )
            return False
        if item.precondition is not None and not item.precondition.holds_for(booking):
            self._outcome(
                change,
                ChangeState.CONFLICT,
                reason="booking changed since the plan "
                f"(updatedAt {item.precondition.updated_at} -> {booking.get('updatedAt')})",
                before=booking,
            )
            return False
        return True

    async def _deliver(
        self, change: Change, before: Mapping[str, object], *, sends: int, in_doubt: bool
    ) -> None:
        """Send until an outcome is recorded. ``in_doubt``: a POST may already have left (an
        earlier run's intent), so the first step is a read-back, not a send."""
        resends_left, resend = self.max_resends, False
        while True:
            if in_doubt:
                now = await self._read_back(change)
                decision = decide_readback(
                    change, before, now, sends=sends, resends_left=resends_left
                )
                if decision.step is not Step.RESEND:
                    # The booking as read back is kept where it explains the outcome.
                    shown = decision.step in (Step.APPLIED, Step.CONFLICT)
                    self._decided(
                        change,
                        decision,
                        before=before if decision.step is Step.APPLIED else None,
                        after=now if shown and isinstance(now, Mapping) else None,
                    )
                    return
                sends = self.ledger.record_intent(self.lease, change.key, before)
                resends_left, resend = resends_left - 1, True
            in_doubt = await self._send(change, before, resend=resend)
            if not in_doubt:
                return

    async def _send(self, change: Change, before: Mapping[str, object], *, resend: bool) -> bool:
        """POST once and record the outcome; True when the POST may have applied and no
        outcome was recorded (the caller reads back)."""
        self._point("after_intent")
        try:
            after = await self._post(change, before)
        except ValidationError as exc:
            await self._after_422(change, exc, resend=resend)
            return False
        except NotFoundError:
            self._outcome(change, ChangeState.CONFLICT, http_status=404, reason="booking not found")
            return False
        except (RateLimitedError, AuthenticationError, PermissionDeniedError) as exc:
            # The server refused before acting; retry on a later run.
            self._outcome(
                change,
                ChangeState.PENDING,
                http_status=exc.status_code,
                reason=f"not sent: {type(exc).__name__}",
            )
            return False
        except APIStatusError as exc:
            if exc.status_code < 500:
                self._outcome(
                    change,
                    ChangeState.FAILED,
                    http_status=exc.status_code,
                    reason=exc.server_message or type(exc).__name__,
                )
                return False
            logger.warning("apply: row %d POST got %d; reading back", change.row, exc.status_code)
            return True
        except JicooError as exc:
            # InDoubtError, a transport failure or a broken answer: the POST may have applied.
            logger.warning(
                "apply: row %d POST in doubt (%s); reading back", change.row, type(exc).__name__
            )
            return True
        self._point("after_post")
        self._outcome(change, ChangeState.APPLIED, http_status=200, before=before, after=after)
        return False

    async def _after_422(self, change: Change, exc: ValidationError, *, resend: bool) -> None:
        # A cancel of a cancelled booking is 422, and a resend may meet its own earlier
        # effect: only a read-back tells success from failure.
        readable = change.action is Action.CANCEL or resend
        now = await self._read_back(change) if readable else None
        decision = decide_after_422(
            change, now, resend=resend, message=exc.server_message or "refused by the server"
        )
        read = now if decision.step is not Step.FAILED and isinstance(now, Mapping) else None
        self._decided(change, decision, after=read)

    async def _read_back(self, change: Change) -> ReadBack:
        try:
            return await self._read(change.booking_uid)
        except JicooError as exc:
            return ReadFailed(type(exc).__name__)

    def _decided(
        self,
        change: Change,
        decision: Decision,
        *,
        before: Mapping[str, object] | None = None,
        after: Mapping[str, object] | None = None,
    ) -> None:
        self._outcome(
            change,
            ChangeState(decision.step.value),
            http_status=decision.http_status,
            reason=decision.reason,
            before=before,
            after=after,
        )

    async def resume(self, change: Change, entry: LedgerEntry) -> None:
        """A change a previous run left as intent or in_doubt: read back before any resend."""
        async with self.gate:
            if entry.booking_before is None:
                self._outcome(change, ChangeState.PENDING, reason="intent without a snapshot")
                return
            logger.info(
                "apply: row %d left %s by an earlier run; reading back", change.row, entry.state
            )
            await self._deliver(change, entry.booking_before, sends=entry.attempts, in_doubt=True)


def _plan_rows(batch_id: str, plan: Plan) -> list[ApplyRow]:
    return [
        ApplyRow(
            batch_id=batch_id,
            row=item.row,
            key=item.key,
            action=item.action,
            booking_uid=item.booking_uid,
            before_started_at=parse_instant(item.precondition.started_at)
            if item.precondition
            else None,
            before_status=item.precondition.status if item.precondition else None,
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
        for item in plan.items
    ]


async def _run(
    client: AsyncJicooClient,
    parsed: ParsedChangeSet,
    *,
    plan: Plan | None,
    ledger_location: str | os.PathLike[str],
    batch_id: str,
    concurrency: int,
    dry_run: bool,
    synchronous: Synchronous,
    max_resends: int,
    now: dt.datetime | None,
    on_point: PointHook | None,
) -> ApplyReport:
    if plan is not None and plan.content_hash != parsed.content_hash:
        raise PlanError(
            "the plan was made for another change-set file "
            f"(sha256 {plan.content_hash[:12]}…, file {parsed.content_hash[:12]}…)"
        )
    if dry_run:
        plan = plan or await plan_changeset(client, parsed, concurrency=concurrency, now=now)
        return ApplyReport(batch_id=batch_id, dry_run=True, rows=_plan_rows(batch_id, plan))
    with Ledger(ledger_location, synchronous=synchronous) as ledger:
        ledger.open_batch(batch_id, parsed.content_hash, parsed.changes)
        with ledger.lease(batch_id) as lease:
            applier = _Applier(client, ledger, lease, plan, concurrency, max_resends, on_point)
            entries = {entry.key: entry for entry in ledger.entries(batch_id)}
            left = [c for c in parsed.changes if entries[c.key].state in _LEFT_OVER]
            # Every leftover is read back before any new POST of this run leaves.
            await _all(applier.resume(c, entries[c.key]) for c in left)
            pending = [c for c in parsed.changes if entries[c.key].state is ChangeState.PENDING]
            await _all(applier.apply(c) for c in pending)
            done = ledger.entries(batch_id)
    rows = [ApplyRow.of_entry(entry) for entry in done]
    rows.extend(
        ApplyRow(
            batch_id=batch_id,
            row=r.row,
            key=None,
            action=r.cells.get("action"),
            booking_uid=r.cells.get("booking_uid"),
            before_started_at=None,
            before_status=None,
            target_started_at=None,
            after_started_at=None,
            after_status=None,
            state=REJECTED_STATE,
            http_status=None,
            reason=f"{r.column or 'row'}: {r.reason}",
            attempts=0,
            started_at=None,
            finished_at=None,
        )
        for r in parsed.rejected
    )
    rows.sort(key=lambda row: row.row)
    report = ApplyReport(
        batch_id=batch_id,
        dry_run=False,
        rows=rows,
        posts_sent=applier.posts_sent,
        key_refused=applier.key_refused,
    )
    logger.info("apply: batch %s: %s, %d POSTs", batch_id, report.counts, report.posts_sent)
    return report


_LEFT_OVER = frozenset({ChangeState.INTENT, ChangeState.IN_DOUBT})


async def _all(jobs: Iterable[Coroutine[object, object, None]]) -> None:
    # Let every in-flight change record its outcome before an error closes the ledger;
    # whatever was interrupted stays an intent and is read back on the next run.
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def apply_changeset_async(
    client: AsyncJicooClient | Settings,
    parsed: ParsedChangeSet,
    *,
    ledger_location: str | os.PathLike[str],
    batch_id: str,
    plan: Plan | None = None,
    concurrency: int = DEFAULT_APPLY_CONCURRENCY,
    dry_run: bool = False,
    synchronous: Synchronous = DEFAULT_SYNCHRONOUS,
    max_resends: int = DEFAULT_MAX_RESENDS,
    now: dt.datetime | None = None,
    on_point: PointHook | None = None,
) -> ApplyReport:
    """Apply ``parsed`` under ``batch_id`` exactly once, recording every step in the ledger.

    A re-run of the same batch skips final changes (sends nothing for them) and reads back
    changes a crashed run left in doubt before resending anything. With ``plan``, a change
    whose booking moved since the plan is a conflict. ``dry_run`` plans (as of ``now``,
    default the system clock) and writes nothing. ``on_point`` (see ``PointHook``) is told
    when each change passes a step.
    """
    async with contextlib.AsyncExitStack() as stack:
        opened = (
            await stack.enter_async_context(AsyncJicooClient(client))
            if isinstance(client, Settings)
            else client
        )
        return await _run(
            opened,
            parsed,
            plan=plan,
            ledger_location=ledger_location,
            batch_id=batch_id,
            concurrency=concurrency,
            dry_run=dry_run,
            synchronous=synchronous,
            max_resends=max_resends,
            now=now,
            on_point=on_point,
        )


def apply_changeset(
    settings: Settings,
    parsed: ParsedChangeSet,
    *,
    ledger_location: str | os.PathLike[str],
    batch_id: str,
    plan: Plan | None = None,
    concurrency: int = DEFAULT_APPLY_CONCURRENCY,
    dry_run: bool = False,
    synchronous: Synchronous = DEFAULT_SYNCHRONOUS,
    max_resends: int = DEFAULT_MAX_RESENDS,
    now: dt.datetime | None = None,
    on_point: PointHook | None = None,
) -> ApplyReport:
    """Synchronous ``apply_changeset_async`` (opens its own client and event loop)."""
    return asyncio.run(
        apply_changeset_async(
            settings,
            parsed,
            ledger_location=ledger_location,
            batch_id=batch_id,
            plan=plan,
            concurrency=concurrency,
            dry_run=dry_run,
            synchronous=synchronous,
            max_resends=max_resends,
            now=now,
            on_point=on_point,
        )
    )
