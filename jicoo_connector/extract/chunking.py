"""One bookings listing for consecutive days, decoded page by page to Arrow and split into days."""

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from jicoo_connector.client import (
    AsyncJicooClient,
    PagedListing,
)
from jicoo_connector.extract.days import day_window
from jicoo_connector.extract.results import _empty_batch, _slices
from jicoo_connector.tables import (
    DAY_COLUMN,
    TABLES,
    UTC_MS,
    PageBatches,
    constant_array,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _DayBookings:
    """The bookings that START on ``day`` (its ``day`` column set), from a listing whose
    totals were checked, so its row count is also what the API says the day holds."""

    day: dt.date
    # Zero-copy pieces of the listing's pages; combined only when written (Parquet row groups
    # of one page each would be tiny).
    parts: list[pa.RecordBatch]

    @property
    def num_rows(self) -> int:
        return sum(part.num_rows for part in self.parts)

    def batch(self) -> pa.RecordBatch:
        if not self.parts:
            return _empty_batch(TABLES["bookings"].schema)
        # concat_batches is pyarrow >= 19; the stubs lag behind.
        return pa.concat_batches(self.parts)  # type: ignore[attr-defined,no-any-return]

    def slices(self) -> Iterator[pa.RecordBatch]:
        """The day as batches of at most BATCH_ROWS rows, built as the writer asks for them."""
        yield from _slices(self.batch())


async def _bookings_of_days(
    client: AsyncJicooClient,
    days: Sequence[dt.date],
    *,
    zone: ZoneInfo,
    max_booking_duration: dt.timedelta,
    extracted_at: dt.datetime,
    run_id: str | None,
    max_rows: int | None = None,
) -> tuple[list[_DayBookings], PagedListing[pa.RecordBatch]]:
    """One listing for consecutive ``days``, split into the bookings that START on each day.

    Query: startedAt = first day's start, endedAt = last day's end + the longest booking. The
    API keeps start >= startedAt and end <= endedAt, so every booking starting in the window
    and ending within the margin comes back, with some that start after the window; each day
    keeps exactly [its start, its end) on the parsed start. Pages become Arrow batches as they
    arrive, so a listing in flight holds no Python object per booking.
    """
    windows = [day_window(day, zone) for day in days]
    decoder = _StartedWithin(
        PageBatches("bookings", extracted_at=extracted_at, run_id=run_id, partition_value=days[0]),
        windows[0][0],
        windows[-1][1],
    )
    listing = await client.list_bookings_pages(
        decoder,
        started_at=windows[0][0],
        ended_at=windows[-1][1] + max_booking_duration,
        order="startedAt",
        sort="asc",
        max_rows=max_rows,
    )
    # Filtering is CPU work: off the event loop, so other listings keep paging meanwhile.
    split = await asyncio.to_thread(_split_days, listing.pages, days, windows, max_booking_duration)
    return split, listing


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
) -> list[_DayBookings]:
    schema = TABLES["bookings"].schema
    _warn_if_margin_is_tight(pages, max_booking_duration, days[0])
    day_index = schema.get_field_index(DAY_COLUMN)
    day_field = schema.field(day_index)
    out: list[_DayBookings] = []
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
        out.append(_DayBookings(day, parts))
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
