"""Warehouse loading: Parquet partitions into DuckDB (default), PostgreSQL, Snowflake or BigQuery.

Dagster-free. ``load_warehouse(target, store)`` stages changed partitions (ADBC bulk ingest) and
merges them in one transaction, with its load state in the warehouse's ``_jicoo_loads`` table
(``LOADS_TABLE``); ``WarehouseTarget.parse(url, password=...)`` names the warehouse. Every
module inside is private: import from here.
"""

from jicoo_connector.warehouse._loader import (
    LoadReport,
    PartitionFile,
    TableLoad,
    load_warehouse,
    partition_files,
)
from jicoo_connector.warehouse._session import query_warehouse
from jicoo_connector.warehouse._sql import LOADS_TABLE
from jicoo_connector.warehouse._url import Backend, WarehouseTarget

__all__ = [
    "LOADS_TABLE",
    "Backend",
    "LoadReport",
    "PartitionFile",
    "TableLoad",
    "WarehouseTarget",
    "load_warehouse",
    "partition_files",
    "query_warehouse",
]
