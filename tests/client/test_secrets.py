"""The API key never shows: not in logs (DEBUG, everything), errors, reprs or reports.

Runs its own small sandbox that accepts a sentinel key, then drives every failure path.
"""

import asyncio
import logging
from collections.abc import Iterator

import pytest

from jicoo_connector.client import AsyncJicooClient, FetchReport, JicooClient, RateLimiter
from jicoo_connector.errors import JicooError
from jicoo_connector.settings import ApiKey, Settings
from jicoo_sandbox.config import Clock, SandboxConfig
from jicoo_sandbox.server import SandboxServer

SENTINEL = "sk_test_SENTINEL_0f3a"
FRAGMENT = "SENTINEL_0f3a"


@pytest.fixture(scope="module")
def sentinel_sandbox(clock: Clock) -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(bookings=300, api_keys=(SENTINEL,), clock=clock)) as server:
        yield server


def _texts(error: BaseException) -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out += [str(current), repr(current), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return out


def test_sentinel_key_never_appears(
    sentinel_sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel_sandbox.set_faults(
        {
            "seed": 3,
            "rules": [
                {"kind": "status", "status": 503, "path": "^/v1/bookings$", "probability": 0.4},
                {"kind": "truncate", "path": "^/v1/bookings$", "burst": 1},
                {"kind": "redirect", "location": "http://127.0.0.1:9", "path": "schedules"},
                {"kind": "drop_after_apply", "path": "/cancel$"},
                {"kind": "hostile_json", "variant": "nan", "path": "event_types"},
            ],
        }
    )
    settings = Settings(
        api_key=ApiKey(SENTINEL), base_url=sentinel_sandbox.base_url, per_page=20, max_retries=8
    )
    errors: list[BaseException] = []
    reports: list[FetchReport] = []

    async def main() -> None:
        limiter = RateLimiter(10_000.0, 10_000)
        async with AsyncJicooClient(settings, limiter=limiter) as client:
            listing = await client.list_bookings()
            uid = str(listing.records[-1]["uid"])
            for call in (
                client.list_schedules(),
                client.list_event_types(),
                client.get_booking("missing"),
                client.cancel_booking(uid, reason="x"),
            ):
                try:
                    await call
                except JicooError as exc:
                    errors.append(exc)
            reports.extend([listing.report, client.report])
            assert SENTINEL not in repr(client)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
        with JicooClient(settings, limiter=RateLimiter(10_000.0, 10_000)) as sync_client:
            assert FRAGMENT not in repr(sync_client)
    sentinel_sandbox.clear_faults()

    assert len(errors) == 4
    assert reports[1].retries > 0
    assert caplog.records  # our retry lines were captured at DEBUG
    assert "retry" in caplog.text
    haystack = [caplog.text, repr(settings), str(settings.api_key)]
    haystack += [text for error in errors for text in _texts(error)]
    haystack += [repr(report) for report in reports] + [str(r.as_metadata()) for r in reports]
    assert not [text for text in haystack if FRAGMENT in text]
    # ...and yet the key was really sent on every request.
    assert all(entry["had_key"] for entry in sentinel_sandbox.requests())
