"""Schedules: the rolling daily refresh, the weekly sweep and the snapshots (the change-set
inbox sensor lives with the write-back in writeback.py)."""

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from assets.extract_assets import (
    asset_key,
    daily_tables,
    op_name,
    partitioning_selection,
)
from jicoo_connector.config import ConnectorConfig

daily_tables_job = dg.define_asset_job(
    "jicoo_daily_tables",
    selection=partitioning_selection("day"),
    description="Bookings and contacts for a range of days (one run, days in parallel).",
)
snapshots_job = dg.define_asset_job(
    "jicoo_snapshots",
    selection=partitioning_selection("snapshot") | dg.AssetSelection.assets(asset_key("warehouse")),
    description="Today's snapshot tables, then the DuckDB warehouse reload.",
)


def refresh_window(
    config: ConnectorConfig, today: dt.date, past_days: int, future_days: int
) -> tuple[dt.date, dt.date]:
    """The partition range a refresh covers, clipped to the partitions that exist."""
    start = max(config.partition_start, today - dt.timedelta(days=past_days))
    return start, today + dt.timedelta(days=min(future_days, config.future_days))


def build_schedules(config: ConnectorConfig) -> list[dg.ScheduleDefinition]:
    """A booking can be rescheduled or cancelled after it was first extracted: re-extract the
    recent past and the near future every day, and the whole horizon once a week."""

    def range_request(
        context: dg.ScheduleEvaluationContext,
        past_days: int,
        future_days: int,
        *,
        full: bool = False,
    ) -> Iterator[dg.RunRequest]:
        moment = context.scheduled_execution_time
        today = moment.astimezone(ZoneInfo(config.timezone)).date()
        start, end = refresh_window(config, today, past_days, future_days)
        yield dg.RunRequest(
            run_key=f"{start}...{end}@{moment.isoformat()}",
            run_config={
                "ops": {op_name(table): {"config": {"full": full}} for table in daily_tables()}
            },
            tags={
                ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
            },
        )

    @dg.schedule(
        job=daily_tables_job,
        cron_schedule="30 3 * * *",
        execution_timezone=config.timezone,
        description=f"Every day: re-extract the last {config.refresh_past_days} and the next "
        f"{config.refresh_future_days} days of bookings.",
    )
    def jicoo_refresh_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        yield from range_request(context, config.refresh_past_days, config.refresh_future_days)

    @dg.schedule(
        job=daily_tables_job,
        cron_schedule="0 4 * * 0",
        execution_timezone=config.timezone,
        description="Every Sunday: re-extract the whole horizon "
        f"({config.sweep_past_days} days back to {config.future_days} ahead), every booking's "
        "contacts included.",
    )
    def jicoo_sweep_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        # The daily refresh reads contacts only for changed bookings; the sweep reads them all,
        # in case a contact changed without its booking (see the README).
        yield from range_request(context, config.sweep_past_days, config.future_days, full=True)

    jicoo_snapshots_schedule = dg.ScheduleDefinition(
        name="jicoo_snapshots_schedule",
        job=snapshots_job,
        cron_schedule="0 5 * * *",
        execution_timezone=config.timezone,
        description="Every day after the refresh: snapshot tables and the warehouse reload.",
    )
    return [jicoo_refresh_schedule, jicoo_sweep_schedule, jicoo_snapshots_schedule]
