"""A warehouse URL (``JICOO_WAREHOUSE_URL``, read by ``ConnectorConfig.warehouse()``): which
warehouse, parsed once, shown only as ``jicoo_connector.redaction`` shows a URL."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.errors import WarehouseError
from jicoo_connector.redaction import UNPARSEABLE_HINT, SecretURL, redact_url, scrub

__all__ = [
    "SNOWFLAKE_QUERY_OPTIONS",
    "Backend",
    "WarehouseTarget",
]

Backend = Literal["duckdb", "postgresql", "snowflake", "bigquery"]
_SCHEMES: dict[str, Backend] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "duckdb": "duckdb",
}
# The ADBC Snowflake driver's documented options (adbc_driver_snowflake.DatabaseOptions) that a
# snowflake:// URL's query may set by a short name; an ``adbc.snowflake.*`` key passes as is.
SNOWFLAKE_QUERY_OPTIONS = {
    "warehouse": "adbc.snowflake.sql.warehouse",
    "role": "adbc.snowflake.sql.role",
    "region": "adbc.snowflake.sql.region",
    "host": "adbc.snowflake.sql.uri.host",
    "port": "adbc.snowflake.sql.uri.port",
    "protocol": "adbc.snowflake.sql.uri.protocol",
}
_SNOWFLAKE_PREFIX = "adbc.snowflake."


def _configured_password() -> str | None:
    # JICOO_WAREHOUSE_PASSWORD, for a URL without one (libpq's PGPASSWORD and ~/.pgpass work
    # for PostgreSQL too). Read when needed, through the one configuration front door.
    return ConnectorConfig.from_env().warehouse_password


@dataclass(frozen=True, slots=True)
class WarehouseTarget:
    """A parsed warehouse URL. ``url`` keeps the secret; show ``display`` (redacted) instead.

    >>> WarehouseTarget.parse("postgresql://loader:s3cret@db:5432/analytics").display
    'postgresql://loader:***@db:5432/analytics'
    >>> WarehouseTarget.parse("data/warehouse.duckdb").backend
    'duckdb'
    """

    backend: Backend
    url: str
    # DuckDB: the file; BigQuery: project and dataset; else unused.
    path: str = ""
    project: str = ""
    dataset: str = ""

    def __repr__(self) -> str:
        return f"WarehouseTarget({self.display!r})"

    __str__ = __repr__

    @property
    def display(self) -> str:
        return redact_url(self.url) if "://" in self.url else self.url

    def scrub(self, text: str) -> str:
        """``text`` (a driver's message) with this URL's secrets and the configured password
        masked in any spelling."""
        configured = _configured_password() if "://" in self.url else None
        return scrub(text, [self.url], [configured] if configured else [])

    @property
    def password(self) -> str | None:
        """The URL's password, else ``JICOO_WAREHOUSE_PASSWORD``, else None."""
        secret = urlsplit(self.url).password if "://" in self.url else None
        return unquote(secret) if secret else _configured_password()

    @classmethod
    def parse(cls, url: str) -> "WarehouseTarget":
        text = url.strip()
        if not text:
            raise WarehouseError("the warehouse URL is empty")
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if not scheme:
            return cls("duckdb", text, path=text)
        shown = SecretURL.parse(text)
        if not shown.parseable:
            # A driver would split it elsewhere than we do: refused before it reaches one.
            raise WarehouseError(f"the warehouse URL {UNPARSEABLE_HINT}")
        backend = _SCHEMES.get(scheme)
        if backend is None:
            raise WarehouseError(
                f"warehouse URL {shown.display!r}: unknown scheme {scheme!r}; use a DuckDB file "
                "path, postgresql://, snowflake:// or bigquery://project/dataset"
            )
        parts = urlsplit(text)
        if backend == "duckdb":
            return cls("duckdb", text, path=text.split("://", 1)[1])
        if backend == "bigquery":
            dataset = parts.path.strip("/")
            if not parts.hostname or not dataset or "/" in dataset:
                raise WarehouseError(
                    f"warehouse URL {shown.display!r}: expected bigquery://PROJECT/DATASET"
                )
            return cls("bigquery", text, project=parts.netloc, dataset=dataset)
        if not parts.hostname:
            raise WarehouseError(f"warehouse URL {shown.display!r} has no host")
        target = cls(backend, text)
        if backend == "snowflake":
            target.snowflake_options()  # an unknown parameter is refused here, not at connect
        return target

    def describe(self) -> str:
        """Where the tables go, for humans and metadata (no secret)."""
        if self.backend == "duckdb":
            return str(Path(self.path))
        return self.display

    def libpq_uri(self) -> str:
        """The PostgreSQL URL for libpq, with ``JICOO_WAREHOUSE_PASSWORD`` when it has none."""
        parts = urlsplit(self.url)
        uri = "postgresql://" + self.url.split("://", 1)[1]
        secret = _configured_password()
        if parts.password or not secret or not parts.username:
            return uri
        user = f"{parts.username}:{quote(secret, safe='')}@"
        return uri.replace(f"{parts.username}@", user, 1)

    def snowflake_options(self) -> dict[str, str]:
        """The ADBC Snowflake driver's database options for this URL, password included.

        No ``uri`` option: the driver applies a URI after every other option and takes the
        password from it alone, so one set beside it never arrives ("password is empty").
        The password goes in the standard ADBC ``password`` option, the user in ``username``.
        """
        parts = urlsplit(self.url)
        account = parts.netloc.rpartition("@")[2].partition(":")[0]
        database, _, schema = parts.path.strip("/").partition("/")
        options = {"adbc.snowflake.sql.account": account}
        if parts.username:
            options["username"] = unquote(parts.username)
        if (password := self.password) is not None:
            options["password"] = password
        if database:
            options["adbc.snowflake.sql.db"] = database
        if schema:
            options["adbc.snowflake.sql.schema"] = schema
        if parts.port:
            options["adbc.snowflake.sql.uri.port"] = str(parts.port)
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            option = SNOWFLAKE_QUERY_OPTIONS.get(key, key)
            if not option.startswith(_SNOWFLAKE_PREFIX):
                raise WarehouseError(
                    f"warehouse URL {self.display!r}: unknown parameter {key!r}; use "
                    f"{', '.join(SNOWFLAKE_QUERY_OPTIONS)} or an adbc.snowflake.* option"
                )
            options[option] = value
        return options

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query)) if "://" in self.url else {}
