"""The one quoting function per dialect: every identifier the loader writes into SQL (tables,
columns, fields nested in a column's type) goes through ``quote_identifier``.

Names are checked where they enter (``jicoo_connector.names``); quoting still escapes whatever
it is given, so a name that slipped past the check can never end a quoted identifier early.
"""

from collections.abc import Callable
from typing import Final

from jicoo_connector.errors import WarehouseError
from jicoo_connector.warehouse._url import Backend

__all__ = ["quote_identifier"]


def _double_quoted(name: str) -> str:
    # SQL's delimited identifier (PostgreSQL, DuckDB, Snowflake): a quote inside is doubled.
    if "\x00" in name:
        raise WarehouseError(f"refusing identifier {name!r}: it holds a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def _backquoted(name: str) -> str:
    # BigQuery's quoted identifier escapes with backslashes; names holding either are refused.
    if "`" in name or "\\" in name or not name.isprintable():
        raise WarehouseError(f"refusing identifier {name!r}")
    return f"`{name}`"


_QUOTERS: Final[dict[Backend, Callable[[str], str]]] = {
    "duckdb": _double_quoted,
    "postgresql": _double_quoted,
    "snowflake": _double_quoted,
    "bigquery": _backquoted,
}


def quote_identifier(backend: Backend, name: str) -> str:
    """``name`` as a quoted identifier of ``backend``.

    >>> print(quote_identifier("postgresql", 'x"y'))
    "x""y"
    """
    return _QUOTERS[backend](name)
