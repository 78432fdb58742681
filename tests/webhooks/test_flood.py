"""A flood through a real `jicoo webhook serve`, SIGKILLed twice mid-flood: exactly once, and
every affected day partition requested by booking_events_sensor."""

import datetime as dt
import os
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from benchmarks.webhook_freshness import WEBHOOK_SECRET, receiver_process
from jicoo_connector.dagster._webhooks import EVENT_IDS_TAG, JOIN_GAP_DAYS
from jicoo_connector.extract import extract_range
from jicoo_connector.webhooks import SQLiteEventStore, StoredEvent
from jicoo_sandbox.config import Clock, SandboxConfig, WebhookOptions
from jicoo_sandbox.server import SandboxServer
from jicoo_sandbox.store import JournalEntry
from jicoo_sandbox.webhooks import ChurnRunner
from tests.dagster.support import NAMES, definitions, warehouse_of
from tests.support.sandbox import sandbox_settings

TOKYO = ZoneInfo("Asia/Tokyo")
EVENTS = 1000
CHURN_RATE = 250.0
KILL_AT = (300, 650)
DRAIN_S = 120.0


def _day(instant: object) -> dt.date:
    assert isinstance(instant, str)
    return dt.datetime.fromisoformat(instant).astimezone(TOKYO).date()


def _wait_events(sandbox: SandboxServer, count: int) -> None:
    deadline = time.monotonic() + DRAIN_S
    while sum(1 for e in sandbox.store.journal() if e["method"] == "EVENT") < count:
        assert time.monotonic() < deadline, "churn stalled"
        time.sleep(0.02)


def _requested(requests: Sequence[dg.RunRequest]) -> tuple[set[dt.date], set[int]]:
    """The days the run requests refresh, and the event ids their tags list."""
    days: set[dt.date] = set()
    tagged: set[int] = set()
    for request in requests:
        start = dt.date.fromisoformat(request.tags["dagster/asset_partition_range_start"])
        end = dt.date.fromisoformat(request.tags["dagster/asset_partition_range_end"])
        days |= {start + dt.timedelta(days=n) for n in range((end - start).days + 1)}
        for span in request.tags[EVENT_IDS_TAG].split(","):
            low, _, high = span.partition("-")
            tagged |= set(range(int(low), int(high or low) + 1))
    return days, tagged


def _assert_affected_days_requested(requested: set[dt.date], affected: set[dt.date]) -> None:
    """Every affected day, and between two of them at most JOIN_GAP_DAYS others (one run)."""
    assert affected <= requested
    joined = requested - affected
    assert all(
        any(0 < (day - a).days <= JOIN_GAP_DAYS for a in affected)
        and any(0 < (a - day).days <= JOIN_GAP_DAYS for a in affected)
        for day in joined
    ), sorted(joined)


def _assert_every_event_recorded_once_and_reordered(
    journal: Sequence[JournalEntry], events: Sequence[JournalEntry], db: Path
) -> list[StoredEvent]:
    """Every event the sandbox sent is in the receiver's store exactly once, in another order,
    though deliveries were duplicated and cut off by the kills: the recorded events."""
    sent = [(e["path"], e["booking_uid"], e["body"]["createdAt"]) for e in events]
    assert len(sent) == len(set(sent)) == EVENTS
    with SQLiteEventStore(db) as recorded_store:
        recorded = recorded_store.events_after(0, 10 * EVENTS)
    keys = [(r.event.event, r.event.booking_uid, r.event.created_at) for r in recorded]
    assert sorted(keys) == sorted(sent)  # every event, exactly once
    assert keys != sent  # reordered on the way
    deliveries = [e for e in journal if e["method"] == "WEBHOOK"]
    duplicates = [d for d in deliveries if d["body"]["copy"] == 1 and d["changed"]]
    assert len(duplicates) >= EVENTS // 20
    assert any(d["status"] is None for d in deliveries)  # the kills cut deliveries off
    return recorded


def _assert_the_sensor_requests_every_affected_day(
    defs: dg.Definitions,
    events: Sequence[JournalEntry],
    recorded: Sequence[StoredEvent],
    before: dict[str, dt.date],
) -> None:
    """One tick of booking_events_sensor reads every recorded event and requests each day
    partition an event touched (its booking's old day and new one)."""
    with dg.build_sensor_context(resources=defs.resources) as context:
        tick = defs.resolve_sensor_def(NAMES.sensor("booking_events")).evaluate_tick(context)
    assert tick.cursor == str(recorded[-1].id)
    requested, tagged = _requested(tick.run_requests or [])
    partitions = defs.resolve_assets_def(NAMES.asset_key("bookings")).partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    first = dt.date.fromisoformat(partitions.get_first_partition_key() or "")
    last = dt.date.fromisoformat(partitions.get_last_partition_key() or "")

    def days_of(uid: str, started_at: object) -> set[dt.date]:
        days = {_day(started_at)} | ({before[uid]} if uid in before else set())
        return {day for day in days if first <= day <= last}

    affected = set().union(
        *(days_of(e["booking_uid"], e["body"]["object"]["startedAt"]) for e in events)
    )
    _assert_affected_days_requested(requested, affected)
    # Every event that touches a partition is listed by a run, and only those.
    assert all(r.event.started_at is not None for r in recorded)
    assert tagged == {
        r.id
        for r in recorded
        if r.event.started_at and days_of(r.event.booking_uid, r.event.started_at.isoformat())
    }


@pytest.mark.slow
def test_flood_with_duplicates_reordering_and_two_receiver_kills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    db = tmp_path / "events.sqlite"
    env = dict(os.environ)
    receiver, url = receiver_process(db, env, tmp_path / "receiver-0.log")
    port = urlsplit(url).port or 0
    options = WebhookOptions(
        url=url, secret=WEBHOOK_SECRET, duplicate=0.1, reorder_ms=300,
        backoff_s=0.05, max_backoff_s=1.0, max_attempts=200, seed=11,
    )  # fmt: skip
    config = SandboxConfig(seed=7, bookings=2000, webhooks=options, clock=clock)
    with SandboxServer(config) as sandbox:
        defs = definitions(sandbox, tmp_path, webhook_db=str(db))
        warehouse = warehouse_of(defs)
        store = sandbox.store
        # The warehouse a daily refresh left: every seeded day, before any change.
        settings = sandbox_settings(sandbox)
        before = {b["uid"]: _day(b["startedAt"]) for b in store.all_bookings()}
        extract_range(settings, ["bookings"], min(before.values()), max(before.values()),
                      warehouse.root)  # fmt: skip
        assert sandbox.webhooks is not None
        churn = ChurnRunner(store, sandbox.webhooks, CHURN_RATE, limit=EVENTS, seed=5)
        try:
            for n, at in enumerate(KILL_AT, start=1):
                _wait_events(sandbox, at)
                receiver.kill()
                time.sleep(0.5)  # deliveries fail meanwhile and are retried
                receiver, _ = receiver_process(db, env, tmp_path / f"receiver-{n}.log", port)
            _wait_events(sandbox, EVENTS)
            assert sandbox.webhooks.drain(DRAIN_S)
        finally:
            churn.close()
            receiver.stop()
        journal = store.journal()

    events = [e for e in journal if e["method"] == "EVENT"]
    recorded = _assert_every_event_recorded_once_and_reordered(journal, events, db)
    _assert_the_sensor_requests_every_affected_day(defs, events, recorded, before)
