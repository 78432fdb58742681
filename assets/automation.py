"""Schedules and sensors: the rolling daily refresh, the weekly sweep, the change-set inbox."""

import datetime as dt
import os
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from assets.extract_assets import (
    CONTACTS_OP,
    DAILY_TABLES,
    SNAPSHOT_TABLES,
    asset_key,
)
from assets.partitions import FUTURE_DAYS, TIMEZONE, daily_partitions

# A booking can be rescheduled or cancelled after it was first extracted: re-extract the recent
# past and the near future every day, and the whole horizon once a week.
REFRESH_PAST_DAYS = int(os.environ.get("JICOO_REFRESH_PAST_DAYS", "7"))
REFRESH_FUTURE_DAYS = int(os.environ.get("JICOO_REFRESH_FUTURE_DAYS", "14"))
SWEEP_PAST_DAYS = int(os.environ.get("JICOO_SWEEP_PAST_DAYS", "90"))

daily_tables_job = dg.define_asset_job(
    "jicoo_daily_tables",
    selection=dg.AssetSelection.assets(*(asset_key(t) for t in DAILY_TABLES)),
    description="Bookings and contacts for a range of days (one run, days in parallel).",
)
snapshots_job = dg.define_asset_job(
    "jicoo_snapshots",
    selection=dg.AssetSelection.assets(
        *(asset_key(t) for t in SNAPSHOT_TABLES), asset_key("warehouse")
    ),
    description="Today's snapshot tables, then the DuckDB warehouse reload.",
)


def refresh_window(today: dt.date, past_days: int, future_days: int) -> tuple[dt.date, dt.date]:
    """The partition range a refresh covers, clipped to the partitions that exist."""
    first = dt.date.fromisoformat(daily_partitions.get_first_partition_key() or today.isoformat())
    return max(first, today - dt.timedelta(days=past_days)), today + dt.timedelta(
        days=min(future_days, FUTURE_DAYS)
    )


def _range_request(
    context: dg.ScheduleEvaluationContext, past_days: int, future_days: int, *, full: bool = False
) -> Iterator[dg.RunRequest]:
    moment = context.scheduled_execution_time
    today = moment.astimezone(ZoneInfo(TIMEZONE)).date()
    start, end = refresh_window(today, past_days, future_days)
    yield dg.RunRequest(
        run_key=f"{start}...{end}@{moment.isoformat()}",
        run_config={"ops": {CONTACTS_OP: {"config": {"full": full}}}},
        tags={
            ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
        },
    )


@dg.schedule(
    job=daily_tables_job,
    cron_schedule="30 3 * * *",
    execution_timezone=TIMEZONE,
    description="Every day: re-extract the last week and the next two weeks of bookings.",
)
def jicoo_refresh_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    yield from _range_request(context, REFRESH_PAST_DAYS, REFRESH_FUTURE_DAYS)


@dg.schedule(
    job=daily_tables_job,
    cron_schedule="0 4 * * 0",
    execution_timezone=TIMEZONE,
    description="Every Sunday: re-extract the whole horizon (past sweep window to the future), "
    "every booking's contacts included.",
)
def jicoo_sweep_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    # The daily refresh reads contacts only for changed bookings; the sweep reads them all, in
    # case a contact changed without its booking (see the README).
    yield from _range_request(context, SWEEP_PAST_DAYS, FUTURE_DAYS, full=True)


jicoo_snapshots_schedule = dg.ScheduleDefinition(
    job=snapshots_job,
    cron_schedule="0 5 * * *",
    execution_timezone=TIMEZONE,
    description="Every day after the refresh: snapshot tables and the warehouse reload.",
)
