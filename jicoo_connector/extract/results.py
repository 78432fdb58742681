"""What extracting a partition gives back, and how a partition is written (with its quality)."""

import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from jicoo_connector.client import (
    FetchReport,
)
from jicoo_connector.errors import (
    PermissionDeniedError,
)
from jicoo_connector.extract.defaults import BATCH_ROWS
from jicoo_connector.quality import PartitionQuality, QualityRecorder
from jicoo_connector.storage import ParquetStore, PartitionWriteResult
from jicoo_connector.tables import (
    constant_array,
)

logger = logging.getLogger(__name__)

Records = list[Mapping[str, object]]


@dataclass(frozen=True, slots=True)
class ExtractResult:
    """One partition's outcome. ``skipped_reason`` is set (and nothing written) on a 403.

    ``total_count`` is what the API's totals say the partition should hold, ``None`` where the
    endpoints report no total (contacts, slots) or rows are not records (availability rules).
    ``quality`` is what the data-quality rules need, gathered while the partition was written.
    For contacts, ``contacts_fetched`` bookings had their contacts read from the API and
    ``contacts_reused`` kept theirs from the previous extract (unchanged since).
    """

    table: str
    partition_value: dt.date
    rows: int
    path: str | None
    report: FetchReport
    total_count: int | None
    skipped_reason: str | None = None
    quality: PartitionQuality | None = None
    contacts_fetched: int = 0
    contacts_reused: int = 0


def _skipped(table: str, value: dt.date, denied: PermissionDeniedError) -> ExtractResult:
    reason = f"403 on {denied.endpoint}: the API key may not read {table}"
    logger.warning("skipping %s %s: %s", table, value, reason)
    return ExtractResult(table, value, 0, None, FetchReport(), None, skipped_reason=reason)


def _write(
    store: ParquetStore,
    table: str,
    value: dt.date,
    batches: Iterator[pa.RecordBatch],
    *,
    booking_uids: "pa.ChunkedArray[Any] | None" = None,
    metadata: Mapping[str, str] | None = None,
) -> tuple[PartitionWriteResult, PartitionQuality]:
    """Write one partition and gather its quality figures from the same batches on the way:
    nothing is read back."""
    recorder = QualityRecorder(table, booking_uids)
    written = store.write_partition(
        table, value, (recorder.observe(batch) for batch in batches), metadata=metadata
    )
    return written, recorder.result()


def _slices(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    for offset in range(0, batch.num_rows, BATCH_ROWS):
        yield batch.slice(offset, BATCH_ROWS)


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [constant_array(None, field.type, 0) for field in schema], schema=schema
    )
