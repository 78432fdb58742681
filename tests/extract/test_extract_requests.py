"""Requests equal pages: a full-window extract asks once for each page of data, plus the first
page of each listing that tells its size, and writes every booking exactly once."""

import datetime as dt
import math
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from jicoo_connector.errors import ProtocolError
from jicoo_connector.extract import day_window, extract_range
from jicoo_connector.extract.catalog.bookings import BOOKINGS, _split_days
from jicoo_connector.pages import PageBatches
from jicoo_connector.settings import ApiKey, Settings
from jicoo_connector.tables import UTC_MS
from jicoo_sandbox.server import SandboxServer

JST = ZoneInfo("Asia/Tokyo")
PER_PAGE = 10


def _settings(sandbox: SandboxServer) -> Settings:
    return Settings(
        api_key=ApiKey(sandbox.api_key),
        base_url=sandbox.base_url,
        rate_limit=1000,
        burst=1000,
        per_page=PER_PAGE,
    )


def _listings(log: list[dict[str, object]]) -> dict[str, list[tuple[int, int]]]:
    """(page, perPage) asked, by the startedAt of the bookings listing they belong to."""
    asked: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for entry in log:
        if entry["path"] != "/v1/bookings":
            continue
        query = parse_qs(str(entry["query"]))
        asked[query["startedAt"][0]].append((int(query["page"][0]), int(query["perPage"][0])))
    return asked


def _total(sandbox: SandboxServer, start: dt.datetime, end: dt.datetime) -> int:
    """What the sandbox says starts in [start, end) (every booking ends within a day)."""
    stamp = "%Y-%m-%dT%H:%M:%S.000Z"
    params = {"perPage": "1", "startedAt": start.strftime(stamp)}
    params["endedAt"] = (end + dt.timedelta(days=1)).strftime(stamp)
    with httpx.Client(base_url=sandbox.base_url, headers={"X-Jicoo-Api-Key": sandbox.api_key}) as c:
        before_end = c.get("/v1/bookings", params=params).json()["totalCount"]
        params["startedAt"] = end.strftime(stamp)
        after_end = c.get("/v1/bookings", params=params).json()["totalCount"]
    return int(before_end) - int(after_end)


def test_a_full_window_reads_each_page_once_and_no_page_past_a_chunk(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    today = sandbox.config.clock().astimezone(JST).date()
    first, last = today - dt.timedelta(days=62), today + dt.timedelta(days=32)
    window_start, window_end = day_window(first, JST.key)[0], day_window(last, JST.key)[1]
    expected = _total(sandbox, window_start, window_end)
    sandbox.clear_requests()
    results = extract_range(
        _settings(sandbox), ["bookings"], first, last, str(tmp_path), zone=JST.key
    )
    log = sandbox.requests()

    written = ds.dataset(tmp_path / "bookings", partitioning="hive").to_table()
    total = sum(r.rows for r in results)
    assert written.num_rows == total == pc.count_distinct(written["uid"]).as_py()
    assert total == expected > 10 * PER_PAGE  # every booking of the window, once

    asked = _listings(log)
    starts = sorted(asked)
    started = written["started_at"]
    for index, start in enumerate(starts):
        pages = [page for page, per_page in asked[start] if per_page == PER_PAGE]
        counts = [page for page, per_page in asked[start] if per_page != PER_PAGE]
        assert len(pages) == len(set(pages)), f"a page of the listing at {start} read twice"
        if not pages:  # the run's end: only counted, with one page of one row
            assert counts == [1]
            assert dt.datetime.fromisoformat(start) == window_end
            continue
        until = starts[index + 1] if index + 1 < len(starts) else window_end.isoformat()
        lower, upper = (pa.scalar(dt.datetime.fromisoformat(t), UTC_MS) for t in (start, until))
        rows = pc.sum(pc.and_(pc.greater_equal(started, lower), pc.less(started, upper))).as_py()
        # The listing's own rows and the first row past them: no page beyond that one.
        assert sorted(pages) == list(range(1, math.ceil((rows + 1) / PER_PAGE) + 1))
    requests = sum(len(pages) for pages in asked.values())
    assert requests == len(log)
    assert requests <= math.ceil(total / PER_PAGE) + len(asked)


def test_pages_not_sorted_by_start_are_refused() -> None:
    day = dt.date(2026, 11, 25)
    start, end = day_window(day, JST.key)
    decoder = PageBatches(
        BOOKINGS.spec, extracted_at=dt.datetime.now(dt.UTC), run_id=None, partition_value=day
    )
    late = {"uid": "late", "startedAt": (end - dt.timedelta(hours=1)).isoformat()}
    early = {"uid": "early", "startedAt": start.isoformat()}
    pages = [decoder.from_records([late]), decoder.from_records([early])]
    with pytest.raises(ProtocolError, match="not sorted by startedAt"):
        _split_days(pages, [day], [(start, end)], dt.timedelta(days=1))
