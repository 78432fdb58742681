"""bookings: the bookings listing of consecutive days (the feed of every day table built on
bookings), split into the days the bookings start on."""

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jicoo_connector.client import AsyncJicooClient, FetchReport, Page, Prefix
from jicoo_connector.errors import ListingTooLargeError, PaginationError, ProtocolError
from jicoo_connector.extract._days import day_window
from jicoo_connector.extract.sources import (
    DayFeed,
    DaySource,
    ExtractContext,
    FeedDay,
    FeedListing,
    Fetched,
)
from jicoo_connector.pages import PageRecords
from jicoo_connector.tables import (
    DAY_COLUMN,
    UTC_MS,
    TableSpec,
    column,
    constant_array,
    parse_timestamps,
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


# Listings again after the two totals and the rows read disagreed (the data changed between).
_RELISTS = 3


async def list_booking_days(
    client: AsyncJicooClient,
    ctx: ExtractContext,
    days: Sequence[dt.date],
    max_rows: int | None,
) -> FeedListing:
    """One listing for consecutive ``days``, split into the bookings that START on each day.

    The API keeps start >= startedAt and end <= endedAt, and sorts by start. Every chunk of a
    run lists from its first day's start to the END of the run's last day plus the longest
    booking (so no booking that starts in the run is cut off by the end filter), and reads only
    the leading pages that hold its own days: the rows before the next chunk's start. How many
    there are is the difference of the two listings' totals, read from their first pages (the
    next chunk's first page is read once, for both chunks), so the pages are asked for at once
    and none past the chunk is read, only the rest of the last one. Each day keeps exactly
    [its start, its end) on the parsed start.
    """
    windows = [day_window(day, ctx.zone) for day in days]
    start, until = windows[0][0], windows[-1][1]
    decoder = PageRecords(
        BOOKINGS_SPEC, extracted_at=ctx.extracted_at, run_id=ctx.run_id, partition_value=days[0]
    )
    heads = _Heads.of(client, ctx, until)
    report = FetchReport()
    for attempt in range(_RELISTS + 1):
        (first, first_cost), (after, after_cost) = await asyncio.gather(
            heads.read(start, decoder, fresh=attempt > 0),
            heads.read(until, decoder, fresh=attempt > 0),
        )
        report.merge(first_cost)
        report.merge(after_cost)
        rows = first.total_count - after.total_count
        if max_rows is not None and len(days) > 1 and rows > max_rows:
            raise ListingTooLargeError("/v1/bookings", rows, max_rows)
        listing = await client.list_bookings_pages(
            decoder,
            started_at=start,
            ended_at=heads.ended_at,
            order="startedAt",
            sort="asc",
            first=first,
            prefix=_before(until, after.total_count, client.settings.per_page),
        )
        report.merge(listing.report)
        heads.used(start)
        # CPU work: off the event loop, so other listings keep paging meanwhile.
        split = await asyncio.to_thread(
            _decoded_days, decoder, listing.pages, days, windows, ctx.max_booking_duration
        )
        held = sum(day.rows.num_rows for day in split)
        if held == listing.total_count - after.total_count:
            return FeedListing(split, report, held)
        logger.info("bookings %s..%s: the totals moved while listing; again", days[0], days[-1])
    raise PaginationError(
        f"GET /v1/bookings {days[0]}..{days[-1]}: the totals kept changing while listing",
        method="GET",
        endpoint="/v1/bookings",
    )


# The feed of bookings and of every day table built on them (booking_contacts). Its listings
# hold no rows past their last day (but for the rest of the last page): no margin.
BOOKINGS_FEED = DayFeed("bookings", list_booking_days)


async def _bookings(
    client: AsyncJicooClient, ctx: ExtractContext, days: Sequence[FeedDay]
) -> list[Fetched]:
    # The feed's rows are the table: written as listed, the day's count checked against it.
    return [Fetched(FetchReport(), day.rows.num_rows, data=day.rows) for day in days]


BOOKINGS = DaySource(BOOKINGS_SPEC, ("GET /v1/bookings",), BOOKINGS_FEED, _bookings)

# A page as the feed holds it: the records as read (PageRecords.decode), or a batch of the
# table's schema where the page took the exact path.
Rows = pa.StructArray | pa.RecordBatch
Head = tuple[Page[Rows], FetchReport]


class _Heads:
    """The first page of the listing that starts at each chunk boundary of a run, read once:
    the chunk that ends there takes its total (what lies past its own end), the chunk that
    starts there walks on from it. The run's end is only counted (a page of one row). Each
    page's cost is handed to the first chunk that reads it, so reports count every request
    once."""

    def __init__(self, client: AsyncJicooClient, ended_at: dt.datetime, end: dt.datetime) -> None:
        self.ended_at = ended_at
        self._client = client
        self._end = end
        self._pages: dict[dt.datetime, asyncio.Task[Head]] = {}
        self._charged: set[asyncio.Task[Head]] = set()

    @classmethod
    def of(cls, client: AsyncJicooClient, ctx: ExtractContext, until: dt.datetime) -> "_Heads":
        """The run's heads (one set per client), or, outside a run's range, a set of its own."""
        last = ctx.day_range[1] if ctx.day_range is not None else None
        end = day_window(last, ctx.zone)[1] if last is not None else until
        if end < until:  # a chunk outside the run's range lists to its own end
            end = until
        key = f"bookings.heads.{id(client)}.{end.isoformat()}"
        heads = ctx.shared.get(key)
        if not isinstance(heads, _Heads) or heads._client is not client:
            heads = cls(client, end + ctx.max_booking_duration, end)
            ctx.shared[key] = heads
        return heads

    async def read(self, at: dt.datetime, decoder: PageRecords, *, fresh: bool) -> Head:
        """Page 1 of the listing from ``at`` (read now if ``fresh``) and what it cost this
        caller (nothing if another chunk was charged)."""
        task = self._pages.get(at)
        if task is None or fresh:
            task = asyncio.ensure_future(
                self._client.first_bookings_page(
                    decoder,
                    started_at=at,
                    ended_at=self.ended_at,
                    order="startedAt",
                    sort="asc",
                    count_only=at >= self._end,
                )
            )
            self._pages[at] = task
        # Shielded: a chunk cancelled while it waits must not cancel the other chunk's page.
        page, cost = await asyncio.shield(task)
        if task in self._charged:
            return page, FetchReport()
        self._charged.add(task)
        return page, cost

    def used(self, at: dt.datetime) -> None:
        """The chunk starting at ``at`` has walked on from its first page: drop it."""
        task = self._pages.pop(at, None)
        if task is not None:
            self._charged.discard(task)


def _before(until: dt.datetime, after: int, per_page: int) -> Prefix[Rows]:
    """The leading pages of a listing that hold its rows starting before ``until``, knowing
    ``after`` rows of it start at or after ``until``: up to the page of the first of those."""
    bound = constant_array(until, UTC_MS, 1)[0].value

    def pages(first: Page[Rows]) -> int:
        return -(-(first.total_count - after + 1) // per_page)

    def reached(rows: Rows) -> bool:
        # Sorted by start: the last row is the latest (_split_days checks the order).
        if len(rows) == 0:
            return True
        if isinstance(rows, pa.RecordBatch):
            return bool(rows.column("started_at")[-1].value >= bound)
        try:
            last = parse_timestamps(rows.field("startedAt").slice(len(rows) - 1))[0].value
        except pa.ArrowException:
            return True  # converting the pages names the bad value
        return bool(last >= bound)

    return Prefix(pages, reached)


def _decoded_days(
    decoder: PageRecords,
    pages: Sequence[Rows],
    days: Sequence[dt.date],
    windows: Sequence[tuple[dt.datetime, dt.datetime]],
    max_booking_duration: dt.timedelta,
) -> list[FeedDay]:
    """The listing's pages converted to the table's schema at once, split into days."""
    return _split_days(decoder.batches(pages), days, windows, max_booking_duration)


def _split_days(
    pages: Sequence[pa.RecordBatch],
    days: Sequence[dt.date],
    windows: Sequence[tuple[dt.datetime, dt.datetime]],
    max_booking_duration: dt.timedelta,
) -> list[FeedDay]:
    """The rows of ``pages`` (sorted by start) that start on each day: zero-copy slices."""
    schema = BOOKINGS_SPEC.schema
    table = pa.Table.from_batches([page for page in pages if page.num_rows], schema)
    started = table.column("started_at")
    if table.num_rows > 1 and not pc.all(pc.less_equal(started[:-1], started[1:])).as_py():
        raise ProtocolError(
            "GET /v1/bookings: bookings are not sorted by startedAt as asked (order=startedAt, "
            "sort=asc); a listing read in part would miss rows",
            method="GET",
            endpoint="/v1/bookings",
        )
    # Where each day starts and the last one ends: how many rows start before each bound.
    bounds = [windows[0][0], *(end for _, end in windows)]
    cuts = [_count_before(started, bound) for bound in bounds]
    _warn_if_margin_is_tight(
        table.slice(cuts[0], cuts[-1] - cuts[0]), max_booking_duration, days[0]
    )
    day_index = schema.get_field_index(DAY_COLUMN)
    day_field = schema.field(day_index)
    out: list[FeedDay] = []
    for day, low, high in zip(days, cuts, cuts[1:], strict=False):
        rows = table.slice(low, high - low)
        # Pages may have been decoded for another chunk: every day gets its own day column.
        day_column = constant_array(day, pa.date32(), rows.num_rows)
        out.append(FeedDay(day, rows.set_column(day_index, day_field, day_column)))
    return out


def _count_before(started: "pa.ChunkedArray[Any]", bound: dt.datetime) -> int:
    value = constant_array(bound, UTC_MS, 1)[0]
    return int(pc.sum(pc.less(started, value).cast(pa.int64())).as_py() or 0)


def _warn_if_margin_is_tight(
    table: pa.Table, max_booking_duration: dt.timedelta, first_day: dt.date
) -> None:
    if table.num_rows == 0:
        return
    # Arrow has no min/max kernel for durations; compare their millisecond counts.
    lasted = pc.subtract(table.column("ended_at"), table.column("started_at")).cast(pa.int64())
    longest_ms: object = pc.max(lasted).as_py()
    if not isinstance(longest_ms, int):
        return  # every end is null
    longest = dt.timedelta(milliseconds=longest_ms)
    if longest * 2 > max_booking_duration:
        logger.warning(
            "a booking lasts %s, more than half the end-filter margin %s: longer bookings "
            "starting on or after %s could be missed; raise max_booking_duration",
            longest,
            max_booking_duration,
            first_day,
        )
