"""Two `jicoo webhook serve` on one PostgreSQL store behind a load balancer that probes their
/healthz: a flood of 1,000 events (8 deliveries in flight, 10% sent twice, reordered by up to
300 ms), each receiver SIGKILLed once and both at once later. Every event is recorded exactly
once, and a reader that follows the store's cursor during the flood reads each exactly once."""

import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pytest

from benchmarks.webhook_freshness import WEBHOOK_SECRET, receiver_process
from jicoo_connector.dagster import build_jicoo_definitions
from jicoo_connector.webhooks import PostgresEventStore, StoredEvent
from jicoo_sandbox.config import Clock, SandboxConfig, WebhookOptions
from jicoo_sandbox.server import SandboxServer
from jicoo_sandbox.webhooks import ChurnRunner
from tests.dagster.support import NAMES, api_key
from tests.webhooks.balancer import Balancer

EVENTS = 1000
CHURN_RATE = 250.0
IN_FLIGHT = 8
# Events sent when receiver 0, receiver 1, then both are killed (and restarted on their ports).
KILLS = ((250, (0,)), (500, (1,)), (750, (0, 1)))
DOWN_S = 0.5
DRAIN_S = 120.0
READ_LIMIT = 50


def _events_sent(sandbox: SandboxServer) -> int:
    return sum(1 for e in sandbox.store.journal() if e["method"] == "EVENT")


def _wait_events(sandbox: SandboxServer, count: int) -> None:
    deadline = time.monotonic() + DRAIN_S
    while _events_sent(sandbox) < count:
        assert time.monotonic() < deadline, "churn stalled"
        time.sleep(0.02)


class CursorReader:
    """Follows the store's cursor in pages while the receivers write, as the sensor does."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.read: list[StoredEvent] = []
        self.cursor = ""
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cursor-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with PostgresEventStore(self.url, create=False) as store:
            while True:
                finished = self.done.is_set()  # before the read: it then sees every commit
                page = store.read(self.cursor, READ_LIMIT)
                self.read += page.events
                self.cursor = page.cursor
                if finished and not page.events:
                    return
                time.sleep(0.01)

    def finish(self) -> None:
        self.done.set()
        self._thread.join(DRAIN_S)


def _flood_with_kills(url: str, tmp_path: Path, balancer: Balancer, children: list[Any],
                      ports: list[int], clock: Clock) -> list[dict[str, Any]]:  # fmt: skip
    """The churn's events through the balancer, the kills of ``KILLS`` on the way (each killed
    receiver restarted on its port); the sandbox's journal once every delivery is answered."""
    env = dict(os.environ)
    options = WebhookOptions(
        url=balancer.url, secret=WEBHOOK_SECRET, duplicate=0.1, reorder_ms=300,
        backoff_s=0.05, max_backoff_s=1.0, max_attempts=200, seed=11, concurrency=IN_FLIGHT,
    )  # fmt: skip
    config = SandboxConfig(seed=7, bookings=2000, webhooks=options, clock=clock)
    with SandboxServer(config) as sandbox:
        assert sandbox.webhooks is not None
        churn = ChurnRunner(sandbox.store, sandbox.webhooks, CHURN_RATE, limit=EVENTS, seed=5)
        try:
            for round_, (at, killed) in enumerate(KILLS, start=1):
                _wait_events(sandbox, at)
                for n in killed:
                    children[n].kill()
                time.sleep(DOWN_S)  # deliveries fail meanwhile and are retried
                for n in killed:
                    log = tmp_path / f"r{n}-{round_}.log"
                    children[n], _ = receiver_process(url, env, log, ports[n])
            _wait_events(sandbox, EVENTS)
            assert sandbox.webhooks.drain(DRAIN_S)
        finally:
            churn.close()
        return sandbox.store.journal()


def _recorded(url: str) -> list[StoredEvent]:
    recorded: list[StoredEvent] = []
    with PostgresEventStore(url, create=False) as store:
        cursor = ""
        while (page := store.read(cursor, EVENTS)).events:
            recorded += page.events
            cursor = page.cursor
    return recorded


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_receivers_on_postgres_record_a_flood_once_through_kills(
    postgres_url: str, tmp_path: Path, clock: Clock
) -> None:
    receivers = [receiver_process(postgres_url, dict(os.environ), tmp_path / f"r{n}-0.log")
                 for n in (0, 1)]  # fmt: skip
    ports = [urlsplit(url).port or 0 for _, url in receivers]
    children = [child for child, _ in receivers]
    balancer = Balancer(ports)
    reader = CursorReader(postgres_url)
    try:
        journal = _flood_with_kills(postgres_url, tmp_path, balancer, children, ports, clock)
    finally:
        reader.finish()
        balancer.close()
        for child in children:
            child.stop()

    events = [e for e in journal if e["method"] == "EVENT"]
    sent = [(e["path"], e["booking_uid"], e["body"]["createdAt"]) for e in events]
    assert len(sent) == len(set(sent)) == EVENTS
    recorded = _recorded(postgres_url)
    keys = [(r.event.event, r.event.booking_uid, r.event.created_at) for r in recorded]
    assert Counter(keys) == Counter(sent)  # every event, exactly once
    # The reader that followed the cursor during the flood read each one exactly once.
    assert Counter(r.id for r in reader.read) == Counter(r.id for r in recorded)

    deliveries = [e for e in journal if e["method"] == "WEBHOOK"]
    assert len([d for d in deliveries if d["body"]["copy"] == 1 and d["changed"]]) >= EVENTS // 20
    assert any(d["status"] is None for d in deliveries)  # the kills cut deliveries off
    assert all(balancer.connections[port] > 0 for port in ports)  # both took deliveries
    assert all(balancer.probes.get((port, None), 0) > 0 for port in ports)  # seen down
    logs = [p.read_text(encoding="utf-8") for p in sorted(tmp_path.glob("r*-*.log"))]
    assert sum(log.count(" webhook ") for log in logs) >= EVENTS  # each recorded by one

    # The sensor reads the same store from its start, to the same end.
    defs = build_jicoo_definitions(
        NAMES.organization,
        api_key=api_key("sk_unused_by_the_sensor"),
        data_root=str(tmp_path),
        webhook_db_url=api_key(postgres_url),  # a variable, as a user passes a URL
    )
    with dg.build_sensor_context(resources=defs.resources) as context:
        tick = defs.resolve_sensor_def(NAMES.sensor("booking_events")).evaluate_tick(context)
    assert tick.cursor == reader.cursor
    assert tick.run_requests
