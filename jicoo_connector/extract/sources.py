"""The table registry (each table's declaration: schema, endpoints, fetcher, checks),
register_table() to add one, and extract_partition(): one partition of one table."""

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from jicoo_connector.client import (
    AsyncJicooClient,
    FetchReport,
    Listing,
    PagedListing,
)
from jicoo_connector.errors import (
    PermissionDeniedError,
)
from jicoo_connector.extract.chunking import _bookings_of_days
from jicoo_connector.extract.contacts import _contacts_of_bookings
from jicoo_connector.extract.days import _zone, day_window
from jicoo_connector.extract.defaults import (
    BATCH_ROWS,
    DEFAULT_FANOUT_CONCURRENCY,
    DEFAULT_MAX_BOOKING_DURATION,
    DEFAULT_SLOT_HORIZON_DAYS,
    DEFAULT_ZONE,
)
from jicoo_connector.extract.fanout import _bounded, _merged, _wall_clocked
from jicoo_connector.extract.results import ExtractResult, Records, _slices, _write
from jicoo_connector.quality import RULES
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import (
    TABLES,
    TableSpec,
    event_type_rows,
    register_spec,
    slot_rows,
    to_record_batch,
    unregister_spec,
)

logger = logging.getLogger(__name__)


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
    """A table's whole declaration: its schema, key, partitioning, reshaping and checks
    (``spec``), the endpoints it calls, and the coroutine that calls them (paging or fanning
    out). The run loop, the Dagster assets and checks and the CLI's ``--tables`` are made
    from these (CONTRIBUTING.md, "Adding a table")."""

    spec: TableSpec
    endpoints: tuple[str, ...]
    fetch: Fetcher

    @property
    def table(self) -> str:
        return self.spec.name


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


def _uids(batch: pa.RecordBatch) -> list[str]:
    return [str(uid) for uid in batch.column("uid").to_pylist()]


async def _fetch_contacts(client: AsyncJicooClient, ctx: _Context) -> _Fetched:
    kept, listing = await _bookings_of_context(client, ctx)
    per_booking, calls = await _contacts_of_bookings(client, _uids(kept), ctx.fanout)
    rows = [row for rows_of_one in per_booking for row in rows_of_one]
    return _Fetched(rows, _merged(listing.report, calls), None, booking_uids=kept.column("uid"))


def listing(call: Callable[[AsyncJicooClient], Awaitable[Listing]]) -> Fetcher:
    """The fetcher of a table whose rows are one listing's records (paged by the client)."""

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


_REGISTERED: dict[str, TableSource] = {
    source.table: source
    for source in (
        TableSource(TABLES["bookings"], ("GET /v1/bookings",), _fetch_bookings),
        TableSource(
            TABLES["booking_contacts"],
            ("GET /v1/bookings", "GET /v1/bookings/{uid}/contacts"),
            _fetch_contacts,
        ),
        TableSource(
            TABLES["schedules"], ("GET /v1/schedules",), listing(lambda c: c.list_schedules())
        ),
        TableSource(
            TABLES["availability_calendars"],
            ("GET /v1/organization_users", "GET /v1/user_availability_calendars"),
            _fetch_availability,
        ),
        TableSource(
            TABLES["available_slots"],
            ("GET /v1/event_types", "GET /v1/event_types/{uid}/available_schedules"),
            _fetch_slots,
        ),
        TableSource(
            TABLES["event_types"],
            ("GET /v1/event_types", "GET /v1/event_type_hosts"),
            _fetch_event_types,
        ),
        TableSource(
            TABLES["users"],
            ("GET /v1/organization_users",),
            listing(lambda c: c.list_organization_users()),
        ),
    )
}
# The table registry, in declaration order; a live view of what register_table added.
SOURCES: Mapping[str, TableSource] = MappingProxyType(_REGISTERED)

# The bookings-driven day tables: one bookings listing per chunk of days serves both.
BOOKINGS_DAY_TABLES = ("bookings", "booking_contacts")


def register_table(source: TableSource) -> None:
    """Add a table: after this, extract_range, the CLI's ``--tables`` and the Dagster assets
    (with one check per quality rule of its spec) know it. Day-partitioned tables are the
    bookings-driven ones only; a new table is a daily snapshot."""
    spec = source.spec
    if source.table in _REGISTERED:
        raise ValueError(f"a table named {source.table!r} is already registered")
    if spec.partitioning != "snapshot":
        raise ValueError(
            f"{source.table}: only snapshot tables can be added; day tables are "
            f"{', '.join(BOOKINGS_DAY_TABLES)} (one bookings listing serves them)"
        )
    unknown = sorted(set(spec.checks) - set(RULES))
    if unknown:
        raise ValueError(f"{source.table}: unknown checks {unknown}; known: {sorted(RULES)}")
    register_spec(spec)
    _REGISTERED[source.table] = source


def unregister_table(name: str) -> None:
    """Remove a table added with register_table (the built-in tables stay)."""
    if name in BUILT_IN_TABLES:
        raise ValueError(f"{name} is built in")
    _REGISTERED.pop(name, None)
    unregister_spec(name)


BUILT_IN_TABLES = frozenset(_REGISTERED)


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
