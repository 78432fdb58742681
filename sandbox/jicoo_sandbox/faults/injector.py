"""The fault middleware: applies the active ``FaultProfile`` (profile.py) to API requests.

``FaultInjector`` is a raw ASGI middleware: it delays, rate-limits per key, answers 5xx or 429,
streams, truncates and aborts connections, sends hostile bodies, drifts the data, and logs every
``/v1`` request it sees. ``/_sandbox/*`` passes straight through (never faulted, delayed,
limited or logged); control.py serves the endpoints that read and change this state.
It imports no client code.
"""

import asyncio
import hashlib
import json
import math
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jicoo_sandbox.drift import drift_delete, drift_insert, drift_move
from jicoo_sandbox.faults.connection import abort, send_truncated, trickle
from jicoo_sandbox.faults.profile import (
    DEFAULT_REDIRECT_STATUS,
    DEFAULT_STATUS,
    INJECTABLE_STATUSES,
    MUTATING_METHODS,
    FaultProfile,
    FaultRule,
    RateLimit,
)
from jicoo_sandbox.faults.responses import (
    MALFORMED_BODY,
    MIN_RETRY_AFTER_S,
    error_body,
    json_response,
    read_body,
    retry_after_header,
    send_hostile,
)

if TYPE_CHECKING:
    from jicoo_sandbox.config import SandboxConfig
    from jicoo_sandbox.store import SandboxStore

__all__ = ["FAULT_EXTENSION", "FaultInjector", "key_hash"]

# Scope extension key shared with app.py: the fault's label for the journal.
FAULT_EXTENSION: Final = "jicoo.fault"

REQUEST_LOG_MAX: Final = 100_000
KEY_HASH_CHARS: Final = 12
MS_PER_S: Final = 1000.0
API_KEY_HEADER: Final = b"x-jicoo-api-key"
BOOKING_UID_PATH: Final = re.compile(r"^/v1/bookings/([^/]+)")

Answer = Callable[[], Awaitable[None]]


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
            drift_insert(self.store, rule.insert, self._rng)
        if rule.delete:
            drift_delete(self.store, rule.delete, self._rng)
        if rule.move:
            drift_move(self.store, rule.move, self._rng)

    async def _short_circuit(
        self,
        scope: Scope,
        receive: Receive,
        kind: str,
        status: int | None,
        answer: Answer,
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
        if rule.kind in ("drop_after_apply", "truncate", "trickle"):
            await self._spoil(rule, scope, receive, send)
            return
        status, answer = _answer(rule, scope, receive, send)
        await self._short_circuit(scope, receive, rule.kind, status, answer)

    async def _spoil(self, rule: FaultRule, scope: Scope, receive: Receive, send: Send) -> None:
        """Let the app apply the request, then drop, cut or trickle its answer."""
        scope.setdefault("extensions", {})[FAULT_EXTENSION] = rule.kind
        captured = _CapturedResponse()
        await self.app(scope, receive, captured.send)
        if rule.kind == "drop_after_apply":
            await abort(scope, receive, reset=False)
            return
        await send(captured.start_with_length())
        if rule.kind == "truncate":
            await send_truncated(scope, receive, send, captured.body)
        else:
            await trickle(rule, captured.body, send, receive)


def _answer(
    rule: FaultRule, scope: Scope, receive: Receive, send: Send
) -> tuple[int | None, Answer]:
    """The status a fault answers with (None: no answer, the connection goes) and how."""
    kind = rule.kind
    if kind == "status":
        status = rule.status or DEFAULT_STATUS
        body = error_body(INJECTABLE_STATUSES[status], "Injected failure")
        return status, lambda: json_response(send, status, body)
    if kind == "rate_limited":
        limited = error_body("rate_limited", "Too many requests; retry later")
        return 429, lambda: json_response(send, 429, limited, retry_after_header(rule))
    if kind == "reset":
        return None, lambda: abort(scope, receive, reset=True)
    if kind == "redirect":
        moved = rule.status or DEFAULT_REDIRECT_STATUS
        target = f"{rule.location}{scope['path']}"
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(b"location", target.encode())]
        return moved, lambda: json_response(send, moved, b"{}", headers)
    if kind == "malformed_json":
        return 200, lambda: json_response(send, 200, MALFORMED_BODY)
    if kind == "hostile_json":
        return 200, lambda: send_hostile(rule, send)
    raise AssertionError(f"unhandled fault kind {kind}")


def _journal_body(body: bytes) -> object:
    try:
        parsed: object = json.loads(body) if body else None
    except ValueError:
        return body.decode("utf-8", "replace")
    return parsed
