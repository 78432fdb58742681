"""The dry run: read each booking once and say what applying the change set would do.

Imports changeset, the client and errors; writes nothing but the plan file.
"""

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from jicoo_connector.atomic import write_text_atomic
from jicoo_connector.changes._changeset import (
    Action,
    Change,
    ParsedChangeSet,
    format_instant,
    parse_instant,
)
from jicoo_connector.changes._machine import (
    PLAN_OK_VERDICTS,
    Answer,
    Planned,
    Precondition,
    Verdict,
    advance,
    begin,
    verdict_of,
)
from jicoo_connector.client import AsyncJicooClient
from jicoo_connector.errors import APIStatusError, NotFoundError, PlanError
from jicoo_connector.settings import Settings

__all__ = [
    "DEFAULT_PLAN_CONCURRENCY",
    "PLAN_FORMAT",
    "Plan",
    "PlannedChange",
    "host_ids",
    "plan_changeset",
    "plan_changeset_async",
]

logger = logging.getLogger(__name__)

DEFAULT_PLAN_CONCURRENCY = 8
PLAN_FORMAT = "jicoo-changeset-plan/1"
# Slots are looked up around the target; the API caps a window at 7 days.
SLOT_WINDOW = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One row's verdict. ``change`` is None for rows the parser rejected."""

    row: int
    key: str | None
    action: str | None
    booking_uid: str | None
    target: str | None
    verdict: Verdict
    reason: str
    precondition: Precondition | None

    @property
    def refused(self) -> bool:
        """The plan does not let this row go through (a run by the plan records it unsent)."""
        return self.verdict not in PLAN_OK_VERDICTS

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["verdict"] = self.verdict.value
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    """The dry-run result for one change-set file (identified by its sha256)."""

    content_hash: str
    created_at: str
    items: list[PlannedChange]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.verdict.value] = out.get(item.verdict.value, 0) + 1
        return out

    def by_key(self) -> dict[str, PlannedChange]:
        return {item.key: item for item in self.items if item.key is not None}

    def planned(self) -> dict[str, Planned]:
        """What the plan says of each change, as a run by this plan checks it."""
        return {
            item.key: Planned(item.verdict, item.reason, item.precondition)
            for item in self.items
            if item.key is not None
        }

    def to_json(self) -> dict[str, object]:
        return {
            "format": PLAN_FORMAT,
            "content_hash": self.content_hash,
            "created_at": self.created_at,
            "counts": self.counts(),
            "items": [item.to_json() for item in self.items],
        }

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan as JSON, atomically (a reader never sees half a plan)."""
        text = json.dumps(self.to_json(), indent=2, sort_keys=True)
        return write_text_atomic(path, text, encoding="utf-8")

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> "Plan":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PlanError(f"cannot read the plan file: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("format") != PLAN_FORMAT:
            raise PlanError(f"not a {PLAN_FORMAT} file")
        try:
            items = [
                PlannedChange(
                    row=int(item["row"]),
                    key=item["key"],
                    action=item["action"],
                    booking_uid=item["booking_uid"],
                    target=item["target"],
                    verdict=Verdict(item["verdict"]),
                    reason=str(item["reason"]),
                    precondition=Precondition(**item["precondition"])
                    if item["precondition"] is not None
                    else None,
                )
                for item in raw["items"]
            ]
            return cls(
                content_hash=str(raw["content_hash"]),
                created_at=str(raw["created_at"]),
                items=items,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"malformed plan file: {exc}") from exc


def _overlaps_itself(booking: Mapping[str, object], target: dt.datetime) -> bool:
    start, end = parse_instant(booking.get("startedAt")), parse_instant(booking.get("endedAt"))
    if start is None or end is None:
        return False
    return start <= target < end or target <= start < target + (end - start)


async def _slot_free(
    client: AsyncJicooClient, change: Change, booking: Mapping[str, object]
) -> tuple[bool, str]:
    target = change.new_started_at
    event_type = booking.get("eventTypeId")
    if target is None or not isinstance(event_type, str):
        return True, "no event type to check availability against"
    if _overlaps_itself(booking, target):
        # The booking occupies (part of) its own target slot, so the slot list cannot say
        # whether it is free for this booking; the server decides on apply.
        return True, "target overlaps the booking's own slot; availability decided on apply"
    try:
        slots = await client.list_available_slots(
            event_type, start=target - SLOT_WINDOW, end=target + SLOT_WINDOW
        )
    except APIStatusError as exc:
        return False, f"availability lookup failed ({exc.status_code})"
    for slot in slots:
        if parse_instant(slot.get("startedAt")) == target:
            capacity = slot.get("remainingCapacity")
            if isinstance(capacity, int) and capacity <= 0:
                return False, "target slot has no remaining capacity"
            return True, "target slot is available"
    return False, f"{change.target} is not an available slot of event type {event_type}"


async def _plan_one(
    client: AsyncJicooClient, change: Change, gate: asyncio.Semaphore, now: dt.datetime
) -> tuple[PlannedChange, Mapping[str, object] | None]:
    async with gate:
        try:
            answer: Answer = await client.get_booking(change.booking_uid)
        except NotFoundError as exc:
            answer = exc
        # The decision a run would take after its own read: plan and apply cannot disagree.
        decided = advance(begin(change), answer)
        verdict, reason = verdict_of(decided), decided.reason or ""
        booking = answer if isinstance(answer, Mapping) else None
        if (
            verdict is Verdict.WILL_APPLY
            and change.new_started_at is not None
            and change.new_started_at <= now
        ):
            verdict, reason = Verdict.INVALID, f"{change.target} is in the past now"
        if verdict is Verdict.WILL_APPLY and change.action is Action.RESCHEDULE and booking:
            free, reason = await _slot_free(client, change, booking)
            if not free:
                verdict = Verdict.SLOT_NOT_BOOKABLE
    planned = PlannedChange(
        row=change.row,
        key=change.key,
        action=change.action.value,
        booking_uid=change.booking_uid,
        target=change.target,
        verdict=verdict,
        reason=reason,
        precondition=Precondition.of(booking) if booking is not None else None,
    )
    return planned, booking


def host_ids(booking: Mapping[str, object]) -> frozenset[str]:
    """The user ids of a booking record's ``hosts``."""
    hosts = booking.get("hosts")
    if not isinstance(hosts, list):
        return frozenset()
    return frozenset(str(h["userId"]) for h in hosts if isinstance(h, Mapping) and h.get("userId"))


def _clashing_moves(
    planned: list[tuple[PlannedChange, Mapping[str, object] | None]],
) -> list[PlannedChange]:
    """Reschedules that would move a booking onto a slot an earlier row of the same change set
    gives to another booking of one of its hosts: the API refuses the later one (422), so the
    plan says so now. Rows keep their order; the earlier row wins."""
    taken: list[tuple[frozenset[str], dt.datetime, dt.datetime, int]] = []
    out: list[PlannedChange] = []
    for item, booking in sorted(planned, key=lambda pair: pair[0].row):
        moves = item.verdict is Verdict.WILL_APPLY and item.action == Action.RESCHEDULE.value
        start = parse_instant(booking.get("startedAt")) if moves and booking else None
        end = parse_instant(booking.get("endedAt")) if moves and booking else None
        target = parse_instant(item.target)
        if booking is None or start is None or end is None or target is None:
            out.append(item)
            continue
        hosts, target_end = host_ids(booking), target + (end - start)
        clash = next(
            (
                row
                for others, s, e, row in taken
                if hosts & others and s < target_end and target < e
            ),
            None,
        )
        if clash is None:
            taken.append((hosts, target, target_end, item.row))
            out.append(item)
        else:
            out.append(
                replace(
                    item,
                    verdict=Verdict.SLOT_NOT_BOOKABLE,
                    reason=f"row {clash} moves a booking of the same host into this slot",
                )
            )
    return out


async def plan_changeset_async(
    client: AsyncJicooClient | Settings,
    parsed: ParsedChangeSet,
    *,
    concurrency: int = DEFAULT_PLAN_CONCURRENCY,
    now: dt.datetime | None = None,
) -> Plan:
    """Read the current state of every booking in ``parsed`` and classify each change, with
    ``client`` (or a client of its own for ``Settings``).

    Rejected rows appear as ``invalid``; a target at or before ``now`` (default: the system
    clock) is ``invalid`` too. Read-only: sends no POST.
    """
    if isinstance(client, Settings):
        async with AsyncJicooClient(client) as opened:
            return await plan_changeset_async(opened, parsed, concurrency=concurrency, now=now)
    moment = now or dt.datetime.now(dt.timezone.utc)
    gate = asyncio.Semaphore(max(1, concurrency))
    planned = _clashing_moves(
        list(await asyncio.gather(*(_plan_one(client, c, gate, moment) for c in parsed.changes)))
    )
    rejected = [
        PlannedChange(
            row=r.row,
            key=None,
            action=r.cells.get("action"),
            booking_uid=r.cells.get("booking_uid"),
            target=None,
            verdict=Verdict.INVALID,
            reason=f"{r.column or 'row'}: {r.reason}",
            precondition=None,
        )
        for r in parsed.rejected
    ]
    items = sorted([*planned, *rejected], key=lambda item: item.row)
    plan = Plan(content_hash=parsed.content_hash, created_at=format_instant(moment), items=items)
    logger.info("plan: %s", plan.counts())
    return plan


def plan_changeset(
    settings: Settings,
    parsed: ParsedChangeSet,
    *,
    concurrency: int = DEFAULT_PLAN_CONCURRENCY,
    now: dt.datetime | None = None,
) -> Plan:
    """Synchronous ``plan_changeset_async`` (opens its own client and event loop)."""
    return asyncio.run(plan_changeset_async(settings, parsed, concurrency=concurrency, now=now))
