"""A raw HTTP/1.1 server scripted byte by byte, and a client runner, for the wire tests.

Each test scripts a real socket server (keep-alive, closes, chunked, gzip, silence, garbage);
the server's count of connections and requests is the oracle. The ``serve`` fixture
(conftest.py) starts them and closes them after the test.
"""

import asyncio
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from jicoo_connector.client import AsyncJicooClient, RateLimiter
from jicoo_connector.settings import ApiKey, Settings

__all__ = [
    "BOOKING",
    "CANCELLED",
    "KEY",
    "POLL_S",
    "UNTHROTTLED",
    "Answer",
    "Serve",
    "WireServer",
    "always",
    "bookings",
    "response",
    "run",
    "until",
]

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
        # Connections finished and closed on the server's side, whoever ended them.
        self.closed = 0
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
                    with owner._lock:
                        owner.closed += 1

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


# What the ``serve`` fixture hands a test: start a server with this script (TLS, fixed port).
Serve = Callable[..., WireServer]


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (a server's counters) from the client's loop, up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(POLL_S)


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
