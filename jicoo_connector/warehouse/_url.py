"""A warehouse URL: which warehouse, parsed once, shown only as ``jicoo_connector.redaction``
shows a URL.

Reads no environment: the URL and a password given apart from it (``JICOO_WAREHOUSE_PASSWORD``
in ``config``) arrive as arguments."""

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

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


@dataclass(frozen=True, slots=True)
class WarehouseTarget:
    """A parsed warehouse URL. ``url`` keeps the secret; show ``display`` (redacted) instead.
    ``fallback_password`` is the password for a URL that carries none.

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
    fallback_password: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"WarehouseTarget({self.display!r})"

    __str__ = __repr__

    @property
    def display(self) -> str:
        return redact_url(self.url) if "://" in self.url else self.url

    def scrub(self, text: str) -> str:
        """``text`` (a driver's message) with this URL's secrets and ``fallback_password``
        masked in any spelling."""
        given = self.fallback_password if "://" in self.url else None
        return scrub(text, [self.url], [given] if given else [])

    @property
    def password(self) -> str | None:
        """The URL's password, else ``fallback_password``, else None."""
        secret = urlsplit(self.url).password if "://" in self.url else None
        return unquote(secret) if secret else self.fallback_password

    @classmethod
    def parse(cls, url: str, *, password: str | None = None) -> "WarehouseTarget":
        """Parse ``url``; ``password`` is used when the URL carries none."""
        parsed = cls._parse(url)
        return replace(parsed, fallback_password=password) if password else parsed

    @classmethod
    def _parse(cls, url: str) -> "WarehouseTarget":
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
        """The PostgreSQL URL for libpq, with ``fallback_password`` when it has none."""
        parts = urlsplit(self.url)
        uri = "postgresql://" + self.url.split("://", 1)[1]
        secret = self.fallback_password
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
