"""Fault injection for the sandbox: the fault profile, the per-key rate limiter, the request log.

``FaultInjector`` is a raw ASGI middleware (it streams, truncates and aborts connections) that
also serves ``GET|POST /_sandbox/faults``, ``GET /_sandbox/requests`` and
``POST /_sandbox/requests/clear``. It imports no client code. A profile, as JSON::

    {"latency_ms": 20, "latency_jitter_ms": 10, "seed": 3,
     "rate_limit": {"rps": 10, "burst": 20},
     "rules": [
       {"kind": "status", "status": 503, "methods": ["GET"], "path": "^/v1/bookings$", "every": 5},
       {"kind": "rate_limited", "retry_after": 2, "retry_after_format": "http_date", "burst": 3},
       {"kind": "reset", "probability": 0.1, "times": 4},
       {"kind": "truncate", "after": 1, "burst": 1},
       {"kind": "trickle", "chunk_bytes": 64, "interval_ms": 100, "times": 1},
       {"kind": "redirect", "location": "http://127.0.0.1:9999", "status": 302},
       {"kind": "malformed_json", "times": 1},
       {"kind": "hostile_json", "variant": "huge_body", "size_bytes": 50000000, "gzip": true},
       {"kind": "drop_after_apply", "path": "/cancel$", "times": 1},
       {"kind": "drift", "after": 2, "burst": 1, "insert": 5, "delete": 3, "move": 2}]}

Triggers (at most one of ``probability`` | ``every`` | ``burst``; none means every match):
``after`` skips the first N matching requests, ``every`` fires on every Nth match after that,
``burst`` on the next N matches, ``probability`` draws from an RNG seeded by ``seed`` (default:
the sandbox seed), ``times`` caps the firings. Rules are tried in order and the first one that
fires decides the answer; ``drift`` rules never decide the answer (the app answers, then the data
shifts), so later rules still see the request. ``/_sandbox/*`` is never faulted, delayed or
limited. ``{}`` clears everything, the rate limit included.
"""

import asyncio
import contextlib
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
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from jicoo_sandbox.config import SandboxConfig
    from jicoo_sandbox.store import SandboxStore

__all__ = [
    "FAULT_EXTENSION",
    "FAULT_KINDS",
    "TRANSPORT_EXTENSION",
    "FaultInjector",
    "FaultProfile",
    "FaultProfileError",
    "FaultRule",
    "RateLimit",
]

# Scope extension keys shared with server.py (transport) and app.py (fault label for the journal).
TRANSPORT_EXTENSION: Final = "jicoo.transport"
FAULT_EXTENSION: Final = "jicoo.fault"

FAULT_KINDS: Final = (
    "status",
    "rate_limited",
    "reset",
    "truncate",
    "trickle",
    "redirect",
    "malformed_json",
    "hostile_json",
    "drop_after_apply",
    "drift",
)
HOSTILE_VARIANTS: Final = ("deep_nesting", "huge_number", "nan", "invalid_surrogate", "huge_body")
RETRY_AFTER_FORMATS: Final = ("seconds", "http_date", "none")
# 402 is the portal's "Request Failed"; the rest are the documented server errors.
INJECTABLE_STATUSES: Final = {
    402: "request_failed",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
REDIRECT_STATUSES: Final = (301, 302, 303, 307, 308)
MUTATING_METHODS: Final = frozenset({"POST", "PATCH", "PUT", "DELETE"})
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"}) | MUTATING_METHODS

DEFAULT_STATUS: Final = 503
DEFAULT_REDIRECT_STATUS: Final = 307
DEFAULT_RETRY_AFTER_S: Final = 1.0
MIN_RETRY_AFTER_S: Final = 1
DEFAULT_TRICKLE_CHUNK_BYTES: Final = 16
DEFAULT_TRICKLE_INTERVAL_MS: Final = 50.0
DEFAULT_HUGE_BODY_BYTES: Final = 16 * 1024 * 1024
MAX_HUGE_BODY_BYTES: Final = 2 * 1024 * 1024 * 1024
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
DEFAULT_DRIFT_PATH: Final = r"^/v1/bookings$"
BOOKING_UID_PATH: Final = re.compile(r"^/v1/bookings/([^/]+)")

_COMMON_RULE_KEYS: Final = frozenset(
    {"kind", "methods", "path", "probability", "every", "burst", "after", "times"}
)
_KIND_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "status": frozenset({"status"}),
    "rate_limited": frozenset({"retry_after", "retry_after_format"}),
    "reset": frozenset(),
    "truncate": frozenset(),
    "trickle": frozenset({"chunk_bytes", "interval_ms"}),
    "redirect": frozenset({"location", "status"}),
    "malformed_json": frozenset(),
    "hostile_json": frozenset({"variant", "size_bytes", "gzip"}),
    "drop_after_apply": frozenset(),
    "drift": frozenset({"insert", "delete", "move"}),
}
_PROFILE_KEYS: Final = frozenset({"latency_ms", "latency_jitter_ms", "seed", "rate_limit", "rules"})


class FaultProfileError(ValueError):
    """A fault profile we refuse; the message names the offending key, e.g. ``rules[1].every``."""


# --- parsing helpers: every one names the key it checks -------------------------------------


def _number(where: str, value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise FaultProfileError(f"{where}: expected a number, got {value!r}")
    if math.isinf(value) or value < minimum:
        raise FaultProfileError(f"{where}: must be a finite number >= {minimum}, got {value!r}")
    return float(value)


def _integer(where: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultProfileError(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise FaultProfileError(f"{where}: must be >= {minimum}, got {value}")
    return value


def _choice(where: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise FaultProfileError(f"{where}: expected one of {', '.join(choices)}; got {value!r}")
    return value


def _mapping(where: str, value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise FaultProfileError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _no_unknown_keys(where: str, obj: Mapping[str, object], allowed: frozenset[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise FaultProfileError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


@dataclass(frozen=True)
class RateLimit:
    """Per-API-key token bucket: ``burst`` requests at once, then ``rps`` per second."""

    rps: float
    burst: int

    @classmethod
    def from_mapping(cls, obj: object, where: str = "rate_limit") -> "RateLimit":
        data = _mapping(where, obj)
        _no_unknown_keys(where, data, frozenset({"rps", "burst"}))
        if "rps" not in data:
            raise FaultProfileError(f"{where}.rps: required")
        rps = _number(f"{where}.rps", data["rps"])
        if rps <= 0:
            raise FaultProfileError(f"{where}.rps: must be > 0 (omit rate_limit to disable it)")
        burst = _integer(f"{where}.burst", data.get("burst", max(1, math.ceil(rps))), minimum=1)
        return cls(rps=rps, burst=burst)


@dataclass(frozen=True)
class FaultRule:
    """One fault: what it matches, when it fires, what it does (unused fields stay None)."""

    kind: str
    methods: frozenset[str] | None = None
    path: str | None = None
    probability: float | None = None
    every: int | None = None
    burst: int | None = None
    after: int = 0
    times: int | None = None
    status: int | None = None
    retry_after: float | None = None
    retry_after_format: str | None = None
    location: str | None = None
    chunk_bytes: int | None = None
    interval_ms: float | None = None
    variant: str | None = None
    size_bytes: int | None = None
    gzip: bool | None = None
    insert: int | None = None
    delete: int | None = None
    move: int | None = None
    _pattern: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self._pattern is None or self._pattern.search(path) is not None

    @classmethod
    def from_mapping(cls, obj: object, where: str) -> "FaultRule":
        data = _mapping(where, obj)
        if "kind" not in data:
            raise FaultRule._error(where, "kind", f"required, one of {', '.join(FAULT_KINDS)}")
        kind = _choice(f"{where}.kind", data["kind"], FAULT_KINDS)
        _no_unknown_keys(where, data, _COMMON_RULE_KEYS | _KIND_KEYS[kind])
        fields: dict[str, object] = {"kind": kind}

        methods = data.get("methods")
        if methods is not None:
            if not isinstance(methods, list) or not methods:
                raise FaultRule._error(where, "methods", "expected a non-empty list of methods")
            upper = frozenset(str(m).upper() for m in methods)
            if not upper <= HTTP_METHODS:
                bad = ", ".join(sorted(upper - HTTP_METHODS))
                raise FaultRule._error(where, "methods", f"unknown method(s) {bad}")
            fields["methods"] = upper
        elif kind == "drop_after_apply":
            fields["methods"] = frozenset({"POST", "PATCH"})
        elif kind == "drift":
            fields["methods"] = frozenset({"GET"})
        if kind == "drop_after_apply" and not fields["methods"] <= MUTATING_METHODS:  # type: ignore[operator]
            raise FaultRule._error(where, "methods", "drop_after_apply needs mutating methods")

        path = data.get("path", DEFAULT_DRIFT_PATH if kind == "drift" else None)
        if path is not None:
            if not isinstance(path, str):
                raise FaultRule._error(where, "path", f"expected a regex string, got {path!r}")
            try:
                fields["_pattern"] = re.compile(path)
            except re.error as exc:
                raise FaultRule._error(where, "path", f"bad regex {path!r}: {exc}") from exc
            fields["path"] = path

        triggers = [name for name in ("probability", "every", "burst") if name in data]
        if len(triggers) > 1:
            raise FaultProfileError(f"{where}: use one of probability, every, burst (got both)")
        if "probability" in data:
            probability = _number(f"{where}.probability", data["probability"])
            if probability > 1:
                raise FaultRule._error(where, "probability", f"must be in 0..1, got {probability}")
            fields["probability"] = probability
        for name, minimum in (("every", 1), ("burst", 1), ("after", 0), ("times", 0)):
            if name in data:
                fields[name] = _integer(f"{where}.{name}", data[name], minimum=minimum)

        if kind == "status":
            status = _integer(f"{where}.status", data.get("status", DEFAULT_STATUS), minimum=0)
            if status not in INJECTABLE_STATUSES:
                allowed = ", ".join(map(str, INJECTABLE_STATUSES))
                raise FaultRule._error(where, "status", f"must be one of {allowed}; got {status}")
            fields["status"] = status
        elif kind == "rate_limited":
            fields["retry_after"] = _number(
                f"{where}.retry_after", data.get("retry_after", DEFAULT_RETRY_AFTER_S)
            )
            fields["retry_after_format"] = _choice(
                f"{where}.retry_after_format",
                data.get("retry_after_format", "seconds"),
                RETRY_AFTER_FORMATS,
            )
        elif kind == "trickle":
            fields["chunk_bytes"] = _integer(
                f"{where}.chunk_bytes",
                data.get("chunk_bytes", DEFAULT_TRICKLE_CHUNK_BYTES),
                minimum=1,
            )
            fields["interval_ms"] = _number(
                f"{where}.interval_ms", data.get("interval_ms", DEFAULT_TRICKLE_INTERVAL_MS)
            )
        elif kind == "redirect":
            location = data.get("location")
            if not isinstance(location, str) or not re.fullmatch(r"https?://[^/?#\s]+/?", location):
                raise FaultRule._error(
                    where,
                    "location",
                    f"required origin like http://127.0.0.1:9999, got {location!r}",
                )
            fields["location"] = location.rstrip("/")
            status = _integer(
                f"{where}.status", data.get("status", DEFAULT_REDIRECT_STATUS), minimum=0
            )
            if status not in REDIRECT_STATUSES:
                allowed = ", ".join(map(str, REDIRECT_STATUSES))
                raise FaultRule._error(where, "status", f"must be one of {allowed}; got {status}")
            fields["status"] = status
        elif kind == "hostile_json":
            if "variant" not in data:
                raise FaultRule._error(where, "variant", f"required: {', '.join(HOSTILE_VARIANTS)}")
            variant = _choice(f"{where}.variant", data["variant"], HOSTILE_VARIANTS)
            fields["variant"] = variant
            if variant != "huge_body" and ({"size_bytes", "gzip"} & set(data)):
                raise FaultProfileError(f"{where}: size_bytes and gzip only apply to huge_body")
            if variant == "huge_body":
                size = _integer(
                    f"{where}.size_bytes",
                    data.get("size_bytes", DEFAULT_HUGE_BODY_BYTES),
                    minimum=1,
                )
                if size > MAX_HUGE_BODY_BYTES:
                    raise FaultRule._error(where, "size_bytes", f"at most {MAX_HUGE_BODY_BYTES}")
                gzip = data.get("gzip", False)
                if not isinstance(gzip, bool):
                    raise FaultRule._error(where, "gzip", f"expected true or false, got {gzip!r}")
                fields["size_bytes"] = size
                fields["gzip"] = gzip
        elif kind == "drift":
            for name in ("insert", "delete", "move"):
                fields[name] = _integer(f"{where}.{name}", data.get(name, 0), minimum=0)
            if not (fields["insert"] or fields["delete"] or fields["move"]):
                raise FaultProfileError(f"{where}: drift needs insert, delete or move > 0")
        return cls(**fields)  # type: ignore[arg-type]

    @staticmethod
    def _error(where: str, key: str, message: str) -> FaultProfileError:
        return FaultProfileError(f"{where}.{key}: {message}")

    def to_mapping(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name.startswith("_") or value is None or (name == "after" and value == 0):
                continue
            out[name] = sorted(value) if isinstance(value, frozenset) else value
        return out


@dataclass(frozen=True)
class FaultProfile:
    """Everything the sandbox does wrong on purpose; ``FaultProfile()`` does nothing wrong."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    seed: int | None = None
    rate_limit: RateLimit | None = None
    rules: tuple[FaultRule, ...] = ()

    @classmethod
    def from_mapping(cls, obj: Mapping[str, object]) -> "FaultProfile":
        """Parse the JSON form (see the module docstring); FaultProfileError says what is wrong."""
        data = _mapping("profile", obj)
        _no_unknown_keys("profile", data, _PROFILE_KEYS)
        rules_obj = data.get("rules", [])
        if not isinstance(rules_obj, list):
            raise FaultProfileError(f"rules: expected a list, got {type(rules_obj).__name__}")
        seed = data.get("seed")
        return cls(
            latency_ms=_number("latency_ms", data.get("latency_ms", 0.0)),
            latency_jitter_ms=_number("latency_jitter_ms", data.get("latency_jitter_ms", 0.0)),
            seed=None if seed is None else _integer("seed", seed, minimum=0),
            rate_limit=(
                None
                if data.get("rate_limit") is None
                else RateLimit.from_mapping(data["rate_limit"])
            ),
            rules=tuple(FaultRule.from_mapping(r, f"rules[{i}]") for i, r in enumerate(rules_obj)),
        )

    def to_mapping(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.latency_ms:
            out["latency_ms"] = self.latency_ms
        if self.latency_jitter_ms:
            out["latency_jitter_ms"] = self.latency_jitter_ms
        if self.seed is not None:
            out["seed"] = self.seed
        if self.rate_limit is not None:
            out["rate_limit"] = {"rps": self.rate_limit.rps, "burst": self.rate_limit.burst}
        if self.rules:
            out["rules"] = [rule.to_mapping() for rule in self.rules]
        return out


# --- bodies ------------------------------------------------------------------------------------


def _error_body(code: str, message: str) -> bytes:
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
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
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


def _key_hash(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:KEY_HASH_CHARS]


async def _json_response(
    send: Send, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> bytes:
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
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DISCONNECT_WAIT_S):
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
            "key_hash": None if key is None else _key_hash(key),
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/_sandbox/"):
            await self._control(scope, receive, send)
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

    # -- control endpoints --

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/_sandbox/faults" and method == "GET":
            await self._send_state(send)
        elif path == "/_sandbox/faults" and method == "POST":
            raw = await _read_body(receive)
            try:
                obj = json.loads(raw or b"{}")
                self.set_profile(FaultProfile.from_mapping(obj))
            except (ValueError, FaultProfileError) as exc:
                await _json_response(send, 400, _error_body("invalid_fault_profile", str(exc)))
                return
            await self._send_state(send)
        elif path == "/_sandbox/requests" and method == "GET":
            data = [entry.to_dict() for entry in self._log]
            body = json.dumps({"data": data, "errors": {}, "count": len(data)}).encode()
            await _json_response(send, 200, body)
        elif path == "/_sandbox/requests/clear" and method == "POST":
            await _read_body(receive)
            self._log.clear()
            await _json_response(send, 200, json.dumps({"data": None, "errors": {}}).encode())
        else:
            await self.app(scope, receive, send)

    async def _send_state(self, send: Send) -> None:
        data = {"profile": self.profile.to_mapping(), "counters": self.counters()}
        await _json_response(send, 200, json.dumps({"data": data, "errors": {}}).encode())

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
            wait = self._buckets.take(_key_hash(key), time.monotonic())
            if wait > 0:
                self._fired["rate_limit"] = self._fired.get("rate_limit", 0) + 1
                entry.fault = "rate_limit"
                retry = str(max(MIN_RETRY_AFTER_S, math.ceil(wait))).encode()
                await self._short_circuit(
                    scope,
                    receive,
                    "rate_limit",
                    429,
                    lambda: _json_response(
                        send,
                        429,
                        _error_body("rate_limited", "Too many requests; retry later"),
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
            body = await _read_body(receive)
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
            body = _error_body(INJECTABLE_STATUSES[status], "Injected failure")
            await self._short_circuit(
                scope, receive, kind, status, lambda: _json_response(send, status, body)
            )
        elif kind == "rate_limited":
            body = _error_body("rate_limited", "Too many requests; retry later")
            await self._short_circuit(
                scope,
                receive,
                kind,
                429,
                lambda: _json_response(send, 429, body, _retry_after_header(rule)),
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
                scope, receive, kind, status, lambda: _json_response(send, status, b"{}", headers)
            )
        elif kind == "malformed_json":
            await self._short_circuit(
                scope, receive, kind, 200, lambda: _json_response(send, 200, MALFORMED_BODY)
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
        await _json_response(send, 200, _hostile_body(variant))
        return
    size = rule.size_bytes or DEFAULT_HUGE_BODY_BYTES
    if rule.gzip:
        # Compressing hundreds of MB takes a while: keep the event loop free meanwhile.
        compressed = await asyncio.to_thread(_gzipped_huge_body, size)
        await _json_response(send, 200, compressed, [(b"content-encoding", b"gzip")])
        return
    length = len(_HUGE_PREFIX) + len(_HUGE_SUFFIX) + _huge_body_units(size) * len(_HUGE_UNIT)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for chunk in _huge_body_chunks(size):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
