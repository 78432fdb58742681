"""The apply log's table, declared as every table is (``tables.TableSpec``): one row per change
of a batch, one Parquet file per batch and run under ``batch=<id>/``. Written by write-back
(``ApplyReport.write_parquet``), never extracted, so it has no lineage columns."""

import pyarrow as pa

from jicoo_connector.tables import UTC_MS, TableSpec, column

__all__ = ["APPLY_LOG"]

_UTC_US = pa.timestamp("us", tz="UTC")

APPLY_LOG = TableSpec(
    "apply_log",
    (
        column("batch_id", "batch_id", pa.string(), nullable=False, doc="The change set's batch."),
        column("row", "row", pa.int32(), nullable=False, doc="The change's row in its file."),
        column("key", "key", pa.string(), doc="Its change_id, else a hash of the change."),
        column("action", "action", pa.string(), doc="reschedule or cancel."),
        column("booking_uid", "booking_uid", pa.string(), doc="The booking it changes."),
        column(
            "before_started_at",
            "before_started_at",
            UTC_MS,
            doc="The booking's start as read before the change (UTC).",
        ),
        column(
            "before_status",
            "before_status",
            pa.string(),
            doc="The booking's status as read before the change.",
        ),
        column(
            "target_started_at",
            "target_started_at",
            UTC_MS,
            doc="The start a reschedule asks for (UTC).",
        ),
        column(
            "after_started_at",
            "after_started_at",
            UTC_MS,
            doc="The booking's start as read back after the change (UTC).",
        ),
        column(
            "after_status",
            "after_status",
            pa.string(),
            doc="The booking's status as read back after the change.",
        ),
        column(
            "state",
            "state",
            pa.string(),
            nullable=False,
            doc="What became of the change: its ledger state, or the plan's verdict if unsent.",
        ),
        column("http_status", "http_status", pa.int16(), doc="The status of its last POST."),
        column("reason", "reason", pa.string(), doc="Why it is in that state, when not applied."),
        column(
            "attempts",
            "attempts",
            pa.int16(),
            nullable=False,
            doc="How many times it was sent, over every run of the batch.",
        ),
        column(
            "started_at",
            "started_at",
            _UTC_US,
            doc="When its last send was recorded as intended (UTC).",
        ),
        column("finished_at", "finished_at", _UTC_US, doc="When its outcome was recorded (UTC)."),
    ),
    ("batch_id", "row"),
    "batch",
    description="What write-back did with each change of a batch: one file per batch and run.",
)
