"""API -> Parquet: the table registry and the run loop that extracts partitions of it.

Modules: ``sources`` (the registry: what a table's declaration holds, register_table),
``catalog`` (the built-in tables, one module each), ``run`` (extract_range and
extract_partition: the one path of every table), ``scheduler`` (the adaptive chunk sizer),
``results`` (ExtractResult and the partition writer), ``days``, ``fanout`` and ``defaults``.
Imports the client, tables and storage; never dagster.
"""

from jicoo_connector.extract.days import day_window
from jicoo_connector.extract.defaults import (
    DEFAULT_CHUNK_DAYS,
    DEFAULT_DAY_CONCURRENCY,
    DEFAULT_FANOUT_CONCURRENCY,
    DEFAULT_MAX_BOOKING_DURATION,
    DEFAULT_ROWS_IN_FLIGHT,
    DEFAULT_SLOT_HORIZON_DAYS,
    DEFAULT_ZONE,
)
from jicoo_connector.extract.results import ExtractResult
from jicoo_connector.extract.run import extract_partition, extract_range
from jicoo_connector.extract.sources import (
    SOURCES,
    DayFeed,
    DaySource,
    ExtractContext,
    FeedDay,
    FeedListing,
    Fetched,
    SnapshotSource,
    TableSource,
    listing,
    register_table,
    unregister_table,
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
    "DayFeed",
    "DaySource",
    "ExtractContext",
    "ExtractResult",
    "FeedDay",
    "FeedListing",
    "Fetched",
    "SnapshotSource",
    "TableSource",
    "day_window",
    "extract_partition",
    "extract_range",
    "listing",
    "register_table",
    "unregister_table",
]
