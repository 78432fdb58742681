"""The table registry (which endpoints feed each table) and extract_partition(): API -> Parquet.

Imports the client, tables and storage; never dagster.
"""

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc

from jicoo_connector.client import (
    AsyncJicooClient,
    FetchReport,
    Listing,
    ListingTooLargeError,
    PagedListing,
)
from jicoo_connector.errors import (
    AuthenticationError,
    ConfigError,
    ExtractError,
    MissingPartitionError,
    NotFoundError,
    PermissionDeniedError,
    TransportError,
)
from jicoo_connector.quality import PartitionQuality, QualityRecorder
from jicoo_connector.settings import DEFAULT_TIMEZONE, Settings
from jicoo_connector.storage import ParquetStore, PartitionWriteResult
from jicoo_connector.tables import (
    DAY_COLUMN,
    TABLES,
    UTC_MS,
    PageBatches,
    constant_array,
    contact_rows,
    event_type_rows,
    slot_rows,
    to_record_batch,
)

__all__ = [
    "DEFAULT_CHUNK_DAYS",
    "DEFAULT_DAY_CONCURRENCY",
    "DEFAULT_FANOUT_CONCURRENCY",
    "DEFAULT_MAX_BOOKING_DURATION",
    "DEFAULT_ROWS_IN_FLIGHT",
    "DEFAULT_SLOT_HORIZON_DAYS",
    "DEFAULT_ZONE",
    "SOURCES",
    "ExtractResult",
    "TableSource",
    "day_window",
    "extract_contacts",
    "extract_partition",
    "extract_range",
]

logger = logging.getLogger(__name__)

DEFAULT_ZONE = DEFAULT_TIMEZONE
DEFAULT_SLOT_HORIZON_DAYS = 14
# The API's endedAt filter keeps bookings that END by it, so a booking starting late in the day
# is found only if the query's end reaches past its end. Jicoo event types last minutes to hours;
# one day of margin covers them at the cost of over-fetching about one day of bookings.
DEFAULT_MAX_BOOKING_DURATION = dt.timedelta(days=1)
# Per-booking / per-user / per-event-type calls in flight; the client's rate limiter still rules.
DEFAULT_FANOUT_CONCURRENCY = 8
# extract_range lists bookings for this many consecutive days at once and splits the rows into
# day partitions: the end-filter margin is then fetched once per chunk instead of once per day
# (a 1-day margin on 1-day listings fetched every booking twice).
DEFAULT_CHUNK_DAYS = 7
# Listings (chunks of days, or snapshot partitions) extract_range runs at once. Four keep the
# pipe full at 50 ms latency (measured: 2 and 6 are slower).
DEFAULT_DAY_CONCURRENCY = 4
# Booking rows listed but not yet written, across all chunks in flight: memory follows this, not
# the density of the data. Chunks shrink (down to one day) and fewer run at once when days are
# busy; a chunk larger than the budget still runs, alone.
DEFAULT_ROWS_IN_FLIGHT = 24_000
BATCH_ROWS = 10_000
# Arrow work (decoding pages, splitting days, writing Parquet) runs on this many threads beside
# the event loop. One already overlaps the loop on two cores; each extra thread keeps its own
# heap in Arrow's allocator (mimalloc): measured on a 500k-booking extract, peak RSS 126-127 MB
# with one worker, 136-137 MB with two, ~160 MB with asyncio's default of six.
WORKER_THREADS = 1
# Failures no other partition can escape, raised once retries are spent: the API unreachable
# (connect, reset, timeouts) or the key refused. After one, extract_range starts no new
# partition; it would only wait out the same retries again for each.
_STOPS_THE_RUN = (TransportError, AuthenticationError)
# The footer key of a contacts partition recording each booking's version (updatedAt, status)
# when its contacts were read: the next extract re-reads only the bookings that changed.
CONTACTS_STATE_KEY = "jicoo.booking_versions"
# What a booking's contacts are assumed to depend on (see the README): its listing's columns.
BOOKING_VERSION_COLUMNS = ("uid", "updated_at", "status")

_T = TypeVar("_T")
_R = TypeVar("_R")
Records = list[Mapping[str, object]]


@dataclass(frozen=True, slots=True)
class ExtractResult:
    """One partition's outcome. ``skipped_reason`` is set (and nothing written) on a 403.

    ``total_count`` is what the API's totals say the partition should hold, ``None`` where the
    endpoints report no total (contacts, slots) or rows are not records (availability rules).
    ``quality`` is what the data-quality rules need, gathered while the partition was written.
    For contacts, ``contacts_fetched`` bookings had their contacts read from the API and
    ``contacts_reused`` kept theirs from the previous extract (unchanged since).
    """

    table: str
    partition_value: dt.date
    rows: int
    path: str | None
    report: FetchReport
    total_count: int | None
    skipped_reason: str | None = None
    quality: PartitionQuality | None = None
    contacts_fetched: int = 0
    contacts_reused: int = 0


@dataclass(frozen=True, slots=True)
class _Context:
    partition_value: dt.date
    zone: ZoneInfo
    horizon_days: int
    max_booking_duration: dt.timedelta
    fanout: int
    extracted_at: dt.datetime
    run_id: str | None


@dataclass(frozen=True, slots=True)
class _Fetched:
    rows: Records
    report: FetchReport
    total_count: int | None
    # Already-built batches (bookings are filtered after conversion); rows is empty then.
    batch: pa.RecordBatch | None = None
    # Contacts: the uids of the bookings they were read for (their quality rule's reference).
    booking_uids: "pa.Array[Any] | None" = None


Fetcher = Callable[[AsyncJicooClient, _Context], Awaitable[_Fetched]]


@dataclass(frozen=True, slots=True)
class TableSource:
    """Where a table's rows come from: the endpoints it calls and the coroutine that does it."""

    table: str
    endpoints: tuple[str, ...]
    fetch: Fetcher


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{name!r} is not an IANA time zone") from exc


def day_window(
    day: dt.date, zone: str | ZoneInfo = DEFAULT_ZONE
) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants ``[start, end)`` of ``day`` in ``zone``; exact across DST changes.

    >>> day_window(dt.date(2024, 3, 1), "Asia/Tokyo")[0].isoformat()
    '2024-02-29T15:00:00+00:00'
    """
    tz = zone if isinstance(zone, ZoneInfo) else _zone(zone)

    def start_of(d: dt.date) -> dt.datetime:
        # Midnight can fall in a DST gap; zoneinfo then uses the pre-transition offset (fold=0),
        # which lands exactly on the transition instant: the day's first existing instant.
        return dt.datetime.combine(d, dt.time(), tzinfo=tz).astimezone(dt.UTC)

    return start_of(day), start_of(day + dt.timedelta(days=1))


def _bounded(
    limit: int,
) -> Callable[[Callable[[_T], Awaitable[_R]], Sequence[_T]], Awaitable[list[_R]]]:
    async def run(fn: Callable[[_T], Awaitable[_R]], items: Sequence[_T]) -> list[_R]:
        semaphore = asyncio.Semaphore(limit)

        async def one(item: _T) -> _R:
            async with semaphore:
                return await fn(item)

        # A TaskGroup cancels the siblings when one call fails (a 403 stops the fan-out); its
        # ExceptionGroup is unwrapped so callers handle the API's errors as usual.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(item)) for item in items]
        except ExceptionGroup as failed:
            raise _first_error(failed) from None
        return [task.result() for task in tasks]

    return run


def _first_error(group: ExceptionGroup[Exception]) -> Exception:
    leaves = list(_leaves(group))
    denied = [exc for exc in leaves if isinstance(exc, PermissionDeniedError)]
    first = (denied or leaves)[0]
    if len(leaves) > 1:
        first.add_note(f"{len(leaves) - 1} sibling call(s) failed too")
    return first


def _leaves(group: ExceptionGroup[Exception]) -> Iterator[Exception]:
    for exc in group.exceptions:
        if isinstance(exc, ExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _merged(*reports: FetchReport) -> FetchReport:
    # FetchReport.merge adds in place; a fresh total leaves the listings' own reports untouched.
    total = FetchReport()
    for report in reports:
        total.merge(report)
    return total


def _wall_clocked(calls: FetchReport, started: float) -> FetchReport:
    # The calls ran concurrently: their summed elapsed times are not how long the fan-out took.
    calls.elapsed_s = time.monotonic() - started
    return calls


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


def _slices(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    for offset in range(0, batch.num_rows, BATCH_ROWS):
        yield batch.slice(offset, BATCH_ROWS)


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


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [constant_array(None, field.type, 0) for field in schema], schema=schema
    )


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


async def _bookings_of_context(
    client: AsyncJicooClient, ctx: _Context
) -> tuple[pa.RecordBatch, PagedListing[pa.RecordBatch]]:
    split, listing = await _bookings_of_days(
        client,
        [ctx.partition_value],
        zone=ctx.zone,
        max_booking_duration=ctx.max_booking_duration,
        extracted_at=ctx.extracted_at,
        run_id=ctx.run_id,
    )
    return split[0].batch(), listing


async def _fetch_bookings(client: AsyncJicooClient, ctx: _Context) -> _Fetched:
    kept, listing = await _bookings_of_context(client, ctx)
    return _Fetched([], listing.report, kept.num_rows, batch=kept)


async def _contacts_of_bookings(
    client: AsyncJicooClient, uids: Sequence[str], fanout: int
) -> tuple[list[Records], FetchReport]:
    """Each booking's contact rows (in ``uids`` order) and a report of the calls."""
    started = time.monotonic()
    calls = FetchReport()

    async def contacts_of(uid: str) -> Records:
        try:
            contacts: list[Mapping[str, object]] = list(
                await client.list_booking_contacts(uid, report=calls)
            )
        except NotFoundError:
            # Deleted between the listing and this call: it has no contacts any more.
            logger.warning("booking %s vanished before its contacts were read", uid)
            return []
        return list(contact_rows(uid, contacts))

    per_booking = await _bounded(fanout)(contacts_of, uids)
    return per_booking, _wall_clocked(calls, started)


def _uids(batch: pa.RecordBatch) -> list[str]:
    return [str(uid) for uid in batch.column("uid").to_pylist()]


async def _fetch_contacts(client: AsyncJicooClient, ctx: _Context) -> _Fetched:
    kept, listing = await _bookings_of_context(client, ctx)
    per_booking, calls = await _contacts_of_bookings(client, _uids(kept), ctx.fanout)
    rows = [row for rows_of_one in per_booking for row in rows_of_one]
    return _Fetched(rows, _merged(listing.report, calls), None, booking_uids=kept.column("uid"))


def _simple(call: Callable[[AsyncJicooClient], Awaitable[Listing]]) -> Fetcher:
    async def fetch(client: AsyncJicooClient, ctx: _Context) -> _Fetched:
        listing = await call(client)
        return _Fetched(list(listing.records), listing.report, listing.total_count)

    return fetch


async def _fetch_availability(client: AsyncJicooClient, ctx: _Context) -> _Fetched:
    users = await client.list_organization_users()
    user_ids = [str(user["uid"]) for user in users.records if user.get("uid") is not None]
    listings = await _bounded(ctx.fanout)(client.list_availability_calendars, user_ids)
    templates: Records = [record for listing in listings for record in listing.records]
    report = _merged(users.report, *(listing.report for listing in listings))
    # to_record_batch flattens templates into one row per rule (TableSpec.rows); pass them raw.
    return _Fetched(templates, report, None)


async def _fetch_event_types(client: AsyncJicooClient, ctx: _Context) -> _Fetched:
    listing = await client.list_event_types()
    uids = [str(et["uid"]) for et in listing.records]
    report = _merged(listing.report)
    hosts: list[Listing | None]
    try:
        hosts = list(await _bounded(ctx.fanout)(client.list_event_type_hosts, uids))
    except PermissionDeniedError:
        # Hosts are a detail of the event types: keep the table, leave hosts unknown (null).
        logger.warning("the API key may not list event type hosts; hosts are left null")
        hosts = [None] * len(uids)
    rows: Records = []
    for event_type, host_listing in zip(listing.records, hosts, strict=True):
        if host_listing is not None:
            report.merge(host_listing.report)
        rows.append(
            event_type_rows(event_type, None if host_listing is None else host_listing.records)
        )
    return _Fetched(rows, report, listing.total_count)


async def _fetch_slots(client: AsyncJicooClient, ctx: _Context) -> _Fetched:
    event_types = await client.list_event_types()
    start, _ = day_window(ctx.partition_value, ctx.zone)
    end, _ = day_window(ctx.partition_value + dt.timedelta(days=ctx.horizon_days), ctx.zone)
    # A disabled event type takes no bookings, so it has no slots to ask for.
    uids = [str(et["uid"]) for et in event_types.records if et.get("status") != "disable"]
    started = time.monotonic()
    calls = FetchReport()

    async def slots_of(uid: str) -> list[Mapping[str, object]]:
        slots: list[Mapping[str, object]] = list(
            await client.list_available_slots(uid, start, end, report=calls)
        )
        return list(slot_rows(uid, slots))

    per_type = await _bounded(ctx.fanout)(slots_of, uids)
    rows = [row for rows_of_one in per_type for row in rows_of_one]
    return _Fetched(rows, _merged(event_types.report, _wall_clocked(calls, started)), None)


SOURCES: Mapping[str, TableSource] = {
    source.table: source
    for source in (
        TableSource("bookings", ("GET /v1/bookings",), _fetch_bookings),
        TableSource(
            "booking_contacts",
            ("GET /v1/bookings", "GET /v1/bookings/{uid}/contacts"),
            _fetch_contacts,
        ),
        TableSource("schedules", ("GET /v1/schedules",), _simple(lambda c: c.list_schedules())),
        TableSource(
            "availability_calendars",
            ("GET /v1/organization_users", "GET /v1/user_availability_calendars"),
            _fetch_availability,
        ),
        TableSource(
            "available_slots",
            ("GET /v1/event_types", "GET /v1/event_types/{uid}/available_schedules"),
            _fetch_slots,
        ),
        TableSource(
            "event_types", ("GET /v1/event_types", "GET /v1/event_type_hosts"), _fetch_event_types
        ),
        TableSource(
            "users",
            ("GET /v1/organization_users",),
            _simple(lambda c: c.list_organization_users()),
        ),
    )
}


def _partition_value(table: str, day: dt.date | None, snapshot_date: dt.date | None) -> dt.date:
    spec = TABLES.get(table)
    if spec is None or table not in SOURCES:
        raise ValueError(f"unknown table {table!r}; known: {sorted(SOURCES)}")
    if spec.partitioning == "day":
        if day is None or snapshot_date is not None:
            raise ValueError(f"{table} is partitioned by day: pass day=, not snapshot_date=")
        return day
    if snapshot_date is None or day is not None:
        raise ValueError(f"{table} is a daily snapshot: pass snapshot_date=, not day=")
    return snapshot_date


def _batches(table: str, fetched: _Fetched, ctx: _Context) -> Iterator[pa.RecordBatch]:
    if fetched.batch is not None:
        yield from _slices(fetched.batch)
        return
    # Converted chunk by chunk while the writer streams: one chunk of Arrow memory at a time.
    for offset in range(0, len(fetched.rows), BATCH_ROWS):
        yield to_record_batch(
            table,
            fetched.rows[offset : offset + BATCH_ROWS],
            extracted_at=ctx.extracted_at,
            run_id=ctx.run_id,
            partition_value=ctx.partition_value,
        )


async def extract_partition(
    client: AsyncJicooClient,
    table: str,
    *,
    day: dt.date | None = None,
    snapshot_date: dt.date | None = None,
    zone: str = DEFAULT_ZONE,
    store: ParquetStore,
    run_id: str | None,
    horizon_days: int = DEFAULT_SLOT_HORIZON_DAYS,
    max_booking_duration: dt.timedelta = DEFAULT_MAX_BOOKING_DURATION,
    fanout: int = DEFAULT_FANOUT_CONCURRENCY,
) -> ExtractResult:
    """Fetch one partition of ``table`` and replace it atomically in ``store``.

    Day tables (bookings, booking_contacts) take ``day`` (the start day in ``zone``); snapshot
    tables take ``snapshot_date``. A 403 returns a result with ``skipped_reason`` and writes
    nothing; every other error propagates.

    >>> async with AsyncJicooClient(settings) as client:  # doctest: +SKIP
    ...     await extract_partition(client, "bookings", day=dt.date(2024, 3, 1), store=store,
    ...                             run_id=None)
    """
    value = _partition_value(table, day, snapshot_date)
    if horizon_days < 1 or fanout < 1:
        raise ValueError("horizon_days and fanout must be >= 1")
    ctx = _Context(
        value,
        _zone(zone),
        horizon_days,
        max_booking_duration,
        fanout,
        extracted_at=dt.datetime.now(dt.UTC),
        run_id=run_id,
    )
    started = time.monotonic()
    try:
        fetched = await SOURCES[table].fetch(client, ctx)
    except PermissionDeniedError as denied:
        reason = f"403 on {denied.endpoint}: the API key may not read {table}"
        logger.warning("skipping %s %s: %s", table, value, reason)
        return ExtractResult(
            table,
            value,
            0,
            None,
            FetchReport(elapsed_s=time.monotonic() - started),
            None,
            skipped_reason=reason,
        )
    batches = _batches(table, fetched, ctx)
    # Conversion and file I/O block: run them off the event loop so other partitions keep going.
    uids = None if fetched.booking_uids is None else pa.chunked_array([fetched.booking_uids])
    written, quality = await asyncio.to_thread(
        _write, store, table, value, batches, booking_uids=uids
    )
    return ExtractResult(
        table,
        value,
        written.rows,
        written.path,
        fetched.report,
        fetched.total_count,
        quality=quality,
    )


def _write(
    store: ParquetStore,
    table: str,
    value: dt.date,
    batches: Iterator[pa.RecordBatch],
    *,
    booking_uids: "pa.ChunkedArray[Any] | None" = None,
    metadata: Mapping[str, str] | None = None,
) -> tuple[PartitionWriteResult, PartitionQuality]:
    """Write one partition and gather its quality figures from the same batches on the way:
    nothing is read back."""
    recorder = QualityRecorder(table, booking_uids)
    written = store.write_partition(
        table, value, (recorder.observe(batch) for batch in batches), metadata=metadata
    )
    return written, recorder.result()


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def extract_range(
    settings: Settings,
    tables: Collection[str],
    start: dt.date,
    end: dt.date,
    out_root: str,
    progress: Callable[[ExtractResult], None] | None = None,
    *,
    zone: str = DEFAULT_ZONE,
    run_id: str | None = None,
    day_concurrency: int = DEFAULT_DAY_CONCURRENCY,
    horizon_days: int = DEFAULT_SLOT_HORIZON_DAYS,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    max_booking_duration: dt.timedelta = DEFAULT_MAX_BOOKING_DURATION,
    rows_in_flight: int = DEFAULT_ROWS_IN_FLIGHT,
    full: bool = False,
) -> list[ExtractResult]:
    """Extract day tables for every day in ``[start, end]`` (inclusive) and snapshot tables once.

    Day tables are listed up to ``chunk_days`` consecutive days at a time (one bookings listing
    per chunk serves bookings and booking_contacts alike) and written one day partition at a
    time; chunks shrink on busy days so that about ``rows_in_flight`` listed rows are held.
    Snapshot tables are dated today in ``zone``: the API only knows the present, so a snapshot
    labelled with a past date would be a lie. At most ``day_concurrency`` chunks or snapshots
    are in flight. Every partition is attempted, failures are raised together afterwards as
    one ``ExtractError`` (an ExceptionGroup; written partitions stay written), except that
    after a failure no other partition could escape (the API unreachable once retries are
    spent, or the key refused) no new partition starts. ``progress`` gets each result.
    Contacts are read only for the bookings that changed since the day's last extract unless
    ``full`` (``_contacts_of_days``).
    """
    unknown = sorted(set(tables) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; known: {sorted(SOURCES)}")
    if min(day_concurrency, chunk_days, rows_in_flight) < 1:
        raise ValueError("day_concurrency, chunk_days and rows_in_flight must be >= 1")
    tz = _zone(zone)
    today = dt.datetime.now(tz).date()
    day_tables = [table for table in tables if TABLES[table].partitioning == "day"]
    snapshots = [table for table in tables if TABLES[table].partitioning != "day"]
    plan = _Plan(
        day_tables=day_tables,
        days=_days(start, end) if day_tables else [],
        chunk_days=chunk_days,
        chunk_rows=max(1, rows_in_flight // day_concurrency),
        snapshots=[(table, today) for table in snapshots],
        zone=tz,
        run_id=run_id,
        horizon_days=horizon_days,
        max_booking_duration=max_booking_duration,
        full=full,
    )
    store = ParquetStore(out_root)
    return asyncio.run(_run_plan(settings, plan, store, progress, day_concurrency, rows_in_flight))


def extract_contacts(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    out_root: str,
    progress: Callable[[ExtractResult], None] | None = None,
    *,
    run_id: str | None = None,
    full: bool = False,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
) -> list[ExtractResult]:
    """The contacts of every day in ``[start, end]`` from the bookings partitions already
    written there (by this run or an earlier one): no bookings listing.

    Contacts are read only for bookings that are new or whose updatedAt or status changed since
    the day's last contacts extract; ``full`` reads them all. Days are handled ``chunk_days`` at
    a time. Raises ``MissingPartitionError`` before any request if a day has no bookings
    partition; failures otherwise as ``extract_range``.
    """
    store = ParquetStore(out_root)
    days = _days(start, end)
    missing = [day for day in days if not store.has_partition("bookings", day)]
    if missing:
        raise MissingPartitionError(
            "bookings", missing, "extract bookings for these days first (jicoo/bookings)"
        )
    chunks = [days[i : i + chunk_days] for i in range(0, len(days), max(1, chunk_days))]
    return asyncio.run(_run_contacts(settings, chunks, store, progress, run_id, full))


async def _run_contacts(
    settings: Settings,
    chunks: Sequence[Sequence[dt.date]],
    store: ParquetStore,
    progress: Callable[[ExtractResult], None] | None,
    run_id: str | None,
    full: bool,
) -> list[ExtractResult]:
    results: list[ExtractResult] = []
    errors: list[Exception] = []
    async with AsyncJicooClient(settings) as client:
        for chunk in chunks:
            versions = [(day, await asyncio.to_thread(_read_versions, store, day)) for day in chunk]
            try:
                done = await _contacts_of_days(
                    client,
                    store,
                    versions,
                    full=full,
                    extracted_at=dt.datetime.now(dt.UTC),
                    run_id=run_id,
                )
            except PermissionDeniedError as denied:
                done = [_skipped("booking_contacts", day, denied) for day in chunk]
            except Exception as exc:  # noqa: BLE001 - one chunk must not stop the others
                what = f"booking_contacts {chunk[0]}..{chunk[-1]}"
                logger.error("extracting %s failed: %s", what, exc)
                exc.add_note(f"while extracting {what}")
                errors.append(exc)
                if isinstance(exc, _STOPS_THE_RUN):
                    break
                continue
            for result in done:
                results.append(result)
                if progress is not None:
                    progress(result)
    if errors:
        total = sum(len(chunk) for chunk in chunks)
        raise ExtractError(f"{total - len(results)} of {total} partitions failed", errors)
    return results


def _read_versions(store: ParquetStore, day: dt.date) -> pa.Table:
    return store.read_partition("bookings", day, columns=BOOKING_VERSION_COLUMNS)


@dataclass(frozen=True, slots=True)
class _Plan:
    day_tables: list[str]
    days: list[dt.date]
    chunk_days: int
    chunk_rows: int
    snapshots: list[tuple[str, dt.date]]
    zone: ZoneInfo
    run_id: str | None
    horizon_days: int
    max_booking_duration: dt.timedelta
    full: bool = False

    @property
    def partitions(self) -> int:
        return len(self.day_tables) * len(self.days) + len(self.snapshots)

    @property
    def margin_days(self) -> float:
        return self.max_booking_duration / dt.timedelta(days=1)


class _ChunkSizer:
    """Hands out consecutive chunks of days, sized so that a chunk's listing holds about
    ``rows_in_flight / concurrency`` rows, and admits chunks while the rows in flight fit the
    budget. The density (rows per listed day) is learnt from the listings: until one finds
    rows, chunks are single days listed one at a time."""

    def __init__(self, plan: _Plan, rows_in_flight: int, concurrency: int) -> None:
        self._plan = plan
        self._budget = rows_in_flight
        self._target = plan.chunk_rows
        self._next = 0
        self._density: float | None = None
        self._probing = False
        self._in_flight = 0.0
        self._changed = asyncio.Condition()

    async def take(self) -> tuple[list[dt.date], float] | None:
        """The next chunk and its estimated rows (admitted into the budget), or None."""
        async with self._changed:
            # Until a listing has found rows, chunks are one-day probes, one at a time.
            await self._changed.wait_for(lambda: self._density is not None or not self._probing)
            if self._next >= len(self._plan.days):
                return None
            margin = self._plan.margin_days
            if self._density is None:
                self._probing = True
                size, density = 1, 0.0
            else:
                density = self._density
                size = int(self._target / density - margin)
            size = max(1, min(self._plan.chunk_days, size))
            chunk = self._plan.days[self._next : self._next + size]
            self._next += len(chunk)
            rows = density * (len(chunk) + margin)
            await self._changed.wait_for(
                lambda: self._in_flight == 0 or self._in_flight + rows <= self._budget
            )
            self._in_flight += rows
            return chunk, rows

    async def done(self, chunk: Sequence[dt.date], rows: float, listed: int | None) -> None:
        async with self._changed:
            self._in_flight -= rows
            self._probing = False
            if listed:
                # The busiest stretch seen so far sizes what follows: memory stays bounded.
                observed = listed / (len(chunk) + self._plan.margin_days)
                self._density = max(observed, self._density or 0.0)
            self._changed.notify_all()


def _skipped(table: str, value: dt.date, denied: PermissionDeniedError) -> ExtractResult:
    reason = f"403 on {denied.endpoint}: the API key may not read {table}"
    logger.warning("skipping %s %s: %s", table, value, reason)
    return ExtractResult(table, value, 0, None, FetchReport(), None, skipped_reason=reason)


async def _extract_chunk(
    client: AsyncJicooClient,
    plan: _Plan,
    chunk: Sequence[dt.date],
    store: ParquetStore,
    emit: Callable[[ExtractResult], None],
) -> int | None:
    """One bookings listing for ``chunk``; each day table's partitions written from it. Returns
    how many rows the listing held (None on a 403).

    The listing's report goes to the chunk's first day; the other days get empty reports, so
    reports summed over results count every request once.
    """
    extracted_at = dt.datetime.now(dt.UTC)
    try:
        split, listing = await _bookings_of_days(
            client,
            chunk,
            zone=plan.zone,
            max_booking_duration=plan.max_booking_duration,
            extracted_at=extracted_at,
            run_id=plan.run_id,
            # A single day is listed whatever its size: it cannot be narrowed further.
            max_rows=plan.chunk_rows if len(chunk) > 1 else None,
        )
    except ListingTooLargeError:
        # Busier than the sizer guessed: list the halves one after the other.
        half = len(chunk) // 2
        listed = 0
        for narrower in (chunk[:half], chunk[half:]):
            listed += await _extract_chunk(client, plan, narrower, store, emit) or 0
        return listed
    except PermissionDeniedError as denied:
        for table in plan.day_tables:
            for day in chunk:
                emit(_skipped(table, day, denied))
        return None
    listed = listing.total_count

    def report_of(index: int, report: FetchReport) -> FetchReport:
        return report if index == 0 else FetchReport()

    if "bookings" in plan.day_tables:
        for index, part in enumerate(split):
            written, quality = await asyncio.to_thread(
                _write, store, "bookings", part.day, part.slices()
            )
            emit(
                ExtractResult(
                    "bookings",
                    part.day,
                    written.rows,
                    written.path,
                    report_of(index, listing.report),
                    part.num_rows,
                    quality=quality,
                )
            )
    if "booking_contacts" in plan.day_tables:
        days = [(part.day, _booking_versions(part.batch())) for part in split]
        try:
            results = await _contacts_of_days(
                client, store, days, full=plan.full, extracted_at=extracted_at, run_id=plan.run_id
            )
        except PermissionDeniedError as denied:
            for day in chunk:
                emit(_skipped("booking_contacts", day, denied))
            return listed
        if "bookings" not in plan.day_tables:
            # Without a bookings table here the listing is the contacts' cost; count it once.
            results[0].report.merge(listing.report)
        for result in results:
            emit(result)
    return listed


def _booking_versions(bookings: pa.RecordBatch | pa.Table) -> pa.Table:
    """The columns a booking's contacts are assumed to depend on, in the partition's order."""
    table = bookings if isinstance(bookings, pa.Table) else pa.Table.from_batches([bookings])
    return table.select(list(BOOKING_VERSION_COLUMNS))


def _version_map(versions: pa.Table) -> dict[str, list[object]]:
    """uid -> [updatedAt in ms since the epoch, status]: the footer's JSON, and what it is
    compared with."""
    updated = versions.column("updated_at").cast(pa.int64()).to_pylist()
    return {
        str(uid): [ms, status]
        for uid, ms, status in zip(
            versions.column("uid").to_pylist(),
            updated,
            versions.column("status").to_pylist(),
            strict=True,
        )
    }


@dataclass(frozen=True, slots=True)
class _ContactsPlan:
    """One day's contacts: the bookings whose contacts are read from the API, and the rows kept
    from the previous extract for the others (unchanged since)."""

    day: dt.date
    versions: pa.Table
    fetch: list[str]
    kept: pa.Table | None

    @property
    def reused(self) -> int:
        return self.versions.num_rows - len(self.fetch)


def _plan_contacts(
    store: ParquetStore, day: dt.date, versions: pa.Table, *, full: bool
) -> _ContactsPlan:
    now = _version_map(versions)
    footer = None if full else store.partition_metadata("booking_contacts", day)
    raw = (footer or {}).get(CONTACTS_STATE_KEY)
    if raw is None:
        # First extract of the day, a full one, or a file from before versions were recorded.
        return _ContactsPlan(day, versions, list(now), None)
    before = json.loads(raw)
    fetch = [uid for uid, version in now.items() if before.get(uid) != version]
    unchanged = pa.array(
        [uid for uid, version in now.items() if before.get(uid) == version], pa.string()
    )
    previous = store.read_partition("booking_contacts", day)
    kept = previous.filter(pc.is_in(previous.column("booking_uid"), value_set=unchanged))
    return _ContactsPlan(day, versions, fetch, kept)


async def _contacts_of_days(
    client: AsyncJicooClient,
    store: ParquetStore,
    days: Sequence[tuple[dt.date, pa.Table]],
    *,
    full: bool,
    extracted_at: dt.datetime,
    run_id: str | None,
) -> list[ExtractResult]:
    """Each day's contacts partition, from its bookings' versions (``_booking_versions``).

    A booking's contacts are read only when it is new or its updatedAt or status changed since
    the day's last extract (``full``: always); the others' rows are carried over from the
    previous file. All days' calls run as one fan-out. The calls' report goes to the first day.
    """
    plans = [
        await asyncio.to_thread(_plan_contacts, store, day, versions, full=full)
        for day, versions in days
    ]
    per_booking, calls = await _contacts_of_bookings(
        client, [uid for plan in plans for uid in plan.fetch], DEFAULT_FANOUT_CONCURRENCY
    )
    results: list[ExtractResult] = []
    offset = 0
    for plan in plans:
        fetched = per_booking[offset : offset + len(plan.fetch)]
        offset += len(plan.fetch)
        rows = [row for rows_of_one in fetched for row in rows_of_one]
        written, quality = await asyncio.to_thread(
            _write,
            store,
            "booking_contacts",
            plan.day,
            _contact_batches(plan, rows, extracted_at, run_id),
            booking_uids=plan.versions.column("uid"),
            metadata={CONTACTS_STATE_KEY: json.dumps(_version_map(plan.versions))},
        )
        results.append(
            ExtractResult(
                "booking_contacts",
                plan.day,
                written.rows,
                written.path,
                calls if not results else FetchReport(),
                None,
                quality=quality,
                contacts_fetched=len(plan.fetch),
                contacts_reused=plan.reused,
            )
        )
    return results


def _contact_batches(
    plan: _ContactsPlan, rows: Records, extracted_at: dt.datetime, run_id: str | None
) -> Iterator[pa.RecordBatch]:
    """The day's contacts, fetched and kept, in the bookings' order (as a full extract writes
    them). Kept rows keep their lineage: ``_extracted_at`` says when the API was read."""
    fetched = [
        to_record_batch(
            "booking_contacts",
            rows[offset : offset + BATCH_ROWS],
            extracted_at=extracted_at,
            run_id=run_id,
            partition_value=plan.day,
        )
        for offset in range(0, len(rows), BATCH_ROWS)
    ]
    parts = [pa.Table.from_batches(fetched, TABLES["booking_contacts"].schema)]
    if plan.kept is not None:
        parts.append(plan.kept)
    day = pa.concat_tables(parts)
    rank = pc.index_in(day.column("booking_uid"), value_set=plan.versions.column("uid"))
    ordered = (
        day.append_column("_rank", rank)
        .sort_by([("_rank", "ascending"), ("contact_index", "ascending")])
        .drop_columns(["_rank"])
    )
    yield from ordered.to_batches(max_chunksize=BATCH_ROWS)


async def _run_plan(
    settings: Settings,
    plan: _Plan,
    store: ParquetStore,
    progress: Callable[[ExtractResult], None] | None,
    day_concurrency: int,
    rows_in_flight: int,
) -> list[ExtractResult]:
    semaphore = asyncio.Semaphore(day_concurrency)
    sizer = _ChunkSizer(plan, rows_in_flight, day_concurrency)
    results: list[ExtractResult] = []
    errors: list[Exception] = []
    stopped_by: Exception | None = None

    def emit(result: ExtractResult) -> None:
        results.append(result)
        if progress is not None:
            progress(result)

    def failed(exc: Exception, what: str) -> None:
        nonlocal stopped_by
        logger.error("extracting %s failed: %s", what, exc)
        exc.add_note(f"while extracting {what}")
        errors.append(exc)
        if isinstance(exc, _STOPS_THE_RUN) and stopped_by is None:
            stopped_by = exc
            logger.error("no further partition is started: every one would fail the same way")

    # The loop is ours (extract_range runs it): its to_thread work gets one worker.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="jicoo-extract")
    )
    async with AsyncJicooClient(settings) as client:

        async def chunk_worker() -> None:
            while (taken := await sizer.take()) is not None:
                chunk, rows = taken
                listed = None
                try:
                    if stopped_by is None:
                        async with semaphore:
                            listed = await _extract_chunk(client, plan, chunk, store, emit)
                except Exception as exc:  # noqa: BLE001 - one chunk must not stop the others
                    failed(exc, f"{', '.join(plan.day_tables)} {chunk[0]}..{chunk[-1]}")
                finally:
                    await sizer.done(chunk, rows, listed)

        async def snapshot_job(table: str, value: dt.date) -> None:
            async with semaphore:
                if stopped_by is not None:
                    return
                try:
                    result = await extract_partition(
                        client,
                        table,
                        snapshot_date=value,
                        zone=plan.zone.key,
                        store=store,
                        run_id=plan.run_id,
                        horizon_days=plan.horizon_days,
                    )
                except Exception as exc:  # noqa: BLE001 - one partition must not stop the others
                    failed(exc, f"{table} {value}")
                    return
            emit(result)

        await asyncio.gather(
            *(chunk_worker() for _ in range(day_concurrency if plan.days else 0)),
            *(snapshot_job(table, value) for table, value in plan.snapshots),
        )
    if errors:
        # Every partition either has a result (written or skipped on a 403) or failed.
        message = f"{plan.partitions - len(results)} of {plan.partitions} partitions failed"
        if stopped_by is not None:
            message += f"; stopped starting new ones after: {stopped_by}"
        raise ExtractError(message, errors)
    return sorted(results, key=lambda r: (r.table, r.partition_value))
