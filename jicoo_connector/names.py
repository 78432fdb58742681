"""Table and column names, checked where they enter (a table's registration, a column added by
schema evolution) so every supported warehouse and the Parquet layout take them as they are.

A name is lower-case snake_case ASCII: no quotes, dots or path separators (a table name is a
folder of the Parquet root), and no two names that a case-insensitive warehouse (DuckDB,
BigQuery) would merge. At most 63 bytes, PostgreSQL's limit: it silently cuts longer names, so
two tables or columns sharing their first 63 characters would become one. SQL still quotes
every identifier (``warehouse._ident``); this check is what keeps names the same everywhere.

Imports only errors and pyarrow.
"""

import hashlib
import re
from collections.abc import Iterator
from typing import Any, Final

import pyarrow as pa

from jicoo_connector.errors import ConfigError

__all__ = [
    "MAX_NAME_BYTES",
    "check_column_names",
    "check_table_name",
    "fitted_name",
    "name_problem",
]

# PostgreSQL's NAMEDATALEN - 1, the shortest limit of the supported warehouses.
MAX_NAME_BYTES: Final = 63
_COLUMN: Final = re.compile(r"[a-z_][a-z0-9_]*")
# Tables may not start with "_": the loader's own tables do (_jicoo_loads, _jicoo_stage_*).
_TABLE: Final = re.compile(r"[a-z][a-z0-9_]*")
# Column prefixes BigQuery reserves (it compares names without case).
_BIGQUERY_RESERVED: Final = ("_table_", "_file_", "_partition", "_row_timestamp", "__root__",
                             "_colon_")  # fmt: skip
_DIGEST_CHARS: Final = 12


def name_problem(name: str, *, table: bool = False) -> str | None:
    """Why ``name`` cannot be a table (``table``) or column name, or None if it can."""
    pattern = _TABLE if table else _COLUMN
    if not pattern.fullmatch(name):
        first = "a letter" if table else "a letter or _"
        return f"must start with {first} and hold only a-z, 0-9 and _"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"is {len(name.encode())} bytes long; the limit is {MAX_NAME_BYTES} (PostgreSQL's)"
    if not table and name.startswith(_BIGQUERY_RESERVED):
        return "starts with a prefix BigQuery reserves"
    return None


def check_table_name(name: str) -> None:
    """Refuse a table name that some warehouse or the Parquet layout would not keep as is."""
    problem = name_problem(name, table=True)
    if problem is not None:
        raise ConfigError(f"table name {name!r} {problem}")


def check_column_names(table: str, schema: pa.Schema) -> None:
    """Refuse a column, or a field nested in one, whose name some warehouse would not keep as
    is, and names that repeat at one level (after folding case)."""
    for path, names in _levels(schema, ()):
        seen: set[str] = set()
        for name in names:
            where = ".".join((table, *path, str(name)))
            problem = name_problem(name)
            if problem is not None:
                raise ConfigError(f"column {where!r}: its name {problem}")
            if name.lower() in seen:
                raise ConfigError(f"column {where!r} appears twice")
            seen.add(name.lower())


def _levels(
    fields: "pa.Schema | pa.StructType", path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], list[str]]]:
    """Each level of nesting: its path and the names of its fields."""
    members: list[pa.Field[Any]] = list(fields)
    yield path, [f.name for f in members]
    for member in members:
        struct = _struct_in(member.type)
        if struct is not None:
            yield from _levels(struct, (*path, member.name))


def _struct_in(kind: pa.DataType) -> "pa.StructType | None":
    while pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    return kind if pa.types.is_struct(kind) else None


def fitted_name(name: str) -> str:
    """A name we derive (an index, a staging table) within ``MAX_NAME_BYTES``: a long one keeps
    its start and gains a digest of the whole, so two never merge when a warehouse cuts them."""
    encoded = name.encode()
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:_DIGEST_CHARS]
    start = encoded[: MAX_NAME_BYTES - _DIGEST_CHARS - 1].decode(errors="ignore")
    return f"{start}_{digest}"
