"""The fault middleware: applies the active ``FaultProfile`` (fault_profile.py) to API requests.

``FaultInjector`` is a raw ASGI middleware: it delays, rate-limits per key, answers 5xx or 429,
streams, truncates and aborts connections, sends hostile bodies, drifts the data, and logs every
``/v1`` request it sees. ``/_sandbox/*`` passes straight through (never faulted, delayed,
limited or logged); fault_control.py serves the endpoints that read and change this state.
It imports no client code.
"""

import asyncio
import datetime as dt
import email.utils
import functools
import hashlib
import json
import math
import random
import re
import socket
import struct
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jicoo_sandbox.fault_profile import (
    DEFAULT_HUGE_BODY_BYTES,
    DEFAULT_REDIRECT_STATUS,
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_STATUS,
    DEFAULT_TRICKLE_CHUNK_BYTES,
    INJECTABLE_STATUSES,
    MUTATING_METHODS,
    FaultProfile,
    FaultRule,
    RateLimit,
)

if TYPE_CHECKING:
    from jicoo_sandbox.config import SandboxConfig
    from jicoo_sandbox.store import SandboxStore

__all__ = [
    "DEEP_NESTING_DEPTH",
    "FAULT_EXTENSION",
    "TRANSPORT_EXTENSION",
    "FaultInjector",
    "error_body",
    "json_response",
    "key_hash",
    "read_body",
]

# Scope extension keys shared with server.py (transport) and app.py (fault label for the journal).
TRANSPORT_EXTENSION: Final = "jicoo.transport"
FAULT_EXTENSION: Final = "jicoo.fault"

MIN_RETRY_AFTER_S: Final = 1
# Far beyond any JSON parser's recursion limit (CPython's json gives up near 1,000).
DEEP_NESTING_DEPTH: Final = 100_000
# Above CPython's int-from-string limit (4,300 digits) so naive parsing raises.
HUGE_NUMBER_DIGITS: Final = 5_000
STREAM_CHUNK_BYTES: Final = 64 * 1024
GZIP_WBITS: Final = 31  # zlib: 16 + 15 = gzip container, largest window
REQUEST_LOG_MAX: Final = 100_000
KEY_HASH_CHARS: Final = 12
# How long an aborted connection may take to be reported lost by uvicorn before we give up.
DISCONNECT_WAIT_S: Final = 5.0
MS_PER_S: Final = 1000.0
API_KEY_HEADER: Final = b"x-jicoo-api-key"
BOOKING_UID_PATH: Final = re.compile(r"^/v1/bookings/([^/]+)")


# --- bodies ------------------------------------------------------------------------------------


def error_body(code: str, message: str) -> bytes:
    return json.dumps(
        {"data": None, "errors": {"code": code, "message": message, "fields": {}}}
    ).encode()


# A list page cut off in the middle of a string: no parser can accept it.
MALFORMED_BODY: Final = b'{"data": [{"uid": "mzgdPJVBb7RE", "name": "Intro call, "status": "op'
_PAGE_TAIL: Final = b', "errors": {}, "count": 1, "currentPage": 1, "numberOfPages": 1'


def _hostile_body(variant: str) -> bytes:
    if variant == "deep_nesting":
        depth = DEEP_NESTING_DEPTH
        return b'{"data": ' + b"[" * depth + b"]" * depth + b', "errors": {}}'
    if variant == "huge_number":
        digits = b"9" * HUGE_NUMBER_DIGITS
        return b'{"data": [], "errors": {}, "totalCount": ' + digits + b', "count": 0}'
    if variant == "nan":
        # NaN/Infinity are not JSON (RFC 8259 section 6) yet lenient parsers accept them.
        return (
            b'{"data": [{"uid": "nan", "priority": NaN}], "totalCount": Infinity'
            + _PAGE_TAIL
            + b"}"
        )
    if variant == "invalid_surrogate":
        # A lone high surrogate: valid JSON grammar, not valid Unicode (RFC 8259 section 8.2).
        return (
            b'{"data": [{"uid": "surrogate", "name": "\\ud800"}], "totalCount": 1'
            + _PAGE_TAIL
            + b"}"
        )
    raise AssertionError(f"not a fixed-size variant: {variant}")


_HUGE_PREFIX: Final = b'{"data": ['
_HUGE_SUFFIX: Final = b'{}], "errors": {}}'
_HUGE_UNIT: Final = b'{"uid": "padding", "name": "' + b"x" * 1000 + b'"},'


def _huge_body_units(size_bytes: int) -> int:
    overhead = len(_HUGE_PREFIX) + len(_HUGE_SUFFIX)
    # One byte more than asked, so the body is strictly bigger than size_bytes.
    return max(1, math.ceil((size_bytes + 1 - overhead) / len(_HUGE_UNIT)))


def _huge_body_chunks(size_bytes: int) -> Iterator[bytes]:
    units = _huge_body_units(size_bytes)
    per_chunk = max(1, STREAM_CHUNK_BYTES // len(_HUGE_UNIT))
    yield _HUGE_PREFIX
    while units > 0:
        take = min(units, per_chunk)
        yield _HUGE_UNIT * take
        units -= take
    yield _HUGE_SUFFIX


@functools.lru_cache(maxsize=4)
def _gzipped_huge_body(size_bytes: int) -> bytes:
    """A decompression bomb: tiny on the wire, ``size_bytes``+ once inflated. Cached: it is slow."""
    compressor = zlib.compressobj(level=9, wbits=GZIP_WBITS)
    parts = [compressor.compress(chunk) for chunk in _huge_body_chunks(size_bytes)]
    parts.append(compressor.flush())
    return b"".join(parts)


def _retry_after_header(rule: FaultRule) -> list[tuple[bytes, bytes]]:
    seconds = rule.retry_after if rule.retry_after is not None else DEFAULT_RETRY_AFTER_S
    if rule.retry_after_format == "none":
        return []
    if rule.retry_after_format == "http_date":
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
        return [(b"retry-after", email.utils.format_datetime(when, usegmt=True).encode())]
    return [(b"retry-after", str(max(MIN_RETRY_AFTER_S, math.ceil(seconds))).encode())]


# --- runtime state -----------------------------------------------------------------------------


@dataclass
class _RuleState:
    matched: int = 0
    fired: int = 0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class _TokenBuckets:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.limit.burst), updated=now)
        bucket.tokens = min(
            float(self.limit.burst), bucket.tokens + (now - bucket.updated) * self.limit.rps
        )
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.limit.rps


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            value_bytes: bytes = value
            return value_bytes
    return None


def key_hash(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:KEY_HASH_CHARS]


async def json_response(
    send: Send, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _disconnected(receive: Receive) -> None:
    """Return once uvicorn reports the connection gone (the request body, if any, is dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _wait_disconnect(receive: Receive) -> None:
    """Wait until uvicorn has seen the connection go, so it does not log a half-sent response."""
    with anyio.move_on_after(DISCONNECT_WAIT_S):
        await _disconnected(receive)


class _LoggedRequest:
    """One request log line; the hash and header names are worked out when the log is read."""

    __slots__ = ("at", "fault", "headers", "method", "path", "query", "seq", "status")

    def __init__(self, seq: int, scope: Scope) -> None:
        self.seq = seq
        self.at = time.time()
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope["query_string"]
        self.headers: list[tuple[bytes, bytes]] = scope["headers"]
        self.status: int | None = None
        self.fault: str | None = None

    def to_dict(self) -> dict[str, object]:
        key = next((v for k, v in self.headers if k == API_KEY_HEADER), None)
        return {
            "seq": self.seq,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "query": self.query.decode("latin-1"),
            "had_key": key is not None,
            "key_hash": None if key is None else key_hash(key),
            "header_names": sorted({k.decode("latin-1") for k, _ in self.headers}),
            "status": self.status,
            "fault": self.fault,
        }


class _CapturedResponse:
    def __init__(self) -> None:
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def start_with_length(self) -> Message:
        if self.start is None:
            raise RuntimeError("the app finished without starting a response")
        headers = [
            (k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"
        ]
        headers.append((b"content-length", str(len(self.body)).encode()))
        return {**self.start, "headers": headers}


# --- the middleware ----------------------------------------------------------------------------


class FaultInjector:
    """Raw ASGI middleware applying the active ``FaultProfile`` to every ``/v1`` request."""

    def __init__(self, app: ASGIApp, *, store: "SandboxStore", config: "SandboxConfig") -> None:
        self.app = app
        self.store = store
        self.config = config
        self._log: deque[_LoggedRequest] = deque(maxlen=REQUEST_LOG_MAX)
        self._seq = 0
        self.set_profile(FaultProfile.from_mapping(config.faults))

    def set_profile(self, profile: FaultProfile) -> None:
        """Replace the profile; rule counters, buckets and the RNG start afresh."""
        self.profile = profile
        self._rng = random.Random(profile.seed if profile.seed is not None else self.config.seed)
        self._states = [_RuleState() for _ in profile.rules]
        self._buckets = _TokenBuckets(profile.rate_limit) if profile.rate_limit else None
        self._fired: dict[str, int] = {}
        # Nothing to limit, delay or match: requests go straight to the app (the common case).
        self._inert = not (
            profile.rules or profile.rate_limit or profile.latency_ms or profile.latency_jitter_ms
        )

    def counters(self) -> dict[str, object]:
        return {
            "fired": dict(sorted(self._fired.items())),
            "rules": [
                {"kind": rule.kind, "matched": state.matched, "fired": state.fired}
                for rule, state in zip(self.profile.rules, self._states, strict=True)
            ],
            "requests": self._seq,
        }

    def request_log(self) -> list[dict[str, object]]:
        """The API requests seen, oldest first (at most ``REQUEST_LOG_MAX``); no key values."""
        return [entry.to_dict() for entry in self._log]

    def clear_request_log(self) -> None:
        self._log.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/_sandbox/"):
            await self.app(scope, receive, send)
            return
        self._seq += 1
        entry = _LoggedRequest(self._seq, scope)
        self._log.append(entry)

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
            await send(message)

        if self._inert:
            await self.app(scope, receive, logged_send)
        else:
            await self._handle(scope, receive, logged_send, entry)

    # -- fault decisions --

    def _fires(self, rule: FaultRule, state: _RuleState) -> bool:
        state.matched += 1
        if rule.times is not None and state.fired >= rule.times:
            return False
        position = state.matched - rule.after
        if position <= 0:
            return False
        if rule.probability is not None:
            fire = self._rng.random() < rule.probability
        elif rule.every is not None:
            fire = position % rule.every == 0
        elif rule.burst is not None:
            fire = position <= rule.burst
        else:
            fire = True
        if fire:
            state.fired += 1
            self._fired[rule.kind] = self._fired.get(rule.kind, 0) + 1
        return fire

    def _decide(self, method: str, path: str) -> tuple[FaultRule | None, list[FaultRule]]:
        drifts: list[FaultRule] = []
        for rule, state in zip(self.profile.rules, self._states, strict=True):
            if not rule.matches(method, path) or not self._fires(rule, state):
                continue
            if rule.kind == "drift":
                drifts.append(rule)
            else:
                return rule, drifts
        return None, drifts

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, entry: _LoggedRequest
    ) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if self._buckets is not None:
            key = _header(scope, API_KEY_HEADER) or b""
            wait = self._buckets.take(key_hash(key), time.monotonic())
            if wait > 0:
                self._fired["rate_limit"] = self._fired.get("rate_limit", 0) + 1
                entry.fault = "rate_limit"
                retry = str(max(MIN_RETRY_AFTER_S, math.ceil(wait))).encode()
                await self._short_circuit(
                    scope,
                    receive,
                    "rate_limit",
                    429,
                    lambda: json_response(
                        send,
                        429,
                        error_body("rate_limited", "Too many requests; retry later"),
                        [(b"retry-after", retry)],
                    ),
                )
                return
        delay_ms = self.profile.latency_ms
        if self.profile.latency_jitter_ms:
            delay_ms += self._rng.uniform(0, self.profile.latency_jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / MS_PER_S)

        rule, drifts = self._decide(method, path)
        if rule is not None:
            entry.fault = rule.kind
            await self._apply(rule, scope, receive, send)
        else:
            await self.app(scope, receive, send)
        for drift in drifts:
            self._drift(drift)

    def _drift(self, rule: FaultRule) -> None:
        if rule.insert:
            self.store.drift_insert(rule.insert, self._rng)
        if rule.delete:
            self.store.drift_delete(rule.delete, self._rng)
        if rule.move:
            self.store.drift_move(rule.move, self._rng)

    async def _short_circuit(
        self,
        scope: Scope,
        receive: Receive,
        kind: str,
        status: int | None,
        answer: Callable[[], Awaitable[None]],
    ) -> None:
        """Answer without the app; a mutating request is journaled as not applied."""
        method: str = scope["method"]
        if method in MUTATING_METHODS:
            body = await read_body(receive)
            path: str = scope["path"]
            match = BOOKING_UID_PATH.match(path)
            self.store.record(
                method=method,
                path=path,
                booking_uid=match.group(1) if match else None,
                body=_journal_body(body),
                status=status,
                changed=False,
                fault=kind,
            )
        await answer()

    async def _apply(self, rule: FaultRule, scope: Scope, receive: Receive, send: Send) -> None:
        kind = rule.kind
        if kind == "status":
            status = rule.status or DEFAULT_STATUS
            body = error_body(INJECTABLE_STATUSES[status], "Injected failure")
            await self._short_circuit(
                scope, receive, kind, status, lambda: json_response(send, status, body)
            )
        elif kind == "rate_limited":
            body = error_body("rate_limited", "Too many requests; retry later")
            await self._short_circuit(
                scope,
                receive,
                kind,
                429,
                lambda: json_response(send, 429, body, _retry_after_header(rule)),
            )
        elif kind == "reset":
            await self._short_circuit(
                scope, receive, kind, None, lambda: _abort(scope, receive, reset=True)
            )
        elif kind == "redirect":
            status = rule.status or DEFAULT_REDIRECT_STATUS
            target = f"{rule.location}{scope['path']}"
            if scope["query_string"]:
                target += "?" + scope["query_string"].decode("latin-1")
            headers = [(b"location", target.encode())]
            await self._short_circuit(
                scope, receive, kind, status, lambda: json_response(send, status, b"{}", headers)
            )
        elif kind == "malformed_json":
            await self._short_circuit(
                scope, receive, kind, 200, lambda: json_response(send, 200, MALFORMED_BODY)
            )
        elif kind == "hostile_json":
            await self._short_circuit(scope, receive, kind, 200, lambda: _send_hostile(rule, send))
        elif kind == "drop_after_apply":
            scope.setdefault("extensions", {})[FAULT_EXTENSION] = kind
            swallowed = _CapturedResponse()
            await self.app(scope, receive, swallowed.send)
            await _abort(scope, receive, reset=False)
        elif kind in ("truncate", "trickle"):
            scope.setdefault("extensions", {})[FAULT_EXTENSION] = kind
            captured = _CapturedResponse()
            await self.app(scope, receive, captured.send)
            await send(captured.start_with_length())
            body = captured.body
            if kind == "truncate":
                await send(
                    {
                        "type": "http.response.body",
                        "body": body[: len(body) // 2],
                        "more_body": True,
                    }
                )
                _transport(scope).close()  # close, not abort: the half body must reach the client
                await _wait_disconnect(receive)
            else:
                await _trickle(rule, body, send, receive)
        else:
            raise AssertionError(f"unhandled fault kind {kind}")


def _journal_body(body: bytes) -> object:
    try:
        parsed: object = json.loads(body) if body else None
    except ValueError:
        return body.decode("utf-8", "replace")
    return parsed


@runtime_checkable
class _Transport(Protocol):
    """What we use of an asyncio or uvloop transport (uvloop's is no asyncio.Transport)."""

    def abort(self) -> None: ...
    def close(self) -> None: ...
    def get_extra_info(self, name: str, default: object = None) -> object: ...


def _transport(scope: Scope) -> _Transport:
    transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if not isinstance(transport, _Transport):
        raise RuntimeError(
            "this fault needs the connection's transport: serve the sandbox through "
            "jicoo_sandbox.server (TransportHttpToolsProtocol)"
        )
    return transport


@runtime_checkable
class _SocketLike(Protocol):
    """asyncio hands out a TransportSocket wrapper, uvloop a pseudo-socket: both setsockopt."""

    def setsockopt(self, level: int, option: int, value: bytes, /) -> None: ...


async def _abort(scope: Scope, receive: Receive, *, reset: bool) -> None:
    transport = _transport(scope)
    if reset:
        sock = transport.get_extra_info("socket")
        if isinstance(sock, socket.socket | _SocketLike):
            # SO_LINGER 0: close() sends RST instead of FIN, what a crashed proxy looks like.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await _wait_disconnect(receive)


async def _trickle(rule: FaultRule, body: bytes, send: Send, receive: Receive) -> None:
    """Send ``body`` a chunk per interval; stop as soon as the client hangs up (a slow body is
    no reason to keep a dead connection, and the server's shutdown, waiting)."""
    step = rule.chunk_bytes or DEFAULT_TRICKLE_CHUNK_BYTES
    interval = (rule.interval_ms or 0.0) / MS_PER_S
    if not body:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    hung_up = asyncio.ensure_future(_disconnected(receive))
    try:
        for offset in range(0, len(body), step):
            last = offset + step >= len(body)
            await send(
                {
                    "type": "http.response.body",
                    "body": body[offset : offset + step],
                    "more_body": not last,
                }
            )
            if not last:
                await asyncio.wait((hung_up,), timeout=interval)
                if hung_up.done():
                    return
    finally:
        hung_up.cancel()


async def _send_hostile(rule: FaultRule, send: Send) -> None:
    variant = rule.variant or "huge_body"
    if variant != "huge_body":
        await json_response(send, 200, _hostile_body(variant))
        return
    size = rule.size_bytes or DEFAULT_HUGE_BODY_BYTES
    if rule.gzip:
        # Compressing hundreds of MB takes a while: keep the event loop free meanwhile.
        compressed = await asyncio.to_thread(_gzipped_huge_body, size)
        await json_response(send, 200, compressed, [(b"content-encoding", b"gzip")])
        return
    length = len(_HUGE_PREFIX) + len(_HUGE_SUFFIX) + _huge_body_units(size) * len(_HUGE_UNIT)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for chunk in _huge_body_chunks(size):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
