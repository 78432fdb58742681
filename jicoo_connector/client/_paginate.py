"""Offset paging as a small state machine: page 1 -> totalCount -> the other pages in any order.

``Walk`` checks pages against each other (refusing lies with PaginationError and noticing
drift); ``walk_pages`` drives walks concurrently and re-walks on drift. No HTTP here.
"""

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from jicoo_connector.client._report import FetchReport
from jicoo_connector.errors import PaginationError, ProtocolError

__all__ = [
    "MAX_PAGES",
    "MAX_REWALKS",
    "ListingTooLargeError",
    "Page",
    "Walk",
    "WalkResult",
    "parse_page",
    "walk_pages",
]

logger = logging.getLogger("jicoo_connector.client")

# 10,000 pages of 100 is a million rows: beyond that a listing is a loop, not data.
MAX_PAGES = 10_000
# Re-walks after drift before we give up loudly; each costs a whole listing. Four leaves room
# for one drifted walk, a clean one and its confirmation, plus a second burst of drift.
MAX_REWALKS = 4

Record = dict[str, object]
FetchPage = Callable[[int], Awaitable[Mapping[str, object]]]


@dataclass(frozen=True, slots=True)
class Page:
    number: int  # the page we asked for
    records: list[Record]
    total_count: int
    count: int
    current_page: int
    number_of_pages: int
    next_page: int | None


class ListingTooLargeError(Exception):
    """Page 1 announced more rows than the caller's ``max_rows``; no other page was fetched.
    Not an API failure: the caller asked to be told, to list a narrower window instead."""

    def __init__(self, endpoint: str, total_count: int, max_rows: int) -> None:
        super().__init__(f"GET {endpoint}: {total_count} rows, more than max_rows {max_rows}")
        self.total_count = total_count
        self.max_rows = max_rows


@dataclass(frozen=True, slots=True)
class WalkResult:
    records: list[Record]
    total_count: int
    drift: str | None  # why this walk cannot be trusted, or None when it is clean


def _int_field(body: Mapping[str, object], name: str, error: Callable[[str], ProtocolError]) -> int:
    value = body.get(name)
    if type(value) is not int or value < 0:
        raise error(f"'{name}' is {type(value).__name__}, not a non-negative integer")
    return value


def parse_page(body: Mapping[str, object], *, number: int, method: str, endpoint: str) -> Page:
    """Read one list answer's envelope; ProtocolError if it is not a page."""

    def error(why: str) -> ProtocolError:
        return ProtocolError(
            f"{method} {endpoint} page {number}: {why}",
            method=method,
            endpoint=endpoint,
            page=number,
        )

    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise error("'data' is not a list of objects")
    next_page = body.get("nextPage")
    if next_page is not None and (type(next_page) is not int or next_page < 1):
        raise error("'nextPage' is neither absent, null nor a page number")
    return Page(
        number=number,
        records=data,
        total_count=_int_field(body, "totalCount", error),
        count=_int_field(body, "count", error),
        current_page=_int_field(body, "currentPage", error),
        number_of_pages=_int_field(body, "numberOfPages", error),
        next_page=next_page,
    )


class Walk:
    """One pass over a listing. Feed it page 1, then the others in any order (``add``); call
    ``finish`` once every page is in. Lies raise PaginationError at once; drift (the data
    changed under us) is recorded so the caller can walk again.

    >>> first = Page(1, [{"uid": "a"}], 1, 1, 1, 1, None)
    >>> Walk(first, per_page=20, method="GET", endpoint="/v1/x").finish().records
    [{'uid': 'a'}]
    """

    def __init__(
        self,
        first: Page,
        *,
        per_page: int,
        method: str,
        endpoint: str,
        key: str = "uid",
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.per_page = per_page
        self.method = method
        self.endpoint = endpoint
        self.key = key
        self.first = first
        self.drift: str | None = None
        self._pages: dict[int, Page] = {}
        self._by_uids: dict[tuple[str, ...], int] = {}
        expected = math.ceil(first.total_count / per_page)
        if first.number_of_pages != expected and not (
            first.total_count == 0 and first.number_of_pages == 1
        ):
            raise self._lie(
                1,
                f"numberOfPages {first.number_of_pages} does not match totalCount "
                f"{first.total_count} at {per_page} per page",
            )
        if first.number_of_pages > max_pages:
            raise self._lie(1, f"{first.number_of_pages} pages exceed the cap of {max_pages}")
        self.add(first)

    @property
    def number_of_pages(self) -> int:
        return self.first.number_of_pages

    def remaining(self) -> list[int]:
        return [n for n in range(1, self.number_of_pages + 1) if n not in self._pages]

    def _lie(self, number: int, why: str) -> PaginationError:
        return PaginationError(
            f"{self.method} {self.endpoint} page {number}: {why}",
            method=self.method,
            endpoint=self.endpoint,
            page=number,
        )

    def add(self, page: Page) -> None:
        number = page.number
        if number in self._pages:
            raise self._lie(number, "fetched twice in one walk")
        if page.current_page != number:
            raise self._lie(number, f"asked for page {number}, got currentPage {page.current_page}")
        if page.count != len(page.records):
            raise self._lie(number, f"count {page.count} but {len(page.records)} rows in data")
        if len(page.records) > self.per_page:
            raise self._lie(number, f"{len(page.records)} rows, more than perPage {self.per_page}")
        uids = tuple(self._uid(number, record) for record in page.records)
        self._pages[number] = page
        first = self.first
        if (page.total_count, page.number_of_pages) != (first.total_count, first.number_of_pages):
            self.drift = self.drift or (
                f"totalCount went from {first.total_count} to {page.total_count} by page {number}"
            )
            return
        if uids and (twin := self._by_uids.get(uids)) is not None:
            raise self._lie(number, f"repeats page {twin} row for row")
        if uids:
            self._by_uids[uids] = number
        last = first.number_of_pages
        expected = min(self.per_page, max(0, first.total_count - (number - 1) * self.per_page))
        if len(page.records) != expected:
            raise self._lie(
                number,
                f"{len(page.records)} rows where totalCount {first.total_count} at "
                f"{self.per_page} per page means {expected}",
            )
        if number >= last and page.next_page is not None:
            raise self._lie(number, f"the last page points to a next page ({page.next_page})")
        if number < last and page.next_page not in (None, number + 1):
            raise self._lie(number, f"nextPage {page.next_page} after page {number}")

    def _uid(self, number: int, record: Record) -> str:
        uid = record.get(self.key)
        if not isinstance(uid, str) or not uid:
            raise self._lie(number, f"a row without a string '{self.key}'")
        return uid

    def finish(self) -> WalkResult:
        """All rows in page order, and whether the walk drifted (duplicates, gaps, totals)."""
        if missing := self.remaining():
            raise self._lie(missing[0], "never fetched")  # a driver bug, not a server lie
        total = self.first.total_count
        records: list[Record] = []
        seen: set[str] = set()
        drift = self.drift
        for number in range(1, self.number_of_pages + 1):
            for record in self._pages[number].records:
                uid = self._uid(number, record)
                if uid in seen:
                    drift = drift or f"a row appeared twice (page {number}): rows moved"
                    continue
                seen.add(uid)
                records.append(record)
        if drift is None and len(records) > total:
            raise self._lie(self.number_of_pages, f"{len(records)} rows but totalCount {total}")
        if drift is None and len(records) < total:
            drift = f"{len(records)} unique rows of totalCount {total}: rows moved"
        return WalkResult(records, total, drift)


async def _fetch_rest(
    walk: Walk,
    fetch: FetchPage,
    concurrency: int,
    report: FetchReport,
) -> None:
    numbers: Iterator[int] = iter(walk.remaining())

    async def worker() -> None:
        # One shared iterator: each page number is taken by exactly one worker.
        for number in numbers:
            if walk.drift is not None:  # this walk is void; stop spending requests on it
                return
            body = await fetch(number)
            report.pages += 1
            walk.add(parse_page(body, number=number, method=walk.method, endpoint=walk.endpoint))

    workers = min(concurrency, len(walk.remaining()))
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
    except ExceptionGroup as failures:
        # Surface the first real error rather than a group: callers catch JicooError.
        first = failures.exceptions[0]
        first.__suppress_context__ = True
        raise first  # noqa: B904 - the group adds nothing to the first failure


async def walk_pages(
    fetch: FetchPage,
    *,
    per_page: int,
    concurrency: int,
    report: FetchReport,
    method: str,
    endpoint: str,
    key: str = "uid",
    max_rewalks: int = MAX_REWALKS,
    max_pages: int = MAX_PAGES,
    max_rows: int | None = None,
) -> WalkResult:
    """Every row of a listing exactly once, or PaginationError. Page 1 first (it tells how
    many pages there are), then up to ``concurrency`` pages at a time.

    A walk that drifted is repeated from page 1, at most ``max_rewalks`` times. Once drift was
    seen, one clean walk is not enough: a deletion behind the cursor balanced by an insertion
    ahead of it leaves counts intact but skips a row, so two consecutive clean walks must
    return the same rows.

    With ``max_rows``, a listing whose page 1 announces more rows raises ListingTooLargeError
    before any other page is fetched.
    """
    reason = ""
    drift_seen = False
    previous: tuple[object, ...] | None = None
    for walk_number in range(max_rewalks + 1):
        if walk_number:
            report.drift_rewalks += 1
            logger.info("%s %s: re-walking (%s)", method, endpoint, reason)
        body = await fetch(1)
        report.pages += 1
        first = parse_page(body, number=1, method=method, endpoint=endpoint)
        if max_rows is not None and first.total_count > max_rows:
            raise ListingTooLargeError(endpoint, first.total_count, max_rows)
        walk = Walk(
            first, per_page=per_page, method=method, endpoint=endpoint, key=key, max_pages=max_pages
        )
        await _fetch_rest(walk, fetch, concurrency, report)
        result = walk.finish() if walk.drift is None else None
        if result is None or result.drift is not None:
            drift_seen = True
            previous = None
            reason = walk.drift or (result.drift if result else None) or "drift"
            continue
        if not drift_seen:
            return result
        signature = tuple(record[key] for record in result.records)
        if signature == previous:
            return result
        previous = signature
        reason = "confirming the clean walk that followed drift"
    raise PaginationError(
        f"{method} {endpoint}: the data kept changing during paging ({reason}); "
        f"gave up after {max_rewalks} re-walks",
        method=method,
        endpoint=endpoint,
    )
