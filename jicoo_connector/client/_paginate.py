"""Offset paging as a small state machine: page 1 -> totalCount -> the other pages in any order.

``Walk`` checks pages against each other (refusing lies with PaginationError and noticing
drift); ``walk_pages`` drives walks concurrently and re-walks on drift, over a whole listing or
over the leading pages a ``Prefix`` asks for. No HTTP here.
"""

import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import anyio

from jicoo_connector._compat import ExceptionGroup
from jicoo_connector.client._report import FetchReport
from jicoo_connector.errors import ListingTooLargeError, PaginationError, ProtocolError

__all__ = [
    "MAX_PAGES",
    "MAX_REWALKS",
    "Page",
    "PageDecoder",
    "PagesResult",
    "Prefix",
    "Walk",
    "page_of",
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
# What a page's rows are held as: API records, or whatever a caller's decoder made of them
# (an Arrow batch holds a page in a tenth of the memory of its dicts).
R = TypeVar("R")


R_co = TypeVar("R_co", covariant=True)


class PageDecoder(Protocol[R_co]):
    """Makes a listing's rows from its answers' raw bodies, e.g. straight into Arrow.

    ``decode`` returns (the envelope's members, the rows, each row's key) or None when it
    cannot read that body; the client then parses the body as JSON with all its safety checks
    and calls ``from_records`` with the records. A decoder must refuse (None) anything it
    cannot represent exactly as ``from_records`` would.
    """

    def decode(self, raw: bytes) -> tuple[Mapping[str, object], R_co, Sequence[object]] | None: ...

    def from_records(self, records: list[Record]) -> R_co: ...


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    number: int  # the page we asked for
    rows: R
    uids: tuple[str, ...]  # each row's key, in order: all the paging checks need of a row
    total_count: int
    count: int
    current_page: int
    number_of_pages: int
    next_page: int | None


@dataclass(frozen=True, slots=True)
class PagesResult(Generic[R]):
    """A clean walk: each page's rows in page order (every key exactly once overall)."""

    pages: list[R]
    uids: list[str]
    total_count: int


@dataclass(frozen=True, slots=True)
class Prefix(Generic[R]):
    """The leading part of a listing that a caller needs, when the listing runs on past it (a
    listing sorted by start read only up to an instant). ``pages(first page)`` says how many
    pages to read at once; after them, pages are read one at a time until ``reached`` holds for
    the last page's rows or the listing ends, so a short estimate costs time, not rows."""

    pages: Callable[[Page[R]], int]
    reached: Callable[[R], bool]


def _int_field(body: Mapping[str, object], name: str, error: Callable[[str], ProtocolError]) -> int:
    value = body.get(name)
    if type(value) is not int or value < 0:
        raise error(f"'{name}' is {type(value).__name__}, not a non-negative integer")
    return value


def page_of(
    envelope: Mapping[str, object],
    rows: R,
    keys: Sequence[object],
    *,
    number: int,
    method: str,
    endpoint: str,
    key: str = "uid",
) -> Page[R]:
    """A page from a list answer's envelope (``totalCount``, ``count``, ``currentPage``,
    ``numberOfPages``, ``nextPage``), its rows and each row's ``key`` value. ProtocolError if
    the envelope is not a page, PaginationError if a row has no string key."""

    def error(why: str) -> ProtocolError:
        return ProtocolError(
            f"{method} {endpoint} page {number}: {why}",
            method=method,
            endpoint=endpoint,
            page=number,
        )

    next_page = envelope.get("nextPage")
    if next_page is not None and (type(next_page) is not int or next_page < 1):
        raise error("'nextPage' is neither absent, null nor a page number")
    total_count = _int_field(envelope, "totalCount", error)
    count = _int_field(envelope, "count", error)
    current_page = _int_field(envelope, "currentPage", error)
    number_of_pages = _int_field(envelope, "numberOfPages", error)
    uids: list[str] = []
    for value in keys:
        if not isinstance(value, str) or not value:
            raise PaginationError(
                f"{method} {endpoint} page {number}: a row without a string '{key}'",
                method=method,
                endpoint=endpoint,
                page=number,
            )
        uids.append(value)
    return Page(
        number=number,
        rows=rows,
        uids=tuple(uids),
        total_count=total_count,
        count=count,
        current_page=current_page,
        number_of_pages=number_of_pages,
        next_page=next_page,
    )


def parse_page(
    body: Mapping[str, object], *, number: int, method: str, endpoint: str, key: str = "uid"
) -> Page[list[Record]]:
    """Read one list answer (JSON already parsed); ProtocolError if it is not a page."""
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ProtocolError(
            f"{method} {endpoint} page {number}: 'data' is not a list of objects",
            method=method,
            endpoint=endpoint,
            page=number,
        )
    keys = [record.get(key) for record in data]
    return page_of(body, data, keys, number=number, method=method, endpoint=endpoint, key=key)


class Walk(Generic[R]):
    """One pass over a listing. Feed it page 1, then the others in any order (``add``); call
    ``finish`` once every page is in. Lies raise PaginationError at once; drift (the data
    changed under us) is recorded so the caller can walk again.

    >>> first = Page(1, [{"uid": "a"}], ("a",), 1, 1, 1, 1, None)
    >>> Walk(first, per_page=20, method="GET", endpoint="/v1/x").finish()[0].pages
    [[{'uid': 'a'}]]
    """

    def __init__(
        self,
        first: Page[R],
        *,
        per_page: int,
        method: str,
        endpoint: str,
        max_pages: int = MAX_PAGES,
        upto: int | None = None,
    ) -> None:
        self.per_page = per_page
        self.method = method
        self.endpoint = endpoint
        self.first = first
        self.drift: str | None = None
        self._pages: dict[int, Page[R]] = {}
        self._by_uids: dict[tuple[str, ...], int] = {}
        self._max_pages = max_pages
        expected = math.ceil(first.total_count / per_page)
        if first.number_of_pages != expected and not (
            first.total_count == 0 and first.number_of_pages == 1
        ):
            raise self._lie(
                1,
                f"numberOfPages {first.number_of_pages} does not match totalCount "
                f"{first.total_count} at {per_page} per page",
            )
        # The walk reads pages 1..upto: the whole listing unless a prefix is enough.
        whole = first.number_of_pages
        self.upto = whole if upto is None else max(1, min(upto, whole))
        self._check_cap()
        self.add(first)

    @property
    def number_of_pages(self) -> int:
        return self.first.number_of_pages

    def _check_cap(self) -> None:
        if self.upto > self._max_pages:
            raise self._lie(1, f"{self.upto} pages exceed the cap of {self._max_pages}")

    def extend(self) -> int | None:
        """Read one page more of a prefix: its number, or None at the listing's end."""
        if self.upto >= self.number_of_pages:
            return None
        self.upto += 1
        self._check_cap()
        return self.upto

    def last_rows(self) -> R:
        """The rows of the last page read so far (pages 1..upto are all in)."""
        return self._pages[self.upto].rows

    def remaining(self) -> list[int]:
        return [n for n in range(1, self.upto + 1) if n not in self._pages]

    def _lie(self, number: int, why: str) -> PaginationError:
        return PaginationError(
            f"{self.method} {self.endpoint} page {number}: {why}",
            method=self.method,
            endpoint=self.endpoint,
            page=number,
        )

    def add(self, page: Page[R]) -> None:
        number = page.number
        if number in self._pages:
            raise self._lie(number, "fetched twice in one walk")
        if page.current_page != number:
            raise self._lie(number, f"asked for page {number}, got currentPage {page.current_page}")
        rows = len(page.uids)
        if page.count != rows:
            raise self._lie(number, f"count {page.count} but {rows} rows in data")
        if rows > self.per_page:
            raise self._lie(number, f"{rows} rows, more than perPage {self.per_page}")
        uids = page.uids
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
        if rows != expected:
            raise self._lie(
                number,
                f"{rows} rows where totalCount {first.total_count} at "
                f"{self.per_page} per page means {expected}",
            )
        if number >= last and page.next_page is not None:
            raise self._lie(number, f"the last page points to a next page ({page.next_page})")
        if number < last and page.next_page not in (None, number + 1):
            raise self._lie(number, f"nextPage {page.next_page} after page {number}")

    def finish(self) -> tuple[PagesResult[R], str | None]:
        """Every page's rows in page order (of pages 1..upto), and why the walk drifted
        (duplicates, gaps, totals) or None; a drifted result must not be used."""
        if missing := self.remaining():
            raise self._lie(missing[0], "never fetched")  # a driver bug, not a server lie
        total = self.first.total_count
        uids: list[str] = []
        seen: set[str] = set()
        drift = self.drift
        for number in range(1, self.upto + 1):
            for uid in self._pages[number].uids:
                if uid in seen:
                    drift = drift or f"a row appeared twice (page {number}): rows moved"
                seen.add(uid)
                uids.append(uid)
        # A prefix holds full pages only (add() checks each); the total is the whole listing's.
        whole = self.upto == self.number_of_pages
        if whole and drift is None and len(uids) > total:
            raise self._lie(self.number_of_pages, f"{len(uids)} rows but totalCount {total}")
        if whole and drift is None and len(uids) < total:
            drift = f"{len(uids)} unique rows of totalCount {total}: rows moved"
        pages = [self._pages[number].rows for number in range(1, self.upto + 1)]
        return PagesResult(pages, uids, total), drift


FetchPageObject = Callable[[int], Awaitable[Page[R]]]


async def _fetch_rest(
    walk: Walk[R],
    fetch: FetchPageObject[R],
    concurrency: int,
    report: FetchReport,
) -> None:
    numbers: Iterator[int] = iter(walk.remaining())

    async def worker() -> None:
        # One shared iterator: each page number is taken by exactly one worker.
        for number in numbers:
            if walk.drift is not None:  # this walk is void; stop spending requests on it
                return
            page = await fetch(number)
            report.pages += 1
            walk.add(page)

    workers = min(concurrency, len(walk.remaining()))
    try:
        async with anyio.create_task_group() as group:
            for _ in range(workers):
                group.start_soon(worker)
    except ExceptionGroup as failures:
        # Surface the first real error rather than a group: callers catch JicooError.
        first = failures.exceptions[0]
        first.__suppress_context__ = True
        raise first  # noqa: B904 - the group adds nothing to the first failure


async def _extend(
    walk: Walk[R], fetch: FetchPageObject[R], reached: Callable[[R], bool], report: FetchReport
) -> None:
    """Read a prefix on, one page at a time, until it reaches what the caller needs."""
    while walk.drift is None and not reached(walk.last_rows()):
        number = walk.extend()
        if number is None:
            return
        page = await fetch(number)
        report.pages += 1
        walk.add(page)


@dataclass(frozen=True, slots=True)
class _Plan(Generic[R]):
    """How each walk of one listing goes (see walk_pages)."""

    per_page: int
    concurrency: int
    method: str
    endpoint: str
    max_pages: int
    max_rows: int | None
    prefix: Prefix[R] | None


async def _walk_once(
    plan: _Plan[R], fetch: FetchPageObject[R], page_one: Page[R], report: FetchReport
) -> tuple[PagesResult[R] | None, str | None]:
    """One pass from page 1: its result, and why it drifted (None: clean)."""
    if plan.max_rows is not None and page_one.total_count > plan.max_rows:
        raise ListingTooLargeError(plan.endpoint, page_one.total_count, plan.max_rows)
    walk = Walk(
        page_one,
        per_page=plan.per_page,
        method=plan.method,
        endpoint=plan.endpoint,
        max_pages=plan.max_pages,
        upto=plan.prefix.pages(page_one) if plan.prefix is not None else None,
    )
    await _fetch_rest(walk, fetch, plan.concurrency, report)
    if plan.prefix is not None:
        await _extend(walk, fetch, plan.prefix.reached, report)
    if walk.drift is not None:
        return None, walk.drift
    return walk.finish()


async def walk_pages(
    fetch: FetchPageObject[R],
    *,
    per_page: int,
    concurrency: int,
    report: FetchReport,
    method: str,
    endpoint: str,
    max_rewalks: int = MAX_REWALKS,
    max_pages: int = MAX_PAGES,
    max_rows: int | None = None,
    first: Page[R] | None = None,
    prefix: Prefix[R] | None = None,
) -> PagesResult[R]:
    """Every row of a listing exactly once, or PaginationError. ``fetch(n)`` returns page
    ``n`` already decoded (see ``page_of``). Page 1 first (it tells how many pages there are),
    then up to ``concurrency`` pages at a time. ``first`` is a page 1 the caller already read
    (the first walk uses it; a re-walk reads page 1 again). With ``prefix``, only the leading
    pages it asks for are read and checked, and the result holds those.

    A walk that drifted is repeated from page 1, at most ``max_rewalks`` times. Once drift was
    seen, one clean walk is not enough: a deletion behind the cursor balanced by an insertion
    ahead of it leaves counts intact but skips a row, so two consecutive clean walks must
    return the same rows.

    With ``max_rows``, a listing whose page 1 announces more rows raises ListingTooLargeError
    before any other page is fetched.
    """
    plan = _Plan(per_page, concurrency, method, endpoint, max_pages, max_rows, prefix)
    reason = ""
    drift_seen = False
    previous: list[str] | None = None
    for walk_number in range(max_rewalks + 1):
        if walk_number:
            report.drift_rewalks += 1
            logger.info("%s %s: re-walking (%s)", method, endpoint, reason)
        if first is None or walk_number:
            first = await fetch(1)
            report.pages += 1
        result, drift = await _walk_once(plan, fetch, first, report)
        if result is None or drift is not None:
            drift_seen = True
            previous = None
            reason = drift or "drift"
            continue
        if not drift_seen or result.uids == previous:
            return result
        previous = result.uids
        reason = "confirming the clean walk that followed drift"
    raise PaginationError(
        f"{method} {endpoint}: the data kept changing during paging ({reason}); "
        f"gave up after {max_rewalks} re-walks",
        method=method,
        endpoint=endpoint,
    )
