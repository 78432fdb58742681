"""Pure retry decisions: which failures are retried, after how long, and when a write is in doubt.

No I/O and no clock of its own (callers pass ``now``/``rng``), so every rule is testable directly.
"""

import datetime as dt
import email.utils
import enum
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from jicoo_connector.settings import DEFAULT_MAX_RETRIES

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "INITIAL_RETRY_DELAY",
    "MAX_DEADLINE_RETRIES",
    "MAX_RETRY_AFTER",
    "MAX_RETRY_DELAY",
    "RETRY_BUDGET_FLOOR",
    "RETRY_BUDGET_RATIO",
    "Outcome",
    "OutcomeKind",
    "RetryBudget",
    "RetryDecision",
    "backoff_delay",
    "decide",
    "parse_retry_after",
]

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
# A server asking for more than this is treated as asking for this: a pipeline should fail
# (and be retried by its scheduler) rather than sleep for an hour inside one HTTP call.
MAX_RETRY_AFTER = 60.0
# Retries may be at most 20% of requests plus a floor, so an outage does not multiply load
# (the gRPC/Finagle "retry budget"); the cap stops a long quiet spell banking a retry storm.
RETRY_BUDGET_RATIO = 0.2
RETRY_BUDGET_FLOOR = 20.0
RETRY_BUDGET_CAP = 200.0
# A server slow enough to miss one whole-request deadline is likely to miss the next: resend
# once (a stalled connection is worth replacing), not max_retries times a whole deadline.
MAX_DEADLINE_RETRIES = 1
# RFC 9110 §9.2.2: only these may be repeated without thought. PUT/DELETE are idempotent too,
# but the API's DELETEs answer 404 the second time, which would turn success into an error.
RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Longer digit strings are clamped without int(): Python refuses >4300 digits, and it is absurd.
_MAX_SECONDS_DIGITS = 12
_SECONDS_RE = re.compile(r"\d+(?:\.\d+)?")


class OutcomeKind(enum.Enum):
    """How an attempt failed, as far as retrying is concerned."""

    CONNECT = "connect"  # connect error/timeout or no pooled connection: provably never sent
    TRANSPORT = "transport"  # read/write error, reset or read timeout after the request left
    TRUNCATED = "truncated"  # the body ended before its announced length
    DEADLINE = "deadline"  # the total per-request deadline passed
    RATE_LIMITED = "rate_limited"  # 429: the server refused before doing anything
    SERVER_ERROR = "server_error"  # 5xx
    REFUSED_ANSWER = "refused_answer"  # a redirect, hostile JSON or an oversized body
    FATAL = "fatal"  # other 4xx: the server refused the request itself; retrying cannot help


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    status_code: int | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay: float
    reason: str
    # A write that left and failed: the caller must raise InDoubtError, never resend.
    in_doubt: bool = False


class RetryBudget:
    """A token bucket of retries: every request deposits ``ratio``, every retry spends one.

    >>> budget = RetryBudget(ratio=0.5, floor=1.0)
    >>> budget.try_spend(), budget.try_spend()
    (True, False)
    """

    def __init__(
        self,
        *,
        ratio: float = RETRY_BUDGET_RATIO,
        floor: float = RETRY_BUDGET_FLOOR,
        cap: float = RETRY_BUDGET_CAP,
    ) -> None:
        self.ratio = ratio
        self.cap = max(cap, floor)
        self.balance = floor

    def deposit(self) -> None:
        self.balance = min(self.cap, self.balance + self.ratio)

    def try_spend(self) -> bool:
        if self.balance < 1.0:
            return False
        self.balance -= 1.0
        return True


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 §10.2.3), clamped to
    [0, MAX_RETRY_AFTER]; None when absent or unreadable.

    >>> parse_retry_after("3"), parse_retry_after("soon")
    (3.0, None)
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS_RE.fullmatch(text):
        whole = text.split(".", 1)[0]
        if len(whole) > _MAX_SECONDS_DIGITS:
            return MAX_RETRY_AFTER
        return _clamp(float(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with unknown origin (RFC 5322 §3.3)
        when = when.replace(tzinfo=dt.timezone.utc)
    reference = now if now is not None else dt.datetime.now(dt.timezone.utc)
    return _clamp((when - reference).total_seconds())


def _clamp(seconds: float) -> float:
    if math.isnan(seconds):
        return 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff_delay(attempt: int, *, rng: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with full jitter (AWS architecture blog, "Exponential
    Backoff and Jitter"): uniform in [0, min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2**attempt)].
    """
    ceiling = MAX_RETRY_DELAY if attempt >= 32 else INITIAL_RETRY_DELAY * 2.0**attempt
    return rng() * min(MAX_RETRY_DELAY, ceiling)


def decide(
    method: str,
    attempt: int,
    outcome: Outcome,
    *,
    max_retries: int = DEFAULT_MAX_RETRIES,
    budget: RetryBudget | None = None,
    rng: Callable[[], float] = random.random,
    earlier_deadlines: int = 0,
) -> RetryDecision:
    """Whether to resend after attempt number ``attempt`` (0 = the first) ended in ``outcome``;
    ``earlier_deadlines`` counts the attempts before it that missed the deadline.

    A write (anything but GET/HEAD/OPTIONS) is resent only if it provably never reached the
    server (connect failure) or the server refused it unprocessed (429); any other failure
    after it left is in doubt.
    """
    kind = outcome.kind
    if kind is OutcomeKind.FATAL:
        return RetryDecision(False, 0.0, "not retryable")
    retryable_method = method.upper() in RETRYABLE_METHODS
    if kind is OutcomeKind.REFUSED_ANSWER:
        # The same answer would come again; for a write it may already have taken effect.
        return RetryDecision(False, 0.0, "answer refused", in_doubt=not retryable_method)
    never_processed = kind in (OutcomeKind.CONNECT, OutcomeKind.RATE_LIMITED)
    if not retryable_method and not never_processed:
        return RetryDecision(False, 0.0, f"{kind.value} after a {method} left", in_doubt=True)
    if attempt >= max_retries:
        return RetryDecision(False, 0.0, f"{kind.value}: retries exhausted ({max_retries})")
    if kind is OutcomeKind.DEADLINE and earlier_deadlines >= MAX_DEADLINE_RETRIES:
        return RetryDecision(False, 0.0, "deadline missed again after a retry")
    # 429 answers are paced by Retry-After and the shared limiter; they do not add load.
    if kind is not OutcomeKind.RATE_LIMITED and budget is not None and not budget.try_spend():
        return RetryDecision(False, 0.0, f"{kind.value}: retry budget exhausted")
    if outcome.retry_after is not None:
        return RetryDecision(True, outcome.retry_after, f"{kind.value}: Retry-After")
    return RetryDecision(True, backoff_delay(attempt, rng=rng), f"{kind.value}: backoff")
