"""The sandbox's webhooks: which changes send which event, signed, retried until delivered."""

import datetime as dt
import socket
import time
from pathlib import Path

import httpx

from benchmarks.webhook_freshness import TOKYO, find_moves, reschedule
from jicoo_sandbox.config import Clock, SandboxConfig, WebhookOptions
from jicoo_sandbox.server import SandboxServer
from tests.support.webhook_receiver import SECRET, Receiver

DRAIN_S = 30.0
RETRIES_SEEN_S = 10.0


def _config(url: str, clock: Clock) -> SandboxConfig:
    options = WebhookOptions(url=url, secret=SECRET)
    return SandboxConfig(seed=7, bookings=500, webhooks=options, clock=clock)


def test_api_changes_send_signed_host_events_and_other_patches_send_none(
    tmp_path: Path, clock: Clock
) -> None:
    receiver = Receiver(tmp_path / "events.sqlite", SECRET, clock=time.time)
    try:
        with SandboxServer(_config(receiver.url, clock)) as sandbox:
            headers = {"X-Jicoo-Api-Key": sandbox.api_key}
            with httpx.Client(base_url=sandbox.base_url, headers=headers) as client:
                today = sandbox.config.clock().astimezone(TOKYO).date()
                moved, renamed, cancelled = find_moves(client, 3, today + dt.timedelta(days=2), 10)
                reschedule(client, moved)
                client.patch(f"/v1/bookings/{renamed.uid}", json={"name": "renamed"})
                client.post(f"/v1/bookings/{cancelled.uid}/cancel", json={})
            assert sandbox.webhooks is not None
            assert sandbox.webhooks.drain(DRAIN_S)
            journal = sandbox.store.journal()
        rows = receiver.rows()
    finally:
        receiver.close()
    assert [(event, uid) for event, uid, _ in rows] == [
        ("host_rescheduled", moved.uid),
        ("host_cancelled", cancelled.uid),
    ]
    events = [(e["path"], e["booking_uid"], e["body"]["createdAt"]) for e in journal
              if e["method"] == "EVENT"]  # fmt: skip
    assert events == rows
    deliveries = [e for e in journal if e["method"] == "WEBHOOK"]
    assert [(d["status"], d["body"]["attempt"]) for d in deliveries] == [(200, 1), (200, 1)]


def test_deliveries_are_retried_until_the_receiver_answers(tmp_path: Path, clock: Clock) -> None:
    with socket.socket() as probe:  # a port nobody listens on, yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with SandboxServer(_config(f"http://127.0.0.1:{port}/hooks", clock)) as sandbox:
        headers = {"X-Jicoo-Api-Key": sandbox.api_key}
        with httpx.Client(base_url=sandbox.base_url, headers=headers) as client:
            today = sandbox.config.clock().astimezone(TOKYO).date()
            (move,) = find_moves(client, 1, today + dt.timedelta(days=2), 10)
            reschedule(client, move)
        deadline = time.monotonic() + RETRIES_SEEN_S
        while sum(1 for e in sandbox.store.journal() if e["method"] == "WEBHOOK") < 3:
            assert time.monotonic() < deadline, "no retries seen"
            time.sleep(0.05)
        receiver = Receiver(tmp_path / "events.sqlite", SECRET, clock=time.time, port=port)
        try:
            assert sandbox.webhooks is not None
            assert sandbox.webhooks.drain(DRAIN_S)
            journal = sandbox.store.journal()
            assert [uid for _, uid, _ in receiver.rows()] == [move.uid]
        finally:
            receiver.close()
    attempts = [e for e in journal if e["method"] == "WEBHOOK"]
    assert all(a["status"] is None for a in attempts[:-1])
    assert (attempts[-1]["status"], attempts[-1]["body"]["attempt"]) == (200, len(attempts))
