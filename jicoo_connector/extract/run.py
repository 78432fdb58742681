"""The run loop: extract_range() over chunks of days and snapshot partitions."""

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor

from jicoo_connector.client import (
    AsyncJicooClient,
    FetchReport,
    ListingTooLargeError,
)
from jicoo_connector.errors import (
    ExtractError,
    PermissionDeniedError,
)
from jicoo_connector.extract.chunking import _bookings_of_days
from jicoo_connector.extract.contacts import _booking_versions, _contacts_of_days
from jicoo_connector.extract.days import _days, _zone
from jicoo_connector.extract.defaults import (
    _STOPS_THE_RUN,
    DEFAULT_CHUNK_DAYS,
    DEFAULT_DAY_CONCURRENCY,
    DEFAULT_MAX_BOOKING_DURATION,
    DEFAULT_ROWS_IN_FLIGHT,
    DEFAULT_SLOT_HORIZON_DAYS,
    DEFAULT_ZONE,
    WORKER_THREADS,
)
from jicoo_connector.extract.results import ExtractResult, _skipped, _write
from jicoo_connector.extract.scheduler import _ChunkSizer, _Plan
from jicoo_connector.extract.sources import SOURCES, extract_partition
from jicoo_connector.settings import Settings
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import (
    TABLES,
)

logger = logging.getLogger(__name__)


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
