"""The webhook receiver: an ASGI app (mount it in your own server) and ``serve`` (uvicorn).

The only module of the library that imports starlette and uvicorn (with ``_guard``; they are
the optional extra ``jicoo-connector[webhooks]``). Every input gets an answer under 500: 401 for
a missing or malformed signature header or a bad signature (nothing stored), 413 for a body over
the cap, 431 for too many header fields, 408 for a body that does not arrive in time, 400 for a
signed body that is not an event, 200 once the event is committed, replays and unknown event
types included (stored, ignored downstream). 500 only when a store fails (Jicoo retries). Logs
never hold the secret, the signature header or the body. ``serve`` adds the connection bounds of
``ReceiverLimits`` (see ``_guard``).

One receiver serves one organization or several (``create_router``): each ``WebhookEndpoint``
has its own secrets and its own event store. A delivery to ``/<name>`` is checked against that
organization's secrets only; to any other path, against every organization's, and the one
whose secret signed it gets it (secrets are per endpoint in Jicoo's dashboard, so they differ).
``GET /healthz`` is for a load balancer: 200 when every store answers, 503 when one does not.
"""

import asyncio
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jicoo_connector.config import organization_name
from jicoo_connector.errors import ConfigError, WebhookPayloadError, WebhookSignatureError
from jicoo_connector.receiver_limits import ReceiverLimits
from jicoo_connector.webhooks._events import parse_event
from jicoo_connector.webhooks._guard import ConnectionGuard, guarded_protocol, usable_connections
from jicoo_connector.webhooks._signature import (
    DEFAULT_TOLERANCE_S,
    SIGNATURE_HEADER,
    WebhookSecrets,
    verify_signature,
)
from jicoo_connector.webhooks._store import EventStore

__all__ = [
    "DEFAULT_ENDPOINT",
    "HEALTH_PATH",
    "READY_LINE_PREFIX",
    "WebhookEndpoint",
    "create_app",
    "create_router",
    "serve",
    "server_config",
]

logger = logging.getLogger(__name__)

READY_LINE_PREFIX: Final = "Jicoo webhook receiver listening on "
READY_POLL_S: Final = 0.01
STOP_TIMEOUT_S: Final = 10.0
CLIENT_CLOSED_REQUEST: Final = 499
_DIGITS: Final = re.compile(r"[0-9]{1,18}")
# Said with every refusal: the connection is not kept for another request.
_CLOSE: Final = {"connection": "close"}
HEALTH_PATH: Final = "/healthz"
# A load balancer's probe waits this long for the store before it hears 503.
HEALTH_TIMEOUT_S: Final = 5.0

# The name of a receiver's only endpoint (create_app): its events go to its store whatever
# the path.
DEFAULT_ENDPOINT: Final = "default"


@dataclass(frozen=True)
class WebhookEndpoint:
    """One organization's receiving end: the secrets its deliveries are signed with and the
    store its events go to. ``name`` (an organization name) is also its path, ``/<name>``."""

    name: str
    store: EventStore
    secrets: WebhookSecrets

    def __post_init__(self) -> None:
        organization_name(self.name, "webhook endpoint")


class _TooLargeError(Exception):
    """The body passed the cap; raised before it is all read."""


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and _DIGITS.fullmatch(declared) and int(declared) > cap:
        raise _TooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:  # chunked or lying Content-Length: stop reading at the cap
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _refusal(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers=_CLOSE)


async def _body(request: Request, limits: ReceiverLimits) -> bytes | JSONResponse:
    """The request's body, or the refusal to send instead."""
    fields = request.headers.raw
    if len(fields) > limits.max_headers:
        logger.warning("webhook refused (431): over %d header fields", limits.max_headers)
        return _refusal(431, f"over {limits.max_headers} header fields")
    # h11 refuses a head still arriving past the cap; one that came whole in a single read
    # (up to asyncio's 256 KiB) is measured here.
    size = len(request.scope.get("raw_path", b"")) + sum(len(k) + len(v) + 4 for k, v in fields)
    if size > limits.max_header_bytes:
        logger.warning("webhook refused (431): head over %d bytes", limits.max_header_bytes)
        return _refusal(431, f"request head over {limits.max_header_bytes} bytes")
    try:
        # anyio's deadline: asyncio.timeout is Python 3.11's, and the library runs on 3.10 too.
        with anyio.fail_after(limits.body_timeout_s):
            return await _read_capped(request, limits.max_body_bytes)
    except _TooLargeError:
        logger.warning("webhook refused (413): body over %d bytes", limits.max_body_bytes)
        return _refusal(413, f"body over {limits.max_body_bytes} bytes")
    except TimeoutError:
        logger.warning("webhook refused (408): no whole body in %.1f s", limits.body_timeout_s)
        return _refusal(408, f"no whole body within {limits.body_timeout_s:g} s")
    except ClientDisconnect:
        return JSONResponse({}, status_code=CLIENT_CLOSED_REQUEST)


def _health_endpoint(
    endpoints: Sequence["WebhookEndpoint"], writers: dict[str, ThreadPoolExecutor]
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """GET /healthz: 200 once every endpoint's store answers on its own thread (so healthy
    means a delivery now would be recorded in time), 503 when one fails or takes over
    ``HEALTH_TIMEOUT_S``."""

    async def health(request: Request) -> JSONResponse:
        loop = asyncio.get_running_loop()
        for endpoint in endpoints:
            check = loop.run_in_executor(writers[endpoint.name], endpoint.store.check)
            try:
                await asyncio.wait_for(check, HEALTH_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - any failure of a store is "unavailable"
                logger.warning("health check of %s failed: %s", endpoint.name, type(exc).__name__)
                return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return health


def _check_apart(endpoints: Sequence[WebhookEndpoint]) -> None:
    """Distinct names and secrets: a delivery routed by its secret must have one owner."""
    if not endpoints:
        raise ConfigError("a webhook receiver needs at least one endpoint")
    owners: dict[bytes, str] = {}
    names: set[str] = set()
    for endpoint in endpoints:
        if endpoint.name in names:
            raise ConfigError(f"two webhook endpoints are named {endpoint.name!r}")
        names.add(endpoint.name)
        for key in endpoint.secrets:
            if key in owners:
                raise ConfigError(
                    f"organizations {owners[key]} and {endpoint.name} share a webhook secret; "
                    "each Jicoo endpoint has its own"
                )
            owners[key] = endpoint.name


def _signed_by(
    candidates: Sequence[WebhookEndpoint],
    header: str | None,
    body: bytes,
    now: float,
    tolerance_s: float,
) -> WebhookEndpoint:
    """The endpoint whose secret signed the delivery; raises WebhookSignatureError if none."""
    failure = WebhookSignatureError("no endpoint")
    for endpoint in candidates:
        try:
            verify_signature(header, body, endpoint.secrets, now=now, tolerance_s=tolerance_s)
        except WebhookSignatureError as exc:
            failure = exc
            continue
        return endpoint
    raise failure


def create_router(
    endpoints: Sequence[WebhookEndpoint],
    *,
    limits: ReceiverLimits | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver for several organizations as one ASGI app: POST a delivery to
    ``/<name>`` (checked against that endpoint's secrets only) or to any other path (routed to
    the endpoint whose secret signed it). Each store is called from a worker thread of its own,
    never the event loop (commits fsync). ``limits`` bound the header count, the body's size and
    its time to arrive (the connection bounds are the server's: ``serve``). ``clock`` (unix
    seconds) is injectable for tests.

    >>> acme = WebhookEndpoint("acme", SQLiteEventStore("a.sqlite"), a_keys)  # doctest: +SKIP
    >>> globex = WebhookEndpoint("globex", SQLiteEventStore("g.sqlite"), g_keys)  # doctest: +SKIP
    >>> app = create_router([acme, globex])  # doctest: +SKIP
    """
    _check_apart(endpoints)
    bounds = limits or ReceiverLimits()
    by_name = {endpoint.name: endpoint for endpoint in endpoints}
    writers = {
        endpoint.name: ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"jicoo-webhook-store-{endpoint.name}"
        )
        for endpoint in endpoints
    }

    async def receive(request: Request) -> JSONResponse:
        body = await _body(request, bounds)
        if isinstance(body, JSONResponse):
            return body
        first = str(request.path_params.get("path", "")).strip("/").split("/")[0]
        candidates = [by_name[first]] if first in by_name else list(endpoints)
        try:
            endpoint = _signed_by(
                candidates, request.headers.get(SIGNATURE_HEADER), body, clock(), tolerance_s
            )
        except WebhookSignatureError as exc:
            logger.warning("webhook refused (401): %s", exc)
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        return await _record(endpoint, writers[endpoint.name], body)

    health = Route(HEALTH_PATH, _health_endpoint(endpoints, writers), methods=["GET"])
    app = Starlette(routes=[health, Route("/{path:path}", receive, methods=["POST"])])
    app.state.endpoints = by_name
    return app


async def _record(
    endpoint: WebhookEndpoint, writer: ThreadPoolExecutor, body: bytes
) -> JSONResponse:
    try:
        event = parse_event(body)
    except WebhookPayloadError as exc:
        logger.warning("webhook refused (400): %s", exc)
        return JSONResponse({"error": str(exc)}, status_code=400)
    loop = asyncio.get_running_loop()
    try:
        new = await loop.run_in_executor(writer, endpoint.store.record, event, body)
    except Exception:
        logger.exception(
            "webhook %s for %s (%s) not recorded", event.event, event.booking_uid, endpoint.name
        )
        return JSONResponse({"error": "not recorded; retry"}, status_code=500)
    logger.info(
        "webhook %s %s %s for %s%s%s",
        event.event,
        event.booking_uid,
        event.created_at,
        endpoint.name,
        "" if new else " (replay)",
        "" if event.known else " (unknown event type, ignored)",
    )
    return JSONResponse(
        {"recorded": new, "duplicate": not new, "known": event.known, "endpoint": endpoint.name}
    )


def create_app(
    store: EventStore,
    secrets: WebhookSecrets,
    *,
    limits: ReceiverLimits | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver of one organization as an ASGI app: POST a delivery to its root (or any
    path under its mount). ``create_router`` serves several.

    >>> config = ConnectorConfig.from_env()  # doctest: +SKIP
    >>> store = SQLiteEventStore(config.webhook_db)  # doctest: +SKIP
    >>> app = create_app(store, WebhookSecrets.parse(config.webhook_secret or ""))  # doctest: +SKIP
    """
    return create_router(
        [WebhookEndpoint(DEFAULT_ENDPOINT, store, secrets)],
        limits=limits,
        tolerance_s=tolerance_s,
        clock=clock,
    )


def server_config(
    app: Starlette, limits: ReceiverLimits, *, host: str, port: int
) -> tuple[uvicorn.Config, ConnectionGuard]:
    """uvicorn's configuration for ``app`` within ``limits``, and the guard that holds its
    connection bounds (its counters say what it shed)."""
    guard = ConnectionGuard(usable_connections(limits.max_connections), limits.header_timeout_s)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        # h11, whose head buffer is bounded; never httptools (see _guard).
        http=guarded_protocol(guard),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_keep_alive=limits.keep_alive_s,
        ws="none",
        # uvicorn's access log prints paths only, never headers; ours logs each event.
        access_log=False,
        log_level="warning",
    )
    return config, guard


def serve(
    endpoints: Sequence[WebhookEndpoint],
    *,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
    limits: ReceiverLimits | None = None,
) -> None:
    """Serve ``endpoints`` until SIGINT/SIGTERM; ``on_ready`` gets the receiver's URL once it
    listens."""
    bounds = limits or ReceiverLimits()
    config, _ = server_config(create_router(endpoints, limits=bounds), bounds, host=host, port=port)
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
