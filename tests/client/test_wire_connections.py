"""The client's connections (httpx under HttpCore) against scripted raw servers: reuse, the
pool's bound, closes from either side, idle and dead connections, refused and unreachable
addresses. Regression tests kept from the hand-written layer httpx replaced.
"""

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from jicoo_connector.client import AsyncJicooClient, RateLimiter, _http
from jicoo_connector.client._http import POOL_HEADROOM
from jicoo_connector.errors import ProtocolError
from jicoo_connector.settings import ApiKey, Settings
from tests.client.wire import (
    BOOKING,
    CANCELLED,
    KEY,
    POLL_S,
    UNTHROTTLED,
    Answer,
    Serve,
    WireServer,
    always,
    bookings,
    response,
    run,
    until,
)

# A short keep-alive expiry: the idle spell of a test need only outlast it.
IDLE_EXPIRY_S = 0.1
START_WAIT_S = 30.0


def test_sequential_requests_share_one_connection(serve: Serve) -> None:
    server = serve(always(response()))
    assert run(server.base_url, lambda client: bookings(client, 10)) == ["b1"] * 10
    assert (len(server.heads), server.connections) == (10, 1)


def test_concurrent_requests_stay_within_the_pool(serve: Serve) -> None:
    server = serve(always(response()[:20], response()[20:], pause_s=0.02))

    async def many(client: AsyncJicooClient) -> int:
        found = await asyncio.gather(*(client.get_booking("b1") for _ in range(40)))
        return len(found)

    assert run(server.base_url, many, page_concurrency=2) == 40
    assert 2 <= server.connections <= 2 + POOL_HEADROOM


def test_aclose_closes_every_connection_and_is_idempotent(
    serve: Serve,
) -> None:
    server = serve(always(response(), pause_s=0.05))
    settings = Settings(api_key=ApiKey(KEY), base_url=server.base_url)

    async def main() -> None:
        client = AsyncJicooClient(settings, limiter=RateLimiter(UNTHROTTLED, 100))
        await asyncio.gather(*(client.get_booking("b1") for _ in range(3)))
        await client.aclose()
        await client.aclose()

    asyncio.run(main())
    deadline = time.monotonic() + 2.0
    while server.closed_by_peer < server.connections and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert server.connections >= 1
    assert server.closed_by_peer == server.connections


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Serve,
) -> None:
    """A server that drops idle keep-alive connections (as every server does after a while):
    the POST after the pause goes out on a fresh connection, once, and is not in doubt."""

    def answer(index: int, head: bytes) -> Answer:
        body = BOOKING if head.startswith(b"GET") else CANCELLED
        return Answer([response(body)], "idle_close", pause_s=0.05)

    server = serve(answer)

    async def read_then_cancel(client: AsyncJicooClient) -> tuple[object, int]:
        await client.get_booking("b1")
        await until(lambda: server.closed == 1, "the server closes the idle connection")
        cancelled = await client.cancel_booking("b1", reason="moved")
        return cancelled["status"], client.report.retries

    assert run(server.base_url, read_then_cancel, max_retries=3) == ("cancel", 0)
    assert [head.split(b" ")[0] for head in server.heads] == [b"GET", b"POST"]
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        response(headers=("Connection: close",)),
        response().replace(b"HTTP/1.1", b"HTTP/1.0", 1),
    ],
    ids=["connection-close", "http-1.0"],
)
def test_an_answer_that_ends_the_connection_is_honoured(serve: Serve, reply: bytes) -> None:
    # The server keeps the socket open: only the client's reading of the answer closes it.
    server = serve(always(reply))
    assert run(server.base_url, lambda client: bookings(client, 3)) == ["b1"] * 3
    assert server.connections == 3


def test_an_over_cap_body_is_not_left_on_a_reused_connection(
    serve: Serve,
) -> None:
    big = b'{"data": {"uid": "b1", "pad": "' + b"x" * 5000 + b'"}}'
    server = serve(lambda index, head: Answer([response(big if index == 0 else BOOKING)]))

    async def twice(client: AsyncJicooClient) -> object:
        with pytest.raises(ProtocolError, match="larger than 1000 bytes"):
            await client.get_booking("b1")
        return (await client.get_booking("b1"))["uid"]

    assert run(server.base_url, twice, max_response_bytes=1000) == "b1"
    assert server.connections == 2


def test_a_cancelled_exchange_closes_its_connection(serve: Serve) -> None:
    """The deadline cancels a request mid-answer; the retry must not read the rest of the
    old answer off the same connection."""

    def answer(index: int, head: bytes) -> Answer:
        if index == 0:
            return Answer([response()[:30]], "hold")
        return Answer([response()])

    server = serve(answer)
    found = run(
        server.base_url,
        lambda client: client.get_booking("b1"),
        request_deadline=0.3,
        max_retries=2,
    )
    assert found["uid"] == "b1"
    assert (len(server.heads), server.connections) == (2, 2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _RetryLogged(logging.Handler):
    """Sets ``seen`` when the client logs that it will retry a request."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if ", retry " in record.getMessage():
            self.seen.set()


def test_a_refused_post_is_resent_once_the_server_is_up(serve: Serve) -> None:
    """Connection refused: provably not sent, so even a cancel is resent (never in doubt).
    The server starts when the client logs its first retry, never on a timer that a slow
    start of the client could outrun."""
    port = free_port()
    started: list[WireServer] = []
    retry_logged = _RetryLogged()

    def start_on_retry() -> None:
        if retry_logged.seen.wait(START_WAIT_S):
            started.append(serve(always(response(CANCELLED)), port=port))

    async def cancel(client: AsyncJicooClient) -> tuple[object, int]:
        cancelled = await client.cancel_booking("b1")
        return cancelled["status"], client.report.retries

    client_log = logging.getLogger("jicoo_connector.client")
    level = client_log.level
    client_log.setLevel(logging.DEBUG)
    client_log.addHandler(retry_logged)
    starter = threading.Thread(target=start_on_retry)
    starter.start()
    try:
        status, retries = run(f"http://127.0.0.1:{port}", cancel, max_retries=10)
    finally:
        retry_logged.seen.set()
        starter.join()
        client_log.removeHandler(retry_logged)
        client_log.setLevel(level)
    assert status == "cancel"
    assert retries >= 1
    assert started, "the client logged no retry, so the server never started"
    assert len(started[0].heads) == 1


def test_an_idle_connection_is_not_reused_after_a_silent_drop(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network forgets the connection without a FIN (a NAT timeout): the server holds the
    socket and answers nothing more on it. The cancel after the idle spell must go out on a
    fresh connection, once, and succeed, not wait on the dead one and end in doubt."""
    monkeypatch.setattr(_http, "KEEPALIVE_EXPIRY", IDLE_EXPIRY_S)

    def answer(index: int, head: bytes) -> Answer:
        if head.startswith(b"GET"):
            return Answer([response()], "hold")
        return Answer([response(CANCELLED)])

    server = serve(answer)

    async def read_then_cancel(client: AsyncJicooClient) -> tuple[object, int]:
        await client.get_booking("b1")
        # The connection went back to the pool before the answer was returned, so once the
        # expiry has passed from here it has passed for the connection too.
        expired = time.monotonic() + IDLE_EXPIRY_S
        await until(lambda: time.monotonic() > expired, "the keep-alive expiry passes")
        cancelled = await client.cancel_booking("b1", reason="moved")
        return cancelled["status"], client.report.retries

    assert run(server.base_url, read_then_cancel, read_timeout=2.0) == ("cancel", 0)
    assert [head.split(b" ")[0] for head in server.heads] == [b"GET", b"POST"]
    assert server.connections == 2


@contextlib.contextmanager
def blackhole(family: socket.AddressFamily, host: str, port: int) -> Iterator[None]:
    """A listening socket whose accept queue is full: the kernel drops further SYNs, so a
    connect there hangs as it does to an unreachable address."""
    with socket.socket(family) as listener, socket.socket(family) as filler:
        listener.bind((host, port))
        listener.listen(0)
        filler.connect((host, port))  # fills the queue; nothing ever accepts it
        yield


def test_an_unreachable_first_address_falls_through_to_the_next(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``localhost`` resolving to ::1 first (blackholed) and 127.0.0.1 (serving), as on many
    hosts. Loopback has no DNS of its own to say so, so the resolver's answer is given."""
    server = serve(always(response()))
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host: object, port: object, *args: object, **kwargs: object) -> list[object]:
        if host != "localhost":
            return real_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]
        stream, tcp = socket.SOCK_STREAM, socket.IPPROTO_TCP
        return [
            (socket.AF_INET6, stream, tcp, "", ("::1", server.port, 0, 0)),
            (socket.AF_INET, stream, tcp, "", ("127.0.0.1", server.port)),
        ]

    with blackhole(socket.AF_INET6, "::1", server.port):
        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        started = time.monotonic()
        found = run(
            f"http://localhost:{server.port}",
            lambda client: client.get_booking("b1"),
            connect_timeout=5.0,
        )
        elapsed = time.monotonic() - started
    assert found["uid"] == "b1"
    assert elapsed < 2.5  # the next address was tried long before the connect timeout
    assert server.connections == 1
