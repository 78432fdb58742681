"""extract_partition against the sandbox over loopback, and the day windows it relies on."""

import asyncio
import datetime as dt
import logging
import socket
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jicoo_connector._compat import ExceptionGroup, parse_datetime
from jicoo_connector.client import AsyncJicooClient
from jicoo_connector.errors import ConfigError, ExtractError, JicooError, TransportError
from jicoo_connector.extract import (
    DEFAULT_SLOT_HORIZON_DAYS,
    TABLES,
    ExtractResult,
    day_window,
    extract_partition,
    extract_range,
)
from jicoo_connector.extract._run import _extract_days, _FeedGroup
from jicoo_connector.extract.catalog.bookings import BOOKINGS, BOOKINGS_FEED, _split_days
from jicoo_connector.extract.sources import ExtractContext
from jicoo_connector.pages import PageBatches
from jicoo_connector.settings import ApiKey, Settings
from jicoo_connector.storage import ParquetStore
from jicoo_sandbox.server import SandboxServer
from tests.support.sandbox import sandbox_settings

ZONES = sorted(
    z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))
)


def test_tokyo_day_starts_at_15_utc_the_day_before() -> None:
    start, end = day_window(dt.date(2024, 3, 1), "Asia/Tokyo")
    assert start == dt.datetime(2024, 2, 29, 15, tzinfo=dt.timezone.utc)
    assert end == dt.datetime(2024, 3, 1, 15, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("day", "zone", "hours"),
    [
        (dt.date(2024, 3, 10), "America/New_York", 23),  # spring forward
        (dt.date(2024, 11, 3), "America/New_York", 25),  # fall back
        (dt.date(2024, 9, 8), "America/Santiago", 23),  # the gap is at midnight itself
        (dt.date(2024, 3, 31), "Europe/Berlin", 23),
        (dt.date(2024, 3, 1), "Asia/Tokyo", 24),
    ],
)
def test_dst_days_have_their_true_length(day: dt.date, zone: str, hours: int) -> None:
    start, end = day_window(day, zone)
    assert end - start == dt.timedelta(hours=hours)


@given(
    st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2060, 12, 31)),
    st.sampled_from(ZONES),
    st.integers(min_value=0, max_value=10**12),
)
def test_every_instant_of_the_window_is_on_that_local_day(
    day: dt.date, zone: str, offset_ms: int
) -> None:
    start, end = day_window(day, zone)
    assert start < end
    assert day_window(day + dt.timedelta(days=1), zone)[0] == end  # windows tile the timeline
    length_ms = (end - start) // dt.timedelta(milliseconds=1)
    instant = start + dt.timedelta(milliseconds=offset_ms % length_ms)
    assert instant.astimezone(ZoneInfo(zone)).date() == day
    assert (start - dt.timedelta(milliseconds=1)).astimezone(ZoneInfo(zone)).date() < day


def test_an_unknown_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="IANA"):
        day_window(dt.date(2024, 3, 1), "Mars/Olympus")


# -- against the sandbox ---------------------------------------------------------------------

JST = ZoneInfo("Asia/Tokyo")
# conftest.py's key that the session sandbox answers 403 on listEventTypes.
LIMITED_KEY = "sk_test_limited"


def _instant(text: object) -> dt.datetime:
    return parse_datetime(str(text))


async def _all_bookings(sandbox: SandboxServer) -> list[dict[str, object]]:
    async with AsyncJicooClient(sandbox_settings(sandbox)) as client:
        return (await client.list_bookings()).records


def _busiest_jst_day(bookings: list[dict[str, object]]) -> dt.date:
    days = Counter(_instant(b["startedAt"]).astimezone(JST).date() for b in bookings)
    return days.most_common(1)[0][0]


async def _extract(
    sandbox: SandboxServer,
    store: ParquetStore,
    table: str,
    *,
    day: dt.date | None = None,
    snapshot_date: dt.date | None = None,
    key: str | None = None,
) -> ExtractResult:
    async with AsyncJicooClient(sandbox_settings(sandbox, api_key=key)) as client:
        return await extract_partition(
            client,
            table,
            day=day,
            snapshot_date=snapshot_date,
            store=store,
            run_id="run-42",
        )


def test_bookings_of_a_jst_day_are_exactly_those_starting_that_day(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    everything = asyncio.run(_all_bookings(sandbox))
    day = _busiest_jst_day(everything)
    expected = {
        str(b["uid"]): b
        for b in everything
        if _instant(b["startedAt"]).astimezone(JST).date() == day
    }
    store = ParquetStore(tmp_path)
    result = asyncio.run(_extract(sandbox, store, "bookings", day=day))

    assert result.skipped_reason is None
    assert result.partition_value == day
    assert result.rows == len(expected) > 0
    assert result.total_count == result.rows
    assert result.report.requests >= 1
    table = store.read_partition(BOOKINGS.spec, day)
    assert sorted(str(uid) for uid in table.column("uid").to_pylist()) == sorted(expected)
    assert set(table.column("day").to_pylist()) == {day}
    assert set(table.column("_run_id").to_pylist()) == {"run-42"}
    for row in table.slice(0, 10).to_pylist():
        source = expected[row["uid"]]
        assert row["started_at"] == _instant(source["startedAt"])
        assert row["ended_at"] == _instant(source["endedAt"])
        assert row["status"] == source["status"]
        assert row["name"] == source["name"]
        assert row["event_type_id"] == source["eventTypeId"]
        assert row["time_zone"] == source["timeZone"]
        assert row["location_id"] == source["locationId"]
        assert row["hosts"] == [
            {"user_id": h["userId"], "role": h["role"]}
            for h in source["hosts"]  # type: ignore[attr-defined]
        ]


def test_a_booking_at_half_past_midnight_jst_lands_on_that_jst_day(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    everything = asyncio.run(_all_bookings(sandbox))
    day = _busiest_jst_day(everything)
    moved = str(everything[0]["uid"])
    start = dt.datetime.combine(day, dt.time(0, 30), tzinfo=JST)  # 15:30 UTC the day before
    response = httpx.patch(
        f"{sandbox.base_url}/v1/bookings/{moved}",
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        json={
            "startedAt": start.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "endedAt": (start + dt.timedelta(minutes=30))
            .astimezone(dt.timezone.utc)
            .isoformat()
            .replace("+00:00", "Z"),
        },
    )
    assert response.status_code == 200, response.text
    store = ParquetStore(tmp_path)
    asyncio.run(_extract(sandbox, store, "bookings", day=day))
    asyncio.run(_extract(sandbox, store, "bookings", day=day - dt.timedelta(days=1)))
    on_day = store.read_partition(BOOKINGS.spec, day).column("uid").to_pylist()
    day_before = store.read_partition(BOOKINGS.spec, day - dt.timedelta(days=1))
    assert moved in on_day
    assert moved not in day_before.column("uid").to_pylist()
    # The UTC calendar would have filed it on the day before.
    assert start.astimezone(dt.timezone.utc).date() == day - dt.timedelta(days=1)


def test_contacts_of_a_day_match_each_bookings_contacts(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    everything = asyncio.run(_all_bookings(sandbox))
    day = _busiest_jst_day(everything)
    store = ParquetStore(tmp_path)
    asyncio.run(_extract(sandbox, store, "bookings", day=day))
    result = asyncio.run(_extract(sandbox, store, "booking_contacts", day=day))
    booking_uids = [
        str(u) for u in store.read_partition(BOOKINGS.spec, day).column("uid").to_pylist()
    ]

    async def expected_rows() -> list[tuple[str, int, object, object]]:
        async with AsyncJicooClient(sandbox_settings(sandbox)) as client:
            rows = []
            for uid in booking_uids:
                for index, contact in enumerate(await client.list_booking_contacts(uid)):
                    rows.append((uid, index, contact["email"], contact["name"]))
            return rows

    expected = asyncio.run(expected_rows())
    contacts = store.read_partition(TABLES["booking_contacts"].spec, day)
    got = [
        (r["booking_uid"], r["contact_index"], r["email"], r["name"]) for r in contacts.to_pylist()
    ]
    assert sorted(got) == sorted(expected)
    assert result.rows == len(expected) > 0
    assert set(contacts.column("day").to_pylist()) == {day}
    assert result.report.requests >= len(booking_uids) + 1


def test_fan_out_reports_count_every_request_and_retry(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    everything = asyncio.run(_all_bookings(sandbox))
    day = _busiest_jst_day(everything)
    store = ParquetStore(tmp_path)
    bookings = asyncio.run(_extract(sandbox, store, "bookings", day=day))
    sandbox.set_faults(
        {"rules": [{"kind": "status", "status": 503, "path": "/contacts$", "every": 3}]}
    )
    contacts = asyncio.run(_extract(sandbox, store, "booking_contacts", day=day))
    sandbox.clear_faults()
    listing = bookings.report.requests  # the same listing, unfaulted, runs again for contacts
    served = [e for e in sandbox.requests() if e["path"].endswith("/contacts")]
    calls = contacts.report.requests - listing
    assert contacts.report.retries > 0
    assert contacts.report.server_errors == contacts.report.retries
    assert calls == len(served) == bookings.rows + contacts.report.retries
    assert contacts.report.pages - bookings.report.pages == bookings.rows

    today = sandbox.config.clock().astimezone(JST).date()
    slots = asyncio.run(_extract(sandbox, store, "available_slots", snapshot_date=today))
    event_types = asyncio.run(_extract(sandbox, store, "event_types", snapshot_date=today))
    enabled = store.read_partition(TABLES["event_types"].spec, today).to_pylist()
    windows = -(-DEFAULT_SLOT_HORIZON_DAYS // 7)  # the API answers at most 7 days per call
    asked = sum(1 for r in enabled if r["status"] != "disable") * windows
    assert slots.report.requests == slots.report.pages == asked + 1  # + the event types listing
    assert event_types.rows == len(enabled)


def test_an_unreachable_api_stops_the_range_after_the_first_failure(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        api_key=ApiKey("sk_test_nowhere"), base_url=f"http://127.0.0.1:{port}", max_retries=1
    )
    start = dt.date(2026, 11, 1)
    with pytest.raises(ExtractError) as caught:
        extract_range(
            settings, ["bookings", "users"], start, start + dt.timedelta(days=29), str(tmp_path)
        )
    # One error of the tree, still an ExceptionGroup of the partitions' failures.
    assert isinstance(caught.value, JicooError)
    assert isinstance(caught.value, ExceptionGroup)
    # 30 day partitions + 1 snapshot, all failed; only the ones already under way were tried.
    assert caught.value.message.startswith("GET /v1/")
    assert caught.value.message.endswith(
        f"could not connect to http://127.0.0.1:{port} (All connection attempts failed); "
        "0 of 31 partitions written, the others keep their previous data"
    )
    assert 1 <= len(caught.value.exceptions) <= 2
    assert all(isinstance(exc, TransportError) for exc in caught.value.exceptions)
    assert not list(tmp_path.rglob("*.parquet"))


def test_snapshot_tables_are_extracted(sandbox: SandboxServer, tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    today = sandbox.config.clock().astimezone(JST).date()
    results = {
        table: asyncio.run(_extract(sandbox, store, table, snapshot_date=today))
        for table in (
            "users",
            "schedules",
            "event_types",
            "availability_calendars",
            "available_slots",
        )
    }
    for table, result in results.items():
        assert result.skipped_reason is None, table
        assert store.read_partition(TABLES[table].spec, today).num_rows == result.rows, table
    for table in ("users", "schedules", "event_types"):
        assert results[table].total_count == results[table].rows, table
        assert results[table].rows > 0, table
    users = store.read_partition(TABLES["users"].spec, today).column("uid").to_pylist()
    calendars = store.read_partition(TABLES["availability_calendars"].spec, today)
    assert set(calendars.column("user_id").to_pylist()) <= set(users)
    assert calendars.num_rows > 0
    slots = store.read_partition(TABLES["available_slots"].spec, today)
    event_types = set(
        store.read_partition(TABLES["event_types"].spec, today).column("uid").to_pylist()
    )
    assert set(slots.column("event_type_uid").to_pylist()) <= event_types
    start, _ = day_window(today, JST)
    end, _ = day_window(today + dt.timedelta(days=DEFAULT_SLOT_HORIZON_DAYS), JST)
    assert slots.num_rows > 0
    assert pc.min(slots.column("started_at")).as_py() >= start
    assert pc.max(slots.column("started_at")).as_py() < end


def test_a_403_skips_the_table_and_writes_nothing(sandbox: SandboxServer, tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    today = sandbox.config.clock().astimezone(JST).date()
    for table in ("event_types", "available_slots"):
        result = asyncio.run(_extract(sandbox, store, table, snapshot_date=today, key=LIMITED_KEY))
        assert result.skipped_reason is not None
        assert "403" in result.skipped_reason
        assert result.path is None
        assert result.rows == 0
        assert store.list_partitions(TABLES[table].spec) == []
    # The same key may still read what it is allowed to.
    users = asyncio.run(_extract(sandbox, store, "users", snapshot_date=today, key=LIMITED_KEY))
    assert users.skipped_reason is None
    assert users.rows > 0


def test_partition_arguments_are_checked(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    client = AsyncJicooClient(Settings(api_key=ApiKey("sk_test_x"), base_url="http://127.0.0.1:9"))
    with pytest.raises(ValueError, match="pass day="):
        asyncio.run(
            extract_partition(
                client, "bookings", snapshot_date=dt.date(2024, 1, 1), store=store, run_id=None
            )
        )
    with pytest.raises(ValueError, match="pass snapshot_date="):
        asyncio.run(
            extract_partition(client, "users", day=dt.date(2024, 1, 1), store=store, run_id=None)
        )
    with pytest.raises(ValueError, match="unknown table"):
        asyncio.run(
            extract_partition(client, "nope", day=dt.date(2024, 1, 1), store=store, run_id=None)
        )
    asyncio.run(client.aclose())


def test_extract_range_runs_days_and_snapshots(sandbox: SandboxServer, tmp_path: Path) -> None:
    everything = asyncio.run(_all_bookings(sandbox))
    last = _busiest_jst_day(everything)
    first = last - dt.timedelta(days=2)
    seen: list[ExtractResult] = []
    now = sandbox.config.clock()  # snapshots are dated by its day in the zone (Tokyo)
    results = extract_range(
        sandbox_settings(sandbox),
        ["bookings", "users"],
        first,
        last,
        str(tmp_path),
        seen.append,
        now=now,
    )
    assert [(r.table, r.partition_value) for r in results[:3]] == [
        ("bookings", first),
        ("bookings", first + dt.timedelta(days=1)),
        ("bookings", last),
    ]
    assert [r.table for r in results[3:]] == ["users"]
    assert results[3].partition_value == now.astimezone(JST).date()
    assert sorted(seen, key=lambda r: (r.table, r.partition_value)) == results
    store = ParquetStore(tmp_path)
    assert store.list_partitions(BOOKINGS.spec) == [first, first + dt.timedelta(days=1), last]
    expected = sum(
        1 for b in everything if first <= _instant(b["startedAt"]).astimezone(JST).date() <= last
    )
    assert sum(r.rows for r in results if r.table == "bookings") == expected


def test_chunked_range_matches_day_by_day_with_fewer_requests(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    everything = asyncio.run(_all_bookings(sandbox))
    last = _busiest_jst_day(everything)
    first = last - dt.timedelta(days=4)
    days = [first + dt.timedelta(days=i) for i in range(5)]
    chunked = extract_range(
        sandbox_settings(sandbox),
        ["bookings", "booking_contacts"],
        first,
        last,
        str(tmp_path / "chunked"),
        chunk_days=3,
    )
    assert [(r.table, r.partition_value) for r in chunked] == [
        (table, day) for table in ("booking_contacts", "bookings") for day in days
    ]
    day_store = ParquetStore(tmp_path / "daily")
    daily = [asyncio.run(_extract(sandbox, day_store, "bookings", day=day)) for day in days]
    chunk_store = ParquetStore(tmp_path / "chunked")
    for day in days:
        got = chunk_store.read_partition(BOOKINGS.spec, day)
        want = day_store.read_partition(BOOKINGS.spec, day)
        assert sorted(map(str, got.column("uid").to_pylist())) == sorted(
            map(str, want.column("uid").to_pylist())
        )
        assert set(got.column("day").to_pylist()) <= {day}
        # Pages are held as zero-copy pieces; the file still gets one row group, not one per page.
        path = chunk_store.partition_path(BOOKINGS.spec, day)
        assert pq.ParquetFile(path).metadata.num_row_groups == (1 if got.num_rows else 0)
        contacts = chunk_store.read_partition(TABLES["booking_contacts"].spec, day)
        assert set(contacts.column("booking_uid").to_pylist()) <= set(got.column("uid").to_pylist())
        assert set(contacts.column("day").to_pylist()) <= {day}
    chunked_bookings = [r for r in chunked if r.table == "bookings"]
    assert [r.total_count for r in chunked_bookings] == [r.rows for r in chunked_bookings]
    assert sum(r.rows for r in chunked_bookings) == sum(r.rows for r in daily) > 0
    # Three listings (a 1-day probe, then 3 + 1 days) instead of five, so fewer margins.
    listing_pages = sum(r.report.pages for r in chunked_bookings)
    assert listing_pages < sum(r.report.pages for r in daily)
    contact_calls = sum(r.report.requests for r in chunked if r.table == "booking_contacts")
    assert contact_calls == sum(r.rows for r in chunked_bookings)


def test_a_small_row_budget_narrows_chunks_without_changing_rows(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    everything = asyncio.run(_all_bookings(sandbox))
    last = _busiest_jst_day(everything)
    first = last - dt.timedelta(days=5)
    wide = extract_range(
        sandbox_settings(sandbox), ["bookings"], first, last, str(tmp_path / "wide")
    )
    # A budget of one row per worker: chunks shrink to single days (more listings, same rows).
    narrow = extract_range(
        sandbox_settings(sandbox),
        ["bookings"],
        first,
        last,
        str(tmp_path / "narrow"),
        rows_in_flight=4,
        day_concurrency=4,
    )
    assert [(r.partition_value, r.rows) for r in narrow] == [
        (r.partition_value, r.rows) for r in wide
    ]
    assert sum(r.rows for r in narrow) > 0
    assert sum(r.report.requests for r in narrow) > sum(r.report.requests for r in wide)


def test_a_listing_over_the_chunk_budget_is_halved(sandbox: SandboxServer, tmp_path: Path) -> None:
    everything = asyncio.run(_all_bookings(sandbox))
    last = _busiest_jst_day(everything)
    days = [last - dt.timedelta(days=i) for i in (2, 1, 0)]
    ctx = ExtractContext(
        JST,
        snapshot_date=last,
        extracted_at=dt.datetime.now(dt.timezone.utc),
        run_id=None,
        store=ParquetStore(tmp_path),
        horizon_days=DEFAULT_SLOT_HORIZON_DAYS,
        max_booking_duration=dt.timedelta(days=1),
        fanout=1,
        full=False,
    )
    group = _FeedGroup(BOOKINGS_FEED, [BOOKINGS], stored=False)
    results: list[ExtractResult] = []

    async def run() -> int | None:
        async with AsyncJicooClient(sandbox_settings(sandbox)) as client:
            # A budget of one row: the 3-day listing is refused, then its halves, down to days.
            return await _extract_days(client, ctx, group, days, results.append, 1)

    listed = asyncio.run(run())
    assert sorted(r.partition_value for r in results) == days
    expected = sum(1 for b in everything if _instant(b["startedAt"]).astimezone(JST).date() in days)
    assert sum(r.rows for r in results) == expected > 0
    # Three one-day listings after two refused wider ones: each day carries its own listing.
    assert all(r.report.requests > 0 for r in results)
    assert listed is not None
    assert listed >= expected


def test_a_booking_near_the_margin_warns_once_per_listing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    day = dt.date(2026, 11, 25)
    start, end = day_window(day, JST)
    long_booking = {"uid": "long", "startedAt": start.isoformat(), "endedAt": end.isoformat()}
    short = {"uid": "s", "startedAt": start.isoformat(), "endedAt": start.isoformat()}
    pages = [
        PageBatches(
            BOOKINGS.spec,
            extracted_at=dt.datetime.now(dt.timezone.utc),
            run_id=None,
            partition_value=day,
        ).from_records([{**record, "uid": f"{record['uid']}{i}"}])
        for i, record in enumerate([long_booking, short, long_booking])
    ]
    with caplog.at_level(logging.WARNING, logger="jicoo_connector.extract"):
        split = _split_days(pages, [day], [(start, end)], dt.timedelta(days=1))
    assert [part.rows.num_rows for part in split] == [3]
    warnings = [r for r in caplog.records if "end-filter margin" in r.getMessage()]
    assert len(warnings) == 1
    assert "1 day, 0:00:00" in warnings[0].getMessage()


def test_contacts_of_a_day_without_bookings_are_rewritten_empty_again(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # The sandbox has no bookings this far past its clock's today: the versions are empty, twice.
    day = sandbox.config.clock().astimezone(JST).date() + dt.timedelta(days=60)
    settings = sandbox_settings(sandbox)
    out = str(tmp_path)
    extract_range(settings, ["bookings"], day, day, out, zone=JST.key)
    for _ in range(2):
        (result,) = extract_range(
            settings, ["booking_contacts"], day, day, out, zone=JST.key, feed_from_store=True
        )
        assert result.rows == 0
        assert result.counters == {"contacts_fetched": 0, "contacts_reused": 0}
    assert ParquetStore(out).read_partition(TABLES["booking_contacts"].spec, day).num_rows == 0
