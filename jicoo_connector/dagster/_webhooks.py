"""The booking-events sensor: an organization's recorded webhook events become refreshes of
the day partitions they touch.

Each tick reads the events after its cursor, asks the library which days they make stale (the
new start day, and the day the warehouse still has the booking on) and requests one
``jicoo_<organization>_webhook_refresh`` run per range of days (stale days up to
``JOIN_GAP_DAYS`` apart share one). A burst between ticks is one run; the cursor (the store's
position after the last event handled, safe with many receivers writing at once) makes each
event trigger exactly once.

While a refresh it requested has not started yet (queued, or its process still starting), a
tick requests nothing and leaves the events for the next: they join one run instead of queueing
one run each behind it. Under a stream of changes the runs thus grow with the wait instead of
piling up, each costing a process start (the code location's imports, seconds of CPU).
"""

import datetime as dt
import json
from collections.abc import Iterator, Sequence

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from jicoo_connector.dagster._resources import WarehouseResource, resource
from jicoo_connector.dagster._setup import AssetJob, OrganizationSetup
from jicoo_connector.redaction import redact_location
from jicoo_connector.webhooks import (
    RefreshRange,
    StoredEvent,
    event_store_exists,
    open_event_store,
    plan_refresh,
    warehouse_days,
)

# A backlog (the sensor was stopped for a day) is worked off in slices of this many events.
MAX_EVENTS_PER_TICK = 5000
# Stale days this many untouched days apart or fewer are refreshed in one run: each day between
# costs a listing request (its unchanged bookings' contacts are not read again), a second run
# costs a process start.
JOIN_GAP_DAYS = 2
# A refresh in these states has not begun its work: new events can wait and join the next one.
# One that has been waiting longer than HOLD_AT_MOST (a queue stopped, a launch lost without a
# status) holds nothing back: the sensor goes on requesting.
HOLD_AT_MOST = dt.timedelta(minutes=5)
NOT_YET_WORKING = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
]
# Run tags stay readable in the UI: the first events by name, then the count.
LISTED_EVENTS = 20
TRIGGER_TAG = "jicoo/trigger"
EVENTS_TAG = "jicoo/webhook_events"
EVENT_COUNT_TAG = "jicoo/webhook_event_count"
EVENT_IDS_TAG = "jicoo/webhook_event_ids"


def build_webhook_refresh_job(setup: OrganizationSetup) -> AssetJob:
    # The day tables again, in one process: a refresh of a few days costs less than the step
    # processes the multiprocess executor would start (each imports Dagster and pandas again),
    # and that start-up is most of a webhook's time to the tables.
    names = setup.names
    return dg.define_asset_job(
        names.job("webhook_refresh"),
        selection=dg.AssetSelection.assets(*setup.keys(setup.day_tables)),
        executor_def=dg.in_process_executor,
        description=f"{names.organization}: bookings and contacts for the days webhook events "
        "touched (one process).",
    )


def _describe(events: Sequence[StoredEvent]) -> str:
    listed = [
        f"#{s.id} {s.event.event} {s.event.booking_uid} {s.event.created_at}"
        for s in events[:LISTED_EVENTS]
    ]
    if len(events) > LISTED_EVENTS:
        listed.append(f"... and {len(events) - LISTED_EVENTS} more")
    return json.dumps(listed)


def _id_ranges(ids: Sequence[int]) -> str:
    """``1-4,7,9-10``: every id, compact even for a backlog of thousands."""
    spans: list[list[int]] = []
    for event_id in sorted(ids):
        if spans and event_id == spans[-1][1] + 1:
            spans[-1][1] = event_id
        else:
            spans.append([event_id, event_id])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


def run_request(refresh: RefreshRange) -> dg.RunRequest:
    ids = [s.id for s in refresh.events]
    return dg.RunRequest(
        # Event ids never repeat: a retried tick cannot start the same refresh twice.
        run_key=f"webhooks:{min(ids)}-{max(ids)}:{refresh.start}...{refresh.end}",
        tags={
            ASSET_PARTITION_RANGE_START_TAG: refresh.start.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: refresh.end.isoformat(),
            TRIGGER_TAG: "webhooks",
            EVENT_COUNT_TAG: str(len(ids)),
            EVENT_IDS_TAG: _id_ranges(ids),
            EVENTS_TAG: _describe(refresh.events),
        },
    )


def _requests(
    context: dg.SensorEvaluationContext, setup: OrganizationSetup, events: list[StoredEvent]
) -> Iterator[dg.RunRequest]:
    partitions = setup.partitions
    first = partitions.get_first_partition_key()
    last = partitions.get_last_partition_key()
    if first is None or last is None:
        raise dg.Failure("the daily partitions definition has no partitions")
    warehouse = resource(context, setup.names.warehouse_resource, WarehouseResource)
    known_uids = {s.event.booking_uid for s in events if s.event.known}
    plan = plan_refresh(
        events,
        zone=setup.config.timezone,
        previous=warehouse_days(warehouse.store(), known_uids),
        first_day=dt.date.fromisoformat(first),
        last_day=dt.date.fromisoformat(last),
        join_gap_days=JOIN_GAP_DAYS,
    )
    if plan.ignored:
        names = sorted({s.event.event for s in plan.ignored})
        context.log.info(f"{len(plan.ignored)} events of unknown types ignored: {names}")
    for day, ids in plan.outside.items():
        context.log.info(f"day {day} has no partition; events {list(ids)} leave it alone")
    for refresh in plan.ranges:
        yield run_request(refresh)


def refresh_waiting(context: dg.SensorEvaluationContext, job_name: str) -> str | None:
    """The id of a ``job_name`` run requested within ``HOLD_AT_MOST`` that has not begun its
    work, if any (None too when the context has no instance, as in a test's own evaluation)."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:  # built without one
        return None
    recent = dt.datetime.now(dt.timezone.utc) - HOLD_AT_MOST
    waiting = instance.get_run_ids(
        dg.RunsFilter(job_name=job_name, statuses=NOT_YET_WORKING, created_after=recent),
        limit=1,
    )
    return waiting[0] if waiting else None


def build_booking_events_sensor(setup: OrganizationSetup, job: AssetJob) -> dg.SensorDefinition:
    """The sensor over the organization's event store (``webhook_db_url``, else the
    ``webhook_db`` file), ticking every ``webhook_interval_s``.

    Its default, 5 s, is as often as Dagster's sensor daemon evaluates any sensor (it loops
    every 5 s): an event waits at most that long for its tick. Events are coalesced over the
    interval, and over the wait of a refresh that has not started yet (``refresh_waiting``).
    """
    names, location = setup.names, setup.config.webhook_store()
    shown = redact_location(location)

    @dg.sensor(
        name=names.sensor("booking_events"),
        job=job,
        minimum_interval_seconds=setup.config.webhook_interval_s,
        # Running by default: it spends no API request until the receiver has recorded events,
        # which only happens once someone points Jicoo's dashboard at a receiver.
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={names.warehouse_resource},
        description=f"Refreshes the day partitions of {names.organization}'s bookings and "
        f"contacts that recorded webhook events touch (events in {shown}; one run per range of "
        "days per tick, none while the last one has not started).",
    )
    def booking_events_sensor(
        context: dg.SensorEvaluationContext,
    ) -> Iterator[dg.RunRequest | dg.SkipReason]:
        if not event_store_exists(location):
            yield dg.SkipReason(f"no webhook events recorded yet ({shown} does not exist)")
            return
        if (waiting := refresh_waiting(context, job.name)) is not None:
            yield dg.SkipReason(f"refresh {waiting} has not started yet: new events join the next")
            return
        store = open_event_store(location, create=False)
        try:
            page = store.read(context.cursor or "", MAX_EVENTS_PER_TICK)
        finally:
            store.close()
        if not page.events:
            yield dg.SkipReason(f"no webhook events after #{context.cursor or 0}")
            return
        yield from _requests(context, setup, page.events)
        context.update_cursor(page.cursor)

    return booking_events_sensor
