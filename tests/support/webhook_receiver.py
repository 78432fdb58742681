"""A webhook receiver on a loopback port (uvicorn in a thread, bounded as `jicoo webhook serve`
bounds it) with a pinned clock, and an event body of the shape Jicoo sends."""

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from jicoo_connector.webhooks import (
    SIGNATURE_HEADER,
    EventStore,
    ReceiverLimits,
    SQLiteEventStore,
    WebhookSecrets,
    create_app,
    server_config,
)

__all__ = ["HEADER", "NOW", "OLD_SECRET", "SECRET", "TIMEOUT_S", "Receiver", "event_body", "post"]

SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"
# The receiver's clock in these tests: every signature is made against it, never the real one.
NOW = 1_764_000_000
START_TIMEOUT_S = 10.0
# A test's wait for one answer, and the header the receiver reads the signature from.
TIMEOUT_S = 10.0
HEADER = SIGNATURE_HEADER


class Receiver:
    def __init__(
        self,
        db: Path | EventStore,
        secrets: str,
        clock: Callable[[], float] = lambda: NOW,
        port: int = 0,
        *,
        route: str | None = None,
        limits: ReceiverLimits | None = None,
    ) -> None:
        self.store = SQLiteEventStore(db) if isinstance(db, Path) else db
        bounds = limits or ReceiverLimits()
        receiver = create_app(self.store, WebhookSecrets.parse(secrets), clock=clock, limits=bounds)
        # As the README shows it: the receiver as one route of the user's own app.
        app = (
            receiver
            if route is None
            else Starlette(routes=[Route(route, receiver, methods=["POST"])])
        )
        # The server `jicoo webhook serve` runs, with its connection bounds.
        config, self.guard = server_config(app, bounds, host="127.0.0.1", port=port)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.base_url}{route or '/any/path'}"

    def rows(self) -> list[tuple[str, str, str]]:
        return [(s.event.event, s.event.booking_uid, s.event.created_at)
                for s in self.store.events_after(0, 10_000)]  # fmt: skip

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT_S)
        self.store.close()


def event_body(event: str = "guest_booked", uid: str = "mzgdPJVBb7RE") -> bytes:
    return json.dumps(
        {
            "createdAt": "2026-11-30T01:02:03.456Z",
            "event": event,
            "object": {"uid": uid, "status": "open", "startedAt": "2026-12-02T01:00:00.000Z"},
        }
    ).encode()


def post(receiver: Receiver, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers[HEADER] = signature
    return httpx.post(receiver.url, content=body, headers=headers, timeout=TIMEOUT_S)
