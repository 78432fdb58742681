"""Dagster resources: configuration plus factories for the plain library objects.

Their defaults are ``ConnectorConfig``'s (spelled once, in jicoo_connector/config.py). Each
organization has its own three, under its own keys (``JicooNames``); an asset or sensor reads
them with ``resource(context, key, kind)``. Secrets (the key, URLs that may hold a password)
are given as ``dg.EnvVar``, so the UI shows the variable's name, never its value.
"""

from typing import Any, TypeVar

import dagster as dg
from pydantic import Field

from jicoo_connector.changes import is_postgres_url
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.settings import DEFAULT_PAGE_CONCURRENCY, ApiKey, Settings
from jicoo_connector.storage import ParquetStore
from jicoo_connector.warehouse import WarehouseTarget

DEFAULTS = ConnectorConfig()
R = TypeVar("R", bound="dg.ConfigurableResource[Any]")


class JicooResource(dg.ConfigurableResource["JicooResource"]):
    """An organization's Jicoo API account. The key comes only from the environment."""

    api_key: str = Field(
        description="API key; always dg.EnvVar('ACME_JICOO_API_KEY'), never a literal."
    )
    base_url: str = Field(
        default=DEFAULTS.base_url, description="API origin; http only to loopback."
    )
    rate_limit: float = Field(
        default=DEFAULTS.rate_limit,
        description="Requests per second: the account's budget, spent by one API step at a time.",
    )
    burst: int = Field(default=DEFAULTS.burst, description="Token-bucket size of the limiter.")
    page_concurrency: int = Field(
        default=DEFAULT_PAGE_CONCURRENCY, description="Pages fetched at once per listing."
    )
    request_deadline: float = Field(
        default=DEFAULTS.request_deadline, description="Seconds one request may take in all."
    )
    proxy_url: str | None = Field(
        default=None,
        description="Proxy URL, overriding HTTPS_PROXY and the like; pass a dg.EnvVar, as it "
        "may hold a password.",
    )
    ca_bundle: str | None = Field(
        default=DEFAULTS.ca_bundle, description="PEM file of the CAs to trust instead of certifi's."
    )
    tls_trust: str = Field(
        default=DEFAULTS.tls_trust,
        description="certifi, or system: the OS store with company CAs.",
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
        default=DEFAULTS.warehouse_root, description="Parquet dataset root: a path or a URI."
    )
    duckdb_path: str = Field(
        default=DEFAULTS.duckdb_path, description="The embedded DuckDB warehouse file."
    )
    url: str = Field(
        default="",
        description="Warehouse URL (postgresql://, snowflake://, bigquery://project/dataset) or "
        "a DuckDB path; empty: duckdb_path. A dg.EnvVar when it holds a password.",
    )
    password: str | None = Field(
        default=None,
        description="The warehouse password when the URL has none (a dg.EnvVar); unset: "
        "JICOO_WAREHOUSE_PASSWORD.",
    )

    def store(self) -> ParquetStore:
        """The Parquet dataset at ``root``."""
        return ParquetStore(self.root)

    def warehouse(self) -> WarehouseTarget:
        """The warehouse the tables are loaded into (``url``, else ``duckdb_path``)."""
        return WarehouseTarget.parse(self.url or self.duckdb_path, password=self.password)


class WriteBackResource(dg.ConfigurableResource["WriteBackResource"]):
    """Where write-back keeps its state (the ledger, the apply_log Parquet table) and the
    folder the inbox sensor watches."""

    ledger_path: str = Field(default=DEFAULTS.ledger_path, description="SQLite ledger file.")
    ledger_url: str | None = Field(
        default=None,
        description="postgresql:// URL of a ledger shared by every worker; wins over "
        "ledger_path. A dg.EnvVar, so a password never shows.",
    )
    apply_log_root: str = Field(
        default=DEFAULTS.apply_log_root,
        description="apply_log Parquet table root, one file per batch and run.",
    )
    inbox: str = Field(
        default=DEFAULTS.changeset_inbox, description="The change-set inbox the sensor watches."
    )

    def ledger_location(self) -> str:
        return self.ledger_url or self.ledger_path


def ledger_kind(location: str) -> str:
    """The Dagster kind of the ledger at ``location``: ``postgres`` or ``sqlite``."""
    return "postgres" if is_postgres_url(location) else "sqlite"


def resource(
    context: dg.AssetExecutionContext | dg.SensorEvaluationContext, key: str, kind: type[R]
) -> R:
    """The resource under ``key`` (an organization's own key), checked to be a ``kind``."""
    value = getattr(context.resources, key)
    if not isinstance(value, kind):
        raise dg.DagsterInvariantViolationError(
            f"resource {key!r} is a {type(value).__name__}, not a {kind.__name__}"
        )
    return value
