"""An organization's extract jobs and schedules: the rolling daily refresh, the weekly sweep
and the snapshots. A job or schedule whose tables are not chosen is not built."""

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster._setup import AssetJob, OrganizationSetup

REFRESH_CRON = "30 3 * * *"
SWEEP_CRON = "0 4 * * 0"
SNAPSHOTS_CRON = "0 5 * * *"


def build_extract_jobs(setup: OrganizationSetup) -> list[AssetJob]:
    """``daily_tables`` (day tables, a range of days in one run) and ``snapshots`` (snapshot
    tables, then the warehouse reload)."""
    names, jobs = setup.names, []
    if setup.day_tables:
        jobs.append(
            dg.define_asset_job(
                names.job("daily_tables"),
                selection=dg.AssetSelection.assets(*setup.keys(setup.day_tables)),
                description=f"{names.organization}: bookings and contacts for a range of days "
                "(one run, days in parallel).",
            )
        )
    snapshot_keys = [*setup.keys(setup.snapshot_tables), names.asset_key("warehouse")]
    jobs.append(
        dg.define_asset_job(
            names.job("snapshots"),
            selection=dg.AssetSelection.assets(*snapshot_keys),
            description=f"{names.organization}: today's snapshot tables, then the warehouse "
            "reload.",
        )
    )
    return jobs


def refresh_window(
    config: ConnectorConfig, today: dt.date, past_days: int, future_days: int
) -> tuple[dt.date, dt.date]:
    """The partition range a refresh covers, clipped to the partitions that exist."""
    start = max(config.partition_start, today - dt.timedelta(days=past_days))
    return start, today + dt.timedelta(days=min(future_days, config.future_days))


def _range_request(
    setup: OrganizationSetup,
    context: dg.ScheduleEvaluationContext,
    window: tuple[int, int],
    *,
    full: bool = False,
) -> dg.RunRequest:
    config = setup.config
    moment = context.scheduled_execution_time
    today = moment.astimezone(ZoneInfo(config.timezone)).date()
    start, end = refresh_window(config, today, *window)
    ops = {setup.names.op(table): {"config": {"full": full}} for table in setup.day_tables}
    return dg.RunRequest(
        run_key=f"{start}...{end}@{moment.isoformat()}",
        run_config={"ops": ops},
        tags={
            ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
        },
    )


def _day_schedules(setup: OrganizationSetup) -> list[dg.ScheduleDefinition]:
    """A booking can be rescheduled or cancelled after it was first extracted: re-extract the
    recent past and the near future every day, and the whole horizon once a week."""
    names, config = setup.names, setup.config
    refresh = (config.refresh_past_days, config.refresh_future_days)
    sweep = (config.sweep_past_days, config.future_days)

    @dg.schedule(
        name=names.schedule("refresh"),
        job_name=names.job("daily_tables"),
        cron_schedule=REFRESH_CRON,
        execution_timezone=config.timezone,
        description=f"Every day: re-extract the last {refresh[0]} and the next {refresh[1]} "
        f"days of {names.organization}'s bookings.",
    )
    def refresh_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        yield _range_request(setup, context, refresh)

    @dg.schedule(
        name=names.schedule("sweep"),
        job_name=names.job("daily_tables"),
        cron_schedule=SWEEP_CRON,
        execution_timezone=config.timezone,
        description=f"Every Sunday: re-extract {names.organization}'s whole horizon "
        f"({sweep[0]} days back to {sweep[1]} ahead), every booking's contacts included.",
    )
    def sweep_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        # The daily refresh reads contacts only for changed bookings; the sweep reads them all,
        # in case a contact changed without its booking (see the README).
        yield _range_request(setup, context, sweep, full=True)

    return [refresh_schedule, sweep_schedule]


def build_schedules(setup: OrganizationSetup) -> list[dg.ScheduleDefinition]:
    names = setup.names
    snapshots = dg.ScheduleDefinition(
        name=names.schedule("snapshots"),
        job_name=names.job("snapshots"),
        cron_schedule=SNAPSHOTS_CRON,
        execution_timezone=setup.config.timezone,
        description=f"Every day after the refresh: {names.organization}'s snapshot tables and "
        "the warehouse reload.",
    )
    return [*(_day_schedules(setup) if setup.day_tables else []), snapshots]
