"""The table registry (which endpoints feed each table) and extract_partition(): API -> Parquet.

Imports the client, tables and storage; never dagster.
"""

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc

from jicoo_connector.client import AsyncJicooClient, FetchReport, Listing
from jicoo_connector.errors import ConfigError, NotFoundError, PermissionDeniedError
from jicoo_connector.settings import Settings
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import (
    TABLES,
    contact_rows,
    event_type_rows,
    slot_rows,
    to_record_batch,
)

__all__ = [
    "DEFAULT_DAY_CONCURRENCY",
    "DEFAULT_FANOUT_CONCURRENCY",
    "DEFAULT_MAX_BOOKING_DURATION",
    "DEFAULT_SLOT_HORIZON_DAYS",
    "DEFAULT_ZONE",
    "SOURCES",
    "ExtractResult",
    "TableSource",
    "day_window",
    "extract_partition",
    "extract_range",
]

logger = logging.getLogger(__name__)

DEFAULT_ZONE = "Asia/Tokyo"
DEFAULT_SLOT_HORIZON_DAYS = 14
# The API's endedAt filter keeps bookings that END by it, so a booking starting late in the day
# is found only if the query's end reaches past its end. Jicoo event types last minutes to hours;
# one day of margin covers them at the cost of over-fetching about one day of bookings.
DEFAULT_MAX_BOOKING_DURATION = dt.timedelta(days=1)
# Per-booking / per-user / per-event-type calls in flight; the client's rate limiter still rules.
DEFAULT_FANOUT_CONCURRENCY = 8
# Partitions extracted at once by extract_range: memory is about this many days' rows.
DEFAULT_DAY_CONCURRENCY = 4
BATCH_ROWS = 10_000

_T = TypeVar("_T")
_R = TypeVar("_R")
Records = list[Mapping[str, object]]


@dataclass(frozen=True, slots=True)
class ExtractResult:
    """One partition's outcome. ``skipped_reason`` is set (and nothing written) on a 403.

    ``total_count`` is what the API's totals say the partition should hold, ``None`` where the
    endpoints report no total (contacts, slots) or rows are not records (availability rules).
    """

    table: str
    partition_value: dt.date
    rows: int
    path: str | None
    report: FetchReport
    total_count: int | None
    skipped_reason: str | None = None


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


def _calls_report(requests: int, started: float) -> FetchReport:
    # Unpaginated endpoints return plain lists; count their calls so the report stays honest.
    return FetchReport(
        requests=requests,
        pages=requests,
        retries=0,
        rate_limited=0,
        server_errors=0,
        drift_rewalks=0,
        elapsed_s=time.monotonic() - started,
    )


async def _bookings_of_day(
    client: AsyncJicooClient, ctx: _Context
) -> tuple[pa.RecordBatch, Listing, int]:
    """The bookings that START in the day, as a batch; plus the listing and the expected count.

    Query: startedAt = window start, endedAt = window end + the longest booking. The API keeps
    start >= startedAt and end <= endedAt, so every booking starting in the window and ending
    within the margin comes back, with some that start after the window; those are cut here on
    the parsed start, exactly [start, end).
    """
    start, end = day_window(ctx.partition_value, ctx.zone)
    listing = await client.list_bookings(
        started_at=start, ended_at=end + ctx.max_booking_duration, order="startedAt", sort="asc"
    )
    batch = to_record_batch(
        "bookings",
        listing.records,
        extracted_at=ctx.extracted_at,
        run_id=ctx.run_id,
        partition_value=ctx.partition_value,
    )
    started = batch.column("started_at")
    keep = pc.and_(
        pc.greater_equal(started, pa.scalar(start, batch.schema.field("started_at").type)),
        pc.less(started, pa.scalar(end, batch.schema.field("started_at").type)),
    )
    _warn_if_margin_is_tight(batch, ctx)
    kept = batch.filter(keep)
    # The API's total minus what we dropped: equals the rows kept when the listing was complete.
    expected = listing.total_count - (batch.num_rows - kept.num_rows)
    return kept, listing, expected


def _warn_if_margin_is_tight(batch: pa.RecordBatch, ctx: _Context) -> None:
    if batch.num_rows == 0:
        return
    durations = pc.subtract(batch.column("ended_at"), batch.column("started_at"))
    # Arrow has no min/max kernel for durations; compare their millisecond counts.
    longest_ms: object = pc.max(durations.cast(pa.int64())).as_py()
    if not isinstance(longest_ms, int):
        return  # every end is null
    longest = dt.timedelta(milliseconds=longest_ms)
    if longest * 2 > ctx.max_booking_duration:
        logger.warning(
            "a booking lasts %s, more than half the end-filter margin %s: longer bookings "
            "starting on %s could be missed; raise max_booking_duration",
            longest,
            ctx.max_booking_duration,
            ctx.partition_value,
        )


async def _fetch_bookings(client: AsyncJicooClient, ctx: _Context) -> _Fetched:
    kept, listing, expected = await _bookings_of_day(client, ctx)
    return _Fetched([], listing.report, expected, batch=kept)


async def _fetch_contacts(client: AsyncJicooClient, ctx: _Context) -> _Fetched:
    kept, listing, _ = await _bookings_of_day(client, ctx)
    uids = [str(uid) for uid in kept.column("uid").to_pylist()]
    started = time.monotonic()

    async def contacts_of(uid: str) -> list[Mapping[str, object]]:
        try:
            contacts: list[Mapping[str, object]] = list(await client.list_booking_contacts(uid))
        except NotFoundError:
            # Deleted between the listing and this call: it has no contacts any more.
            logger.warning("booking %s vanished before its contacts were read", uid)
            return []
        return list(contact_rows(uid, contacts))

    per_booking = await _bounded(ctx.fanout)(contacts_of, uids)
    rows = [row for rows_of_one in per_booking for row in rows_of_one]
    return _Fetched(rows, _merged(listing.report, _calls_report(len(uids), started)), None)


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

    async def slots_of(uid: str) -> list[Mapping[str, object]]:
        slots: list[Mapping[str, object]] = list(await client.list_available_slots(uid, start, end))
        return list(slot_rows(uid, slots))

    per_type = await _bounded(ctx.fanout)(slots_of, uids)
    rows = [row for rows_of_one in per_type for row in rows_of_one]
    return _Fetched(rows, _merged(event_types.report, _calls_report(len(uids), started)), None)


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
        for offset in range(0, fetched.batch.num_rows, BATCH_ROWS):
            yield fetched.batch.slice(offset, BATCH_ROWS)
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
            table, value, 0, None, _calls_report(0, started), None, skipped_reason=reason
        )
    batches = _batches(table, fetched, ctx)
    # Conversion and file I/O block: run them off the event loop so other partitions keep going.
    written = await asyncio.to_thread(store.write_partition, table, value, batches)
    return ExtractResult(
        table, value, written.rows, written.path, fetched.report, fetched.total_count
    )


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
) -> list[ExtractResult]:
    """Extract day tables for every day in ``[start, end]`` (inclusive) and snapshot tables once.

    Snapshot tables are dated today in ``zone``: the API only knows the present, so a snapshot
    labelled with a past date would be a lie. At most ``day_concurrency`` partitions are in
    flight. Every partition is attempted; failures are raised together afterwards as an
    ``ExceptionGroup`` (written partitions stay written). ``progress`` gets each result.
    """
    unknown = sorted(set(tables) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; known: {sorted(SOURCES)}")
    if day_concurrency < 1:
        raise ValueError("day_concurrency must be >= 1")
    tz = _zone(zone)
    today = dt.datetime.now(tz).date()
    jobs: list[tuple[str, dt.date]] = []
    for table in tables:
        if TABLES[table].partitioning == "day":
            jobs.extend((table, day) for day in _days(start, end))
        else:
            jobs.append((table, today))
    store = ParquetStore(out_root)
    return asyncio.run(
        _run_jobs(settings, jobs, store, progress, zone, run_id, day_concurrency, horizon_days)
    )


async def _run_jobs(
    settings: Settings,
    jobs: Sequence[tuple[str, dt.date]],
    store: ParquetStore,
    progress: Callable[[ExtractResult], None] | None,
    zone: str,
    run_id: str | None,
    day_concurrency: int,
    horizon_days: int,
) -> list[ExtractResult]:
    semaphore = asyncio.Semaphore(day_concurrency)
    results: list[ExtractResult] = []
    errors: list[Exception] = []

    async with AsyncJicooClient(settings) as client:

        async def one(table: str, value: dt.date) -> None:
            async with semaphore:
                is_day = TABLES[table].partitioning == "day"
                try:
                    result = await extract_partition(
                        client,
                        table,
                        day=value if is_day else None,
                        snapshot_date=None if is_day else value,
                        zone=zone,
                        store=store,
                        run_id=run_id,
                        horizon_days=horizon_days,
                    )
                except Exception as exc:  # noqa: BLE001 - one partition must not stop the others
                    logger.error("extracting %s %s failed: %s", table, value, exc)
                    exc.add_note(f"while extracting {table} {value}")
                    errors.append(exc)
                    return
            results.append(result)
            if progress is not None:
                progress(result)

        await asyncio.gather(*(one(table, value) for table, value in jobs))
    if errors:
        raise ExceptionGroup(f"{len(errors)} of {len(jobs)} partitions failed", errors)
    return sorted(results, key=lambda r: (r.table, r.partition_value))
