"""The shared token bucket: burst, steady rate, FIFO slots, pauses after a 429, many loops."""

import asyncio
import threading
import time

import pytest

from jicoo_connector.client import RateLimiter, reset_shared_limiters, shared_limiter
from jicoo_connector.client._ratelimit import (
    ACCOUNT_BURST_SHARE,
    ACCOUNT_PACING,
    PENALTY_RATE_SCALE,
    RECOVERY_S,
)
from jicoo_connector.settings import ApiKey, Settings

# Scheduling slack on a shared 2-core machine.
SLACK_S = 0.25


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _acquire_all(limiter: RateLimiter, calls: int) -> float:
    started = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(calls)))
    return time.monotonic() - started


@pytest.mark.parametrize(("calls", "rate", "burst"), [(25, 50.0, 5), (12, 20.0, 2)])
def test_concurrent_calls_take_at_least_n_minus_burst_over_rate(
    calls: int, rate: float, burst: int
) -> None:
    elapsed = asyncio.run(_acquire_all(RateLimiter(rate, burst), calls))
    floor = (calls - burst) / rate
    assert floor - 0.01 <= elapsed <= floor + SLACK_S


def test_slots_are_spaced_at_the_rate_after_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, 3, clock=clock)
    waits = [limiter.reserve()[0] for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])
    clock.now += 10.0  # idle: the bucket refills to its burst, no more
    assert [limiter.reserve()[0] for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_pacing_and_burst_share_leave_the_server_slack() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, 10, pacing=0.5, burst_share=0.8, clock=clock)
    waits = [limiter.reserve()[0] for _ in range(10)]
    # 8 of the 10 burst slots at once, then one slot per 1 / (10 * 0.5) s.
    assert waits == pytest.approx([0.0] * 8 + [0.2, 0.4])
    clock.now += 100.0
    assert [limiter.reserve()[0] for _ in range(9)] == pytest.approx([0.0] * 8 + [0.2])


def test_the_shared_limiter_paces_under_the_account_limit() -> None:
    settings = Settings(api_key=ApiKey("sk_test_paced"), base_url="http://127.0.0.1:3", burst=10)
    limiter = shared_limiter(settings)
    waits = [limiter.reserve()[0] for _ in range(10)]
    kept = int(10 * ACCOUNT_BURST_SHARE)
    assert waits[:kept] == [0.0] * kept
    assert waits[kept + 1] - waits[kept] == pytest.approx(
        1 / (settings.rate_limit * ACCOUNT_PACING), rel=0.05
    )


def test_penalty_pauses_everyone_then_ramps_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, 5, clock=clock)
    limiter.penalise(2.0)
    first, _ = limiter.reserve()
    # Empty bucket at half rate right after the pause: 2 s pause + one slot at 5/s.
    assert first == pytest.approx(2.0 + 1.0 / (10.0 * PENALTY_RATE_SCALE))
    clock.now += 2.0 + RECOVERY_S + 10.0
    assert limiter.reserve()[0] == 0.0  # recovered: burst is back at the full rate


def test_penalty_voids_slots_promised_before_it() -> None:
    async def scenario() -> float:
        # The limiter's clock stands still: a loaded machine cannot refill the bucket between
        # the two reservations (the waiter would then take a free slot and never wait).
        limiter = RateLimiter(100.0, 1, clock=FakeClock())
        limiter.reserve()  # the bucket is now empty: the next caller is promised a slot in 10 ms
        started = time.monotonic()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        limiter.penalise(0.3)
        await waiter
        return time.monotonic() - started

    assert asyncio.run(scenario()) >= 0.3


def test_penalise_without_retry_after_uses_the_default_pause() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, 1, clock=clock)
    limiter.penalise(None)
    assert limiter.reserve()[0] > 0.5


def test_one_limiter_serves_several_event_loops() -> None:
    limiter = RateLimiter(40.0, 4)
    elapsed: list[float] = []

    def run() -> None:
        elapsed.append(asyncio.run(_acquire_all(limiter, 12)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.monotonic() - started
    assert total >= (24 - 4) / 40.0 - 0.01


def test_shared_limiter_is_one_per_account() -> None:
    settings = Settings(api_key=ApiKey("sk_test_shared_a"), base_url="http://127.0.0.1:1")
    same = Settings(api_key=ApiKey("sk_test_shared_a"), base_url="http://127.0.0.1:1/")
    other_key = Settings(api_key=ApiKey("sk_test_shared_b"), base_url="http://127.0.0.1:1")
    other_host = Settings(api_key=ApiKey("sk_test_shared_a"), base_url="http://127.0.0.1:2")
    limiter = shared_limiter(settings)
    assert shared_limiter(same) is limiter
    assert shared_limiter(other_key) is not limiter
    assert shared_limiter(other_host) is not limiter
    assert (limiter.rate, limiter.burst) == (settings.rate_limit, settings.burst)
    assert "sk_test" not in repr(limiter)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_nonsense_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate, burst)


def test_reset_shared_limiters_lets_the_next_caller_set_the_rate() -> None:
    slow = Settings(api_key=ApiKey("sk_test_reset"), base_url="http://127.0.0.1:4", rate_limit=1)
    fast = Settings(api_key=ApiKey("sk_test_reset"), base_url="http://127.0.0.1:4", rate_limit=50)
    first = shared_limiter(slow)
    assert shared_limiter(fast) is first  # the first caller's rate wins...
    reset_shared_limiters()
    again = shared_limiter(fast)
    assert again is not first  # ...until the limiters are reset
    assert again.rate == fast.rate_limit
    assert first.rate == slow.rate_limit
