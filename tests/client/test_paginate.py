"""The paging state machine on canned pages: lies are refused, drift is re-walked or fails."""

import asyncio
import math
import random
from collections.abc import Callable, Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jicoo_connector.client import FetchReport
from jicoo_connector.client._paginate import (
    MAX_REWALKS,
    Page,
    PagesResult,
    Prefix,
    Walk,
    parse_page,
    walk_pages,
)
from jicoo_connector.errors import ListingTooLargeError, PaginationError, ProtocolError

PER_PAGE = 10
Body = dict[str, object]
Records = list[dict[str, object]]


def envelope(rows: list[str], page: int, per_page: int = PER_PAGE) -> Body:
    """What an honest server answers for ``page`` of ``rows`` right now."""
    chunk = rows[(page - 1) * per_page : page * per_page]
    pages = math.ceil(len(rows) / per_page)
    body: Body = {
        "data": [{"uid": uid} for uid in chunk],
        "errors": {},
        "totalCount": len(rows),
        "count": len(chunk),
        "currentPage": page,
        "numberOfPages": pages,
    }
    if page < pages:
        body["nextPage"] = page + 1
    return body


def as_page(body: Mapping[str, object], page: int) -> Page[Records]:
    return parse_page(body, number=page, method="GET", endpoint="/v1/bookings")


def walk(
    answer: Callable[[int], Body], *, concurrency: int = 4, report: FetchReport | None = None
) -> PagesResult[Records]:
    async def fetch(page: int) -> Page[Records]:
        await asyncio.sleep(0)  # let the workers interleave
        return as_page(answer(page), page)

    return asyncio.run(
        walk_pages(
            fetch,
            per_page=PER_PAGE,
            concurrency=concurrency,
            report=report or FetchReport(),
            method="GET",
            endpoint="/v1/bookings",
        )
    )


def records(result: PagesResult[Records]) -> Records:
    return [record for page in result.pages for record in page]


def uids(result: PagesResult[Records]) -> list[object]:
    return [record["uid"] for record in records(result)]


ROWS = [f"b{i:03d}" for i in range(47)]


@pytest.mark.parametrize("concurrency", [1, 3, 16])
def test_honest_pages_come_back_once_in_order(concurrency: int) -> None:
    report = FetchReport()
    result = walk(lambda page: envelope(ROWS, page), concurrency=concurrency, report=report)
    assert uids(result) == ROWS
    assert result.total_count == len(ROWS)
    assert (report.pages, report.drift_rewalks) == (5, 0)


@pytest.mark.parametrize(("max_rows", "too_large"), [(46, True), (47, False)])
def test_max_rows_stops_after_page_one(max_rows: int, too_large: bool) -> None:
    asked: list[int] = []

    async def fetch(page: int) -> Page[Records]:
        asked.append(page)
        return as_page(envelope(ROWS, page), page)

    async def run() -> PagesResult[Records]:
        return await walk_pages(
            fetch,
            per_page=PER_PAGE,
            concurrency=4,
            report=FetchReport(),
            method="GET",
            endpoint="/v1/bookings",
            max_rows=max_rows,
        )

    if too_large:
        with pytest.raises(ListingTooLargeError) as caught:
            asyncio.run(run())
        assert (caught.value.total_count, asked) == (len(ROWS), [1])
    else:
        assert uids(asyncio.run(run())) == ROWS


def test_empty_listing_is_one_page() -> None:
    result = walk(lambda page: envelope([], page))
    assert records(result) == []
    assert result.total_count == 0


def lying(change: Callable[[Body, int], None]) -> Callable[[int], Body]:
    def answer(page: int) -> Body:
        body = envelope(ROWS, page)
        change(body, page)
        return body

    return answer


def _set(key: str, value: object, on_page: int | None = None) -> Callable[[Body, int], None]:
    def change(body: Body, page: int) -> None:
        if on_page is None or page == on_page:
            body[key] = value

    return change


def _repeat_page_two(body: Body, page: int) -> None:
    if page == 3:
        body["data"] = envelope(ROWS, 2)["data"]


def _short_page(body: Body, page: int) -> None:
    if page == 2:
        rows = body["data"]
        assert isinstance(rows, list)
        body["data"] = rows[:-1]
        body["count"] = len(rows) - 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("numberOfPages", 9), "numberOfPages 9 does not match"),
        (_set("count", 3, on_page=2), "count 3 but 10 rows"),
        (_set("currentPage", 1, on_page=4), "got currentPage 1"),
        (_repeat_page_two, "repeats page 2"),
        (_short_page, "9 rows where totalCount 47"),
        (_set("nextPage", 6, on_page=5), "the last page points to a next page"),
        (_set("nextPage", 9, on_page=2), "nextPage 9 after page 2"),
    ],
)
def test_lies_are_refused(change: Callable[[Body, int], None], message: str) -> None:
    with pytest.raises(PaginationError, match=message) as caught:
        walk(lying(change))
    assert caught.value.endpoint == "/v1/bookings"


def test_pages_beyond_the_cap_are_refused() -> None:
    first = Page(1, [{"uid": "a"}], ("a",), 10**9, 1, 1, 10**8, 2)
    with pytest.raises(PaginationError, match="exceed the cap"):
        Walk(first, per_page=10, method="GET", endpoint="/v1/bookings")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": {"uid": "a"}}, "'data' is not a list"),
        ({"data": [1]}, "'data' is not a list"),
        ({"data": [], "totalCount": "7"}, "'totalCount' is str"),
        ({"data": [], "totalCount": True}, "'totalCount' is bool"),
        ({"data": [], "totalCount": 0, "count": -1}, "'count'"),
        (
            {
                "data": [{"id": 1}],
                "totalCount": 1,
                "count": 1,
                "currentPage": 1,
                "numberOfPages": 1,
            },
            "a row without a string 'uid'",
        ),
    ],
)
def test_malformed_envelopes_are_protocol_errors(body: Body, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        walk(lambda _page: body)
    assert caught.value.page == 1


class DriftingServer:
    """Rows that change after chosen requests, the way live data changes under a cursor."""

    def __init__(self, rows: list[str], mutations: dict[int, Callable[[list[str]], None]]):
        self.rows = list(rows)
        self.mutations = mutations
        self.requests = 0

    def __call__(self, page: int) -> Body:
        body = envelope(self.rows, page)
        self.requests += 1
        if mutation := self.mutations.get(self.requests):
            mutation(self.rows)
        return body


def test_a_total_that_changes_mid_walk_is_rewalked_and_confirmed() -> None:
    server = DriftingServer(ROWS, {2: lambda rows: rows.insert(0, "a000")})
    report = FetchReport()
    result = walk(server, concurrency=1, report=report)
    assert uids(result) == server.rows
    assert report.drift_rewalks == 2  # one re-walk, then one to confirm it


def test_balanced_delete_and_insert_are_caught_by_the_confirmation() -> None:
    # Delete behind the cursor and insert ahead of it: counts stay right, a row is skipped.
    def shuffle(rows: list[str]) -> None:
        rows.remove("b001")
        rows.append("z999")

    server = DriftingServer(ROWS, {2: lambda rows: rows.insert(0, "a000"), 6: shuffle})
    result = walk(server, concurrency=1)
    assert uids(result) == server.rows


def test_drift_that_never_stops_fails_loudly() -> None:
    fresh = (f"a{n:04d}" for n in range(10**6))

    def insert(rows: list[str]) -> None:
        rows.insert(0, next(fresh))

    server = DriftingServer(ROWS, dict.fromkeys(range(1, 500), insert))
    report = FetchReport()
    with pytest.raises(PaginationError, match="kept changing"):
        walk(server, report=report)
    assert report.drift_rewalks == MAX_REWALKS


mutation = st.tuples(
    st.sampled_from(["insert", "delete", "move"]), st.integers(min_value=0, max_value=10**6)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(min_value=0, max_value=60),
    plan=st.dictionaries(st.integers(min_value=1, max_value=12), mutation, max_size=4),
    concurrency=st.integers(min_value=1, max_value=5),
)
def test_drift_never_yields_duplicates_or_gaps(
    size: int, plan: dict[int, tuple[str, int]], concurrency: int
) -> None:
    """Whatever changes during paging, the answer is the final data set or a PaginationError.

    Mutations stop after the 12th request, so a confirmed walk must see the final rows.
    """
    counter = iter(range(10**9))

    def mutate(kind: str, seed: int) -> Callable[[list[str]], None]:
        def apply(rows: list[str]) -> None:
            rng = random.Random(seed)
            if kind == "insert" or not rows:
                rows.insert(rng.randrange(len(rows) + 1), f"n{next(counter):05d}")
            elif kind == "delete":
                rows.pop(rng.randrange(len(rows)))
            else:
                rows.insert(rng.randrange(len(rows)), rows.pop(rng.randrange(len(rows))))

        return apply

    server = DriftingServer(
        [f"r{i:03d}" for i in range(size)], {n: mutate(*m) for n, m in plan.items()}
    )
    try:
        result = walk(server, concurrency=concurrency)
    except PaginationError:
        return
    assert len(set(uids(result))) == len(records(result)) == result.total_count
    if server.requests > max(plan, default=0):
        assert sorted(map(str, uids(result))) == sorted(server.rows)


# -- prefixes: the leading pages of a listing that runs on past what the caller needs ----------


def prefix_walk(
    answer: Callable[[int], Body],
    prefix: Prefix[Records],
    *,
    first: Page[Records] | None = None,
) -> tuple[PagesResult[Records], list[int], FetchReport]:
    asked: list[int] = []
    report = FetchReport()

    async def fetch(page: int) -> Page[Records]:
        asked.append(page)
        await asyncio.sleep(0)
        return as_page(answer(page), page)

    result = asyncio.run(
        walk_pages(
            fetch,
            per_page=PER_PAGE,
            concurrency=4,
            report=report,
            method="GET",
            endpoint="/v1/bookings",
            first=first,
            prefix=prefix,
        )
    )
    return result, asked, report


def reaches(uid: str) -> Callable[[Records], bool]:
    """A page reaches what the caller needs once it holds ``uid`` or a later row."""
    return lambda rows: not rows or str(rows[-1]["uid"]) >= uid


def test_a_prefix_reads_only_the_pages_it_asks_for() -> None:
    result, asked, report = prefix_walk(
        lambda page: envelope(ROWS, page), Prefix(lambda first: 3, reaches("b025"))
    )
    assert sorted(asked) == [1, 2, 3]
    assert uids(result) == ROWS[:30]
    assert result.total_count == len(ROWS)  # the whole listing's total, not the prefix's
    assert (report.pages, report.drift_rewalks) == (3, 0)


def test_a_short_estimate_reads_on_one_page_at_a_time_until_reached() -> None:
    result, asked, _ = prefix_walk(
        lambda page: envelope(ROWS, page), Prefix(lambda first: 1, reaches("b031"))
    )
    assert asked == [1, 2, 3, 4]
    assert uids(result) == ROWS[:40]


def test_a_prefix_past_the_end_is_the_whole_listing() -> None:
    result, asked, _ = prefix_walk(
        lambda page: envelope(ROWS, page), Prefix(lambda first: 99, reaches("z"))
    )
    assert sorted(asked) == [1, 2, 3, 4, 5]
    assert uids(result) == ROWS


def test_a_given_first_page_is_not_read_again() -> None:
    first = as_page(envelope(ROWS, 1), 1)
    result, asked, report = prefix_walk(
        lambda page: envelope(ROWS, page), Prefix(lambda first: 2, reaches("b015")), first=first
    )
    assert sorted(asked) == [2]
    assert uids(result) == ROWS[:20]
    assert report.pages == 1  # the caller counted page 1 when it read it


def test_a_prefix_still_refuses_lies_and_rewalks_on_drift() -> None:
    with pytest.raises(PaginationError, match="repeats page 2"):
        prefix_walk(lying(_repeat_page_two), Prefix(lambda first: 3, reaches("b025")))
    grown = [*ROWS, "b999"]
    calls: list[int] = []

    def drifting(page: int) -> Body:
        calls.append(page)
        # The listing grows between the first two pages read: totals disagree, walk again.
        return envelope(grown if len(calls) > 1 else ROWS, page)

    result, asked, report = prefix_walk(drifting, Prefix(lambda first: 2, reaches("b015")))
    assert uids(result) == ROWS[:20]
    assert asked.count(1) >= 2
    assert report.drift_rewalks >= 1
