"""booking_events_sensor through Dagster: recorded events, run requests, Parquet of both days."""

import datetime as dt
from pathlib import Path

import dagster as dg
import httpx
import orjson

from assets.webhook_sensor import (
    EVENT_COUNT_TAG,
    EVENT_IDS_TAG,
    EVENTS_TAG,
    build_booking_events_sensor,
    webhook_refresh_job,
)
from benchmarks.webhook_freshness import find_moves, reschedule, row_started_at
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.extract import extract_range
from jicoo_connector.webhooks import SQLiteEventStore, parse_event
from jicoo_sandbox.server import SandboxServer
from jicoo_sandbox.webhooks import event_payload
from tests.dagster.support import extract_assets, jicoo_resource, warehouse_resource
from tests.support.sandbox import sandbox_settings, tokyo_today

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
    booking_events_sensor = build_booking_events_sensor(
        ConnectorConfig(webhook_db=str(tmp_path / "events.sqlite"))
    )
    warehouse = warehouse_resource(tmp_path)
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

    context = dg.build_sensor_context(resources={"warehouse": warehouse})
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

    again = booking_events_sensor.evaluate_tick(
        dg.build_sensor_context(cursor=tick.cursor, resources={"warehouse": warehouse})
    )
    assert not again.run_requests
    assert again.skip_message == "no webhook events after #3"

    job = dg.Definitions(
        assets=list(extract_assets().values()),
        jobs=[webhook_refresh_job],
        resources={"jicoo": jicoo_resource(sandbox), "warehouse": warehouse},
    ).resolve_job_def(booking_events_sensor.job_name)
    for request in requests:
        if far not in _days(request):
            assert job.execute_in_process(tags=request.tags).success
    root = Path(warehouse.root)
    assert row_started_at(root, move.new_day, move.uid) == move.new_start
    assert row_started_at(root, move.old_day, move.uid) is None


def test_without_an_event_store_the_sensor_skips(tmp_path: Path) -> None:
    booking_events_sensor = build_booking_events_sensor(
        ConnectorConfig(webhook_db=str(tmp_path / "none.sqlite"))
    )
    context = dg.build_sensor_context(resources={"warehouse": warehouse_resource(tmp_path)})
    tick = booking_events_sensor.evaluate_tick(context)
    assert not tick.run_requests
    assert "does not exist" in (tick.skip_message or "")
    assert not (tmp_path / "none.sqlite").exists()
