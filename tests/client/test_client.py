"""AsyncJicooClient against the sandbox over real HTTP on 127.0.0.1, one behaviour per test.

The sandbox store and journal are the oracle for what exists and what reached the server;
``/_sandbox/requests`` is the oracle for when requests arrived and what they carried.
"""

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TypeVar

import pytest

from jicoo_connector.client import AsyncJicooClient, JicooClient, RateLimiter
from jicoo_connector.errors import (
    InDoubtError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    ProtocolError,
    TransportError,
    ValidationError,
)
from jicoo_connector.settings import ApiKey, Settings
from jicoo_sandbox.server import SandboxServer
from tests.support.capture_server import CaptureServer
from tests.support.sandbox import LIMITED_KEY, sandbox_settings

T = TypeVar("T")
# A limiter far above anything the tests send, so no test waits on another test's 429 penalty.
UNTHROTTLED = 10_000.0
# Arrival times come from the server's wall clock; allow for its resolution.
CLOCK_SLACK_S = 0.05


def make_settings(sandbox: SandboxServer, **overrides: object) -> Settings:
    """The client tests bring their own limiter: these settings' rate goes unused."""
    return sandbox_settings(sandbox, **{"per_page": 100, "request_deadline": 5.0, **overrides})


def run(
    sandbox: SandboxServer,
    call: Callable[[AsyncJicooClient], Coroutine[object, object, T]],
    **overrides: object,
) -> T:
    async def main() -> T:
        limiter = RateLimiter(UNTHROTTLED, int(UNTHROTTLED))
        async with AsyncJicooClient(make_settings(sandbox, **overrides), limiter=limiter) as client:
            return await call(client)

    return asyncio.run(main())


def store_uids(sandbox: SandboxServer) -> list[object]:
    return [booking["uid"] for booking in sandbox.store.all_bookings()]


def api_requests(sandbox: SandboxServer, path_prefix: str = "/v1/") -> list[dict[str, object]]:
    return [r for r in sandbox.requests() if str(r["path"]).startswith(path_prefix)]


def open_future_booking(sandbox: SandboxServer) -> str:
    now = sandbox.config.clock().strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for booking in sandbox.store.all_bookings():
        if booking["status"] == "open" and str(booking["startedAt"]) > now:
            return str(booking["uid"])
    raise AssertionError("the seeded sandbox has no future open booking")


# -- reading -------------------------------------------------------------------------------------


def test_listing_returns_exactly_the_stores_bookings(sandbox: SandboxServer) -> None:
    listing = run(sandbox, lambda client: client.list_bookings())
    assert [record["uid"] for record in listing.records] == store_uids(sandbox)
    assert listing.total_count == len(listing.records)
    assert listing.report.pages == listing.report.requests == -(-listing.total_count // 100)
    assert all(r["had_key"] for r in api_requests(sandbox))


def test_5xx_and_429_bursts_still_yield_exactly_the_bookings(sandbox: SandboxServer) -> None:
    sandbox.set_faults(
        {
            "seed": 11,
            "rules": [
                {"kind": "rate_limited", "retry_after": 1, "after": 3, "burst": 2},
                {"kind": "status", "status": 503, "probability": 0.3},
            ],
        }
    )
    listing = run(sandbox, lambda client: client.list_bookings())
    uids = [record["uid"] for record in listing.records]
    assert uids == store_uids(sandbox)
    report = listing.report
    assert report.server_errors > 0
    assert report.rate_limited == 2
    assert report.retries == report.server_errors + report.rate_limited
    assert report.requests == report.pages + report.retries


@pytest.mark.parametrize(
    ("retry_after", "fmt", "at_least"), [(1, "seconds", 1.0), (2, "http_date", 1.0)]
)
def test_retry_after_is_waited(
    sandbox: SandboxServer, retry_after: int, fmt: str, at_least: float
) -> None:
    uid = str(sandbox.store.all_bookings()[0]["uid"])
    sandbox.set_faults(
        {
            "rules": [
                {
                    "kind": "rate_limited",
                    "retry_after": retry_after,
                    "retry_after_format": fmt,
                    "burst": 1,
                }
            ]
        }
    )
    booking = run(sandbox, lambda client: client.get_booking(uid))
    assert booking["uid"] == uid
    first, second = api_requests(sandbox)
    assert (first["status"], second["status"]) == (429, 200)
    # An HTTP date has whole seconds: "now + 2 s" may read as little more than 1 s away.
    assert float(str(second["at"])) - float(str(first["at"])) >= at_least - CLOCK_SLACK_S


def test_drift_between_pages_yields_no_duplicate_and_no_gap(sandbox: SandboxServer) -> None:
    sandbox.set_faults(
        {
            "seed": 5,
            "rules": [
                {"kind": "drift", "after": 1, "burst": 3, "insert": 4, "delete": 2, "move": 3}
            ],
        }
    )
    listing = run(sandbox, lambda client: client.list_bookings(), page_concurrency=4)
    uids = [record["uid"] for record in listing.records]
    assert len(set(uids)) == len(uids)
    assert uids == store_uids(sandbox)
    assert listing.report.drift_rewalks >= 1


def test_drift_that_never_stops_fails_loudly(sandbox: SandboxServer) -> None:
    sandbox.set_faults({"rules": [{"kind": "drift", "after": 1, "insert": 1}]})
    with pytest.raises(PaginationError, match="kept changing") as caught:
        run(sandbox, lambda client: client.list_bookings())
    assert caught.value.endpoint == "/v1/bookings"


def test_redirect_is_refused_and_the_key_stays_home(
    sandbox: SandboxServer, capture_server: CaptureServer
) -> None:
    sandbox.set_faults({"rules": [{"kind": "redirect", "location": capture_server.base_url}]})
    with pytest.raises(ProtocolError, match="redirect") as caught:
        run(sandbox, lambda client: client.list_schedules())
    assert caught.value.endpoint == "/v1/schedules"
    assert capture_server.requests == []
    assert len(api_requests(sandbox)) == 1  # a redirect is not retried


def test_trickle_hits_the_total_deadline_quickly(sandbox: SandboxServer) -> None:
    uid = str(sandbox.store.all_bookings()[0]["uid"])
    # ~3 s to trickle one booking (about 700 bytes): every read is fast, only the total
    # deadline can stop it. (A small body: the sandbox keeps trickling to a closed socket.)
    sandbox.set_faults({"rules": [{"kind": "trickle", "chunk_bytes": 64, "interval_ms": 300}]})
    started = time.monotonic()
    with pytest.raises(TransportError, match="deadline") as caught:
        run(sandbox, lambda client: client.get_booking(uid), request_deadline=0.4, max_retries=1)
    elapsed = time.monotonic() - started
    # Two attempts of 0.4 s and one INITIAL_RETRY_DELAY of backoff (1.3 s), stopped before one
    # body could trickle through; the rest is room for a loaded machine (2.04 s at load 25).
    assert elapsed < 3.0
    assert caught.value.endpoint == f"/v1/bookings/{uid}"
    assert len(api_requests(sandbox)) == 2


def test_truncated_body_is_retried_then_succeeds(sandbox: SandboxServer) -> None:
    sandbox.set_faults({"rules": [{"kind": "truncate", "after": 1, "burst": 1}]})
    listing = run(sandbox, lambda client: client.list_bookings(), page_concurrency=1)
    assert [record["uid"] for record in listing.records] == store_uids(sandbox)
    assert listing.report.retries == 1
    assert [r["fault"] for r in api_requests(sandbox)][:3] == [None, "truncate", None]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "hostile_json", "variant": "deep_nesting"}, "invalid JSON|nested deeper"),
        ({"kind": "hostile_json", "variant": "huge_number"}, "invalid JSON|beyond 64 bits"),
        ({"kind": "hostile_json", "variant": "nan"}, "invalid JSON"),
        ({"kind": "hostile_json", "variant": "invalid_surrogate"}, "invalid JSON"),
        ({"kind": "malformed_json"}, "invalid JSON"),
    ],
)
def test_hostile_json_is_a_protocol_error_naming_endpoint_and_page(
    sandbox: SandboxServer, rule: dict[str, object], message: str
) -> None:
    sandbox.set_faults({"rules": [{**rule, "after": 1, "times": 1}]})
    with pytest.raises(ProtocolError, match=message) as caught:
        run(sandbox, lambda client: client.list_bookings(), page_concurrency=1)
    error = caught.value
    assert (error.method, error.endpoint, error.page) == ("GET", "/v1/bookings", 2)
    assert "GET /v1/bookings page 2" in str(error)
    assert len(api_requests(sandbox)) == 2  # refused answers are not retried


@pytest.mark.parametrize("gzip", [True, False])
def test_huge_body_hits_the_byte_cap(sandbox: SandboxServer, gzip: bool) -> None:
    sandbox.set_faults(
        {
            "rules": [
                {
                    "kind": "hostile_json",
                    "variant": "huge_body",
                    "size_bytes": 8_000_000,
                    "gzip": gzip,
                }
            ]
        }
    )
    with pytest.raises(ProtocolError, match="larger than 1000000 bytes") as caught:
        run(sandbox, lambda client: client.list_schedules(), max_response_bytes=1_000_000)
    assert caught.value.page == 1


def test_403_names_the_endpoint(sandbox: SandboxServer) -> None:
    settings = make_settings(sandbox, api_key=LIMITED_KEY)

    async def main() -> None:
        async with AsyncJicooClient(settings, limiter=RateLimiter(UNTHROTTLED, 100)) as client:
            await client.list_event_types()

    with pytest.raises(PermissionDeniedError) as caught:
        asyncio.run(main())
    assert caught.value.endpoint == "/v1/event_types"
    assert caught.value.status_code == 403


def test_404_is_not_found_and_ids_are_quoted(sandbox: SandboxServer) -> None:
    with pytest.raises(NotFoundError) as caught:
        run(sandbox, lambda client: client.list_booking_contacts("no/such uid"))
    assert caught.value.endpoint == "/v1/bookings/no%2Fsuch%20uid/contacts"
    assert len(api_requests(sandbox)) == 1


def test_422_keeps_the_server_message(sandbox: SandboxServer) -> None:
    uid = open_future_booking(sandbox)
    past = dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(ValidationError) as caught:
        run(sandbox, lambda c: c.reschedule_booking(uid, started_at=past, time_zone="Asia/Tokyo"))
    message = caught.value.server_message
    assert message
    assert message in str(caught.value)
    assert caught.value.status_code == 422


def test_naive_datetimes_are_refused(sandbox: SandboxServer) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(sandbox, lambda client: client.list_bookings(started_at=dt.datetime(2025, 1, 1)))  # noqa: DTZ001
    assert api_requests(sandbox) == []


def test_window_filters_are_sent_as_utc_millis(sandbox: SandboxServer) -> None:
    tokyo = dt.timezone(dt.timedelta(hours=9))
    start = dt.datetime(2025, 3, 1, 9, 0, tzinfo=tokyo)
    run(sandbox, lambda client: client.list_bookings(started_at=start, status="open"))
    query = str(api_requests(sandbox)[0]["query"])
    assert "startedAt=2025-03-01T00%3A00%3A00.000Z" in query
    assert "status=open" in query


# -- writing -------------------------------------------------------------------------------------


def _cancels(sandbox: SandboxServer, uid: str) -> list[dict[str, object]]:
    return [e for e in sandbox.store.journal() if e["booking_uid"] == uid and e["method"] == "POST"]


def test_dropped_connection_after_apply_is_in_doubt_and_not_resent(sandbox: SandboxServer) -> None:
    uid = open_future_booking(sandbox)
    sandbox.set_faults({"rules": [{"kind": "drop_after_apply", "path": "/cancel$", "times": 1}]})
    with pytest.raises(InDoubtError) as caught:
        run(sandbox, lambda client: client.cancel_booking(uid, reason="moved"))
    assert caught.value.sent_body == {"cancelReason": "moved"}
    assert caught.value.endpoint == f"/v1/bookings/{uid}/cancel"
    journal = _cancels(sandbox, uid)
    assert len(journal) == 1
    assert journal[0]["changed"] is True
    assert sandbox.store.get_booking(uid)["status"] == "cancel"  # type: ignore[index]


def test_5xx_on_a_post_is_in_doubt_and_not_retried(sandbox: SandboxServer) -> None:
    uid = open_future_booking(sandbox)
    sandbox.set_faults({"rules": [{"kind": "status", "status": 503, "methods": ["POST"]}]})
    with pytest.raises(InDoubtError):
        run(sandbox, lambda client: client.cancel_booking(uid))
    assert len(api_requests(sandbox, "/v1/bookings/")) == 1
    assert [e["changed"] for e in _cancels(sandbox, uid)] == [False]


def test_429_on_a_post_is_retried_and_applied_once(sandbox: SandboxServer) -> None:
    uid = open_future_booking(sandbox)
    sandbox.set_faults(
        {"rules": [{"kind": "rate_limited", "retry_after": 1, "methods": ["POST"], "burst": 1}]}
    )
    booking = run(sandbox, lambda client: client.cancel_booking(uid, reason="r"))
    assert booking["status"] == "cancel"
    assert [e["changed"] for e in _cancels(sandbox, uid)] == [False, True]


def test_post_connect_failure_is_resent_as_not_sent() -> None:
    # Nothing listens on port 9 of loopback: the request provably never left.
    settings = Settings(
        api_key=ApiKey("sk_test_nobody"), base_url="http://127.0.0.1:9", max_retries=1
    )

    async def main() -> None:
        async with AsyncJicooClient(settings, limiter=RateLimiter(UNTHROTTLED, 100)) as client:
            await client.cancel_booking("abc")

    with pytest.raises(TransportError, match="could not connect") as caught:
        asyncio.run(main())
    assert not isinstance(caught.value, InDoubtError)


# -- the rest of the surface ---------------------------------------------------------------------


def test_every_listing_endpoint_walks(sandbox: SandboxServer) -> None:
    async def walk_all(client: AsyncJicooClient) -> dict[str, int]:
        users = await client.list_organization_users()
        event_types = await client.list_event_types()
        user_id = str(users.records[0]["uid"])
        event_type = str(event_types.records[0]["uid"])
        counts = {
            "users": users.total_count,
            "event_types": event_types.total_count,
            "schedules": (await client.list_schedules()).total_count,
            "calendars": (await client.list_availability_calendars(user_id)).total_count,
            "hosts": (await client.list_event_type_hosts(event_type)).total_count,
        }
        assert client.report.requests == len(api_requests(sandbox))
        return counts

    counts = run(sandbox, walk_all)
    assert counts["users"] == len(sandbox.store.users())
    assert counts["event_types"] == len(sandbox.store.event_types())
    assert counts["schedules"] == sandbox.store.schedule_total()
    assert min(counts.values()) >= 1


def test_available_slots_split_into_week_windows_without_duplicates(sandbox: SandboxServer) -> None:
    event_type = str(sandbox.store.event_types()[0]["uid"])
    start = sandbox.config.clock().replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + dt.timedelta(days=17)
    slots = run(sandbox, lambda client: client.list_available_slots(event_type, start, end))
    starts = [str(slot["startedAt"]) for slot in slots]
    assert len(set(starts)) == len(starts)
    assert len(api_requests(sandbox)) == 3
    iso = "%Y-%m-%dT%H:%M:%S.000Z"
    assert all(
        start.strftime(iso) <= s < end.strftime(iso) or s == end.strftime(iso) for s in starts
    )


def test_sync_facade_works_from_a_thread_without_a_loop(sandbox: SandboxServer) -> None:
    results: list[object] = []

    def work() -> None:
        settings = make_settings(sandbox)
        with JicooClient(settings, limiter=RateLimiter(UNTHROTTLED, 100)) as client:
            listing = client.list_bookings()
            booking = client.get_booking(str(listing.records[0]["uid"]))
            results.extend([len(listing.records), booking["uid"], client.report.requests])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    expected = store_uids(sandbox)
    assert results == [len(expected), expected[0], -(-len(expected) // 100) + 1]


def test_sync_facade_is_closed_after_the_block(sandbox: SandboxServer) -> None:
    client = JicooClient(make_settings(sandbox), limiter=RateLimiter(UNTHROTTLED, 100))
    with client:
        assert client.list_schedules().total_count >= 0
    with pytest.raises(RuntimeError, match="closed"):
        client.list_schedules()
