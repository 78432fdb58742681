"""Apply a change set exactly once: the driver of the write-back state machine (``machine``).

For each change the driver performs the step the machine names (read, send, read back), hands
the answer back to the machine, and records its decision in the ledger before the next step:
an intent is committed before its POST leaves. Decides nothing itself. Logs uids and keys,
never bodies.
"""

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import Coroutine, Iterable

from jicoo_connector.changes._changeset import Action, ParsedChangeSet
from jicoo_connector.changes._ledger import DEFAULT_SYNCHRONOUS, Lease, Ledger, Synchronous
from jicoo_connector.changes._machine import (
    NOT_PLANNED,
    Answer,
    Course,
    State,
    Step,
    advance,
    begin,
)
from jicoo_connector.changes._plan import Plan, plan_changeset_async
from jicoo_connector.changes._report import ApplyReport, RunTally
from jicoo_connector.client import AsyncJicooClient
from jicoo_connector.errors import (
    ApplyIncompleteError,
    AuthenticationError,
    ChangeSetError,
    JicooError,
    PlanError,
)
from jicoo_connector.settings import Settings

__all__ = [
    "DEFAULT_APPLY_CONCURRENCY",
    "DEFAULT_MAX_RESENDS",
    "apply_changeset",
    "apply_changeset_async",
]

logger = logging.getLogger(__name__)

DEFAULT_APPLY_CONCURRENCY = 4
# After an in-doubt POST whose read-back shows the booking untouched, send once more per run;
# a change still untouched after that stays pending and the next run reads it back and resends.
DEFAULT_MAX_RESENDS = 1


class _Driver:
    """Follows each change through the state machine: performs the step it names, hands the
    answer to the machine, records the decision. Decides nothing itself."""

    def __init__(
        self,
        client: AsyncJicooClient,
        ledger: Ledger,
        lease: Lease,
        concurrency: int,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.lease = lease
        self.gate = asyncio.Semaphore(max(1, concurrency))
        self.posts_sent = 0
        self.tally = RunTally()
        # The API answered 401 to a read: the key is wrong, so no other change is read with it.
        self.key_refused: AuthenticationError | None = None
        # What stopped the run (the ledger, say): changes not started yet are not attempted.
        self.failure: Exception | None = None

    async def follow(self, course: Course) -> None:
        async with self.gate:
            if self.failure is not None:
                return
            sent = False
            try:
                while course.next is not None:
                    sent = sent or course.next is Step.SEND
                    course = advance(course, await self._perform(course))
                    self._record(course)
            except Exception as exc:
                if self.failure is None:  # another change may have stopped the run meanwhile
                    self.failure = exc
                self.tally.unrecorded += sent
                raise
            self.tally.recorded += 1

    async def _perform(self, course: Course) -> Answer:
        uid = course.change.booking_uid
        if course.next is Step.READ and self.key_refused is not None:
            return self.key_refused
        try:
            if course.next is not Step.SEND:
                return await self.client.get_booking(uid)
            self.posts_sent += 1
            if course.change.action is Action.CANCEL:
                return await self.client.cancel_booking(uid, reason=course.change.cancel_reason)
            started, zone = course.change.new_started_at, course.zone
            if started is None or zone is None:
                raise ChangeSetError("a reschedule needs a target and a time zone")
            return await self.client.reschedule_booking(uid, started_at=started, time_zone=zone)
        except JicooError as exc:
            if isinstance(exc, AuthenticationError) and course.next is Step.READ:
                self.key_refused = exc
            return exc

    def _record(self, course: Course) -> None:
        change = course.change
        if course.state is State.APPLIED:
            self.tally.applied += 1
        self.ledger.record(
            self.lease,
            change.key,
            course.state,
            reason=course.reason,
            http_status=course.http_status,
            booking_before=course.before.raw if course.before is not None else None,
            booking_after=course.after,
        )
        if course.next is Step.READ_BACK:
            logger.warning("apply: row %d %s; reading back", change.row, course.reason)
        logger.info(
            "apply: row %d %s %s -> %s", change.row, change.action, change.key, course.state
        )


def _courses(
    parsed: ParsedChangeSet, ledger: Ledger, batch_id: str, plan: Plan | None, max_resends: int
) -> list[Course]:
    """Each change where the ledger has it; those final already have no step left."""
    entries = {entry.key: entry for entry in ledger.entries(batch_id)}
    planned = plan.planned() if plan is not None else None
    return [
        begin(
            change,
            entries[change.key].state,
            before=entries[change.key].booking_before,
            sends=entries[change.key].attempts,
            max_resends=max_resends,
            planned=planned.get(change.key, NOT_PLANNED) if planned is not None else None,
        )
        for change in parsed.changes
    ]


async def _run(
    client: AsyncJicooClient,
    parsed: ParsedChangeSet,
    *,
    plan: Plan | None,
    ledger: Ledger,
    batch_id: str,
    concurrency: int,
    max_resends: int,
) -> ApplyReport:
    ledger.open_batch(batch_id, parsed.content_hash, parsed.changes)
    with ledger.lease(batch_id) as lease:
        driver = _Driver(client, ledger, lease, concurrency)
        try:
            courses = _courses(parsed, ledger, batch_id, plan, max_resends)
            driver.tally.changes = sum(course.next is not None for course in courses)
            # Every change a crashed run left in flight is read back before any new POST leaves.
            await _all(driver.follow(c) for c in courses if c.next is Step.READ_BACK)
            await _all(driver.follow(c) for c in courses if c.next is Step.READ)
            entries = ledger.entries(batch_id)
        except Exception as exc:
            if driver.posts_sent:
                raise _stopped(driver, exc) from exc
            raise
    report = ApplyReport.of_run(
        batch_id,
        parsed,
        entries,
        posts_sent=driver.posts_sent,
        tally=driver.tally,
        key_refused=driver.key_refused is not None,
    )
    logger.info("apply: batch %s: %s, %d POSTs", batch_id, report.counts, report.posts_sent)
    return report


def _stopped(driver: _Driver, exc: Exception) -> ApplyIncompleteError:
    """The run stopped after POSTs left: what was done, and why a re-run is safe."""
    return driver.tally.incomplete(
        f"the apply stopped mid-batch ({type(exc).__name__}: {exc})",
        posts_sent=driver.posts_sent,
        rerun=(
            "Re-running the same command is safe once the cause is mended: every POST had "
            "its intent committed first, so a change in doubt is read back before anything "
            "is resent, and a recorded one is not sent again."
        ),
    )


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
    ledger: str | os.PathLike[str] | Ledger,
    batch_id: str,
    plan: Plan | None = None,
    concurrency: int = DEFAULT_APPLY_CONCURRENCY,
    dry_run: bool = False,
    synchronous: Synchronous = DEFAULT_SYNCHRONOUS,
    max_resends: int = DEFAULT_MAX_RESENDS,
    now: dt.datetime | None = None,
) -> ApplyReport:
    """Apply ``parsed`` under ``batch_id`` exactly once, recording every step in ``ledger``:
    an SQLite file, a ``postgresql://`` URL (opened with ``synchronous``, and closed), or an
    open ``Ledger`` (left open).

    A re-run of the same batch skips final changes (sends nothing for them) and reads back
    changes a crashed run left in doubt before resending anything. With ``plan``, a change
    whose booking moved since the plan is a conflict. ``dry_run`` plans (as of ``now``,
    default the system clock) and writes nothing. A run that fails after POSTs left (the
    ledger, say) raises ``ApplyIncompleteError`` with what it did.
    """
    if plan is not None and plan.content_hash != parsed.content_hash:
        raise PlanError(
            "the plan was made for another change-set file "
            f"(sha256 {plan.content_hash[:12]}…, file {parsed.content_hash[:12]}…)"
        )
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(client, Settings):
            client = await stack.enter_async_context(AsyncJicooClient(client))
        if dry_run:
            plan = plan or await plan_changeset_async(
                client, parsed, concurrency=concurrency, now=now
            )
            return ApplyReport.of_plan(batch_id, plan)
        if not isinstance(ledger, Ledger):
            ledger = stack.enter_context(Ledger(ledger, synchronous=synchronous))
        return await _run(
            client,
            parsed,
            plan=plan,
            ledger=ledger,
            batch_id=batch_id,
            concurrency=concurrency,
            max_resends=max_resends,
        )


def apply_changeset(
    settings: Settings,
    parsed: ParsedChangeSet,
    *,
    ledger: str | os.PathLike[str] | Ledger,
    batch_id: str,
    plan: Plan | None = None,
    concurrency: int = DEFAULT_APPLY_CONCURRENCY,
    dry_run: bool = False,
    synchronous: Synchronous = DEFAULT_SYNCHRONOUS,
    max_resends: int = DEFAULT_MAX_RESENDS,
    now: dt.datetime | None = None,
) -> ApplyReport:
    """Synchronous ``apply_changeset_async`` (opens its own client and event loop)."""
    return asyncio.run(
        apply_changeset_async(
            settings,
            parsed,
            ledger=ledger,
            batch_id=batch_id,
            plan=plan,
            concurrency=concurrency,
            dry_run=dry_run,
            synchronous=synchronous,
            max_resends=max_resends,
            now=now,
        )
    )
