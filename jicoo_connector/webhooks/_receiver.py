"""The webhook receiver: an ASGI app (mount it in your own server) and ``serve`` (uvicorn).

The only module of the library that imports starlette and uvicorn (they are the optional
extra ``jicoo-connector[webhooks]``). Answers: 401 for a missing or bad signature (nothing
stored), 413 for a body over the cap, 400 for JSON that is not an event, 200 once the event is
committed, replays and unknown event types included (stored, ignored downstream), 500 if the
store fails (Jicoo retries). Logs never hold the secret, the signature header or the body.
``GET /healthz`` is for a load balancer: 200 when the store answers, 503 when it does not.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jicoo_connector.errors import WebhookPayloadError, WebhookSignatureError
from jicoo_connector.webhooks._events import parse_event
from jicoo_connector.webhooks._signature import (
    DEFAULT_TOLERANCE_S,
    SIGNATURE_HEADER,
    WebhookSecrets,
    verify_signature,
)
from jicoo_connector.webhooks._store import EventStore

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HEALTH_PATH", "READY_LINE_PREFIX", "create_app", "serve"]

logger = logging.getLogger(__name__)

# A booking event is a few KB (answers and tracking included); 256 KiB leaves room for long
# answers while a flood of large bodies cannot fill memory or the disk.
DEFAULT_MAX_BODY_BYTES: Final = 256 * 1024
READY_LINE_PREFIX: Final = "Jicoo webhook receiver listening on "
READY_POLL_S: Final = 0.01
STOP_TIMEOUT_S: Final = 10.0
CLIENT_CLOSED_REQUEST: Final = 499
HEALTH_PATH: Final = "/healthz"
# A load balancer's probe waits this long for the store before it hears 503.
HEALTH_TIMEOUT_S: Final = 5.0


class _TooLargeError(Exception):
    """The body passed the cap; raised before it is all read."""


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise _TooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:  # chunked or lying Content-Length: stop reading at the cap
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _health_endpoint(
    store: EventStore, writer: ThreadPoolExecutor
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """GET /healthz: 200 once the store answers on its own thread (so healthy means a delivery
    now would be recorded in time), 503 when it fails or takes over ``HEALTH_TIMEOUT_S``."""

    async def health(request: Request) -> JSONResponse:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(writer, store.check), HEALTH_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - any failure of the store is "unavailable"
            logger.warning("health check failed: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return health


def create_app(
    store: EventStore,
    secrets: WebhookSecrets,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver as an ASGI app: POST a delivery to its root (or any path under its mount).

    ``store`` is called from one worker thread, never the event loop (commits fsync).
    ``clock`` (unix seconds) is injectable for tests of the timestamp tolerance.

    >>> config = ConnectorConfig.from_env()  # doctest: +SKIP
    >>> store = SQLiteEventStore(config.webhook_db)  # doctest: +SKIP
    >>> app = create_app(store, WebhookSecrets.parse(config.webhook_secret or ""))  # doctest: +SKIP
    """
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jicoo-webhook-store")

    async def receive(request: Request) -> JSONResponse:
        try:
            body = await _read_capped(request, max_body_bytes)
        except _TooLargeError:
            logger.warning("webhook refused: body over %d bytes", max_body_bytes)
            return JSONResponse({"error": f"body over {max_body_bytes} bytes"}, status_code=413)
        except ClientDisconnect:
            return JSONResponse({}, status_code=CLIENT_CLOSED_REQUEST)
        try:
            verify_signature(
                request.headers.get(SIGNATURE_HEADER),
                body,
                secrets,
                now=clock(),
                tolerance_s=tolerance_s,
            )
        except WebhookSignatureError as exc:
            logger.warning("webhook refused (401): %s", exc)
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        try:
            event = parse_event(body)
        except WebhookPayloadError as exc:
            logger.warning("webhook refused (400): %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(writer, store.record, event, body)
        except Exception:
            logger.exception("webhook %s for %s not recorded", event.event, event.booking_uid)
            return JSONResponse({"error": "not recorded; retry"}, status_code=500)
        logger.info(
            "webhook %s %s %s%s%s",
            event.event,
            event.booking_uid,
            event.created_at,
            "" if new else " (replay)",
            "" if event.known else " (unknown event type, ignored)",
        )
        return JSONResponse({"recorded": new, "duplicate": not new, "known": event.known})

    health = Route(HEALTH_PATH, _health_endpoint(store, writer), methods=["GET"])
    app = Starlette(routes=[health, Route("/{path:path}", receive, methods=["POST"])])
    app.state.store = store
    return app


def serve(
    store: EventStore,
    secrets: WebhookSecrets,
    *,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Serve until SIGINT/SIGTERM; ``on_ready`` gets the receiver's URL once it listens."""
    config = uvicorn.Config(
        create_app(store, secrets, max_body_bytes=max_body_bytes),
        host=host,
        port=port,
        lifespan="off",
        # uvicorn's access log prints paths only, never headers; ours logs each event.
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)

    def announce_when_started() -> None:
        while not server.started and not server.should_exit:
            time.sleep(READY_POLL_S)
        if server.started:
            sockets = [s for srv in server.servers for s in (srv.sockets or ())]
            on_ready(f"http://{host}:{sockets[0].getsockname()[1]}")

    watcher = threading.Thread(
        target=announce_when_started, name="jicoo-webhook-ready", daemon=True
    )
    watcher.start()
    try:
        server.run()
    finally:
        server.should_exit = True
        watcher.join(STOP_TIMEOUT_S)
