"""Dagster resources: configuration plus factories for the plain library objects.

Their defaults are ``ConnectorConfig``'s (spelled once, in jicoo_connector/config.py); the
code location fills them from ``ConnectorConfig.from_env()`` when it loads.
"""

import dagster as dg
from pydantic import Field

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.settings import DEFAULT_PAGE_CONCURRENCY, ApiKey, Settings
from jicoo_connector.storage import ParquetStore
from jicoo_connector.warehouse import WarehouseTarget

DEFAULTS = ConnectorConfig()
# The Dagster concurrency pool of every asset or op that calls the Jicoo API. The instance
# config (scripts/dagster.yaml) gives it one slot: one API step at a time across all runs, so
# the steps' process-wide limiters never add up beyond the account's rate.
API_POOL = "jicoo_api"


class JicooResource(dg.ConfigurableResource["JicooResource"]):
    """The Jicoo API account: the key comes only from the environment (``dg.EnvVar``)."""

    api_key: str = Field(description="API key; always pass dg.EnvVar('JICOO_API_KEY').")
    base_url: str = Field(
        default=DEFAULTS.base_url,
        description="API origin ($JICOO_BASE_URL); http only to loopback.",
    )
    rate_limit: float = Field(
        default=DEFAULTS.rate_limit,
        description="Requests per second shared by the process ($JICOO_RATE_LIMIT).",
    )
    burst: int = Field(
        default=DEFAULTS.burst, description="Token-bucket size of the limiter ($JICOO_BURST)."
    )
    page_concurrency: int = Field(
        default=DEFAULT_PAGE_CONCURRENCY, description="Pages fetched at once per listing."
    )
    request_deadline: float = Field(
        default=DEFAULTS.request_deadline,
        description="Seconds one request may take in all ($JICOO_REQUEST_DEADLINE).",
    )
    proxy_url: str | None = Field(
        default=None,
        description="Proxy URL, overriding HTTPS_PROXY and the like; pass "
        "dg.EnvVar('JICOO_PROXY_URL'), as it may hold a password.",
    )
    ca_bundle: str | None = Field(
        default=DEFAULTS.ca_bundle,
        description="PEM file of the CAs to trust instead of certifi's ($JICOO_CA_BUNDLE).",
    )
    tls_trust: str = Field(
        default=DEFAULTS.tls_trust,
        description="certifi, or system: the OS store with company CAs ($JICOO_TLS_TRUST).",
    )

    def settings(self) -> Settings:
        return Settings(
            api_key=ApiKey(self.api_key),
            base_url=self.base_url,
            rate_limit=self.rate_limit,
            burst=self.burst,
            page_concurrency=self.page_concurrency,
            request_deadline=self.request_deadline,
            proxy_url=self.proxy_url or None,
            ca_bundle=self.ca_bundle,
            tls_trust=self.tls_trust,
        )


class WarehouseResource(dg.ConfigurableResource["WarehouseResource"]):
    """Where the tables go: a Parquet root (local path or URI such as s3://) and the warehouse
    (``url``: PostgreSQL, Snowflake, BigQuery; empty: the DuckDB file ``duckdb_path``)."""

    root: str = Field(
        default=DEFAULTS.warehouse_root,
        description="Parquet dataset root: a path or a URI ($JICOO_WAREHOUSE_ROOT).",
    )
    duckdb_path: str = Field(
        default=DEFAULTS.duckdb_path,
        description="The embedded DuckDB warehouse file ($JICOO_DUCKDB_PATH).",
    )
    url: str = Field(
        default="",
        description="Warehouse URL (postgresql://, snowflake://, bigquery://project/dataset) or "
        "a DuckDB path; empty: duckdb_path. Pass dg.EnvVar('JICOO_WAREHOUSE_URL') when it "
        "holds a password, so that the UI never shows it.",
    )

    password: str | None = Field(
        default=None,
        description="The warehouse password when the URL carries none. Pass "
        "dg.EnvVar('JICOO_WAREHOUSE_PASSWORD'), so that the UI never shows it.",
    )

    def store(self) -> ParquetStore:
        """The Parquet dataset at ``root``."""
        return ParquetStore(self.root)

    def warehouse(self) -> WarehouseTarget:
        """The warehouse the tables are loaded into (``url``, else ``duckdb_path``)."""
        return WarehouseTarget.parse(self.url or self.duckdb_path, password=self.password)
