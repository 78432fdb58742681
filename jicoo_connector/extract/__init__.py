"""API -> Parquet: the table registry and the run loop that extracts partitions of its tables.

The flow: ``extract_range`` (every day of a range and today's snapshots: the entry point of the
CLI and the Dagster assets) and ``extract_partition`` (one partition), giving ``ExtractResult``s.
The registry: ``TABLES`` and ``register_table``. How a table is declared is the public module
``extract.sources``; the built-in declarations are ``extract.catalog``. The other modules are
private. Imports the client, tables, pages, storage and quality; never dagster.
"""

from jicoo_connector.extract._days import day_window
from jicoo_connector.extract._defaults import (
    DEFAULT_CHUNK_DAYS,
    DEFAULT_DAY_CONCURRENCY,
    DEFAULT_FANOUT_CONCURRENCY,
    DEFAULT_MAX_BOOKING_DURATION,
    DEFAULT_ROWS_IN_FLIGHT,
    DEFAULT_SLOT_HORIZON_DAYS,
    DEFAULT_ZONE,
)
from jicoo_connector.extract._registry import TABLES, register_table, unregister_table
from jicoo_connector.extract._results import ExtractResult
from jicoo_connector.extract._run import extract_partition, extract_range

__all__ = [
    "DEFAULT_CHUNK_DAYS",
    "DEFAULT_DAY_CONCURRENCY",
    "DEFAULT_FANOUT_CONCURRENCY",
    "DEFAULT_MAX_BOOKING_DURATION",
    "DEFAULT_ROWS_IN_FLIGHT",
    "DEFAULT_SLOT_HORIZON_DAYS",
    "DEFAULT_ZONE",
    "TABLES",
    "ExtractResult",
    "day_window",
    "extract_partition",
    "extract_range",
    "register_table",
    "unregister_table",
]
