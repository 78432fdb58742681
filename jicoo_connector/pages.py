"""List answers straight to Arrow: ``PageBatches``, the client's page decoder for a table.

Joins the client's Arrow reader of list envelopes (``client.arrow_envelope``) to a table's schema
(``tables``); the extractor hands one to the client for each listing it pages.
"""

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson

from jicoo_connector.client.arrow_envelope import envelope_parse_options, read_envelope
from jicoo_connector.tables import (
    TableSpec,
    check_batchable,
    constant_array,
    parse_timestamps,
    rename_struct_list,
    to_record_batch,
    with_lineage,
)

__all__ = ["PageBatches"]

# Column kinds Arrow's JSON reader builds exactly as to_record_batch does.
_FAST_KINDS = frozenset({"string", "int", "timestamp", "list"})


class _NotConformingError(Exception):
    """A page the fast reader cannot represent exactly: the JSON path takes it."""


def _has_timestamp(type_: pa.DataType | None) -> bool:
    # Arrow's JSON reader would read a zone-less time as UTC where to_record_batch refuses it;
    # top-level timestamps are read as text and cast, nested ones would not be.
    if type_ is None:
        return False
    if pa.types.is_timestamp(type_):
        return True
    return any(_has_timestamp(type_.field(i).type) for i in range(type_.num_fields))


class PageBatches:
    """Decodes list answers of a table straight into batches of its schema, in C++.

    ``decode`` reads a whole answer with Arrow's JSON reader against the table's API field
    names; it returns None (and the caller parses the JSON and calls ``from_records``, the
    exact path) for anything that is not plainly conforming: an unknown field anywhere (it
    belongs in ``_extra``), a value of another type, a missing required value, invalid
    UTF-8. Timestamps are read as text and parsed by the same cast as ``to_record_batch``,
    so both paths agree value for value. Only tables whose rows are the API records unchanged
    and whose columns are text, integers, timestamps or lists qualify; others always return
    None.

    It is not cheaper in CPU than parsing the JSON into dicts and converting those, but it runs
    with the GIL released, so beside the event loop, holds no Python object per row, and never
    makes pyarrow import pandas.
    """

    def __init__(
        self,
        spec: TableSpec,
        *,
        extracted_at: dt.datetime,
        run_id: str | None,
        partition_value: dt.date,
    ) -> None:
        check_batchable(spec, extracted_at)
        self._spec = spec
        self._extracted_at = extracted_at
        self._run_id = run_id
        self._partition_value = partition_value
        fast = not spec.reshapes and all(
            c.kind in _FAST_KINDS and not _has_timestamp(c.api_type) for c in spec.columns
        )
        self._options: pajson.ParseOptions | None = None
        if fast:
            fields = [
                pa.field(c.source, pa.string() if c.kind == "timestamp" else c.api_type or c.type)
                for c in spec.columns
            ]
            self._options = envelope_parse_options(fields)

    def decode(self, raw: bytes) -> tuple[dict[str, object], pa.RecordBatch, list[object]] | None:
        """(envelope members, the page's batch, each row's ``uid``), or None: use the JSON path."""
        if self._options is None:
            return None
        read = read_envelope(raw, self._options)
        if read is None:
            return None
        envelope, records = read
        try:
            batch = self._batch(records)
        except (pa.ArrowException, _NotConformingError):
            return None
        keys: list[object] = batch.column("uid").to_pylist() if "uid" in batch.schema.names else []
        return envelope, batch, keys

    def from_records(self, records: list[dict[str, object]]) -> pa.RecordBatch:
        """The exact path: ``to_record_batch`` of records parsed as JSON."""
        return to_record_batch(
            self._spec,
            records,
            extracted_at=self._extracted_at,
            run_id=self._run_id,
            partition_value=self._partition_value,
        )

    def _batch(self, records: pa.StructArray) -> pa.RecordBatch:
        arrays: list[pa.Array[Any]] = []
        for column in self._spec.columns:
            child = records.field(column.source)
            if column.kind == "timestamp":
                child = parse_timestamps(child)
            elif column.api_type is not None:
                child = rename_struct_list(child, column.type)
            if not column.nullable and child.null_count:
                raise _NotConformingError("missing value")  # the JSON path names the record
            arrays.append(child)
        # No unknown fields (or decode gave up): _extra is null throughout.
        return with_lineage(
            self._spec,
            arrays,
            constant_array(None, pa.string(), len(records)),
            partition_value=self._partition_value,
            extracted_at=self._extracted_at,
            run_id=self._run_id,
        )
