"""A warehouse URL: which warehouse, parsed once, shown only with its password redacted.

Reads no environment: the URL and a password given apart from it (``JICOO_WAREHOUSE_PASSWORD``
in ``config``) arrive as arguments."""

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from jicoo_connector.errors import WarehouseError

__all__ = [
    "Backend",
    "WarehouseTarget",
    "redact",
]

Backend = Literal["duckdb", "postgresql", "snowflake", "bigquery"]
_SCHEMES: dict[str, Backend] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "duckdb": "duckdb",
}
_REDACTED = "***"
# A password inside any URL-like text: scheme://user:PASSWORD@host.
_PASSWORD_IN_TEXT = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s]*:)[^@\s]*(?P<at>@)")


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ***."""
    return _PASSWORD_IN_TEXT.sub(rf"\g<head>{_REDACTED}\g<at>", text)


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
        return redact(self.url)

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
        backend = _SCHEMES.get(scheme)
        if backend is None:
            raise WarehouseError(
                f"warehouse URL {redact(text)!r}: unknown scheme {scheme!r}; use a DuckDB file "
                "path, postgresql://, snowflake:// or bigquery://project/dataset"
            )
        parts = urlsplit(text)
        if backend == "duckdb":
            return cls("duckdb", text, path=text.split("://", 1)[1])
        if backend == "bigquery":
            dataset = parts.path.strip("/")
            if not parts.hostname or not dataset or "/" in dataset:
                raise WarehouseError(
                    f"warehouse URL {redact(text)!r}: expected bigquery://PROJECT/DATASET"
                )
            return cls("bigquery", text, project=parts.netloc, dataset=dataset)
        if not parts.hostname:
            raise WarehouseError(f"warehouse URL {redact(text)!r} has no host")
        return cls(backend, text)

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

    def snowflake_uri(self) -> str:
        """The DSN the ADBC Snowflake driver reads (``user@account/db/schema?...``), no password."""
        parts = urlsplit(self.url)
        user = quote(unquote(parts.username or ""), safe="")
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        query = f"?{parts.query}" if parts.query else ""
        return f"{user}@{host}{port}{parts.path}{query}"

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query)) if "://" in self.url else {}
