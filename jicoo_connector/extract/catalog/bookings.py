"""bookings: the bookings listing of consecutive days (the feed of every day table built on
bookings), split into the days the bookings start on."""

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from jicoo_connector.client import AsyncJicooClient, FetchReport
from jicoo_connector.extract._days import day_window
from jicoo_connector.extract.sources import (
    DayFeed,
    DaySource,
    ExtractContext,
    FeedDay,
    FeedListing,
    Fetched,
)
from jicoo_connector.pages import PageBatches
from jicoo_connector.tables import (
    DAY_COLUMN,
    UTC_MS,
    TableSpec,
    column,
    constant_array,
    struct_list_column,
)

logger = logging.getLogger(__name__)

_HOST: list[tuple[str, str, pa.DataType]] = [
    ("user_id", "userId", pa.string()),
    ("role", "role", pa.string()),
]

BOOKINGS_SPEC = TableSpec(
    "bookings",
    (
        column("uid", "uid", pa.string(), nullable=False, doc="The booking's id (API uid)."),
        column(
            "event_type_id",
            "eventTypeId",
            pa.string(),
            doc="The event type the booking was made for.",
        ),
        column("name", "name", pa.string(), doc="The booking's title."),
        column(
            "description", "description", pa.string(), doc="The booking's free-text description."
        ),
        column("status", "status", pa.string(), doc="open, request or cancel."),
        column(
            "started_at",
            "startedAt",
            UTC_MS,
            nullable=False,
            doc="Start (UTC); the partition day is this instant's calendar day in JICOO_TIMEZONE.",
        ),
        column("ended_at", "endedAt", UTC_MS, doc="End (UTC)."),
        column("location_id", "locationId", pa.string(), doc="The meeting location's id."),
        column("url", "url", pa.string(), doc="The online meeting URL, if any."),
        column(
            "phone_number",
            "phoneNumber",
            pa.string(),
            doc="The phone number of a phone meeting, if any.",
        ),
        column(
            "address", "address", pa.string(), doc="The address of an in-person meeting, if any."
        ),
        column(
            "custom_location", "customLocation", pa.string(), doc="A location typed by the host."
        ),
        column(
            "access",
            "access",
            pa.string(),
            doc="How the location is reached (the API's access field).",
        ),
        column("time_zone", "timeZone", pa.string(), doc="The IANA zone the booking was made in."),
        column("priority", "priority", pa.string(), doc="The booking's priority."),
        column(
            "cancel_reason",
            "cancelReason",
            pa.string(),
            doc="Why it was cancelled (cancelled bookings).",
        ),
        column("cancelled_at", "cancelledAt", UTC_MS, doc="When it was cancelled (UTC)."),
        column("cancelled_by", "cancelledBy", pa.string(), doc="Who cancelled it."),
        column("capacity", "capacity", pa.int32(), doc="How many guests the slot takes."),
        struct_list_column("hosts", "hosts", _HOST, doc="The hosts: user_id and role of each."),
        column("created_at", "createdAt", UTC_MS, doc="When the booking was made (UTC)."),
        column(
            "updated_at",
            "updatedAt",
            UTC_MS,
            doc="When the booking last changed (UTC); a change re-reads its contacts.",
        ),
    ),
    ("uid",),
    "day",
    checks=("ended_after_started", "rows_match_total"),
    description="Jicoo bookings, one partition per calendar day (the day each starts on).",
)


async def list_booking_days(
    client: AsyncJicooClient,
    ctx: ExtractContext,
    days: Sequence[dt.date],
    max_rows: int | None,
) -> FeedListing:
    """One listing for consecutive ``days``, split into the bookings that START on each day.

    Query: startedAt = first day's start, endedAt = last day's end + the longest booking. The
    API keeps start >= startedAt and end <= endedAt, so every booking starting in the window
    and ending within the margin comes back, with some that start after the window; each day
    keeps exactly [its start, its end) on the parsed start. Pages become Arrow batches as they
    arrive, so a listing in flight holds no Python object per booking. The listing's totals
    are checked, so each day's row count is also what the API says the day holds.
    """
    windows = [day_window(day, ctx.zone) for day in days]
    decoder = _StartedWithin(
        PageBatches(
            BOOKINGS_SPEC,
            extracted_at=ctx.extracted_at,
            run_id=ctx.run_id,
            partition_value=days[0],
        ),
        windows[0][0],
        windows[-1][1],
    )
    listing = await client.list_bookings_pages(
        decoder,
        started_at=windows[0][0],
        ended_at=windows[-1][1] + ctx.max_booking_duration,
        order="startedAt",
        sort="asc",
        max_rows=max_rows,
    )
    # Filtering is CPU work: off the event loop, so other listings keep paging meanwhile.
    split = await asyncio.to_thread(
        _split_days, listing.pages, days, windows, ctx.max_booking_duration
    )
    return FeedListing(split, listing.report, listing.total_count)


def _max_booking_duration(ctx: ExtractContext) -> dt.timedelta:
    return ctx.max_booking_duration


# The feed of bookings and of every day table built on them (booking_contacts).
BOOKINGS_FEED = DayFeed("bookings", list_booking_days, margin=_max_booking_duration)


async def _bookings(
    client: AsyncJicooClient, ctx: ExtractContext, days: Sequence[FeedDay]
) -> list[Fetched]:
    # The feed's rows are the table: written as listed, the day's count checked against it.
    return [Fetched(FetchReport(), day.rows.num_rows, data=day.rows) for day in days]


BOOKINGS = DaySource(BOOKINGS_SPEC, ("GET /v1/bookings",), BOOKINGS_FEED, _bookings)


class _StartedWithin:
    """A PageDecoder keeping only the bookings that start in ``[start, end)``: the end-filter
    margin brings rows of the following days, which need not be held while the listing runs
    (the client still checks every row's key)."""

    def __init__(self, pages: PageBatches, start: dt.datetime, end: dt.datetime) -> None:
        self._pages = pages
        self._start = start
        self._end = end

    def decode(self, raw: bytes) -> tuple[dict[str, object], pa.RecordBatch, list[object]] | None:
        decoded = self._pages.decode(raw)
        if decoded is None:
            return None
        envelope, batch, keys = decoded
        return envelope, self._within(batch), keys

    def from_records(self, records: list[dict[str, object]]) -> pa.RecordBatch:
        return self._within(self._pages.from_records(records))

    def _within(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return _starting_in(batch, self._start, self._end)


def _starting_in(batch: pa.RecordBatch, start: dt.datetime, end: dt.datetime) -> pa.RecordBatch:
    """The bookings of ``batch`` that start in ``[start, end)``; ``batch`` itself, uncopied,
    when that is all of them (pages come sorted by start, so most lie within one day)."""
    started = batch.column("started_at")
    lower, upper = (constant_array(bound, UTC_MS, 1)[0] for bound in (start, end))
    keep = pc.and_(pc.greater_equal(started, lower), pc.less(started, upper))
    return batch if keep.true_count == batch.num_rows else batch.filter(keep)


def _split_days(
    pages: Sequence[pa.RecordBatch],
    days: Sequence[dt.date],
    windows: Sequence[tuple[dt.datetime, dt.datetime]],
    max_booking_duration: dt.timedelta,
) -> list[FeedDay]:
    schema = BOOKINGS_SPEC.schema
    _warn_if_margin_is_tight(pages, max_booking_duration, days[0])
    day_index = schema.get_field_index(DAY_COLUMN)
    day_field = schema.field(day_index)
    out: list[FeedDay] = []
    for day, (start, end) in zip(days, windows, strict=True):
        parts: list[pa.RecordBatch] = []
        for page in pages:
            part = _starting_in(page, start, end)
            if part.num_rows == 0:
                continue
            if day != days[0]:
                part = part.set_column(
                    day_index, day_field, constant_array(day, pa.date32(), part.num_rows)
                )
            parts.append(part)
        # Zero-copy pieces of the listing's pages; combined only when written.
        out.append(FeedDay(day, pa.Table.from_batches(parts, schema)))
    return out


def _warn_if_margin_is_tight(
    pages: Sequence[pa.RecordBatch], max_booking_duration: dt.timedelta, first_day: dt.date
) -> None:
    # Arrow has no min/max kernel for durations; compare their millisecond counts.
    longest_of_pages: list[object] = [
        pc.max(
            pc.subtract(page.column("ended_at"), page.column("started_at")).cast(pa.int64())
        ).as_py()
        for page in pages
        if page.num_rows
    ]
    longest_ms = max((ms for ms in longest_of_pages if isinstance(ms, int)), default=None)
    if longest_ms is None:
        return  # no rows, or every end is null
    longest = dt.timedelta(milliseconds=longest_ms)
    if longest * 2 > max_booking_duration:
        logger.warning(
            "a booking lasts %s, more than half the end-filter margin %s: longer bookings "
            "starting on or after %s could be missed; raise max_booking_duration",
            longest,
            max_booking_duration,
            first_day,
        )
