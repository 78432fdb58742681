"""A list answer's JSON envelope read straight into Arrow, for PageDecoders that build batches.

The envelope (openapi.yaml: ``data`` and the paging members beside it) is the API's; what the
records of ``data`` hold is the caller's (a table schema). Kept out of the client's package
namespace so that importing the client does not import pyarrow.
"""

import io
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

__all__ = ["ENVELOPE_FIELDS", "envelope_parse_options", "read_envelope"]

# The list envelope: members beside ``data``. ``errors`` is ``{}`` on success.
ENVELOPE_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("totalCount", pa.int64()),
    ("count", pa.int64()),
    ("currentPage", pa.int64()),
    ("numberOfPages", pa.int64()),
    ("nextPage", pa.int64()),
    ("errors", pa.struct([])),
)


def envelope_parse_options(record_fields: Sequence["pa.Field[Any]"]) -> pajson.ParseOptions:
    """Arrow's JSON reader options for a list answer whose records have exactly these fields:
    any other member, in the envelope or a record, makes the reader fail."""
    envelope = pa.schema(
        [pa.field("data", pa.list_(pa.struct(list(record_fields))))]
        + [pa.field(name, type_) for name, type_ in ENVELOPE_FIELDS]
    )
    return pajson.ParseOptions(explicit_schema=envelope, unexpected_field_behavior="error")


def read_envelope(
    raw: bytes, options: pajson.ParseOptions
) -> tuple[dict[str, object], pa.StructArray] | None:
    """(the envelope's paging members, the records of ``data`` as one struct array), or None
    when the body is not plainly one conforming answer: the caller then parses it as JSON."""
    try:
        # The streaming reader: read_json starts a thread for every call, even unthreaded.
        read = pajson.open_json(
            io.BytesIO(raw),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(raw) + 1),
            parse_options=options,
        ).read_all()
    except pa.ArrowException:
        return None
    if read.num_rows != 1:
        return None  # several documents in one body: not an answer we read this way
    row = read.slice(0, 1).combine_chunks()
    data = row.column("data")
    if data.null_count:
        return None
    records: object = pc.list_flatten(data.chunk(0))
    if not isinstance(records, pa.StructArray):
        return None
    try:
        records.validate(full=True)  # the reader does not check UTF-8 in strings
    except pa.ArrowException:
        return None
    envelope = {name: row.column(name)[0].as_py() for name, _ in ENVELOPE_FIELDS[:-1]}
    return envelope, records
