"""available_slots: the bookable slots of each enabled event type over the horizon (one call
per event type)."""

import datetime as dt
import time
from collections.abc import Iterable, Iterator, Mapping

import pyarrow as pa

from jicoo_connector.client import AsyncJicooClient, FetchReport
from jicoo_connector.extract._days import day_window
from jicoo_connector.extract._fanout import bounded, merged, wall_clocked
from jicoo_connector.extract.sources import ExtractContext, Fetched, SnapshotSource
from jicoo_connector.tables import UTC_MS, TableSpec, column

# The synthetic source key of the event type a slot belongs to.
_EVENT_TYPE_UID = "_eventTypeUid"


def slot_rows(
    event_type_uid: str, slots: Iterable[Mapping[str, object]]
) -> Iterator[Mapping[str, object]]:
    """Attach the event type uid to each ``{startedAt, remainingCapacity}`` slot."""
    for slot in slots:
        yield {**slot, _EVENT_TYPE_UID: event_type_uid}


AVAILABLE_SLOTS_SPEC = TableSpec(
    "available_slots",
    (
        column(
            "event_type_uid",
            _EVENT_TYPE_UID,
            pa.string(),
            nullable=False,
            doc="The event type the slot can be booked for.",
        ),
        column("started_at", "startedAt", UTC_MS, nullable=False, doc="The slot's start (UTC)."),
        column(
            "remaining_capacity",
            "remainingCapacity",
            pa.int32(),
            doc="How many more guests the slot takes.",
        ),
    ),
    ("event_type_uid", "started_at"),
    "snapshot",
    description="The bookable slots of every enabled event type from the snapshot's day to "
    "JICOO_SLOT_HORIZON_DAYS ahead, a snapshot per day.",
)


async def _fetch_slots(client: AsyncJicooClient, ctx: ExtractContext) -> Fetched:
    event_types = await client.list_event_types()
    start, _ = day_window(ctx.snapshot_date, ctx.zone)
    end, _ = day_window(ctx.snapshot_date + dt.timedelta(days=ctx.horizon_days), ctx.zone)
    # A disabled event type takes no bookings, so it has no slots to ask for.
    uids = [str(et["uid"]) for et in event_types.records if et.get("status") != "disable"]
    started = time.monotonic()
    calls = FetchReport()

    async def slots_of(uid: str) -> list[Mapping[str, object]]:
        slots: list[Mapping[str, object]] = list(
            await client.list_available_slots(uid, start, end, report=calls)
        )
        return list(slot_rows(uid, slots))

    per_type = await bounded(ctx.fanout)(slots_of, uids)
    rows = [row for rows_of_one in per_type for row in rows_of_one]
    return Fetched(merged(event_types.report, wall_clocked(calls, started)), rows=rows)


AVAILABLE_SLOTS = SnapshotSource(
    AVAILABLE_SLOTS_SPEC,
    ("GET /v1/event_types", "GET /v1/event_types/{uid}/available_schedules"),
    _fetch_slots,
)
