"""API -> Parquet: the table registry and the run loop that extracts partitions of it.

Modules: ``sources`` (the registry: which endpoints feed each table, and extract_partition),
``chunking`` (one bookings listing split into days), ``contacts`` (booking contacts, reused
while their booking is unchanged), ``scheduler`` (the adaptive chunk sizer), ``run``
(extract_range, the run loop), ``days``, ``fanout``, ``results`` and ``defaults``.
Imports the client, tables and storage; never dagster.
"""

from jicoo_connector.extract.contacts import extract_contacts
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
from jicoo_connector.extract.run import extract_range
from jicoo_connector.extract.sources import (
    SOURCES,
    TableSource,
    extract_partition,
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
    "ExtractResult",
    "TableSource",
    "day_window",
    "extract_contacts",
    "extract_partition",
    "extract_range",
    "listing",
    "register_table",
    "unregister_table",
]
