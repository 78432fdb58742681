"""Dagster resources: configuration plus factories for the plain library objects."""

import dagster as dg
from pydantic import Field

from jicoo_connector.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_BURST,
    DEFAULT_PAGE_CONCURRENCY,
    DEFAULT_RATE_LIMIT,
    ApiKey,
    Settings,
)
from jicoo_connector.warehouse import WarehouseTarget

DEFAULT_WAREHOUSE_ROOT = "data/warehouse"
DEFAULT_DUCKDB_PATH = "data/warehouse.duckdb"
DEFAULT_LEDGER_PATH = "data/ledger.sqlite"
# The Dagster concurrency pool of every asset or op that calls the Jicoo API. The instance
# config (scripts/dagster.yaml) gives it one slot: one API step at a time across all runs, so
# the steps' process-wide limiters never add up beyond the account's rate.
API_POOL = "jicoo_api"


class JicooResource(dg.ConfigurableResource["JicooResource"]):
    """The Jicoo API account: the key comes only from the environment (``dg.EnvVar``)."""

    api_key: str = Field(description="API key; always pass dg.EnvVar('JICOO_API_KEY').")
    base_url: str = Field(
        default=DEFAULT_BASE_URL, description="API origin; plain http only to loopback."
    )
    rate_limit: float = Field(
        default=DEFAULT_RATE_LIMIT, description="Requests per second shared by the process."
    )
    burst: int = Field(default=DEFAULT_BURST, description="Token-bucket size of the limiter.")
    page_concurrency: int = Field(
        default=DEFAULT_PAGE_CONCURRENCY, description="Pages fetched at once per listing."
    )

    def settings(self) -> Settings:
        return Settings(
            api_key=ApiKey(self.api_key),
            base_url=self.base_url,
            rate_limit=self.rate_limit,
            burst=self.burst,
            page_concurrency=self.page_concurrency,
        )


class WarehouseResource(dg.ConfigurableResource["WarehouseResource"]):
    """Where the tables go: a Parquet root (local path or URI such as s3://) and the warehouse
    (``url``: PostgreSQL, Snowflake, BigQuery; empty: the DuckDB file ``duckdb_path``)."""

    root: str = Field(
        default=DEFAULT_WAREHOUSE_ROOT, description="Parquet dataset root: a path or a URI."
    )
    duckdb_path: str = Field(
        default=DEFAULT_DUCKDB_PATH, description="The embedded DuckDB warehouse file."
    )
    url: str = Field(
        default="",
        description="Warehouse URL (postgresql://, snowflake://, bigquery://project/dataset) or "
        "a DuckDB path; empty: duckdb_path. Pass dg.EnvVar('JICOO_WAREHOUSE_URL') when it "
        "holds a password, so that the UI never shows it.",
    )

    def target(self) -> WarehouseTarget:
        return WarehouseTarget.parse(self.url or self.duckdb_path)
