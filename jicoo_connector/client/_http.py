"""The one place that calls HTTP: one pooled ``httpx.AsyncClient`` (HTTP/1.1, no redirects,
verified TLS, the proxy and trust of ``_network``, its pool in shards: ``_transport``), a total
deadline, bodies read raw and inflated under a byte cap, JSON parsing and mapping of answers to
errors, all behind a retry loop.

Never logs a body, a header or the key; errors carry the status, method, path and the
``errors`` member of error bodies only.
"""

import asyncio
import logging
import re
import ssl
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import anyio
import httpx
import orjson

from jicoo_connector.client._network import proxy_for, tls_context
from jicoo_connector.client._ratelimit import RateLimiter
from jicoo_connector.client._report import FetchReport
from jicoo_connector.client._retry import (
    Outcome,
    OutcomeKind,
    RetryBudget,
    decide,
    parse_retry_after,
)
from jicoo_connector.client._transport import ShardedTransport
from jicoo_connector.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InDoubtError,
    JicooError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    ServerError,
    TransportError,
    ValidationError,
)
from jicoo_connector.redaction import redact_url
from jicoo_connector.settings import Settings

__all__ = [
    "API_KEY_HEADER",
    "MAX_JSON_DEPTH",
    "HttpCore",
    "json_answer",
    "parse_json_object",
]

logger = logging.getLogger("jicoo_connector.client")

_T = TypeVar("_T")

API_KEY_HEADER = "X-Jicoo-Api-Key"
# Far below orjson's own 1024: deeper trees break recursive consumers (repr, Arrow) later.
MAX_JSON_DEPTH = 32
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# orjson turns integers beyond 64 bits into floats, so a float this large was such an integer.
_FLOAT_INT_LIMIT = float(2**63)
# Error bodies are read only for their `errors` member; more than this is not an error body.
ERROR_BODY_MAX_BYTES = 64 * 1024
# A status line plus headers longer than this is no answer we want.
MAX_HEAD_BYTES = 64 * 1024
# Keep a server message short in exception text.
MAX_SERVER_MESSAGE_CHARS = 300
# Connections beyond the page concurrency, for a get_booking next to a running listing.
POOL_HEADROOM = 4
# An idle pooled connection older than this is closed, not reused: after a silent network
# drop (a NAT or firewall forgetting it) a reused one would turn a write into an in-doubt one.
KEEPALIVE_EXPIRY = 5.0
# What we inflate ourselves (RFC 9110 §8.4.1); a body in any other coding is refused.
ACCEPT_ENCODING = "gzip, deflate"
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: ValidationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: ValidationError,
}


class _AttemptFailedError(Exception):
    """One attempt failed: how (for the retry decision) and what to raise if we stop."""

    def __init__(self, outcome: Outcome, error: JicooError) -> None:
        super().__init__(str(error))
        self.outcome = outcome
        self.error = error


class _RefusedJSONError(ValueError):
    """A body that is not JSON we accept; the message says why (never quotes the body)."""


@dataclass(frozen=True, slots=True)
class _Target:
    """What one request is for, as named in every error and log line."""

    method: str
    endpoint: str
    page: int | None

    def __str__(self) -> str:
        page = f" page {self.page}" if self.page is not None else ""
        return f"{self.method} {self.endpoint}{page}"

    def protocol_error(self, why: str) -> ProtocolError:
        return ProtocolError(
            f"{self}: {why}", method=self.method, endpoint=self.endpoint, page=self.page
        )


# The checks below run on the raw bytes at C speed (bytes.split/translate/replace, one regex);
# the Python walk over the parsed tree runs only when a number might be out of range.
# JSON strings, for a document orjson has already accepted: only their ends need finding.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
# Digits -> "0", exponent marks -> "e", anything else -> " ".
_NUMBER_SHAPE = bytes(
    ord("0") if byte in b"0123456789" else ord("e") if byte in b"eE" else ord(" ")
    for byte in range(256)
)
# |value| >= 2**63 needs 19 digits or an exponent (2**63 has 19 digits).
_LONG_DIGITS = b"0" * len(str(INT64_MAX))
_EXPONENT = b"0e"


def _without_strings(raw: bytes) -> bytes:
    if b"\\" not in raw:
        # No escapes: every quote opens or closes a string, so every other piece is structure.
        return b"".join(raw.split(b'"')[::2])
    return _JSON_STRING.sub(b"", raw)


def _check_tree(raw: bytes, root: dict[str, object]) -> None:
    structure = _without_strings(raw)
    # Each pass deletes the innermost containers ("()" pairs), so passes = nesting depth.
    parens = structure.translate(_BRACKETS_AS_PARENS, _NOT_BRACKETS)
    depth = 0
    while parens:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise _RefusedJSONError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        parens = parens.replace(b"()", b"")
    shape = structure.translate(_NUMBER_SHAPE)
    if _LONG_DIGITS in shape or _EXPONENT in shape:
        _check_numbers(root)


def _check_numbers(root: dict[str, object]) -> None:
    stack: list[dict[str, object] | list[object]] = [root]
    while stack:
        node = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append(child)
            elif isinstance(child, int) and not INT64_MIN <= child <= INT64_MAX:
                raise _RefusedJSONError("JSON integer beyond 64 bits")
            elif isinstance(child, float) and not abs(child) < _FLOAT_INT_LIMIT:
                raise _RefusedJSONError("JSON number beyond 64 bits or not finite")


def parse_json_object(raw: bytes) -> dict[str, object]:
    """Parse ``raw`` as a JSON object, refusing NaN/Infinity, invalid surrogates or UTF-8,
    integers beyond 64 bits and nesting deeper than MAX_JSON_DEPTH (raises ValueError)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson's message gives a position and a reason, never the document itself.
        raise _RefusedJSONError(f"invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise _RefusedJSONError(f"top-level JSON is {type(value).__name__}, not an object")
    _check_tree(raw, value)
    return value


class HttpCore:
    """An httpx.AsyncClient configured for the Jicoo API plus the retry loop around it."""

    def __init__(self, settings: Settings, *, limiter: RateLimiter) -> None:
        self._settings = settings
        self._limiter = limiter
        self._budget = RetryBudget()
        pool = settings.page_concurrency + POOL_HEADROOM
        self._in_flight = asyncio.Semaphore(pool)
        proxy_url = proxy_for(settings)
        context = tls_context(settings)
        proxy = None
        if proxy_url is not None:
            shown = (redact_url(settings.base_url), redact_url(proxy_url))
            logger.debug("connecting to %s through proxy %s", *shown)
            # An https:// proxy is verified on the same trust as the origin.
            tunnel_tls = context if proxy_url.startswith("https:") else None
            proxy = httpx.Proxy(proxy_url, ssl_context=tunnel_tls)
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            headers={
                API_KEY_HEADER: settings.api_key.reveal(),
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
                "User-Agent": settings.user_agent,
            },
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                # _in_flight keeps requests within the pool: a wait for a socket is a fault.
                pool=settings.connect_timeout,
            ),
            # Following a redirect would hand the key header to whatever origin it names.
            follow_redirects=False,
            # The proxy and the trust are decided above (see _network); nothing else is taken
            # from the environment (.netrc, SSL_CERT_FILE).
            trust_env=False,
            transport=ShardedTransport(
                pool, verify=context, proxy=proxy, keepalive_expiry=KEEPALIVE_EXPIRY
            ),
        )
        self._max_body = settings.max_response_bytes

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        endpoint: str,
        *,
        report: FetchReport,
        params: Mapping[str, str | int] | None = None,
        json_body: Mapping[str, object] | None = None,
        page: int | None = None,
    ) -> dict[str, object]:
        """Send until success or a final failure; return the answer's JSON object (with
        ``data``). Raises the typed errors of jicoo_connector.errors."""
        return await self._request(
            method,
            endpoint,
            report=report,
            params=params,
            json_body=json_body,
            page=page,
            decode=_json_answer,
        )

    async def request_bytes(
        self,
        endpoint: str,
        *,
        report: FetchReport,
        params: Mapping[str, str | int] | None = None,
        page: int | None = None,
    ) -> bytes:
        """A GET's successful body, undecoded (capped, never a redirect or an error answer):
        for callers that decode pages their own way. A body they refuse is theirs to raise."""
        return await self._request(
            "GET", endpoint, report=report, params=params, json_body=None, page=page, decode=_raw
        )

    async def _request(
        self,
        method: str,
        endpoint: str,
        *,
        report: FetchReport,
        params: Mapping[str, str | int] | None,
        json_body: Mapping[str, object] | None,
        page: int | None,
        decode: Callable[[bytes, _Target], _T],
    ) -> _T:
        target = _Target(method, endpoint, page)
        attempt = 0
        deadlines = 0
        self._budget.deposit()
        while True:
            # Never more requests than connections: a rate-limit token is taken only by a
            # request that can go out at once, not one that would then queue for a socket.
            async with self._in_flight:
                await self._limiter.acquire()
                report.requests += 1
                try:
                    # Inside the loop: a body refused here is an attempt's outcome (for a
                    # POST, one that may have taken effect).
                    return decode(await self._send_once(target, params, json_body), target)
                except _AttemptFailedError as failed:
                    outcome, error = failed.outcome, failed.error
            if outcome.kind is OutcomeKind.RATE_LIMITED:
                report.rate_limited += 1
                self._limiter.penalise(outcome.retry_after)
            elif outcome.kind is OutcomeKind.SERVER_ERROR:
                report.server_errors += 1
            decision = decide(
                method,
                attempt,
                outcome,
                max_retries=self._settings.max_retries,
                budget=self._budget,
                earlier_deadlines=deadlines,
            )
            if outcome.kind is OutcomeKind.DEADLINE:
                deadlines += 1
            if decision.in_doubt:
                raise InDoubtError(
                    f"{error}; the request was sent and may have taken effect: read the "
                    "resource back before resending",
                    method=method,
                    endpoint=endpoint,
                    sent_body=json_body,
                ) from error
            if not decision.retry:
                raise error
            logger.debug(
                "%s: %s, retry %d in %.2f s", target, decision.reason, attempt + 1, decision.delay
            )
            report.retries += 1
            attempt += 1
            await asyncio.sleep(decision.delay)

    async def _send_once(
        self,
        target: _Target,
        params: Mapping[str, str | int] | None,
        json_body: Mapping[str, object] | None,
    ) -> bytes:
        try:
            request = self._client.build_request(
                target.method,
                target.endpoint,
                params=params,
                content=orjson.dumps(json_body) if json_body is not None else None,
                headers=_JSON_CONTENT if json_body is not None else None,
            )
        except httpx.InvalidURL as exc:
            raise target.protocol_error(f"not a valid request path ({exc})") from None
        answered = False
        try:
            # The read timeout bounds each silence; a server trickling one byte per read
            # timeout could hold a call for hours. This bounds the whole exchange.
            with anyio.fail_after(self._settings.request_deadline):
                response = await self._client.send(request, stream=True)
                answered = True
                try:
                    return await self._answer(response, target)
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            deadline = self._settings.request_deadline
            why = f"no complete answer within the request deadline ({deadline:g} s)"
            _fail(OutcomeKind.DEADLINE, target, why, exc)
        except httpx.ProxyError as exc:
            # The tunnel was refused (httpcore says the proxy's status, never its URL).
            _fail(OutcomeKind.CONNECT, target, f"the proxy refused the tunnel ({exc})", exc)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            _fail(
                OutcomeKind.CONNECT,
                target,
                f"could not connect to {self._settings.base_url} ({_connect_why(exc)})",
                exc,
            )
        except httpx.ReadTimeout as exc:
            _fail(OutcomeKind.TRANSPORT, target, "read timed out", exc)
        except httpx.RemoteProtocolError as exc:
            if answered:
                _fail(OutcomeKind.TRUNCATED, target, "body cut short", exc)
            if _disconnected(exc):
                _fail(OutcomeKind.TRANSPORT, target, "connection dropped before an answer", exc)
            reason = str(exc)[:MAX_SERVER_MESSAGE_CHARS]
            _fail(OutcomeKind.TRANSPORT, target, f"bad answer head ({reason})", exc)
        except httpx.LocalProtocolError as exc:
            # h11 refused to write it (a CR/LF or space in the method, say): nothing was sent.
            raise target.protocol_error(f"refusing to send an invalid request ({exc})") from None
        except (httpx.TimeoutException, httpx.NetworkError) as exc:
            _fail(OutcomeKind.TRANSPORT, target, type(exc).__name__, exc)

    async def _answer(self, response: httpx.Response, target: _Target) -> bytes:
        status = response.status_code

        def refuse(why: str) -> NoReturn:
            outcome = Outcome(OutcomeKind.REFUSED_ANSWER, status)
            raise _AttemptFailedError(outcome, target.protocol_error(why))

        # httpcore bounds a head only while it is incomplete (100 KiB), so one that arrives
        # whole can be larger: no answer of this API needs more than MAX_HEAD_BYTES.
        if sum(len(name) + len(value) + 4 for name, value in response.headers.raw) > MAX_HEAD_BYTES:
            refuse(f"answer head larger than {MAX_HEAD_BYTES} bytes")
        if 300 <= status < 400:
            # Never follow: that would hand the key header to whatever origin it names.
            refuse(f"answered HTTP {status} (a redirect); refusing to follow it")
        if 200 <= status < 300:
            try:
                body = await _read_capped(response, self._max_body)
            except _UndecodableError:
                refuse("undecodable body")
            if body is None:
                refuse(f"body larger than {self._max_body} bytes")
            return body
        try:
            raw = await _read_capped(response, ERROR_BODY_MAX_BYTES)
        except _UndecodableError:
            raw = None  # the status still counts: a 503 stays retryable
        errors = _error_member(raw)
        _raise_status(status, errors, response.headers.get("retry-after"), target)


_JSON_CONTENT = {"Content-Type": "application/json"}


class _UndecodableError(Exception):
    """A body in a coding we did not offer, or whose compressed stream is broken or cut."""


class _Inflater:
    """Undoes one Content-Encoding, never producing more than asked: ``max_length`` is what
    stops a gzip bomb (a few KB on the wire can inflate to gigabytes)."""

    def __init__(self, coding: str) -> None:
        self._decoder: zlib._Decompress | None = None
        # RFC 9110 says deflate is zlib-wrapped; some servers send it raw.
        self._raw_deflate_possible = coding == "deflate"
        self._started = False
        if coding == "gzip":
            self._decoder = zlib.decompressobj(_GZIP_WBITS)
        elif coding == "deflate":
            self._decoder = zlib.decompressobj()
        elif coding not in ("", "identity"):
            raise _UndecodableError(coding)

    def feed(self, data: bytes, room: int) -> bytes:
        decoder = self._decoder
        if decoder is None:
            return data
        self._started = True
        try:
            out = decoder.decompress(data, room)
        except zlib.error:
            if not self._raw_deflate_possible:
                raise _UndecodableError("corrupt stream") from None
            decoder = self._decoder = zlib.decompressobj(_RAW_DEFLATE_WBITS)
            try:
                out = decoder.decompress(data, room)
            except zlib.error:
                raise _UndecodableError("corrupt stream") from None
        self._raw_deflate_possible = False
        return out

    def finish(self) -> bytes:
        decoder = self._decoder
        if decoder is None or not self._started:
            return b""
        tail = decoder.flush()
        if not decoder.eof:  # the compressed stream stops before its end
            raise _UndecodableError("cut stream")
        return tail


async def _read_capped(response: httpx.Response, cap: int) -> bytes | None:
    """The body, decoded, or None when it is over ``cap`` decoded bytes (reading stops there).
    Raises _UndecodableError. The raw stream is read so that httpx inflates nothing itself."""
    coding = response.headers.get("content-encoding", "").strip().lower()
    declared = response.headers.get("content-length", "")
    if not coding and declared.isdecimal() and int(declared) > cap:
        return None
    inflater = _Inflater(coding)
    chunks: list[bytes] = []
    size = 0
    async for data in response.aiter_raw():
        piece = inflater.feed(data, cap - size + 1)
        size += len(piece)
        if size > cap:
            return None
        chunks.append(piece)
    tail = inflater.finish()
    size += len(tail)
    if size > cap:
        return None
    chunks.append(tail)
    return b"".join(chunks)


def _connect_why(exc: httpx.TransportError) -> str:
    """Why a connection failed, in a few words; a certificate problem says what to set."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"TLS certificate not trusted: {cause.verify_message}; a company CA goes in "
                "JICOO_CA_BUNDLE or the system store with JICOO_TLS_TRUST=system"
            )
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {cause.reason or type(cause).__name__}"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out"
    return str(exc) or type(exc).__name__


def _disconnected(exc: httpx.RemoteProtocolError) -> bool:
    # h11's words for a peer that closed before a status line; anything else is a bad head.
    return "disconnected" in str(exc).lower()


def _raw(raw: bytes, target: _Target) -> bytes:
    return raw


def json_answer(
    raw: bytes, *, method: str, endpoint: str, page: int | None = None
) -> dict[str, object]:
    """``raw`` as an answer's JSON object with a ``data`` member, or ProtocolError saying why
    (naming the request, never quoting the body)."""
    target = _Target(method, endpoint, page)
    try:
        body = parse_json_object(raw)
    except _RefusedJSONError as exc:
        raise target.protocol_error(str(exc)) from None
    if "data" not in body:
        raise target.protocol_error("JSON object without a 'data' member")
    return body


def _json_answer(raw: bytes, target: _Target) -> dict[str, object]:
    # Inside the retry loop, a refused body is an attempt's outcome (for a POST, in doubt).
    try:
        return json_answer(raw, method=target.method, endpoint=target.endpoint, page=target.page)
    except ProtocolError as refused:
        raise _AttemptFailedError(Outcome(OutcomeKind.REFUSED_ANSWER, 200), refused) from None


def _fail(kind: OutcomeKind, target: _Target, what: str, cause: BaseException) -> NoReturn:
    error: JicooError
    if kind in (OutcomeKind.TRUNCATED, OutcomeKind.REFUSED_ANSWER):
        error = target.protocol_error(what)
    else:
        error = TransportError(f"{target}: {what}", method=target.method, endpoint=target.endpoint)
    error.__cause__ = cause
    raise _AttemptFailedError(Outcome(kind), error)


def _raise_status(
    status: int, errors: dict[str, object], retry_after_header: str | None, target: _Target
) -> NoReturn:
    message = errors.get("message")
    detail = f": {message[:MAX_SERVER_MESSAGE_CHARS]}" if isinstance(message, str) else ""
    text = f"{target}: HTTP {status}{detail}"
    retry_after = parse_retry_after(retry_after_header)
    method, endpoint = target.method, target.endpoint
    error: APIStatusError
    if status == 429:
        error = RateLimitedError(
            text,
            status_code=status,
            method=method,
            endpoint=endpoint,
            errors=errors,
            retry_after=retry_after,
        )
        kind = OutcomeKind.RATE_LIMITED
    elif status >= 500:
        error = ServerError(
            text, status_code=status, method=method, endpoint=endpoint, errors=errors
        )
        kind = OutcomeKind.SERVER_ERROR
    elif 400 <= status < 500:
        error_type = _STATUS_ERRORS.get(status, APIStatusError)
        error = error_type(
            text, status_code=status, method=method, endpoint=endpoint, errors=errors
        )
        kind = OutcomeKind.FATAL
    else:  # 1xx after the handshake or a non-HTTP status: an answer we cannot use
        refused = Outcome(OutcomeKind.REFUSED_ANSWER, status)
        raise _AttemptFailedError(refused, target.protocol_error(f"HTTP {status}"))
    raise _AttemptFailedError(Outcome(kind, status, retry_after), error)


def _error_member(raw: bytes | None) -> dict[str, object]:
    """The ``errors`` object of an error body, or {} if the body has none we accept (or was
    not read: over ERROR_BODY_MAX_BYTES or undecodable; the status alone then decides)."""
    if not raw:
        return {}
    try:
        body = parse_json_object(raw)
    except ValueError:
        return {}
    errors = body.get("errors")
    return dict(errors) if isinstance(errors, dict) else {}
