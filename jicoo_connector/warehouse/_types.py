"""The one table of Arrow -> warehouse column types, per backend, and how staged text becomes JSON.

Every column the loader creates or compares goes through ``sql_type``. Timestamps are UTC
instants (``timestamp[ms, tz=UTC]`` in Arrow) in every backend; nested lists are native in
DuckDB (as the embedded warehouse always had them) and JSON elsewhere (staged as JSON text).
"""

from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import pyarrow as pa

from jicoo_connector.errors import WarehouseError
from jicoo_connector.warehouse._ident import quote_identifier
from jicoo_connector.warehouse._url import Backend

__all__ = [
    "TYPE_TABLE",
    "ArrowField",
    "Logical",
    "SqlType",
    "logical_type",
    "normalized",
    "sql_type",
]

# pyarrow-stubs make Field generic over its type.
ArrowField: TypeAlias = "pa.Field[Any]"
Logical = Literal[
    "string", "bool", "int8", "int16", "int32", "int64", "date", "timestamp", "nested"
]


@dataclass(frozen=True, slots=True)
class SqlType:
    """A column type: ``ddl`` as written in CREATE/ALTER, ``reported`` as the backend's
    information_schema names it (what an existing column is compared with)."""

    ddl: str
    reported: str


def _same(name: str) -> SqlType:
    return SqlType(name, name)


# logical type -> backend -> type. DuckDB's nested types are derived from the Arrow type (below).
TYPE_TABLE: Final[dict[Logical, dict[Backend, SqlType]]] = {
    "string": {
        "duckdb": _same("VARCHAR"),
        "postgresql": _same("text"),
        "snowflake": SqlType("VARCHAR", "TEXT"),
        "bigquery": _same("STRING"),
    },
    "bool": {
        "duckdb": _same("BOOLEAN"),
        "postgresql": _same("boolean"),
        "snowflake": _same("BOOLEAN"),
        "bigquery": _same("BOOL"),
    },
    # PostgreSQL has no 1-byte integer; Snowflake reports every integer as NUMBER; BigQuery has
    # only INT64.
    "int8": {
        "duckdb": _same("TINYINT"),
        "postgresql": _same("smallint"),
        "snowflake": SqlType("NUMBER(3,0)", "NUMBER"),
        "bigquery": _same("INT64"),
    },
    "int16": {
        "duckdb": _same("SMALLINT"),
        "postgresql": _same("smallint"),
        "snowflake": SqlType("NUMBER(5,0)", "NUMBER"),
        "bigquery": _same("INT64"),
    },
    "int32": {
        "duckdb": _same("INTEGER"),
        "postgresql": _same("integer"),
        "snowflake": SqlType("NUMBER(10,0)", "NUMBER"),
        "bigquery": _same("INT64"),
    },
    "int64": {
        "duckdb": _same("BIGINT"),
        "postgresql": _same("bigint"),
        "snowflake": SqlType("NUMBER(19,0)", "NUMBER"),
        "bigquery": _same("INT64"),
    },
    "date": {
        "duckdb": _same("DATE"),
        "postgresql": _same("date"),
        "snowflake": _same("DATE"),
        "bigquery": _same("DATE"),
    },
    "timestamp": {
        "duckdb": _same("TIMESTAMP WITH TIME ZONE"),
        "postgresql": _same("timestamp with time zone"),
        "snowflake": _same("TIMESTAMP_TZ"),
        "bigquery": _same("TIMESTAMP"),  # BigQuery's TIMESTAMP is an absolute (UTC) instant
    },
    "nested": {
        "postgresql": _same("jsonb"),
        "snowflake": _same("VARIANT"),
        "bigquery": _same("JSON"),
    },
}

# How a staged JSON text column becomes the target's JSON type ({} is the staged column).
JSON_FROM_TEXT: Final[dict[Backend, str]] = {
    "postgresql": "CAST({} AS jsonb)",
    "snowflake": "PARSE_JSON({})",
    "bigquery": "PARSE_JSON({})",
}

_INTEGERS: Final[dict[int, Logical]] = {8: "int8", 16: "int16", 32: "int32", 64: "int64"}


def logical_type(field: ArrowField) -> Logical:
    """The row of ``TYPE_TABLE`` for an Arrow field; anything unmapped is refused by name."""
    kind = field.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_signed_integer(kind):
        return _INTEGERS[kind.bit_width]
    if pa.types.is_date32(kind):
        return "date"
    if pa.types.is_timestamp(kind) and kind.tz in ("UTC", "+00:00"):
        return "timestamp"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_struct(kind):
        return "nested"
    raise WarehouseError(
        f"column {field.name!r}: no warehouse type for Arrow {kind} (add it to _types)"
    )


def _duckdb_nested(kind: pa.DataType) -> str:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"{_duckdb_nested(kind.value_type)}[]"
    if pa.types.is_struct(kind):
        inner = ", ".join(
            f"{quote_identifier('duckdb', f.name)} {_duckdb_nested(f.type)}" for f in kind
        )
        return f"STRUCT({inner})"
    return TYPE_TABLE[logical_type(pa.field("element", kind))]["duckdb"].ddl


def sql_type(field: ArrowField, backend: Backend) -> SqlType:
    logical = logical_type(field)
    if logical == "nested" and backend == "duckdb":
        return _same(_duckdb_nested(field.type))
    return TYPE_TABLE[logical][backend]


def normalized(reported: str) -> str:
    """A reported type in one spelling: DuckDB quotes some struct field names, others vary case."""
    return " ".join(reported.replace('"', "").upper().split())
