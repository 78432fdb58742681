"""The run loop, the one path of every table: extract_range() over chunks of days (per feed)
and snapshot partitions, and extract_partition() for a single partition."""

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Collection, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from zoneinfo import ZoneInfo

import anyio

from jicoo_connector._compat import add_note
from jicoo_connector.client import AsyncJicooClient, FetchReport
from jicoo_connector.errors import (
    ConfigError,
    ExtractError,
    ListingTooLargeError,
    MissingPartitionError,
    PermissionDeniedError,
)
from jicoo_connector.extract._days import check_zone, days_between, zone_of
from jicoo_connector.extract._defaults import (
    DEFAULT_CHUNK_DAYS,
    DEFAULT_DAY_CONCURRENCY,
    DEFAULT_FANOUT_CONCURRENCY,
    DEFAULT_MAX_BOOKING_DURATION,
    DEFAULT_ROWS_IN_FLIGHT,
    DEFAULT_SLOT_HORIZON_DAYS,
    DEFAULT_ZONE,
    WORKER_THREADS,
    failure_message,
    stops_the_run,
)
from jicoo_connector.extract._fanout import merged
from jicoo_connector.extract._registry import TABLES
from jicoo_connector.extract._results import ExtractResult, skipped, write_fetched
from jicoo_connector.extract._scheduler import ChunkSizer
from jicoo_connector.extract.sources import (
    DayFeed,
    DaySource,
    ExtractContext,
    FeedDay,
    FeedListing,
    Fetched,
    SnapshotSource,
    TableSource,
)
from jicoo_connector.settings import Settings
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import TableSpec

logger = logging.getLogger(__name__)

Emit = Callable[[ExtractResult], None]


@dataclass(frozen=True, slots=True)
class _FeedGroup:
    """The day tables of a run served by one feed. ``stored``: the feed's days are read from
    its table's partitions already written, not listed again."""

    feed: DayFeed
    sources: list[DaySource]
    stored: bool

    @property
    def tables(self) -> str:
        return ", ".join(source.table for source in self.sources)


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
    feed_from_store: bool = False,
    now: dt.datetime | None = None,
) -> list[ExtractResult]:
    """Extract day tables for every day in ``[start, end]`` (inclusive) and snapshot tables once.

    Day tables are listed up to ``chunk_days`` consecutive days at a time (one listing of their
    feed per chunk serves every table it feeds: bookings and booking_contacts share the bookings
    listing) and written one day partition at a time; chunks shrink on busy days so that about
    ``rows_in_flight`` listed rows are held. With ``feed_from_store``, a day table whose feed is
    another table that is not extracted here (booking_contacts without bookings) reads that
    table's partitions in ``out_root`` instead of listing it again; a missing one raises
    ``MissingPartitionError`` before any request. Snapshot tables are dated today in ``zone``
    (the day of ``now``, default the system clock's): the API only knows the present, so a
    snapshot labelled with a past date would be a lie. At most ``day_concurrency`` chunks or
    snapshots are in flight. Every partition is attempted, failures are raised together
    afterwards as one ``ExtractError`` (an ExceptionGroup; written partitions stay written),
    except that after a failure no other partition could escape (the API unreachable once
    retries are spent, or the key refused) no new partition starts. ``progress`` gets each
    result. Tables that carry unchanged rows over (booking_contacts) re-read them all with
    ``full``.
    """
    selected = _selected(tables)
    if min(day_concurrency, chunk_days, rows_in_flight, horizon_days) < 1:
        raise ConfigError(
            "day_concurrency, chunk_days, rows_in_flight and horizon_days must be >= 1"
        )
    tz = zone_of(zone)
    groups = _feed_groups(selected, feed_from_store)
    days = days_between(start, end) if groups else []
    ctx = _context(tz, days, now, run_id, out_root, horizon_days, max_booking_duration, full)
    _check_folder(ctx.store, groups, days, zone)
    snapshots = [source for source in selected if isinstance(source, SnapshotSource)]
    loop = _Loop(ctx, groups, days, snapshots, progress, day_concurrency)
    return asyncio.run(loop.run(settings, chunk_days, rows_in_flight))


def _context(
    tz: ZoneInfo,
    days: Sequence[dt.date],
    now: dt.datetime | None,
    run_id: str | None,
    out_root: str,
    horizon_days: int,
    max_booking_duration: dt.timedelta,
    full: bool,
) -> ExtractContext:
    """What every partition of one run shares; snapshots are dated today in ``tz``."""
    return ExtractContext(
        tz,
        snapshot_date=(now or dt.datetime.now(dt.timezone.utc)).astimezone(tz).date(),
        extracted_at=dt.datetime.now(dt.timezone.utc),
        run_id=run_id,
        store=ParquetStore(out_root),
        horizon_days=horizon_days,
        max_booking_duration=max_booking_duration,
        fanout=DEFAULT_FANOUT_CONCURRENCY,
        full=full,
        day_range=(days[0], days[-1]) if days else None,
    )


def _selected(tables: Collection[str]) -> list[TableSource]:
    """The registry's declarations of ``tables``, in registration order."""
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ConfigError(f"unknown tables {unknown}; known: {sorted(TABLES)}")
    return [source for name, source in TABLES.items() if name in tables]


def _check_folder(
    store: ParquetStore, groups: list[_FeedGroup], days: list[dt.date], zone: str
) -> None:
    """Before any request: refuse a folder whose day tables were cut in another zone, and
    raise MissingPartitionError if a feed read from the store lacks a day's partition."""
    for group in groups:
        for table in dict.fromkeys([group.feed.table, *(s.table for s in group.sources)]):
            check_zone(store, TABLES[table].spec, zone)
        if not group.stored:
            continue
        table = group.feed.table
        missing = [d for d in days if not store.has_partition(TABLES[table].spec, d)]
        if missing:
            raise MissingPartitionError(
                table, missing, f"extract {table} for these days first (jicoo/{table})"
            )


def _feed_groups(selected: Sequence[TableSource], feed_from_store: bool) -> list[_FeedGroup]:
    by_feed: dict[str, list[DaySource]] = {}
    for source in selected:
        if isinstance(source, DaySource):
            by_feed.setdefault(source.feed.table, []).append(source)
    names = {source.table for source in selected}
    return [
        _FeedGroup(sources[0].feed, sources, stored=feed_from_store and feed not in names)
        for feed, sources in by_feed.items()
    ]


class _Loop:
    """One extract_range run: chunk workers per feed and snapshot jobs, sharing one limit on
    listings in flight; results and failures gathered."""

    def __init__(
        self,
        ctx: ExtractContext,
        groups: list[_FeedGroup],
        days: list[dt.date],
        snapshots: list[SnapshotSource],
        progress: Callable[[ExtractResult], None] | None,
        day_concurrency: int,
    ) -> None:
        self._ctx = ctx
        self._groups = groups
        self._days = days
        self._snapshots = snapshots
        self._progress = progress
        self._concurrency = day_concurrency
        self._semaphore = asyncio.Semaphore(day_concurrency)
        self._results: list[ExtractResult] = []
        self._errors: list[Exception] = []
        self._stopped_by: Exception | None = None

    @property
    def _partitions(self) -> int:
        day_tables = sum(len(group.sources) for group in self._groups)
        return day_tables * len(self._days) + len(self._snapshots)

    def _emit(self, result: ExtractResult) -> None:
        self._results.append(result)
        if self._progress is not None:
            self._progress(result)

    def _failed(self, exc: Exception, what: str) -> None:
        logger.error("extracting %s failed: %s", what, exc)
        add_note(exc, f"while extracting {what}")
        self._errors.append(exc)
        if stops_the_run(exc) and self._stopped_by is None:
            self._stopped_by = exc
            logger.error("no further partition is started: every one would fail the same way")

    async def run(
        self, settings: Settings, chunk_days: int, rows_in_flight: int
    ) -> list[ExtractResult]:
        # The loop is ours (extract_range runs it): its to_thread work gets one worker.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="jicoo-extract")
        )
        async with AsyncJicooClient(settings) as client:
            jobs: list[Callable[[], Coroutine[object, object, None]]] = []
            for group in self._groups:
                # The budget is per feed: each feed's listings are sized on their own density.
                sizer = ChunkSizer(
                    self._days,
                    chunk_days=chunk_days,
                    chunk_rows=max(1, rows_in_flight // self._concurrency),
                    margin_days=group.feed.margin(self._ctx) / dt.timedelta(days=1),
                    rows_in_flight=rows_in_flight,
                )
                jobs += [partial(self._chunks, client, group, sizer)] * self._concurrency
            jobs += [partial(self._snapshot, client, source) for source in self._snapshots]
            # A task group, not gather: cancelled (Ctrl-C), it waits for every task to end, so a
            # partition being written is finished and counted before the run stops. (gather
            # gives up at the first task that ends cancelled; asyncio.run then cancels the rest
            # a second time, and a partition its thread still wrote went uncounted.)
            async with anyio.create_task_group() as tasks:
                for job in jobs:
                    tasks.start_soon(job)
        if self._errors:
            # Every partition either has a result (written or skipped on a 403) or failed.
            written = sum(1 for result in self._results if result.path is not None)
            raise ExtractError(
                failure_message(self._stopped_by or self._errors[0], written, self._partitions),
                self._errors,
            )
        return sorted(self._results, key=lambda r: (r.table, r.partition_value))

    async def _chunks(self, client: AsyncJicooClient, group: _FeedGroup, sizer: ChunkSizer) -> None:
        while (taken := await sizer.take()) is not None:
            chunk, rows = taken
            listed = None
            try:
                if self._stopped_by is None:
                    async with self._semaphore:
                        listed = await _extract_days(
                            client, self._ctx, group, chunk, self._emit, sizer.chunk_rows
                        )
            except Exception as exc:  # noqa: BLE001 - one chunk must not stop the others
                self._failed(exc, f"{group.tables} {chunk[0]}..{chunk[-1]}")
            finally:
                await sizer.done(chunk, rows, listed)

    async def _snapshot(self, client: AsyncJicooClient, source: SnapshotSource) -> None:
        async with self._semaphore:
            if self._stopped_by is not None:
                return
            try:
                await _extract_snapshot(client, self._ctx, source, self._emit)
            except Exception as exc:  # noqa: BLE001 - one partition must not stop the others
                self._failed(exc, f"{source.table} {self._ctx.snapshot_date}")


async def _extract_days(
    client: AsyncJicooClient,
    ctx: ExtractContext,
    group: _FeedGroup,
    chunk: Sequence[dt.date],
    emit: Emit,
    chunk_rows: int | None,
) -> int | None:
    """One listing of the feed for ``chunk`` (at most ``chunk_rows`` rows unless a single day);
    each table of ``group`` written from it, day by day. Returns how many rows the listing
    held (None on a 403).

    The listing's report goes to the first table's first day; the calls of a table's fetcher
    to its first day: reports summed over results count every request once.
    """
    ctx = dataclasses.replace(ctx, extracted_at=dt.datetime.now(dt.timezone.utc))
    try:
        listing = await _feed_days(
            client, ctx, group, chunk, chunk_rows if len(chunk) > 1 else None
        )
    except ListingTooLargeError:
        # Busier than the sizer guessed: list the halves one after the other.
        half = len(chunk) // 2
        listed = 0
        for narrower in (chunk[:half], chunk[half:]):
            listed += await _extract_days(client, ctx, group, narrower, emit, chunk_rows) or 0
        return listed
    except PermissionDeniedError as denied:
        await client.check_key()  # a refused key raises here: no table escapes it
        for source in group.sources:
            for day in chunk:
                emit(skipped(source.table, day, denied))
        return None
    unreported: FetchReport | None = listing.report
    for source in group.sources:
        try:
            fetched = await source.fetch(client, ctx, listing.days)
        except PermissionDeniedError as denied:
            await client.check_key()
            for day in chunk:
                emit(skipped(source.table, day, denied))
            continue
        if len(fetched) != len(listing.days):
            raise ConfigError(
                f"{source.table}: its fetcher returned {len(fetched)} partitions "
                f"for {len(listing.days)} days"
            )
        for feed_day, one in zip(listing.days, fetched, strict=True):
            if unreported is not None:
                one = dataclasses.replace(one, report=merged(unreported, one.report))
                unreported = None
            await _write(emit, source.spec, feed_day.day, one, ctx)
    return listing.listed


async def _write(
    emit: Emit, spec: TableSpec, value: dt.date, fetched: Fetched, ctx: ExtractContext
) -> None:
    """Write one partition in a worker thread and emit its result, also when the run is
    cancelled meanwhile (Ctrl-C, SIGTERM): the thread finishes the file anyway, and what an
    interrupted run says it wrote must count it. The wait is shielded from the task group's
    cancellation: anyio delivers it again at every await inside the cancelled scope, so a
    catch-and-await-again (asyncio.shield) lost the result of a file already in place."""
    with anyio.CancelScope(shield=True):
        result = await asyncio.to_thread(write_fetched, spec, value, fetched, ctx)
    emit(result)


async def _feed_days(
    client: AsyncJicooClient,
    ctx: ExtractContext,
    group: _FeedGroup,
    chunk: Sequence[dt.date],
    max_rows: int | None,
) -> FeedListing:
    if not group.stored:
        return await group.feed.list_days(client, ctx, chunk, max_rows)
    spec = TABLES[group.feed.table].spec
    days = [
        FeedDay(day, await asyncio.to_thread(ctx.store.read_partition, spec, day)) for day in chunk
    ]
    return FeedListing(days, FetchReport(), sum(day.rows.num_rows for day in days))


async def _extract_snapshot(
    client: AsyncJicooClient, ctx: ExtractContext, source: SnapshotSource, emit: Emit
) -> None:
    """Today's partition of a snapshot table (skipped on a 403 if the key reads bookings)."""
    ctx = dataclasses.replace(ctx, extracted_at=dt.datetime.now(dt.timezone.utc))
    try:
        fetched = await source.fetch(client, ctx)
    except PermissionDeniedError as denied:
        await client.check_key()
        emit(skipped(source.table, ctx.snapshot_date, denied))
        return
    # Conversion and file I/O block: off the event loop, so other partitions keep going.
    await _write(emit, source.spec, ctx.snapshot_date, fetched, ctx)


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
    full: bool = False,
) -> ExtractResult:
    """Fetch one partition of ``table`` and replace it atomically in ``store``, through the
    same path as extract_range.

    Day tables take ``day`` (the start day in ``zone``; their feed is listed for it); snapshot
    tables take ``snapshot_date``. A 403 returns a result with ``skipped_reason`` and writes
    nothing when the key reads bookings (else the 403 is the key's and is raised, as every
    other error is). A folder cut in another zone raises ``ConfigError`` before any request.

    >>> async with AsyncJicooClient(settings) as client:  # doctest: +SKIP
    ...     await extract_partition(client, "bookings", day=dt.date(2024, 3, 1), store=store,
    ...                             run_id=None)
    """
    source = TABLES.get(table)
    if source is None:
        raise ConfigError(f"unknown table {table!r}; known: {sorted(TABLES)}")
    if horizon_days < 1 or fanout < 1:
        raise ConfigError("horizon_days and fanout must be >= 1")
    tz = zone_of(zone)
    ctx = ExtractContext(
        tz,
        snapshot_date=snapshot_date or dt.datetime.now(tz).date(),
        extracted_at=dt.datetime.now(dt.timezone.utc),
        run_id=run_id,
        store=store,
        horizon_days=horizon_days,
        max_booking_duration=max_booking_duration,
        fanout=fanout,
        full=full,
        day_range=(day, day) if day is not None else None,
    )
    results: list[ExtractResult] = []
    if isinstance(source, SnapshotSource):
        if snapshot_date is None or day is not None:
            raise ConfigError(f"{table} is a daily snapshot: pass snapshot_date=, not day=")
        await _extract_snapshot(client, ctx, source, results.append)
    else:
        if day is None or snapshot_date is not None:
            raise ConfigError(f"{table} is partitioned by day: pass day=, not snapshot_date=")
        check_zone(store, source.spec, zone)
        group = _FeedGroup(source.feed, [source], stored=False)
        await _extract_days(client, ctx, group, [day], results.append, None)
    (result,) = results
    return result
