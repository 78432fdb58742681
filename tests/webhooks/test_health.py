"""GET /healthz, for a load balancer: 200 while the store answers, 503 while it does not."""

import sqlite3
from pathlib import Path

import httpx
import psycopg

from jicoo_connector.webhooks import HEALTH_PATH, PostgresEventStore
from tests.support.webhook_receiver import SECRET, Receiver

TIMEOUT_S = 10.0


def health(receiver: Receiver) -> int:
    response = httpx.get(receiver.base_url + HEALTH_PATH, timeout=TIMEOUT_S)
    assert response.json()["status"] == ("ok" if response.status_code == 200 else "unavailable")
    return response.status_code


def test_sqlite_health_follows_the_store(receiver: Receiver, tmp_path: Path) -> None:
    assert health(receiver) == 200
    # A POST there is a delivery like any other (here unsigned: 401), not a health probe.
    assert httpx.post(receiver.base_url + HEALTH_PATH, content=b"{}").status_code == 401
    with sqlite3.connect(tmp_path / "events.sqlite") as other:
        other.execute("DROP TABLE webhook_events")
    assert health(receiver) == 503


def test_postgres_health_follows_the_server_and_recovers_with_it(postgres_url: str) -> None:
    receiver = Receiver(PostgresEventStore(postgres_url), SECRET)
    try:
        assert health(receiver) == 200
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert health(receiver) == 503  # the connection it had is gone
            assert health(receiver) == 200  # and the next probe has a new one
            admin.execute("DROP SCHEMA jicoo_webhooks CASCADE")
            assert health(receiver) == 503
    finally:
        receiver.close()
