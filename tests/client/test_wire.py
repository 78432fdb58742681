"""The client's HTTP (httpx under HttpCore) against raw servers on 127.0.0.1: regression tests
kept from the hand-written layer it replaced, which must hold on httpx too.

Each test scripts a real socket server byte by byte (keep-alive, closes, chunked, gzip,
silence, garbage); the server's count of connections and requests is the oracle.
"""

import asyncio
import contextlib
import gzip
import itertools
import logging
import socket
import socketserver
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import trustme

from jicoo_connector.client import AsyncJicooClient, RateLimiter, _http
from jicoo_connector.client._http import POOL_HEADROOM, HttpCore
from jicoo_connector.client._report import FetchReport
from jicoo_connector.errors import InDoubtError, ProtocolError, TransportError
from jicoo_connector.settings import ApiKey, Settings
from tests.conftest import CaptureServer

T = TypeVar("T")
KEY = "sk_test_wire"
UNTHROTTLED = 10_000.0
POLL_S = 0.02
BOOKING = b'{"data": {"uid": "b1", "status": "open"}}'
CANCELLED = b'{"data": {"uid": "b1", "status": "cancel"}}'


@dataclass
class Answer:
    """What the server does with one request: send ``pieces`` (``pause_s`` apart), then keep
    the connection, ``close`` it, ``hold`` it open without answering more, or ``idle_close``
    it when no next request came within ``pause_s``."""

    pieces: Iterable[bytes] = field(default_factory=list)
    then: str = "keep"
    pause_s: float = 0.0


def response(
    body: bytes = BOOKING, *, status: str = "200 OK", headers: tuple[str, ...] = ()
) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class WireServer:
    """A raw HTTP/1.1 server: ``answer(index, head)`` scripts each request's reply."""

    def __init__(
        self,
        answer: Callable[[int, bytes], Answer],
        tls: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self.closed_by_peer = 0
        self._tls = tls
        self._lock = threading.Lock()
        self._closing = threading.Event()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                if owner._tls is not None:
                    sock = owner._tls.wrap_socket(sock, server_side=True)
                try:
                    owner._serve(sock)
                finally:
                    sock.close()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                """Quiet: failed handshakes and resets are what some tests are about."""

        self._server = Server(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_S,))
        self._thread.start()

    def _recv(self, sock: socket.socket, timeout: float | None = None) -> bytes | None:
        """Bytes, b"" when the peer closed, None when nothing came within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sock.settimeout(POLL_S)
        while not self._closing.is_set():
            try:
                return sock.recv(65536)
            except TimeoutError:
                if deadline is not None and time.monotonic() > deadline:
                    return None
            except OSError:
                return b""
        return b""

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        buffer = b""
        idle_limit: float | None = None
        while True:
            while b"\r\n\r\n" not in buffer:
                data = self._recv(sock, idle_limit)
                if not data:
                    if data is not None:
                        with self._lock:
                            self.closed_by_peer += 1
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                data = self._recv(sock)
                if not data:
                    return
                buffer += data
            with self._lock:
                index = len(self.heads)
                self.heads.append(head)
                self.bodies.append(buffer[:length])
            buffer = buffer[length:]
            answer = self.answer(index, head)
            for number, piece in enumerate(answer.pieces):
                if number and answer.pause_s:
                    time.sleep(answer.pause_s)
                sock.sendall(piece)
            if answer.then == "close":
                return
            if answer.then == "hold":
                while self._recv(sock) and not self._closing.is_set():
                    pass
                return
            idle_limit = answer.pause_s if answer.then == "idle_close" else None

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def serve() -> Iterator[Callable[..., WireServer]]:
    servers: list[WireServer] = []

    def start(
        answer: Callable[[int, bytes], Answer], tls: ssl.SSLContext | None = None, port: int = 0
    ) -> WireServer:
        server = WireServer(answer, tls, port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def always(*pieces: bytes, then: str = "keep", pause_s: float = 0.0) -> Callable[..., Answer]:
    return lambda index, head: Answer(list(pieces), then, pause_s)


def run(
    base_url: str,
    call: Callable[[AsyncJicooClient], Coroutine[object, object, T]],
    **overrides: object,
) -> T:
    values: dict[str, object] = {
        "api_key": ApiKey(KEY),
        "base_url": base_url,
        "request_deadline": 5.0,
        "max_retries": 0,
    }
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]

    async def main() -> T:
        limiter = RateLimiter(UNTHROTTLED, int(UNTHROTTLED))
        async with AsyncJicooClient(settings, limiter=limiter) as client:
            return await call(client)

    return asyncio.run(main())


async def bookings(client: AsyncJicooClient, count: int, pause_s: float = 0.0) -> list[object]:
    found: list[object] = []
    for _ in range(count):
        found.append((await client.get_booking("b1"))["uid"])
        await asyncio.sleep(pause_s)
    return found


# -- connections ---------------------------------------------------------------------------------


def test_sequential_requests_share_one_connection(serve: Callable[..., WireServer]) -> None:
    server = serve(always(response()))
    assert run(server.base_url, lambda client: bookings(client, 10)) == ["b1"] * 10
    assert (len(server.heads), server.connections) == (10, 1)


def test_concurrent_requests_stay_within_the_pool(serve: Callable[..., WireServer]) -> None:
    server = serve(always(response()[:20], response()[20:], pause_s=0.02))

    async def many(client: AsyncJicooClient) -> int:
        found = await asyncio.gather(*(client.get_booking("b1") for _ in range(40)))
        return len(found)

    assert run(server.base_url, many, page_concurrency=2) == 40
    assert 2 <= server.connections <= 2 + POOL_HEADROOM


def test_aclose_closes_every_connection_and_is_idempotent(
    serve: Callable[..., WireServer],
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
    serve: Callable[..., WireServer],
) -> None:
    """A server that drops idle keep-alive connections (as every server does after a while):
    the POST after the pause goes out on a fresh connection, once, and is not in doubt."""

    def answer(index: int, head: bytes) -> Answer:
        body = BOOKING if head.startswith(b"GET") else CANCELLED
        return Answer([response(body)], "idle_close", pause_s=0.05)

    server = serve(answer)

    async def read_then_cancel(client: AsyncJicooClient) -> tuple[object, int]:
        await client.get_booking("b1")
        await asyncio.sleep(0.3)  # the server has given up on the connection by now
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
def test_an_answer_that_ends_the_connection_is_honoured(
    serve: Callable[..., WireServer], reply: bytes
) -> None:
    # The server keeps the socket open: only the client's reading of the answer closes it.
    server = serve(always(reply))
    assert run(server.base_url, lambda client: bookings(client, 3)) == ["b1"] * 3
    assert server.connections == 3


def test_an_over_cap_body_is_not_left_on_a_reused_connection(
    serve: Callable[..., WireServer],
) -> None:
    big = b'{"data": {"uid": "b1", "pad": "' + b"x" * 5000 + b'"}}'
    server = serve(lambda index, head: Answer([response(big if index == 0 else BOOKING)]))

    async def twice(client: AsyncJicooClient) -> object:
        with pytest.raises(ProtocolError, match="larger than 1000 bytes"):
            await client.get_booking("b1")
        return (await client.get_booking("b1"))["uid"]

    assert run(server.base_url, twice, max_response_bytes=1000) == "b1"
    assert server.connections == 2


def test_a_cancelled_exchange_closes_its_connection(serve: Callable[..., WireServer]) -> None:
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


# -- what goes out -------------------------------------------------------------------------------


def test_request_line_and_headers(capture_server: CaptureServer) -> None:
    async def both(client: AsyncJicooClient) -> None:
        for call in (client.get_booking("a b/c"), client.cancel_booking("x", reason="r")):
            with pytest.raises(ProtocolError):  # the capture server answers data: null
                await call

    run(f"{capture_server.base_url}/api/", both, user_agent="wire-test/1")
    host = capture_server.base_url.removeprefix("http://")
    get, post = capture_server.requests
    assert capture_server.paths == ["/api/v1/bookings/a%20b%2Fc", "/api/v1/bookings/x/cancel"]
    assert get["host"] == host
    assert get["x-jicoo-api-key"] == KEY
    assert get["accept"] == "application/json"
    assert get["accept-encoding"] == "gzip, deflate"
    assert get["user-agent"] == "wire-test/1"
    assert "content-length" not in get
    assert "content-type" not in get
    sent = b'{"cancelReason":"r"}'
    assert (post["content-type"], post["content-length"]) == ("application/json", str(len(sent)))


# -- framing and decoding ------------------------------------------------------------------------


def chunked(body: bytes, size: int) -> list[bytes]:
    pieces = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        pieces.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    pieces.append(b"0\r\n\r\n")
    return pieces


def test_chunked_answers_are_read_and_the_connection_kept(
    serve: Callable[..., WireServer],
) -> None:
    server = serve(always(*chunked(BOOKING, 7), pause_s=0.002))
    assert run(server.base_url, lambda client: bookings(client, 3)) == ["b1"] * 3
    assert server.connections == 1


def test_a_body_delimited_by_the_close_is_complete(serve: Callable[..., WireServer]) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
    server = serve(always(head, BOOKING[:10], BOOKING[10:], then="close", pause_s=0.01))
    assert run(server.base_url, lambda client: bookings(client, 2)) == ["b1"] * 2
    assert server.connections == 2


def test_a_chunked_stream_cut_short_is_truncated_and_retried(
    serve: Callable[..., WireServer],
) -> None:
    pieces = chunked(BOOKING, 10)

    def answer(index: int, head: bytes) -> Answer:
        if index == 0:
            return Answer(pieces[:2], "close")
        return Answer(pieces)

    server = serve(answer)

    async def get(client: AsyncJicooClient) -> tuple[object, int]:
        booking = await client.get_booking("b1")
        return booking["uid"], client.report.retries

    assert run(server.base_url, get, max_retries=1) == ("b1", 1)
    assert server.connections == 2
    always_cut = serve(always(*pieces[:2], then="close"))
    with pytest.raises(ProtocolError, match="body cut short"):
        run(always_cut.base_url, lambda client: client.get_booking("b1"))


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(BOOKING)),
        ("deflate", zlib.compress(BOOKING)),
        ("deflate", zlib.compress(BOOKING)[2:-4]),  # raw deflate, as some servers send it
        ("identity", BOOKING),
    ],
    ids=["gzip", "deflate", "raw-deflate", "identity"],
)
def test_encoded_bodies_are_decoded(
    serve: Callable[..., WireServer], coding: str, encoded: bytes
) -> None:
    server = serve(always(response(encoded, headers=(f"Content-Encoding: {coding}",))))
    assert run(server.base_url, lambda client: bookings(client, 2)) == ["b1"] * 2
    assert server.connections == 1


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", b"\x1f\x8b\x08\x00not gzip at all"),
        ("gzip", gzip.compress(BOOKING)[:-12]),  # the stream stops before its end
        ("br", BOOKING),
    ],
    ids=["garbage", "cut-stream", "unknown-coding"],
)
def test_undecodable_bodies_are_refused_not_retried(
    serve: Callable[..., WireServer], coding: str, encoded: bytes
) -> None:
    server = serve(always(response(encoded, headers=(f"Content-Encoding: {coding}",))))
    with pytest.raises(ProtocolError, match="undecodable body"):
        run(server.base_url, lambda client: client.get_booking("b1"), max_retries=3)
    assert len(server.heads) == 1


def test_an_undecodable_error_body_still_counts_as_its_status(
    serve: Callable[..., WireServer],
) -> None:
    """Error bodies are read only for their message: the 503 stays a retryable 503."""
    broken = response(
        b"\x1f\x8b\x08\x00broken",
        status="503 Service Unavailable",
        headers=("Content-Encoding: gzip",),
    )
    server = serve(lambda index, head: Answer([broken if index == 0 else response()]))

    async def get(client: AsyncJicooClient) -> tuple[object, int, int]:
        booking = await client.get_booking("b1")
        return booking["uid"], client.report.retries, client.report.server_errors

    assert run(server.base_url, get, max_retries=1) == ("b1", 1, 1)
    assert len(server.heads) == 2


def gzip_bomb(inflated: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(inflated // len(zeros))]
    return b"".join([*parts, compressor.flush()])


def test_a_gzip_bomb_stops_at_the_cap_with_memory_bounded(
    serve: Callable[..., WireServer],
) -> None:
    cap = 1_000_000
    bomb = gzip_bomb(256 * 1024 * 1024)  # ~250 KB on the wire, 256 MiB inflated
    server = serve(always(response(bomb, headers=("Content-Encoding: gzip",))))
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match=f"larger than {cap} bytes"):
            run(server.base_url, lambda client: client.get_booking("b1"), max_response_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Inflating one whole 64 KiB read of this stream would take ~64 MiB on its own.
    assert peak < 8 * cap


# -- failures ------------------------------------------------------------------------------------


def test_a_silent_server_hits_the_read_timeout(serve: Callable[..., WireServer]) -> None:
    server = serve(always(then="hold"))
    started = time.monotonic()
    with pytest.raises(TransportError, match="read timed out"):
        run(server.base_url, lambda client: client.get_booking("b1"), read_timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2.0


def test_a_trickle_resets_the_read_timeout(serve: Callable[..., WireServer]) -> None:
    """Read timeout is the longest silence, not the time for the whole answer."""
    reply = response()
    pieces = [reply[i : i + 8] for i in range(0, len(reply), 8)]
    server = serve(always(*pieces, pause_s=0.03))
    found = run(server.base_url, lambda client: client.get_booking("b1"), read_timeout=0.2)
    assert found["uid"] == "b1"
    assert len(pieces) * 0.03 > 0.2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "bad answer head"),
        (b"HTTP/1.1 200 OK\r\nContent-Len", "dropped before an answer"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding"),
        # Over httpcore's 100 KiB bound for a head still arriving, in pieces.
        (
            b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 50_000 + b"\r\nX-Pad: " + b"a" * 60_000,
            "too long",
        ),
    ],
    ids=["malformed", "cut-head", "transfer-coding", "huge-head"],
)
def test_a_broken_head_is_a_transport_failure(
    serve: Callable[..., WireServer], reply: bytes, message: str
) -> None:
    server = serve(always(reply, then="close"))
    with pytest.raises(TransportError, match=message):
        run(server.base_url, lambda client: client.get_booking("b1"))


def test_a_post_whose_connection_drops_before_the_answer_is_in_doubt(
    serve: Callable[..., WireServer],
) -> None:
    server = serve(always(then="close"))
    with pytest.raises(InDoubtError, match="dropped before an answer"):
        run(server.base_url, lambda client: client.cancel_booking("b1"), max_retries=3)
    assert len(server.heads) == 1


def test_informational_answers_are_skipped(serve: Callable[..., WireServer]) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    server = serve(always(early + response()))
    assert run(server.base_url, lambda client: bookings(client, 2)) == ["b1"] * 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_refused_post_is_resent_once_the_server_is_up(
    serve: Callable[..., WireServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Connection refused: provably not sent, so even a cancel is resent (never in doubt)."""
    port = free_port()
    started: list[WireServer] = []
    done = threading.Event()
    caplog.set_level(logging.DEBUG, logger="jicoo_connector.client")

    def serve_after_the_first_retry() -> None:
        # Not after a fixed time: on a loaded machine the first attempt came after a 0.2 s timer.
        while not done.is_set() and not any("retry" in r.getMessage() for r in caplog.records):
            time.sleep(POLL_S)
        started.append(serve(always(response(CANCELLED)), port=port))

    async def cancel(client: AsyncJicooClient) -> tuple[object, int]:
        cancelled = await client.cancel_booking("b1")
        return cancelled["status"], client.report.retries

    starter = threading.Thread(target=serve_after_the_first_retry)
    starter.start()
    try:
        status, retries = run(f"http://127.0.0.1:{port}", cancel, max_retries=10)
    finally:
        done.set()
        starter.join()
    assert status == "cancel"
    assert retries >= 1
    assert len(started[0].heads) == 1


# -- TLS -----------------------------------------------------------------------------------------


@dataclass
class Certificates:
    ca: Path
    chain: Path
    key: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a leaf certificate for ``localhost`` only."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    folder = tmp_path_factory.mktemp("tls")
    paths = Certificates(folder / "ca.pem", folder / "chain.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(paths.ca))
    leaf.cert_chain_pems[0].write_to_path(str(paths.chain))
    leaf.private_key_pem.write_to_path(str(paths.key))
    return paths


def tls_server_context(certificates: Certificates, names: list[str | None]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.chain, certificates.key)

    def record(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record  # type: ignore[assignment]
    return context


def test_tls_is_verified_with_sni_and_keeps_the_connection(
    serve: Callable[..., WireServer], certificates: Certificates
) -> None:
    names: list[str | None] = []
    server = serve(always(response()), tls=tls_server_context(certificates, names))
    base_url = f"https://localhost:{server.port}"
    found = run(base_url, lambda client: bookings(client, 3), ca_bundle=str(certificates.ca))
    assert found == ["b1"] * 3
    assert server.connections == 1
    assert names == ["localhost"]
    assert b"\r\nHost: localhost:" in server.heads[0]


@pytest.mark.parametrize("trusted", [False, True], ids=["unknown-issuer", "wrong-host"])
def test_a_certificate_that_fails_verification_is_a_connect_failure(
    serve: Callable[..., WireServer],
    certificates: Certificates,
    trusted: bool,
) -> None:
    # Trusted or not, the certificate names localhost, not 127.0.0.1.
    trust = {"ca_bundle": str(certificates.ca)} if trusted else {}
    server = serve(always(response(CANCELLED)), tls=tls_server_context(certificates, []))
    with pytest.raises(TransportError, match="could not connect") as caught:
        run(server.base_url, lambda client: client.cancel_booking("b1"), max_retries=1, **trust)
    assert not isinstance(caught.value, InDoubtError)  # never sent: resending was safe
    assert server.heads == []


# -- the hand-written layer's flaws (issue 13), each against a hostile server ---------------------


def test_an_endless_trailer_section_is_cut_off_with_memory_bounded(
    serve: Callable[..., WireServer],
) -> None:
    trailer = b"X-Trailer: " + b"t" * 1000 + b"\r\n"
    start = [*chunked(BOOKING, 100)[:-1], b"0\r\n"]
    server = serve(lambda index, head: Answer(itertools.chain(start, itertools.repeat(trailer))))
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ProtocolError, match="body cut short"):
            run(server.base_url, lambda client: client.get_booking("b1"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 3.0
    assert peak < 4 * 1024 * 1024


def test_a_retry_after_in_a_trailer_is_not_obeyed(serve: Callable[..., WireServer]) -> None:
    """Trailers are no headers: a 503 whose only Retry-After comes after the body is retried
    on the backoff (at most 0.5 s for a first retry), not after the 60 s it asks for."""
    head = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b'{"errors": {"message": "busy"}}'
    late = [head, f"{len(body):x}\r\n".encode() + body + b"\r\n", b"0\r\nRetry-After: 60\r\n\r\n"]
    server = serve(lambda index, head: Answer(late if index == 0 else [response()]))

    async def get(client: AsyncJicooClient) -> tuple[object, int]:
        booking = await client.get_booking("b1")
        return booking["uid"], client.report.retries

    started = time.monotonic()
    assert run(server.base_url, get, max_retries=1) == ("b1", 1)
    assert time.monotonic() - started < 5.0


def test_a_stray_second_response_is_not_taken_for_the_next_answer(
    serve: Callable[..., WireServer],
) -> None:
    stray = response(b'{"data": {"uid": "stray", "status": "open"}}', headers=("Retry-After: 9",))

    def answer(index: int, head: bytes) -> Answer:
        # A moment apart: bytes that arrive in the same read as the answer stay in h11's
        # buffer, where httpcore does not look: it checks only whether the socket is readable.
        return Answer([response(), stray] if index == 0 else [response()], pause_s=0.05)

    server = serve(answer)
    assert run(server.base_url, lambda client: bookings(client, 2, pause_s=0.1)) == ["b1"] * 2
    assert server.connections == 2  # the connection with unasked-for bytes was dropped


def test_a_100_kb_head_in_one_piece_is_refused(serve: Callable[..., WireServer]) -> None:
    server = serve(always(response(headers=("X-Pad: " + "a" * 100_000,))))
    with pytest.raises(ProtocolError, match="answer head larger than 65536 bytes"):
        run(server.base_url, lambda client: client.get_booking("b1"), max_retries=2)
    assert len(server.heads) == 1  # the same answer would come again: not retried


def test_an_idle_connection_is_not_reused_after_a_silent_drop(
    serve: Callable[..., WireServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network forgets the connection without a FIN (a NAT timeout): the server holds the
    socket and answers nothing more on it. The cancel after the idle spell must go out on a
    fresh connection, once, and succeed, not wait on the dead one and end in doubt."""
    monkeypatch.setattr(_http, "KEEPALIVE_EXPIRY", 0.3)

    def answer(index: int, head: bytes) -> Answer:
        if head.startswith(b"GET"):
            return Answer([response()], "hold")
        return Answer([response(CANCELLED)])

    server = serve(answer)

    async def read_then_cancel(client: AsyncJicooClient) -> tuple[object, int]:
        await client.get_booking("b1")
        await asyncio.sleep(0.5)
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
    serve: Callable[..., WireServer], monkeypatch: pytest.MonkeyPatch
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


def test_cr_lf_in_an_id_cannot_add_a_header_or_a_request(capture_server: CaptureServer) -> None:
    async def get(client: AsyncJicooClient) -> None:
        with pytest.raises(ProtocolError):  # the capture server answers data: null
            await client.get_booking("b1\r\nX-Injected: 1\r\n\r\nGET /evil HTTP/1.1")

    run(capture_server.base_url, get)
    assert capture_server.paths == [
        "/v1/bookings/b1%0D%0AX-Injected%3A%201%0D%0A%0D%0AGET%20%2Fevil%20HTTP%2F1.1"
    ]
    assert "x-injected" not in capture_server.requests[0]


@pytest.mark.parametrize(
    ("method", "endpoint"),
    [
        ("GET /evil HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET", "/v1/bookings"),
        ("GET", "/v1/bookings\r\nX-Injected: 1"),
    ],
    ids=["method", "path"],
)
def test_cr_lf_reaching_the_http_layer_is_never_sent_raw(
    capture_server: CaptureServer, method: str, endpoint: str
) -> None:
    settings = Settings(api_key=ApiKey(KEY), base_url=capture_server.base_url, max_retries=0)

    async def send() -> None:
        core = HttpCore(settings, limiter=RateLimiter(UNTHROTTLED, 100))
        try:
            with contextlib.suppress(ProtocolError):
                await core.request(method, endpoint, report=FetchReport())
        finally:
            await core.aclose()

    asyncio.run(send())
    assert len(capture_server.paths) <= 1
    assert all("\r" not in path and "\n" not in path for path in capture_server.paths)
    assert all("x-injected" not in request for request in capture_server.requests)


def test_a_head_answer_is_not_waited_on_for_a_body(serve: Callable[..., WireServer]) -> None:
    """HEAD answers carry the GET's Content-Length and no body."""
    server = serve(always(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"))
    settings = Settings(api_key=ApiKey(KEY), base_url=server.base_url, read_timeout=5.0)

    async def head() -> None:
        core = HttpCore(settings, limiter=RateLimiter(UNTHROTTLED, 100))
        try:
            with pytest.raises(ProtocolError, match="invalid JSON"):
                await core.request("HEAD", "/v1/bookings/b1", report=FetchReport())
        finally:
            await core.aclose()

    started = time.monotonic()
    asyncio.run(head())
    assert time.monotonic() - started < 2.0
