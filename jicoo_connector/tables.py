"""The schema machinery: how a table is declared (``TableSpec``, its columns and their Arrow
types) and how API records become a RecordBatch of its schema.

The only place where the API's camelCase becomes snake_case. It knows no table by name: the
tables themselves are declared where they are made (``extract/catalog/``, a user's
``register_table``, write-back's apply log) and kept in the registry (``jicoo_connector.extract``).
Imports nothing of the connector but its errors.
"""

import array
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from jicoo_connector.errors import ConfigError, RecordConversionError

__all__ = [
    "DAY_COLUMN",
    "EXTRACTED_AT_COLUMN",
    "EXTRA_COLUMN",
    "RUN_ID_COLUMN",
    "SNAPSHOT_COLUMN",
    "UTC_MS",
    "Partitioning",
    "TableSpec",
    "check_batchable",
    "column",
    "constant_array",
    "int_bool_column",
    "json_column",
    "parse_timestamps",
    "rename_struct_list",
    "struct_list_column",
    "to_record_batch",
    "with_lineage",
]

UTC_MS = pa.timestamp("ms", tz="UTC")
# Parsing through nanoseconds accepts any fraction; beyond ns range (1677-2262) fails loudly.
_UTC_NS = pa.timestamp("ns", tz="UTC")
EXTRA_COLUMN = "_extra"
EXTRACTED_AT_COLUMN = "_extracted_at"
RUN_ID_COLUMN = "_run_id"
DAY_COLUMN = "day"
SNAPSHOT_COLUMN = "snapshot_date"

# Error messages show at most this much of a bad (non-personal) value.
_MAX_SHOWN_CHARS = 64

# "day" and "snapshot": an extracted table, one partition per date, the date being a column too
# (typed date32, also the hive folder's key) beside the extract's lineage columns. "batch": a
# table written by write-back (the apply log), one file per batch and run under ``batch=<id>/``;
# its rows carry their batch id and times themselves, so its schema is its columns alone.
Partitioning = Literal["day", "snapshot", "batch"]
_FOLDER_KEYS: dict[Partitioning, str] = {
    "day": DAY_COLUMN,
    "snapshot": SNAPSHOT_COLUMN,
    "batch": "batch",
}
# pyarrow-stubs make Array generic over its scalar type; columns here are heterogeneous.
_Arr: TypeAlias = "pa.Array[Any]"
_Kind = Literal["string", "int", "bool", "int_bool", "timestamp", "json", "list"]


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    source: str
    type: pa.DataType
    kind: _Kind
    nullable: bool = True
    # For list<struct>: the same type with the API's field names, renamed after building.
    api_type: pa.DataType | None = None
    struct_sources: frozenset[str] = frozenset()
    # What the column holds, for people: Dagster's column schema and the README show it.
    doc: str = ""


def column(
    name: str, source: str, type_: pa.DataType, *, nullable: bool = True, doc: str
) -> _Column:
    """A column ``name`` read from the API field ``source``; its kind follows ``type_``."""
    kind: _Kind
    if pa.types.is_timestamp(type_):
        kind = "timestamp"
    elif pa.types.is_integer(type_):
        kind = "int"
    elif pa.types.is_boolean(type_):
        kind = "bool"
    elif pa.types.is_list(type_):
        kind = "list"
    else:
        kind = "string"
    return _Column(name, source, type_, kind, nullable, doc=doc)


def json_column(name: str, source: str, *, doc: str) -> _Column:
    """A field whose shape the API does not document: kept verbatim as a JSON string."""
    return _Column(name, source, pa.string(), "json", doc=doc)


def int_bool_column(name: str, source: str, *, doc: str) -> _Column:
    """The API's 0/1 integers that mean a flag (availability ``isDefault``)."""
    return _Column(name, source, pa.bool_(), "int_bool", doc=doc)


def struct_list_column(
    name: str, source: str, fields: Sequence[tuple[str, str, pa.DataType]], *, doc: str
) -> _Column:
    """A list of structs; ``fields`` are (column name, API field, type) of each struct."""
    snake = pa.list_(pa.struct([pa.field(col, type_) for col, _, type_ in fields]))
    camel = pa.list_(pa.struct([pa.field(src, type_) for _, src, type_ in fields]))
    return _Column(
        name,
        source,
        snake,
        "list",
        api_type=camel,
        struct_sources=frozenset(src for _, src, _ in fields),
        doc=doc,
    )


RowsFn = Callable[[Iterable[Mapping[str, object]]], Iterable[Mapping[str, object]]]


def _identity(records: Iterable[Mapping[str, object]]) -> Iterable[Mapping[str, object]]:
    return records


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table: its Arrow schema, key columns and how it is partitioned (``Partitioning``).

    ``partition_column`` is the key of the table's hive folders (``day=2026-11-25/``). For an
    extracted table it is a column of ``schema`` too, typed: a file read on its own lacks it
    (``storage.file_schema``), a dataset read through the store has it.
    """

    name: str
    columns: tuple[_Column, ...]
    key_columns: tuple[str, ...]
    partitioning: Partitioning
    rows: RowsFn = _identity
    # Quality rules beyond those every table gets (quality.check_names): its asset checks.
    checks: tuple[str, ...] = ()
    # What the table holds, for people: the Dagster asset's description leads with it.
    description: str = ""
    schema: pa.Schema = field(init=False)
    known_sources: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", _schema_of(self))
        object.__setattr__(self, "known_sources", frozenset(c.source for c in self.columns))

    @property
    def partition_column(self) -> str:
        return _FOLDER_KEYS[self.partitioning]

    @property
    def extracted(self) -> bool:
        """Read from the API (partitioned by a date, with lineage), not written by write-back."""
        return self.partitioning != "batch"

    @property
    def reshapes(self) -> bool:
        """Its rows are made from the API's records by ``rows``, not the records themselves."""
        return self.rows is not _identity

    def column_descriptions(self) -> dict[str, str]:
        """Every column of ``schema`` -> what it holds (the API's fields, then ours)."""
        if not self.extracted:
            return {c.name: c.doc for c in self.columns}
        partition = (
            "The partition: the calendar day the booking starts on, in the extract's zone "
            "(JICOO_TIMEZONE)"
            if self.partitioning == "day"
            else "The partition: the day (in the zone of the extract) the snapshot was taken"
        )
        return {
            **{c.name: c.doc for c in self.columns},
            self.partition_column: partition + "; also in the hive path.",
            EXTRA_COLUMN: "Fields the schema does not know, as JSON (null: none); never dropped.",
            EXTRACTED_AT_COLUMN: "When the row was read from the API (UTC).",
            RUN_ID_COLUMN: "The Dagster run (or none, from the CLI) that read the row.",
        }


def _schema_of(spec: TableSpec) -> pa.Schema:
    fields = [pa.field(c.name, c.type, nullable=c.nullable) for c in spec.columns]
    if not spec.extracted:
        return pa.schema(fields)
    fields += [
        pa.field(spec.partition_column, pa.date32(), nullable=False),
        pa.field(EXTRA_COLUMN, pa.string()),
        pa.field(EXTRACTED_AT_COLUMN, UTC_MS, nullable=False),
        pa.field(RUN_ID_COLUMN, pa.string()),
    ]
    return pa.schema(fields)


class _BadValueError(Exception):
    """Internal: a column could not be built; the caller locates the record."""


def _build_timestamps(values: list[Any]) -> _Arr:
    return parse_timestamps(pa.array(values, pa.string()))


def parse_timestamps(strings: _Arr) -> _Arr:
    try:
        return strings.cast(UTC_MS)
    except pa.ArrowInvalid:
        # Sub-millisecond fractions fail the direct cast; parse at ns, then truncate to ms.
        return strings.cast(_UTC_NS).cast(UTC_MS, safe=False)


def _build_ints(values: list[Any], type_: pa.DataType) -> _Arr:
    # Inference first: pa.array(floats, int64) would silently truncate 1.5 to 1.
    inferred: _Arr = pa.array(values)
    if not (pa.types.is_integer(inferred.type) or pa.types.is_null(inferred.type)):
        raise _BadValueError(f"expected integers, got {inferred.type}")
    return inferred.cast(type_)


def _build_int_bools(values: list[Any]) -> _Arr:
    inferred: _Arr = pa.array(values)
    if pa.types.is_boolean(inferred.type) or pa.types.is_null(inferred.type):
        return inferred.cast(pa.bool_())
    if not pa.types.is_integer(inferred.type):
        raise _BadValueError(f"expected 0/1, got {inferred.type}")
    if pc.any(pc.invert(pc.is_in(inferred.drop_null(), pa.array([0, 1])))).as_py():
        raise _BadValueError("expected 0 or 1")
    return inferred.cast(pa.bool_())


def _build_json(values: list[Any]) -> _Arr:
    return pa.array(
        [
            None if v is None else orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
            for v in values
        ],
        pa.string(),
    )


def rename_struct_list(built: _Arr, target: pa.DataType) -> _Arr:
    # Arrow casts structs by field name, so a camelCase -> snake_case rename is a rebuild that
    # reuses the child buffers (no copy of the data).
    if not (isinstance(built, pa.ListArray) and isinstance(target, pa.ListType)):
        raise TypeError(f"expected a list array, got {built.type}")
    values = built.values
    if not isinstance(values, pa.StructArray):
        raise TypeError(f"expected list<struct>, got {built.type}")
    struct_type = target.value_type
    renamed = pa.StructArray.from_arrays(
        [values.field(i) for i in range(values.type.num_fields)],
        fields=list(struct_type),
        mask=values.is_null() if values.null_count else None,
    )
    return pa.ListArray.from_arrays(
        built.offsets, renamed, type=target, mask=built.is_null() if built.null_count else None
    )


def _build(column: _Column, values: list[Any]) -> _Arr:
    try:
        match column.kind:
            case "timestamp":
                return _build_timestamps(values)
            case "int":
                return _build_ints(values, column.type)
            case "int_bool":
                return _build_int_bools(values)
            case "json":
                return _build_json(values)
            case "list" if any(v is not None and not isinstance(v, list) for v in values):
                # Arrow would read a string as a list of its characters.
                raise _BadValueError("expected a list")
            case "list" if column.api_type is not None:
                return rename_struct_list(pa.array(values, column.api_type), column.type)
            case _:
                return pa.array(values, column.type)
    except (pa.ArrowException, OverflowError, TypeError, ValueError, orjson.JSONEncodeError) as exc:
        raise _BadValueError(str(exc).split("\n", 1)[0]) from exc


def _record_key(spec: TableSpec, row: Mapping[str, object]) -> str:
    sources = {c.name: c.source for c in spec.columns}
    return ", ".join(f"{key}={row.get(sources[key])!r}" for key in spec.key_columns)


def _shown(column: _Column, value: object) -> str:
    # Text and nested columns can hold personal data (names, emails): name only the type.
    if column.kind in ("timestamp", "int", "int_bool", "bool"):
        return repr(value)[:_MAX_SHOWN_CHARS]
    return f"of type {type(value).__name__}"


def _locate_failure(
    spec: TableSpec, column: _Column, rows: Sequence[Mapping[str, object]], values: list[Any]
) -> RecordConversionError:
    # Only on the failure path: rebuild value by value to name the offending record.
    for row, value in zip(rows, values, strict=True):
        try:
            _build(column, [value])
        except _BadValueError as exc:
            return RecordConversionError(
                spec.name,
                column.name,
                _record_key(spec, row),
                f"bad value {_shown(column, value)}: {exc}",
            )
    return RecordConversionError(spec.name, column.name, "unknown", "the column could not be built")


def _extras(spec: TableSpec, rows: Sequence[Mapping[str, object]]) -> _Arr:
    known = spec.known_sources
    nested = [c for c in spec.columns if c.api_type is not None]
    # Records of one listing share a few key layouts: compare each layout with the schema once.
    unknown_of_layout: dict[tuple[str, ...], frozenset[str]] = {}
    item_is_known: dict[tuple[str, tuple[str, ...]], bool] = {}

    def nested_unknown(column: _Column, value: object) -> bool:
        if not isinstance(value, list):
            return False
        for item in value:
            if not isinstance(item, Mapping):
                continue
            layout = (column.source, tuple(item))
            ok = item_is_known.get(layout)
            if ok is None:
                ok = item_is_known[layout] = not (item.keys() - column.struct_sources)
            if not ok:
                return True
        return False

    out: list[str | None] = []
    for row in rows:
        layout = tuple(row)
        unknown_keys = unknown_of_layout.get(layout)
        if unknown_keys is None:
            unknown_keys = unknown_of_layout[layout] = frozenset(row.keys() - known)
        # A nested item with fields the struct does not know: keep the whole original list.
        unknown = unknown_keys.union(
            c.source for c in nested if nested_unknown(c, row.get(c.source))
        )
        if not unknown:
            out.append(None)
            continue
        try:
            text = orjson.dumps({k: row[k] for k in unknown}, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError as exc:
            raise RecordConversionError(
                spec.name, EXTRA_COLUMN, _record_key(spec, row), f"not JSON-serialisable: {exc}"
            ) from exc
        out.append(text.decode())
    return pa.array(out, pa.string())


def to_record_batch(
    spec: TableSpec,
    records: Iterable[Mapping[str, object]],
    *,
    extracted_at: dt.datetime,
    run_id: str | None,
    partition_value: dt.date,
) -> pa.RecordBatch:
    """Convert API records of the table ``spec`` into one batch of its schema, column by column.

    >>> users = TableSpec("users", (column("uid", "uid", pa.string(), doc="id"),), ("uid",),
    ...                   "snapshot")
    >>> now = dt.datetime.now(dt.timezone.utc)
    >>> to_record_batch(users, [{"uid": "u1", "name": "A"}], extracted_at=now,
    ...                 run_id=None, partition_value=dt.date(2024, 3, 1)).column("_extra")[0]
    <pyarrow.StringScalar: '{"name":"A"}'>
    """
    check_batchable(spec, extracted_at)
    rows = list(spec.rows(records))
    arrays: list[_Arr] = []
    for column in spec.columns:
        values = [row.get(column.source) for row in rows]
        try:
            array = _build(column, values)
        except _BadValueError:
            raise _locate_failure(spec, column, rows, values) from None
        if not column.nullable and array.null_count:
            first_null = pc.index(array.is_null(), True).as_py()
            raise RecordConversionError(
                spec.name, column.name, _record_key(spec, rows[first_null]), "missing value"
            )
        arrays.append(array)
    return with_lineage(
        spec,
        arrays,
        _extras(spec, rows),
        partition_value=partition_value,
        extracted_at=extracted_at,
        run_id=run_id,
    )


def check_batchable(spec: TableSpec, extracted_at: dt.datetime) -> None:
    """Raise ConfigError unless batches of an extract of ``spec`` at ``extracted_at`` can be
    built: an extracted table (not the apply log) and a timezone-aware time."""
    if not spec.extracted:
        raise ConfigError(f"{spec.name} is written by write-back, not extracted from the API")
    if extracted_at.tzinfo is None:
        raise ConfigError("extracted_at must be timezone-aware")


def with_lineage(
    spec: TableSpec,
    columns: list[_Arr],
    extras: _Arr,
    *,
    partition_value: dt.date,
    extracted_at: dt.datetime,
    run_id: str | None,
) -> pa.RecordBatch:
    """The batch of ``spec``'s schema: its columns, then the partition value, ``_extra`` and
    the lineage columns (constant over the batch)."""
    n = len(extras)
    arrays = [
        *columns,
        constant_array(partition_value, pa.date32(), n),
        extras,
        constant_array(extracted_at, UTC_MS, n),
        constant_array(run_id, pa.string(), n),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=spec.schema)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def constant_array(value: dt.date | dt.datetime | str | None, type_: pa.DataType, n: int) -> _Arr:
    """``n`` copies of ``value`` (a date32, UTC_MS or string column), built from raw buffers.

    pyarrow imports pandas on its first conversion of a Python object (``pa.array``,
    ``pa.scalar``); extraction of conforming pages never converts one, so it never imports it.
    """
    if value is None:
        nulls: _Arr = pa.nulls(n, type_)  # type: ignore[call-overload]  # stubs: concrete types
        return nulls
    if type_ == pa.date32() and isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        days = (value - _EPOCH.date()).days
        return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(array.array("i", [days]) * n)])
    if type_ == UTC_MS and isinstance(value, dt.datetime) and value.tzinfo is not None:
        ms = (value - _EPOCH) // dt.timedelta(milliseconds=1)
        return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(array.array("q", [ms]) * n)])
    if type_ == pa.string() and isinstance(value, str):
        encoded = value.encode()
        offsets = array.array("i", range(0, (n + 1) * len(encoded), len(encoded) or 1))
        if not encoded:
            offsets = array.array("i", [0]) * (n + 1)
        return pa.Array.from_buffers(
            type_, n, [None, pa.py_buffer(offsets), pa.py_buffer(encoded * n)]
        )
    raise TypeError(f"no constant column of {type_} from {type(value).__name__}")
