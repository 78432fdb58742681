"""booking_events_sensor through Dagster: recorded events, run requests, Parquet of both days."""

import datetime as dt
from pathlib import Path

import dagster as dg
import httpx
import orjson
import pytest
from dagster._core.definitions.sensor_definition import SensorExecutionData

from benchmarks.webhook_freshness import find_moves, reschedule, row_started_at
from jicoo_connector.dagster import _webhooks
from jicoo_connector.extract import extract_range
from jicoo_connector.webhooks import SQLiteEventStore, parse_event
from jicoo_sandbox.config import Clock
from jicoo_sandbox.server import SandboxServer
from jicoo_sandbox.webhooks import event_payload
from tests.dagster.support import (
    NAMES,
    definitions,
    warehouse_of,
)
from tests.support.sandbox import sandbox_settings, tokyo_today

# The run tags the README documents.
EVENT_IDS_TAG = "jicoo/webhook_event_ids"
EVENTS_TAG = "jicoo/webhook_events"
EVENT_COUNT_TAG = "jicoo/webhook_event_count"
SENSOR = NAMES.sensor("booking_events")
REFRESH_JOB = NAMES.job("webhook_refresh")
NEW_BOOKING = "NEWBOOKING01"
FAR_DAYS = 20


def _record(store: SQLiteEventStore, payload: dict[str, object]) -> None:
    body = orjson.dumps(payload)
    assert store.record(parse_event(body), body)


def _days(request: dg.RunRequest) -> list[dt.date]:
    start = dt.date.fromisoformat(request.tags["dagster/asset_partition_range_start"])
    end = dt.date.fromisoformat(request.tags["dagster/asset_partition_range_end"])
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def test_events_become_one_run_per_range_of_days_and_the_runs_move_the_row(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    defs = definitions(sandbox, tmp_path, webhook_db=str(tmp_path / "events.sqlite"))
    booking_events_sensor = defs.resolve_sensor_def(SENSOR)
    warehouse = warehouse_of(defs)
    client = httpx.Client(base_url=sandbox.base_url, headers={"X-Jicoo-Api-Key": sandbox.api_key})
    with client:
        (move,) = find_moves(client, 1, tokyo_today(sandbox) + dt.timedelta(days=2), 10)
        settings = sandbox_settings(sandbox)
        for day in (move.old_day, move.new_day):
            extract_range(settings, ["bookings", "booking_contacts"], day, day, warehouse.root)
        assert row_started_at(Path(warehouse.root), move.old_day, move.uid) is not None
        reschedule(client, move)
        booking = client.get(f"/v1/bookings/{move.uid}").json()["data"]
    far = tokyo_today(sandbox) + dt.timedelta(days=FAR_DAYS)
    with SQLiteEventStore(tmp_path / "events.sqlite") as store:
        _record(store, event_payload("host_rescheduled", booking, None))
        _record(
            store,
            {**event_payload("guest_reminded", booking, None), "createdAt": "2026-01-01T00:00:00Z"},
        )
        new = {**booking, "uid": NEW_BOOKING, "startedAt": f"{far}T03:00:00.000Z"}
        _record(store, event_payload("guest_booked", new, None))

    with dg.build_sensor_context(resources=defs.resources) as context:
        tick = booking_events_sensor.evaluate_tick(context)
    requests = list(tick.run_requests or [])
    requested = sorted(day for r in requests for day in _days(r))
    assert requested == sorted({move.old_day, move.new_day, far})
    assert tick.cursor == "3"
    by_day = {day: r for r in requests for day in _days(r)}
    assert by_day[move.new_day].tags[EVENT_IDS_TAG] == "1"
    assert by_day[move.old_day].tags[EVENT_IDS_TAG] == "1"
    assert by_day[far].tags[EVENT_IDS_TAG] == "3"
    assert f"#1 host_rescheduled {move.uid}" in by_day[move.new_day].tags[EVENTS_TAG]
    assert all("guest_reminded" not in r.tags[EVENTS_TAG] for r in requests)
    assert [r.tags[EVENT_COUNT_TAG] for r in requests] == ["1"] * len(requests)

    with dg.build_sensor_context(cursor=tick.cursor, resources=defs.resources) as context:
        again = booking_events_sensor.evaluate_tick(context)
    assert not again.run_requests
    assert again.skip_message == "no webhook events after #3"

    job = defs.resolve_job_def(booking_events_sensor.job_name)
    assert job.name == NAMES.job("webhook_refresh")
    for request in requests:
        if far not in _days(request):
            assert job.execute_in_process(tags=request.tags).success
    root = Path(warehouse.root)
    assert row_started_at(root, move.new_day, move.uid) == move.new_start
    assert row_started_at(root, move.old_day, move.uid) is None


def test_without_an_event_store_the_sensor_skips(sandbox: SandboxServer, tmp_path: Path) -> None:
    defs = definitions(sandbox, tmp_path, webhook_db=str(tmp_path / "none.sqlite"))
    with dg.build_sensor_context(resources=defs.resources) as context:
        tick = defs.resolve_sensor_def(SENSOR).evaluate_tick(context)
    assert not tick.run_requests
    assert "does not exist" in (tick.skip_message or "")
    assert not (tmp_path / "none.sqlite").exists()


def _one_event(tmp_path: Path, clock: Clock) -> tuple[Path, dict[str, object]]:
    """An event store holding one booking's event, three days after the test day (a partition:
    Dagster's partitions follow the test clock too); the store and the booking."""
    store_path = tmp_path / "events.sqlite"
    soon = (clock().astimezone(dt.UTC).date() + dt.timedelta(days=3)).isoformat()
    booking: dict[str, object] = {"uid": "WAITING00001", "startedAt": f"{soon}T03:00:00.000Z",
                                  "updatedAt": "2026-11-30T00:00:00.000Z"}  # fmt: skip
    with SQLiteEventStore(store_path) as store:
        _record(store, event_payload("guest_booked", booking, None))
    return store_path, booking


def test_no_new_refresh_while_the_last_one_has_not_started_then_one_for_all_events(
    sandbox: SandboxServer, tmp_path: Path, clock: Clock
) -> None:
    store_path, booking = _one_event(tmp_path, clock)
    defs = definitions(sandbox, tmp_path, webhook_db=str(store_path))
    sensor = defs.resolve_sensor_def(SENSOR)
    with dg.instance_for_test() as instance:
        waiting = instance.add_run(
            dg.DagsterRun(job_name=REFRESH_JOB, status=dg.DagsterRunStatus.STARTING)
        )

        def tick(cursor: str | None = None) -> SensorExecutionData:
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=defs.resources
            ) as context:
                return sensor.evaluate_tick(context)

        held = tick()
        assert not held.run_requests
        assert held.skip_message == (
            f"refresh {waiting.run_id} has not started yet: new events join the next"
        )
        assert held.cursor is None  # the event stays for the next tick
        with SQLiteEventStore(store_path) as store:
            later = {**booking, "uid": "WAITING00002", "updatedAt": "2026-11-30T00:00:01.000Z"}
            _record(store, event_payload("guest_booked", later, None))
        instance.report_run_canceled(waiting)  # it started and ended: no longer waiting
        (request,) = tick().run_requests or []
        assert request.tags[EVENT_IDS_TAG] == "1-2"


def test_a_refresh_waiting_longer_than_the_hold_holds_nothing_back(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    store_path, _ = _one_event(tmp_path, clock)
    defs = definitions(sandbox, tmp_path, webhook_db=str(store_path))
    sensor = defs.resolve_sensor_def(SENSOR)
    with dg.instance_for_test() as instance:
        # A launch lost without a status: STARTING for good.
        stuck = dg.DagsterRun(job_name=REFRESH_JOB, status=dg.DagsterRunStatus.STARTING)
        instance.add_run(stuck)
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            assert stuck.run_id in (sensor.evaluate_tick(context).skip_message or "")
            # Once it has waited longer than the hold (here: any wait), the events go on.
            monkeypatch.setattr(_webhooks, "HOLD_AT_MOST", dt.timedelta(0))
            assert sensor.evaluate_tick(context).run_requests
