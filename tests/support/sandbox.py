"""The test suite's sandbox: its seed, keys and the client settings that reach it."""

import datetime as dt
from zoneinfo import ZoneInfo

from jicoo_connector.settings import ApiKey, Settings
from jicoo_sandbox.server import SandboxServer

__all__ = [
    "LIMITED_KEY",
    "SANDBOX_BOOKINGS",
    "SANDBOX_KEY",
    "SANDBOX_SEED",
    "TEST_BURST",
    "TEST_RATE_LIMIT",
    "TOKYO",
    "sandbox_settings",
    "tokyo_today",
]

SANDBOX_SEED = 7
SANDBOX_BOOKINGS = 2000
SANDBOX_KEY = "sk_test_sandbox"
# A valid key that gets 403 on listEventTypes (plan/role gating seen in public code).
LIMITED_KEY = "sk_test_limited"
# The sandbox has no rate limit of its own: let the client go fast so runs stay short.
TEST_RATE_LIMIT = 1000.0
TEST_BURST = 1000
TOKYO = ZoneInfo("Asia/Tokyo")


def sandbox_settings(
    sandbox: SandboxServer, *, api_key: str | None = None, **overrides: object
) -> Settings:
    """Client settings for ``sandbox`` (its own key unless ``api_key``), at the tests' rate;
    ``overrides`` are further ``Settings`` fields."""
    values: dict[str, object] = {
        "api_key": ApiKey(api_key or sandbox.api_key),
        "base_url": sandbox.base_url,
        "rate_limit": TEST_RATE_LIMIT,
        "burst": TEST_BURST,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def tokyo_today(sandbox: SandboxServer) -> dt.date:
    """The sandbox clock's day in Tokyo: the day its data is spread around."""
    return sandbox.config.clock().astimezone(TOKYO).date()
