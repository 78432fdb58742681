"""List answers straight to Arrow: ``PageRecords`` and ``PageBatches``, the client's page
decoders for a table.

Joins the client's Arrow reader of list envelopes (``client.arrow_envelope``) to a table's schema
(``tables``); the extractor hands one to the client for each listing it pages.
"""

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

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

__all__ = ["PageBatches", "PageRecords"]

# Column kinds Arrow's JSON reader builds exactly as to_record_batch does.
_FAST_KINDS = frozenset({"string", "int", "timestamp", "list"})


class _NotConformingError(pa.ArrowInvalid):
    """A page the fast reader cannot represent exactly: the JSON path takes it."""


def _has_timestamp(type_: pa.DataType | None) -> bool:
    # Arrow's JSON reader would read a zone-less time as UTC where to_record_batch refuses it;
    # top-level timestamps are read as text and cast, nested ones would not be.
    if type_ is None:
        return False
    if pa.types.is_timestamp(type_):
        return True
    return any(_has_timestamp(type_.field(i).type) for i in range(type_.num_fields))


class PageRecords:
    """Decodes list answers of a table into their records as read, in C++: one struct array per
    answer, the API's field names, timestamps still text. ``batches`` turns the records of many
    answers into batches of the table's schema at once, so the per-column work is done once per
    listing rather than once per page, and on whichever thread calls it.

    ``decode`` reads a whole answer with Arrow's JSON reader against the table's API field
    names; it returns None (and the caller parses the JSON and calls ``from_records``, the
    exact path) for anything that is not plainly conforming: an unknown field anywhere (it
    belongs in ``_extra``), a value of another type, a missing required value, invalid
    UTF-8. A timestamp that the shared cast cannot read is found by ``batches``, which then
    takes that answer's records through the exact path (which names the record or accepts
    the value), so both paths agree value for value. Only tables whose rows are the API
    records unchanged and whose columns are text, integers, timestamps or lists qualify;
    others always return None.

    It holds no Python object per row and never makes pyarrow import pandas.
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
        self._required = [c.source for c in spec.columns if not c.nullable]
        if fast:
            fields = [
                pa.field(c.source, pa.string() if c.kind == "timestamp" else c.api_type or c.type)
                for c in spec.columns
            ]
            self._options = envelope_parse_options(fields)

    def decode(self, raw: bytes) -> tuple[dict[str, object], pa.StructArray, list[object]] | None:
        """(envelope members, the page's records, each row's ``uid``), or None: use the JSON
        path."""
        if self._options is None:
            return None
        read = read_envelope(raw, self._options)
        if read is None:
            return None
        envelope, records = read
        if any(records.field(name).null_count for name in self._required):
            return None  # the JSON path names the record
        keys: list[object] = records.field("uid").to_pylist() if "uid" in self._sources else []
        return envelope, records, keys

    @property
    def _sources(self) -> frozenset[str]:
        return self._spec.known_sources

    def from_records(self, records: list[dict[str, object]]) -> pa.RecordBatch:
        """The exact path: ``to_record_batch`` of records parsed as JSON."""
        return to_record_batch(
            self._spec,
            records,
            extracted_at=self._extracted_at,
            run_id=self._run_id,
            partition_value=self._partition_value,
        )

    def batches(self, pages: Sequence[pa.StructArray | pa.RecordBatch]) -> list[pa.RecordBatch]:
        """The pages (``decode``'s records or ``from_records``' batches) as batches of the
        table's schema, in order: consecutive records converted together."""
        out: list[pa.RecordBatch] = []
        run: list[pa.StructArray] = []
        for page in [*pages, None]:
            if isinstance(page, pa.StructArray):
                run.append(page)
                continue
            if run:
                out += self._convert(run)
                run = []
            if page is not None:
                out.append(page)
        return out

    def _convert(self, pages: list[pa.StructArray]) -> list[pa.RecordBatch]:
        try:
            return [self.to_batch(pa.concat_arrays(pages))]
        except pa.ArrowException:
            if len(pages) == 1:
                # A value the shared cast cannot read: the exact path names it or accepts it.
                records = cast("list[dict[str, object]]", pages[0].to_pylist())  # type: ignore[misc]
                return [self.from_records(records)]
            return [batch for page in pages for batch in self._convert([page])]

    def to_batch(self, records: pa.StructArray) -> pa.RecordBatch:
        """One batch of the table's schema from ``decode``'s records; raises pa.ArrowException
        (or a subclass of it) for a value the shared cast cannot read."""
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


class PageBatches:
    """Decodes list answers of a table straight into batches of its schema, one per answer:
    ``PageRecords`` with each answer's records converted at once (see there for what is read
    fast and what goes the exact path)."""

    def __init__(
        self,
        spec: TableSpec,
        *,
        extracted_at: dt.datetime,
        run_id: str | None,
        partition_value: dt.date,
    ) -> None:
        self._records = PageRecords(
            spec, extracted_at=extracted_at, run_id=run_id, partition_value=partition_value
        )

    def decode(self, raw: bytes) -> tuple[dict[str, object], pa.RecordBatch, list[object]] | None:
        """(envelope members, the page's batch, each row's ``uid``), or None: use the JSON path."""
        decoded = self._records.decode(raw)
        if decoded is None:
            return None
        envelope, records, keys = decoded
        try:
            batch = self._records.to_batch(records)
        except pa.ArrowException:
            return None
        return envelope, batch, keys

    def from_records(self, records: list[dict[str, object]]) -> pa.RecordBatch:
        """The exact path: ``to_record_batch`` of records parsed as JSON."""
        return self._records.from_records(records)
