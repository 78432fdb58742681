"""What extracting a partition gives back, and how a fetched partition is written (with its
quality gathered on the way)."""

import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from jicoo_connector.client import FetchReport
from jicoo_connector.errors import PermissionDeniedError
from jicoo_connector.extract._defaults import BATCH_ROWS
from jicoo_connector.extract.sources import ExtractContext, Fetched
from jicoo_connector.quality import PartitionQuality, QualityRecorder
from jicoo_connector.storage import ZONE_KEY
from jicoo_connector.tables import TableSpec, to_record_batch

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExtractResult:
    """One partition's outcome. ``skipped_reason`` is set (and nothing written) on a 403.

    ``total_count`` is what the API's totals say the partition should hold, ``None`` where the
    endpoints report no total (contacts, slots) or rows are not records (availability rules).
    ``quality`` is what the data-quality rules need, gathered while the partition was written.
    ``counters`` are the table's own figures (booking_contacts: ``contacts_fetched``, bookings
    whose contacts were read from the API, and ``contacts_reused``, carried over unchanged).
    """

    table: str
    partition_value: dt.date
    rows: int
    path: str | None
    report: FetchReport
    total_count: int | None
    skipped_reason: str | None = None
    quality: PartitionQuality | None = None
    counters: Mapping[str, int] = field(default_factory=dict)


def skipped(table: str, value: dt.date, denied: PermissionDeniedError) -> ExtractResult:
    reason = f"403 on {denied.endpoint}: the API key may not read {table}"
    logger.warning("skipping %s %s: %s", table, value, reason)
    return ExtractResult(table, value, 0, None, FetchReport(), None, skipped_reason=reason)


def write_fetched(
    spec: TableSpec, value: dt.date, fetched: Fetched, ctx: ExtractContext
) -> ExtractResult:
    """Replace one partition of the table ``spec`` with what was fetched, gathering its quality
    figures from the same batches on the way: nothing is read back. Blocking (run it in a
    thread)."""
    recorder = QualityRecorder(spec, fetched.booking_uids)
    written = ctx.store.write_partition(
        spec,
        value,
        (recorder.observe(batch) for batch in _batches(spec, value, fetched, ctx)),
        metadata={**fetched.footer, ZONE_KEY: ctx.zone.key},
    )
    return ExtractResult(
        spec.name,
        value,
        written.rows,
        written.path,
        fetched.report,
        fetched.total_count,
        quality=recorder.result(),
        counters=fetched.counters,
    )


def _batches(
    spec: TableSpec, value: dt.date, fetched: Fetched, ctx: ExtractContext
) -> Iterator[pa.RecordBatch]:
    """The partition in batches of at most BATCH_ROWS rows, built as the writer asks for them:
    one batch of Arrow memory at a time beside the rows."""
    if fetched.data is not None:
        for offset in range(0, fetched.data.num_rows, BATCH_ROWS):
            yield from fetched.data.slice(offset, BATCH_ROWS).combine_chunks().to_batches()
        return
    for offset in range(0, len(fetched.rows), BATCH_ROWS):
        yield to_record_batch(
            spec,
            fetched.rows[offset : offset + BATCH_ROWS],
            extracted_at=ctx.extracted_at,
            run_id=ctx.run_id,
            partition_value=value,
        )
