"""Pure retry decisions: Retry-After parsing, backoff bounds, method-aware retry and budgets."""

import datetime as dt
import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jicoo_connector.client._retry import (
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    Outcome,
    OutcomeKind,
    RetryBudget,
    backoff_delay,
    decide,
    parse_retry_after,
)

NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
SENT_FAILURES = [
    OutcomeKind.TRANSPORT,
    OutcomeKind.TRUNCATED,
    OutcomeKind.DEADLINE,
    OutcomeKind.SERVER_ERROR,
]


@given(st.integers(min_value=0, max_value=10**30))
def test_retry_after_seconds_are_clamped(seconds: int) -> None:
    assert parse_retry_after(str(seconds), now=NOW) == min(float(seconds), MAX_RETRY_AFTER)


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_retry_after_http_date_is_relative_to_now(offset: int) -> None:
    header = email.utils.format_datetime(NOW + dt.timedelta(seconds=offset), usegmt=True)
    assert parse_retry_after(header, now=NOW) == min(max(float(offset), 0.0), MAX_RETRY_AFTER)


@given(st.text(max_size=60))
def test_retry_after_never_raises_and_stays_in_bounds(text: str) -> None:
    parsed = parse_retry_after(text, now=NOW)
    assert parsed is None or 0.0 <= parsed <= MAX_RETRY_AFTER


@pytest.mark.parametrize("header", [None, "", "  ", "-3", "soon", "1e3", "nan", "Fri, 99 Foo"])
def test_unreadable_retry_after_is_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_retry_after_asctime_and_spaces() -> None:
    assert parse_retry_after(" 7 ", now=NOW) == 7.0
    assert parse_retry_after("Thu, 02 Jan 2025 03:04:15 GMT", now=NOW) == 10.0


@given(st.integers(min_value=0, max_value=500), st.floats(min_value=0.0, max_value=1.0))
def test_backoff_is_full_jitter_under_the_cap(attempt: int, draw: float) -> None:
    ceiling = min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2.0 ** min(attempt, 64))
    delay = backoff_delay(attempt, rng=lambda: draw)
    assert 0.0 <= delay <= ceiling
    assert delay == pytest.approx(draw * ceiling)


@pytest.mark.parametrize("kind", [*SENT_FAILURES, OutcomeKind.CONNECT, OutcomeKind.RATE_LIMITED])
def test_get_retries_transient_failures(kind: OutcomeKind) -> None:
    decision = decide("GET", 0, Outcome(kind), rng=lambda: 0.5)
    assert decision.retry
    assert not decision.in_doubt
    assert decision.delay == pytest.approx(0.5 * INITIAL_RETRY_DELAY)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_never_retried(method: str, status: int) -> None:
    decision = decide(method, 0, Outcome(OutcomeKind.FATAL, status))
    assert not decision.retry
    assert not decision.in_doubt


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
@pytest.mark.parametrize("kind", [*SENT_FAILURES, OutcomeKind.REFUSED_ANSWER])
def test_a_write_that_left_is_in_doubt(method: str, kind: OutcomeKind) -> None:
    decision = decide(method, 0, Outcome(kind, 503))
    assert not decision.retry
    assert decision.in_doubt


@pytest.mark.parametrize("kind", [OutcomeKind.CONNECT, OutcomeKind.RATE_LIMITED])
def test_a_write_that_never_ran_is_resent(kind: OutcomeKind) -> None:
    decision = decide("POST", 0, Outcome(kind, retry_after=2.0))
    assert decision.retry
    assert decision.delay == 2.0


def test_refused_answer_to_a_get_is_final_not_in_doubt() -> None:
    decision = decide("GET", 0, Outcome(OutcomeKind.REFUSED_ANSWER, 302))
    assert (decision.retry, decision.in_doubt) == (False, False)


def test_retries_stop_at_max() -> None:
    outcome = Outcome(OutcomeKind.SERVER_ERROR, 503)
    assert decide("GET", 2, outcome, max_retries=3).retry
    assert not decide("GET", 3, outcome, max_retries=3).retry


def test_budget_stops_retry_storms_but_not_429() -> None:
    budget = RetryBudget(ratio=0.5, floor=1.0)
    server_error = Outcome(OutcomeKind.SERVER_ERROR, 500)
    assert decide("GET", 0, server_error, budget=budget).retry
    assert not decide("GET", 0, server_error, budget=budget).retry
    assert decide("GET", 0, Outcome(OutcomeKind.RATE_LIMITED, 429), budget=budget).retry
    budget.deposit()
    budget.deposit()
    assert decide("GET", 0, server_error, budget=budget).retry


@given(st.integers(min_value=0, max_value=10_000))
def test_budget_bounds_retries_to_a_share_of_requests(requests: int) -> None:
    budget = RetryBudget(ratio=0.2, floor=20.0, cap=1e9)
    for _ in range(requests):
        budget.deposit()
    spent = 0
    while budget.try_spend():
        spent += 1
    assert spent <= 20 + 0.2 * requests + 1e-6


def test_a_missed_deadline_is_retried_once_per_call() -> None:
    deadline = Outcome(OutcomeKind.DEADLINE)
    first = decide("GET", 0, deadline, max_retries=6, rng=lambda: 0.0)
    again = decide("GET", 1, deadline, max_retries=6, rng=lambda: 0.0, earlier_deadlines=1)
    other = decide(
        "GET",
        2,
        Outcome(OutcomeKind.TRANSPORT),
        max_retries=6,
        rng=lambda: 0.0,
        earlier_deadlines=1,
    )
    assert (first.retry, again.retry, other.retry) == (True, False, True)
    assert again.reason == "deadline missed again after a retry"
