"""The apply_log table: one row per change per write-back run, its Arrow schema and what each
column holds (the Dagster asset's column schema shows it). Imports nothing of the package."""

from typing import Any

import pyarrow as pa

__all__ = ["APPLY_LOG_DESCRIPTIONS", "APPLY_LOG_SCHEMA"]

_APPLY_LOG_FIELDS: list["pa.Field[Any]"] = [
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("row", pa.int32(), nullable=False),
    pa.field("key", pa.string()),
    pa.field("action", pa.string()),
    pa.field("booking_uid", pa.string()),
    pa.field("before_started_at", pa.timestamp("ms", tz="UTC")),
    pa.field("before_status", pa.string()),
    pa.field("target_started_at", pa.timestamp("ms", tz="UTC")),
    pa.field("after_started_at", pa.timestamp("ms", tz="UTC")),
    pa.field("after_status", pa.string()),
    pa.field("state", pa.string(), nullable=False),
    pa.field("http_status", pa.int16()),
    pa.field("reason", pa.string()),
    pa.field("attempts", pa.int16(), nullable=False),
    pa.field("started_at", pa.timestamp("us", tz="UTC")),
    pa.field("finished_at", pa.timestamp("us", tz="UTC")),
]
APPLY_LOG_SCHEMA = pa.schema(_APPLY_LOG_FIELDS)
# What each apply_log column holds, for people (the Dagster asset's column schema shows it).
APPLY_LOG_DESCRIPTIONS: dict[str, str] = {
    "batch_id": "The ledger batch the change set was applied as (default: the file's name).",
    "row": "The change's line in the change-set CSV (the header is line 1).",
    "key": "The change's key: its change_id, else a hash of action, booking and target.",
    "action": "reschedule or cancel.",
    "booking_uid": "The booking the change is for.",
    "before_started_at": "The booking's start before the change, as read from the API (UTC).",
    "before_status": "The booking's status before the change (open, cancelled...).",
    "target_started_at": "The start the change asked for (UTC); empty for a cancel.",
    "after_started_at": "The booking's start after the change, as read back (UTC).",
    "after_status": "The booking's status after the change, as read back.",
    "state": "Where the change ended: applied, already_applied, conflict, failed, pending, "
    "in_doubt, intent or rejected.",
    "http_status": "The HTTP status of the change's last POST, if one was sent.",
    "reason": "Why the change did not apply (the API's message, the conflict), if it did not.",
    "attempts": "Times an intent to send the change was recorded, over every run of the batch.",
    "started_at": "When the ledger recorded the intent to send the change (UTC).",
    "finished_at": "When the ledger recorded the change's outcome (UTC).",
}
