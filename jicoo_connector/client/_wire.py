"""HTTP/1.1 to one origin over asyncio Protocols and httptools (the llhttp C parser): a keep-alive
pool, framing, capped and decoded bodies, connect/read/write timeouts. HttpCore's only tool.

Knows nothing of the API, retries or JSON. Never logs; no header or body reaches an exception.
No proxies, cookies, redirects or HTTP/2, and nothing is read from the environment.
"""

import asyncio
import functools
import ssl
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import quote, quote_plus, urlsplit

import certifi
import httptools

from jicoo_connector.errors import ConfigError

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_HEAD_BYTES",
    "BodyCutShortError",
    "ConnectFailedError",
    "ConnectionPool",
    "ExchangeFailedError",
    "Response",
    "WireError",
]

# What we can decode (RFC 9110 §8.4.1); a body in any other coding is left unread.
ACCEPT_ENCODING = "gzip, deflate"
# A status line plus headers longer than this is no answer we want (h11, under httpx, stops at
# 16 KiB); llhttp itself has no limit, so without one a server could grow a header forever.
MAX_HEAD_BYTES = 64 * 1024
# RFC 3986 pchar and "/" stay as they are, "%" too (ids arrive quoted); the rest is
# percent-encoded, as httpx did with a path.
_PATH_SAFE = "!$&'()*+,;=:@/%"
# Methods whose request has a body by definition: without one they send Content-Length: 0.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_NO_BODY_STATUSES = frozenset({204, 304})
_SWITCHING_PROTOCOLS = 101
_FIRST_FINAL_STATUS = 200
_DEFAULT_PORTS = {"http": 80, "https": 443}
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
# Query names and values repeat (page numbers, window bounds): quoting each once is 8 us a
# request saved. Exactly urlencode's quoting, which is what httpx sent.
_QUOTED_CACHE_SIZE = 4096
_quote_query = functools.lru_cache(maxsize=_QUOTED_CACHE_SIZE)(quote_plus)
# call_at may run a timer a hair early; a silence this close to the limit counts as reached.
_TIMER_SLACK_S = 0.001
# How long aclose() waits for the event loop to report the closed sockets gone.
_CLOSE_WAIT_S = 1.0


class WireError(Exception):
    """One exchange failed; the message says how, in a few words (never a header or a body)."""


class ConnectFailedError(WireError):
    """No connection: refused, unreachable, DNS, TLS handshake or connect timeout. The request
    never left, so even a write may be resent."""


class ExchangeFailedError(WireError):
    """The request may have left, but no complete answer came: the connection dropped or was
    reset before the response head, the head was malformed, or a read/write timed out."""


class BodyCutShortError(WireError):
    """The response head arrived, then the body ended early or broke its framing."""


@dataclass(frozen=True, slots=True)
class Response:
    """An answer. ``headers`` has lower-case names; ``body`` is the decoded body, or None when
    it was not read: over the cap its status was given, a cap of None, or ``undecodable`` (a
    Content-Encoding we do not speak, or a body that does not decode)."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes | None = field(repr=False)
    undecodable: bool = False


# The body cap for a status: the most decoded bytes to keep, or None to leave the body unread.
CapFor = Callable[[int], int | None]


@runtime_checkable
class _Transport(Protocol):
    """What we use of a transport (uvloop's are not asyncio.Transport subclasses)."""

    def write(self, data: bytes) -> None: ...
    def abort(self) -> None: ...


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one exchange at a time. The parser's callbacks fill in the
    answer as bytes arrive; ``usable`` turns False for good once the connection cannot carry
    another exchange (peer closed, an error, an unread body, ``Connection: close``...)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, read_timeout: float, write_timeout: float
    ) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._parser = httptools.HttpResponseParser(self)
        self._transport: _Transport | None = None
        self.usable = False
        self.lost: asyncio.Future[None] = loop.create_future()
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        # The exchange under way: finished (``_done``) once its waiter has an outcome.
        self._done = True
        self._waiter: asyncio.Future[Response] | None = None
        self._cap_for: CapFor = _unread
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._head_bytes = 0
        self._begin_message()

    def _begin_message(self) -> None:
        self._headers: dict[str, str] = {}
        self._head_done = False
        self._informational = False
        self._status = 0
        self._cap = 0
        self._size = 0
        self._chunks: list[bytes] = []
        self._decoder: zlib._Decompress | None = None
        self._deflate_unsure = False
        self._compressed = False  # whether any encoded byte reached the decoder
        self._until_eof = False

    # -- the exchange, called by the pool ---------------------------------------------------

    async def exchange(self, request: bytes, cap_for: CapFor) -> Response:
        transport = self._transport
        if transport is None or not self.usable:
            raise ConnectFailedError("connection closed before the request was sent")
        loop = self._loop
        waiter: asyncio.Future[Response] = loop.create_future()
        self._waiter = waiter
        self._cap_for = cap_for
        self._head_bytes = 0
        self._begin_message()
        self._done = False
        try:
            transport.write(request)
            if self._paused:
                await self._drain()
            self._last_read = loop.time()
            self._timer = loop.call_at(self._last_read + self._read_timeout, self._check_silence)
            return await waiter
        finally:
            # Whatever happened (cancellation included), bytes from now on are unasked for.
            self._done = True
            self._waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieved: asyncio must not log it as forgotten

    async def _drain(self) -> None:
        drained: asyncio.Future[None] = self._loop.create_future()
        self._drained = drained
        try:
            async with asyncio.timeout(self._write_timeout):
                await drained
        except TimeoutError:
            raise ExchangeFailedError("write timed out") from None
        finally:
            self._drained = None

    def close(self) -> None:
        self.usable = False
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, _Transport):
            raise TypeError(f"{type(transport).__name__} cannot write")
        self._transport = transport
        self.usable = True

    def data_received(self, data: bytes) -> None:
        if self._done:
            # Bytes nobody asked for: the connection is out of step with us.
            self.usable = False
            return
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # A 101 was answered in on_headers_complete; what follows is not HTTP.
            self.usable = False
            if not self._done:
                self._fail(ExchangeFailedError("protocol upgrade"))
        except httptools.HttpParserError:
            self.usable = False
            if self._head_done:
                self._fail(BodyCutShortError("malformed body framing"))
            else:
                self._fail(ExchangeFailedError("malformed response head"))
        else:
            if not self._head_done and not self._done:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._fail(ExchangeFailedError("response head too large"))

    def eof_received(self) -> bool:
        self.usable = False
        self._closed_under_us()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._closed_under_us()
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ExchangeFailedError("connection lost while sending"))
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._done:
            self.usable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        if self._done:
            return
        status = self._parser.get_status_code()
        if status < _FIRST_FINAL_STATUS and status != _SWITCHING_PROTOCOLS:
            # 100 Continue, 103 Early Hints: the final answer follows on the same connection.
            self._informational = True
            return
        self._head_done = True
        self._status = status
        headers = self._headers
        if status == _SWITCHING_PROTOCOLS:
            self._finish(b"", keep_alive=False)
            return
        coding = headers.get("transfer-encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            # h11 (under httpx) supports no other transfer coding either.
            self._fail(ExchangeFailedError("unsupported Transfer-Encoding"))
            return
        self._until_eof = (
            coding is None and "content-length" not in headers and status not in _NO_BODY_STATUSES
        )
        cap = self._cap_for(status)
        encoding = headers.get("content-encoding")
        declared = headers.get("content-length", "")
        if cap is None or (encoding is None and declared.isdecimal() and int(declared) > cap):
            self._finish(None, keep_alive=False)
            return
        self._cap = cap
        if encoding is not None:
            content_coding = encoding.strip().lower()
            if content_coding == "gzip":
                self._decoder = zlib.decompressobj(_GZIP_WBITS)
            elif content_coding == "deflate":
                # RFC 9110 says zlib-wrapped; some servers send raw deflate (httpx tried both).
                self._decoder = zlib.decompressobj()
                self._deflate_unsure = True
            elif content_coding != "identity":
                self._refuse_body()

    def on_body(self, body: bytes) -> None:
        if self._done:
            return
        decoder = self._decoder
        if decoder is not None:
            # max_length: a compressed chunk never inflates beyond the cap in memory.
            room = self._cap - self._size + 1
            self._compressed = True
            try:
                body = decoder.decompress(body, room)
            except zlib.error:
                if not self._deflate_unsure:
                    self._refuse_body()
                    return
                decoder = self._decoder = zlib.decompressobj(_RAW_DEFLATE_WBITS)
                try:
                    body = decoder.decompress(body, room)
                except zlib.error:
                    self._refuse_body()
                    return
            self._deflate_unsure = False
        self._size += len(body)
        if self._size > self._cap:
            self._finish(None, keep_alive=False)
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._done:
            return
        if self._informational:
            self._begin_message()
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # -- outcomes ---------------------------------------------------------------------------

    def _complete(self, *, keep_alive: bool) -> None:
        decoder = self._decoder
        if decoder is not None and self._compressed:
            tail = decoder.flush()
            if not decoder.eof:  # the compressed stream stops before its end
                self._refuse_body()
                return
            self._size += len(tail)
            if self._size > self._cap:
                self._finish(None, keep_alive=False)
                return
            self._chunks.append(tail)
        self._finish(b"".join(self._chunks), keep_alive=keep_alive)

    def _closed_under_us(self) -> None:
        if self._done:
            return
        if not self._head_done:
            self._fail(ExchangeFailedError("connection dropped before an answer"))
        elif self._until_eof:
            self._complete(keep_alive=False)  # a body delimited by the close (RFC 9112 §6.3)
        else:
            self._fail(BodyCutShortError("body cut short"))

    def _check_silence(self) -> None:
        self._timer = None
        if self._done:
            return
        deadline = self._last_read + self._read_timeout
        if self._loop.time() >= deadline - _TIMER_SLACK_S:
            self._fail(ExchangeFailedError("read timed out"))
        else:
            self._timer = self._loop.call_at(deadline, self._check_silence)

    def _finish(self, body: bytes | None, *, keep_alive: bool, undecodable: bool = False) -> None:
        self._done = True
        self.usable = self.usable and keep_alive
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._headers, body, undecodable))

    def _refuse_body(self) -> None:
        # The head was fine: the status still counts (a 503 stays retryable).
        self._finish(None, keep_alive=False, undecodable=True)

    def _fail(self, error: WireError) -> None:
        self._done = True
        self.usable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


def _unread(status: int) -> int | None:
    return None


def _tls_context() -> ssl.SSLContext:
    # certifi's bundle, as httpx used with trust_env=False: the bare create_default_context()
    # would also trust whatever SSL_CERT_FILE / SSL_CERT_DIR name in the environment.
    context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


def _header_lines(headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if not name.isascii() or not name.replace("-", "").isalnum():
            raise ConfigError(f"header name {name!r} is not a token")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
            # The value is not quoted: it may be a secret.
            raise ConfigError(f"header {name} has a control character in its value")
        lines.append(f"{name}: {value}\r\n".encode())
    return b"".join(lines)


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to the origin of ``base_url``, at most
    ``max_connections`` open; a request beyond that waits for one to come back.

    ``headers`` go with every request (after Host, before Accept-Encoding). Idle connections
    are reused newest first; one the peer closed while idle is never reused.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        write_timeout: float,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(f"base URL {base_url!r} is not an http(s) URL")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"base URL {base_url!r} has an invalid port") from None
        host = parts.hostname
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        self._host = host
        self._port = port if port is not None else _DEFAULT_PORTS[parts.scheme]
        self._tls = _tls_context() if parts.scheme == "https" else None
        authority = f"[{host}]" if ":" in host else host
        if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
            authority = f"{authority}:{port}"
        self._prefix = quote(parts.path.rstrip("/"), safe=_PATH_SAFE)
        self._fixed_headers = _header_lines(
            {"Host": authority, **headers, "Accept-Encoding": ACCEPT_ENCODING}
        )
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()  # every connection not yet reported lost
        self._closed = False

    def __repr__(self) -> str:
        return f"ConnectionPool({self._host}:{self._port}, open={len(self._open)})"

    async def request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        cap_for: CapFor,
    ) -> Response:
        """Send one request and read its answer: ``endpoint`` is the path after the base
        URL's, ``params`` the query, ``cap_for`` the body cap for the answer's status.
        Raises the WireError subclasses; cancellation closes the connection."""
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        message = self._message(method, endpoint, params, body, content_type)
        async with self._slots:
            connection = self._reuse() or await self._connect()
            try:
                response = await connection.exchange(message, cap_for)
            except BaseException:
                connection.close()  # cancelled or failed mid-exchange: its state is unknown
                raise
            if connection.usable and not self._closed:
                self._idle.append(connection)
            else:
                connection.close()
            return response

    async def aclose(self) -> None:
        """Close every connection and wait (briefly) until they are gone. Idempotent."""
        self._closed = True
        self._idle.clear()
        closing = list(self._open)
        for connection in closing:
            connection.close()
        if closing:
            await asyncio.wait([c.lost for c in closing], timeout=_CLOSE_WAIT_S)

    def _message(
        self,
        method: str,
        endpoint: str,
        params: Mapping[str, str | int] | None,
        body: bytes | None,
        content_type: str,
    ) -> bytes:
        target = self._prefix + quote(endpoint, safe=_PATH_SAFE)
        if params:
            # urlencode(params), as httpx sent it: "+" in a value becomes %2B, a space "+".
            query = "&".join(
                [
                    f"{_quote_query(name)}={_quote_query(str(value))}"
                    for name, value in params.items()
                ]
            )
            target = f"{target}?{query}"
        if body is not None:
            length = f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        elif method in _BODY_METHODS:
            length = "Content-Length: 0\r\n"
        else:
            length = ""
        head = f"{method} {target} HTTP/1.1\r\n".encode("ascii")
        return b"".join((head, self._fixed_headers, length.encode("ascii"), b"\r\n", body or b""))

    def _reuse(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()  # newest first: the least likely to be timed out
            if connection.usable:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()

        def protocol() -> _Connection:
            return _Connection(loop, self._read_timeout, self._write_timeout)

        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    protocol,
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
        except OSError as exc:  # refused, unreachable, DNS, TLS (SSLError), our timeout
            why = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise ConnectFailedError(why) from exc
        self._open.add(connection)
        connection.lost.add_done_callback(lambda _: self._open.discard(connection))
        return connection
