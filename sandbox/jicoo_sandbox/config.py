"""What a sandbox instance is started with: seed, data size, keys, knobs. Plain data only."""

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "AUTH_FAILURE_STATUSES",
    "DEFAULT_SANDBOX_KEY",
    "Clock",
    "SandboxConfig",
    "WebhookOptions",
    "clock_from",
    "system_clock",
]

# What "now" is for the sandbox: an aware datetime. Injected so tests and the demo can run the
# sandbox on any day (its rules refuse the past, its data is spread around "today").
Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def clock_from(start: dt.datetime) -> Clock:
    """A clock that reads ``start`` now and runs at real speed from there (monotonic time)."""
    if start.tzinfo is None:
        raise ValueError("the clock's start needs a time zone")
    origin = time.monotonic()

    def now() -> dt.datetime:
        return start + dt.timedelta(seconds=time.monotonic() - origin)

    return now


# A sandbox key, not a secret: it only opens the local fake server.
DEFAULT_SANDBOX_KEY = "sk_test_sandbox"
# What a request without a valid X-Jicoo-Api-Key gets. The real API answered 403 to a missing
# key (a caller that sent Bearer auth, ../shared/jicoo-api/README.md "Auth"); what it answers
# to a wrong key is unknown, so 401 can be chosen instead to test clients against both.
AUTH_FAILURE_STATUSES = (403, 401)


@dataclass(frozen=True)
class WebhookOptions:
    """Where and how the sandbox delivers its events (``webhooks.WebhookSender`` sends them)."""

    url: str
    secret: str = field(repr=False)
    duplicate: float = 0.0
    reorder_ms: float = 0.0
    max_attempts: int = 30
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    seed: int = 0
    concurrency: int = 1

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"webhook URL {self.url!r} is not http(s)")
        if not self.secret:
            raise ValueError("a webhook URL needs a secret")
        if not 0 <= self.duplicate <= 1 or self.reorder_ms < 0 or self.max_attempts < 1:
            raise ValueError("duplicate must be in [0, 1], reorder_ms >= 0, max_attempts >= 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1 delivery thread")


@dataclass(frozen=True)
class SandboxConfig:
    """Start-up settings of the fake Jicoo server.

    ``denied`` maps an API key to the OpenAPI operationIds it gets 403 for
    (e.g. ``{"sk_test_limited": frozenset({"listEventTypes"})}``); every key in
    ``api_keys`` or ``denied`` is valid. ``faults`` is the JSON fault profile
    (see ``faults/profile.py``), also settable at run time through ``POST /_sandbox/faults``.
    ``anchor_date`` is the day the seeded data is spread around (default: the clock's day,
    UTC); fix it for byte-identical data across days. ``clock`` is the sandbox's "now": what
    "in the past" means for reschedules and slots, and the time stamped on changes.
    ``auth_failure_status`` is what a request without a valid ``X-Jicoo-Api-Key`` gets
    (missing, wrong, or Bearer auth instead): 403 as observed on the real API, or 401.
    ``webhooks`` makes it send signed events for every booking change; ``churn_rate`` makes it
    change bookings on its own (per second, up to ``churn_limit`` changes, 0 = no limit); see
    ``webhooks.py``.
    """

    seed: int = 7
    bookings: int = 2000
    api_keys: tuple[str, ...] = (DEFAULT_SANDBOX_KEY,)
    denied: Mapping[str, frozenset[str]] = field(default_factory=dict)
    auth_failure_status: int = AUTH_FAILURE_STATUSES[0]
    anchor_date: dt.date | None = None
    past_days: int = 60
    future_days: int = 30
    faults: Mapping[str, object] = field(default_factory=dict)
    journal_path: Path | None = None
    clock: Clock = system_clock
    webhooks: WebhookOptions | None = None
    churn_rate: float = 0.0
    churn_limit: int = 0

    def __post_init__(self) -> None:
        if self.auth_failure_status not in AUTH_FAILURE_STATUSES:
            raise ValueError(
                f"auth_failure_status must be one of {AUTH_FAILURE_STATUSES}, "
                f"not {self.auth_failure_status}"
            )

    def valid_keys(self) -> frozenset[str]:
        return frozenset(self.api_keys) | frozenset(self.denied)

    def effective_anchor(self) -> dt.date:
        return self.anchor_date or self.clock().astimezone(dt.timezone.utc).date()
