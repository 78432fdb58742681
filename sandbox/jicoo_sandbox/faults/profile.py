"""The fault profile: everything the sandbox does wrong on purpose, parsed from JSON and checked.

Applied by ``injector.FaultInjector``; read and replaced at run time through the control
endpoints (``control.FaultControl``: ``GET|POST /_sandbox/faults``). A profile, as JSON::

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

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "DEFAULT_HUGE_BODY_BYTES",
    "DEFAULT_REDIRECT_STATUS",
    "DEFAULT_RETRY_AFTER_S",
    "DEFAULT_STATUS",
    "DEFAULT_TRICKLE_CHUNK_BYTES",
    "DEFAULT_TRICKLE_INTERVAL_MS",
    "FAULT_KINDS",
    "HOSTILE_VARIANTS",
    "INJECTABLE_STATUSES",
    "MUTATING_METHODS",
    "FaultProfile",
    "FaultProfileError",
    "FaultRule",
    "RateLimit",
]

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
DEFAULT_TRICKLE_CHUNK_BYTES: Final = 16
DEFAULT_TRICKLE_INTERVAL_MS: Final = 50.0
DEFAULT_HUGE_BODY_BYTES: Final = 16 * 1024 * 1024
MAX_HUGE_BODY_BYTES: Final = 2 * 1024 * 1024 * 1024
DEFAULT_DRIFT_PATH: Final = r"^/v1/bookings$"

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
            raise _key_error(where, "kind", f"required, one of {', '.join(FAULT_KINDS)}")
        kind = _choice(f"{where}.kind", data["kind"], FAULT_KINDS)
        _no_unknown_keys(where, data, _COMMON_RULE_KEYS | _KIND_KEYS[kind])
        fields: dict[str, object] = {"kind": kind}
        fields.update(_match_fields(where, data, kind))
        fields.update(_trigger_fields(where, data))
        fields.update(_KIND_FIELDS.get(kind, _no_fields)(where, data))
        return cls(**fields)  # type: ignore[arg-type]

    def to_mapping(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name.startswith("_") or value is None or (name == "after" and value == 0):
                continue
            out[name] = sorted(value) if isinstance(value, frozenset) else value
        return out


def _key_error(where: str, key: str, message: str) -> FaultProfileError:
    return FaultProfileError(f"{where}.{key}: {message}")


Fields = dict[str, object]


def _match_fields(where: str, data: Mapping[str, object], kind: str) -> Fields:
    """``methods`` and ``path``, with the defaults of drop_after_apply and drift."""
    fields: Fields = {}
    methods = data.get("methods")
    if methods is not None:
        if not isinstance(methods, list) or not methods:
            raise _key_error(where, "methods", "expected a non-empty list of methods")
        upper = frozenset(str(m).upper() for m in methods)
        if not upper <= HTTP_METHODS:
            bad = ", ".join(sorted(upper - HTTP_METHODS))
            raise _key_error(where, "methods", f"unknown method(s) {bad}")
        fields["methods"] = upper
    elif kind == "drop_after_apply":
        fields["methods"] = frozenset({"POST", "PATCH"})
    elif kind == "drift":
        fields["methods"] = frozenset({"GET"})
    if kind == "drop_after_apply" and not fields["methods"] <= MUTATING_METHODS:  # type: ignore[operator]
        raise _key_error(where, "methods", "drop_after_apply needs mutating methods")
    path = data.get("path", DEFAULT_DRIFT_PATH if kind == "drift" else None)
    if path is not None:
        if not isinstance(path, str):
            raise _key_error(where, "path", f"expected a regex string, got {path!r}")
        try:
            fields["_pattern"] = re.compile(path)
        except re.error as exc:
            raise _key_error(where, "path", f"bad regex {path!r}: {exc}") from exc
        fields["path"] = path
    return fields


def _trigger_fields(where: str, data: Mapping[str, object]) -> Fields:
    """When the rule fires: one of probability | every | burst, and after, times."""
    fields: Fields = {}
    triggers = [name for name in ("probability", "every", "burst") if name in data]
    if len(triggers) > 1:
        raise FaultProfileError(f"{where}: use one of probability, every, burst (got both)")
    if "probability" in data:
        probability = _number(f"{where}.probability", data["probability"])
        if probability > 1:
            raise _key_error(where, "probability", f"must be in 0..1, got {probability}")
        fields["probability"] = probability
    for name, minimum in (("every", 1), ("burst", 1), ("after", 0), ("times", 0)):
        if name in data:
            fields[name] = _integer(f"{where}.{name}", data[name], minimum=minimum)
    return fields


def _no_fields(where: str, data: Mapping[str, object]) -> Fields:
    return {}


def _status_fields(where: str, data: Mapping[str, object]) -> Fields:
    status = _integer(f"{where}.status", data.get("status", DEFAULT_STATUS), minimum=0)
    if status not in INJECTABLE_STATUSES:
        allowed = ", ".join(map(str, INJECTABLE_STATUSES))
        raise _key_error(where, "status", f"must be one of {allowed}; got {status}")
    return {"status": status}


def _rate_limited_fields(where: str, data: Mapping[str, object]) -> Fields:
    return {
        "retry_after": _number(
            f"{where}.retry_after", data.get("retry_after", DEFAULT_RETRY_AFTER_S)
        ),
        "retry_after_format": _choice(
            f"{where}.retry_after_format",
            data.get("retry_after_format", "seconds"),
            RETRY_AFTER_FORMATS,
        ),
    }


def _trickle_fields(where: str, data: Mapping[str, object]) -> Fields:
    return {
        "chunk_bytes": _integer(
            f"{where}.chunk_bytes",
            data.get("chunk_bytes", DEFAULT_TRICKLE_CHUNK_BYTES),
            minimum=1,
        ),
        "interval_ms": _number(
            f"{where}.interval_ms", data.get("interval_ms", DEFAULT_TRICKLE_INTERVAL_MS)
        ),
    }


def _redirect_fields(where: str, data: Mapping[str, object]) -> Fields:
    location = data.get("location")
    if not isinstance(location, str) or not re.fullmatch(r"https?://[^/?#\s]+/?", location):
        raise _key_error(
            where,
            "location",
            f"required origin like http://127.0.0.1:9999, got {location!r}",
        )
    status = _integer(f"{where}.status", data.get("status", DEFAULT_REDIRECT_STATUS), minimum=0)
    if status not in REDIRECT_STATUSES:
        allowed = ", ".join(map(str, REDIRECT_STATUSES))
        raise _key_error(where, "status", f"must be one of {allowed}; got {status}")
    return {"location": location.rstrip("/"), "status": status}


def _hostile_json_fields(where: str, data: Mapping[str, object]) -> Fields:
    if "variant" not in data:
        raise _key_error(where, "variant", f"required: {', '.join(HOSTILE_VARIANTS)}")
    variant = _choice(f"{where}.variant", data["variant"], HOSTILE_VARIANTS)
    if variant != "huge_body":
        if {"size_bytes", "gzip"} & set(data):
            raise FaultProfileError(f"{where}: size_bytes and gzip only apply to huge_body")
        return {"variant": variant}
    size = _integer(
        f"{where}.size_bytes",
        data.get("size_bytes", DEFAULT_HUGE_BODY_BYTES),
        minimum=1,
    )
    if size > MAX_HUGE_BODY_BYTES:
        raise _key_error(where, "size_bytes", f"at most {MAX_HUGE_BODY_BYTES}")
    gzip = data.get("gzip", False)
    if not isinstance(gzip, bool):
        raise _key_error(where, "gzip", f"expected true or false, got {gzip!r}")
    return {"variant": variant, "size_bytes": size, "gzip": gzip}


def _drift_fields(where: str, data: Mapping[str, object]) -> Fields:
    fields: Fields = {
        name: _integer(f"{where}.{name}", data.get(name, 0), minimum=0)
        for name in ("insert", "delete", "move")
    }
    if not any(fields.values()):
        raise FaultProfileError(f"{where}: drift needs insert, delete or move > 0")
    return fields


# What each kind adds to the common keys; kinds not listed take nothing more.
_KIND_FIELDS: Final[Mapping[str, Callable[[str, Mapping[str, object]], Fields]]] = {
    "status": _status_fields,
    "rate_limited": _rate_limited_fields,
    "trickle": _trickle_fields,
    "redirect": _redirect_fields,
    "hostile_json": _hostile_json_fields,
    "drift": _drift_fields,
}


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
