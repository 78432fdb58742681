"""How a table is declared: what its declaration holds (``SnapshotSource``, ``DaySource``: its
spec, endpoints and fetcher), what its fetcher is given (``ExtractContext``, ``FeedDay``) and
returns (``Fetched``), and the feeds of day tables (``DayFeed``).

Every table, built in (``extract/catalog/``) or registered by a user (``register_table``), goes
through the same run loop: a snapshot table's fetcher is called once per snapshot; a day table's
fetcher is called with the days of its feed (one listing over consecutive days, split into
days) and returns one partition per day. Tables sharing a feed share its listing. This module
knows no table: the registry (``extract/_registry.py``) holds them.
"""

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import pyarrow as pa

from jicoo_connector.client import AsyncJicooClient, FetchReport, Listing
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import TableSpec

__all__ = [
    "DayFeed",
    "DayFetcher",
    "DaySource",
    "ExtractContext",
    "FeedDay",
    "FeedListing",
    "Fetched",
    "ListDays",
    "Records",
    "SnapshotFetcher",
    "SnapshotSource",
    "TableSource",
    "listing",
]

Records = list[Mapping[str, object]]


@dataclass(frozen=True, slots=True)
class ExtractContext:
    """What a fetcher is told about the run it is part of."""

    zone: ZoneInfo
    # The snapshot tables' partition: today in ``zone`` (the API only knows the present).
    snapshot_date: dt.date
    extracted_at: dt.datetime
    run_id: str | None
    # The partitions written so far: a table that carries rows over reads its previous one.
    store: ParquetStore
    horizon_days: int
    max_booking_duration: dt.timedelta
    fanout: int
    # Read everything again rather than carry unchanged rows over.
    full: bool
    # The first and last day of the run's day tables (None: no day table): a feed may list
    # across the whole range (the bookings feed reads every chunk's listing to its end).
    day_range: tuple[dt.date, dt.date] | None = None
    # What a feed keeps between the chunks of one run, by key (the bookings feed: the first
    # page of the listing at each chunk boundary, read once for the two chunks that meet there).
    shared: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One partition as a fetcher returns it; the run loop writes it (and checks it)."""

    report: FetchReport
    # What the API's totals say the partition holds; None where it reports none.
    total_count: int | None = None
    # API records, reshaped by the spec's ``rows`` and converted while the partition is written;
    rows: Records = field(default_factory=list)
    # or rows already in the table's schema (then ``rows`` is empty).
    data: pa.Table | None = None
    # The uids of the bookings the rows were read for (contacts_reference_bookings' reference).
    booking_uids: "pa.ChunkedArray[Any] | None" = None
    # Kept in the Parquet footer (storage.partition_metadata reads it back).
    footer: Mapping[str, str] = field(default_factory=dict)
    # The partition's own figures (ExtractResult.counters, Dagster metadata jicoo/<name>).
    counters: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeedDay:
    """One day of a feed: its rows, in the schema of the feed's table."""

    day: dt.date
    rows: pa.Table


@dataclass(frozen=True, slots=True)
class FeedListing:
    """A feed's consecutive days, with the report of the calls that listed them and how many
    rows the listing held (it sizes the next chunks; None when unknown)."""

    days: list[FeedDay]
    report: FetchReport
    listed: int | None


# (client, context, consecutive days, most rows to hold or None) -> the days' rows. Raises
# client.ListingTooLargeError past ``max_rows``: the run loop then lists the halves.
ListDays = Callable[
    [AsyncJicooClient, ExtractContext, Sequence[dt.date], int | None], Awaitable[FeedListing]
]


def _no_margin(ctx: ExtractContext) -> dt.timedelta:
    return dt.timedelta(0)


@dataclass(frozen=True, slots=True)
class DayFeed:
    """A listing over consecutive days, split into days: the rows day tables are made from.
    One listing per chunk of days serves every table fed by it (bookings and booking_contacts
    share the bookings listing). ``table`` is the table those rows are written as: a Dagster
    asset of another table fed by it reads that table's partitions instead of listing again."""

    table: str
    list_days: ListDays
    # How far past the last day a listing reaches (the chunk sizer counts those rows too).
    margin: Callable[[ExtractContext], dt.timedelta] = _no_margin


SnapshotFetcher = Callable[[AsyncJicooClient, ExtractContext], Awaitable[Fetched]]
# Returns one Fetched per feed day, in the same order.
DayFetcher = Callable[
    [AsyncJicooClient, ExtractContext, Sequence[FeedDay]], Awaitable[list[Fetched]]
]


@dataclass(frozen=True, slots=True)
class SnapshotSource:
    """A table snapshotted once a day: its spec (schema, key, reshaping, checks), the endpoints
    it calls and the fetcher that calls them (paging or fanning out)."""

    spec: TableSpec
    endpoints: tuple[str, ...]
    fetch: SnapshotFetcher

    @property
    def table(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class DaySource:
    """A table with one partition per calendar day, made from the days of ``feed``: its spec,
    the endpoints it calls (the feed's included) and the fetcher that turns feed days into
    partitions."""

    spec: TableSpec
    endpoints: tuple[str, ...]
    feed: DayFeed
    fetch: DayFetcher

    @property
    def table(self) -> str:
        return self.spec.name


TableSource: TypeAlias = SnapshotSource | DaySource


def listing(call: Callable[[AsyncJicooClient], Awaitable[Listing]]) -> SnapshotFetcher:
    """The fetcher of a table whose rows are one listing's records (paged by the client)."""

    async def fetch(client: AsyncJicooClient, ctx: ExtractContext) -> Fetched:
        listed = await call(client)
        return Fetched(listed.report, listed.total_count, rows=list(listed.records))

    return fetch
