"""Warehouse loading: Parquet partitions into DuckDB (default), PostgreSQL, Snowflake or BigQuery.

Dagster-free. ``load_warehouse(url, store)`` stages changed partitions (ADBC bulk ingest) and
merges them in one transaction, with its load state in the warehouse's ``_jicoo_loads`` table.
"""

from jicoo_connector.warehouse._loader import (
    LoadReport,
    PartitionFile,
    TableLoad,
    load_warehouse,
    partition_files,
)
from jicoo_connector.warehouse._session import query_warehouse
from jicoo_connector.warehouse._sql import LOADS_TABLE, Dialect, LoadRecord
from jicoo_connector.warehouse._types import TYPE_TABLE, SqlType, sql_type
from jicoo_connector.warehouse._url import Backend, WarehouseTarget

__all__ = [
    "LOADS_TABLE",
    "TYPE_TABLE",
    "Backend",
    "Dialect",
    "LoadRecord",
    "LoadReport",
    "PartitionFile",
    "SqlType",
    "TableLoad",
    "WarehouseTarget",
    "load_warehouse",
    "partition_files",
    "query_warehouse",
    "sql_type",
]
