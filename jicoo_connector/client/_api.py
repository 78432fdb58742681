"""AsyncJicooClient (typed verb_noun endpoint methods) and JicooClient, its synchronous facade.

The only owner of URL paths; every id is quoted into them. Imports no tables/extract/changes.
"""

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import TypeVar
from urllib.parse import quote

from typing_extensions import Self

from jicoo_connector.client._http import HttpCore, json_answer
from jicoo_connector.client._paginate import (
    Page,
    PageDecoder,
    Prefix,
    page_of,
    parse_page,
    walk_pages,
)
from jicoo_connector.client._ratelimit import RateLimiter, shared_limiter
from jicoo_connector.client._report import FetchReport, Listing, PagedListing
from jicoo_connector.errors import AuthenticationError, ConfigError, ProtocolError
from jicoo_connector.redaction import redact_url
from jicoo_connector.settings import Settings

__all__ = ["AVAILABLE_SLOTS_WINDOW", "AsyncJicooClient", "JicooClient"]

# The API refuses available-schedule periods longer than this (a comment in public client
# code; the sandbox answers 422), so longer ranges are split.
AVAILABLE_SLOTS_WINDOW = dt.timedelta(days=7)
BOOKING_STATUSES = frozenset({"open", "cancel"})
BOOKING_ORDERS = frozenset({"startedAt", "createdAt"})  # the field (README: names are swapped)
BOOKING_SORTS = frozenset({"asc", "desc"})  # the direction

_T = TypeVar("_T")
_R = TypeVar("_R")


def _segment(value: str, what: str) -> str:
    """``value`` as one path segment. Empty or dot segments would silently address another
    resource (``/v1/bookings/`` is the listing, ``..`` climbs), so they are refused."""
    return quote(_require_id(value, what), safe="")


def _require_id(value: str, what: str) -> str:
    if value in ("", ".", ".."):
        raise ConfigError(f"{what} must be a non-empty id, got {value!r}")
    return value


def format_instant(value: dt.datetime, what: str) -> str:
    """A timezone-aware datetime as the API's UTC form, ``2024-03-01T20:00:00.000Z``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    utc = value.astimezone(dt.timezone.utc)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _data_object(body: Mapping[str, object], method: str, endpoint: str) -> dict[str, object]:
    data = body.get("data")
    if not isinstance(data, dict):
        raise ProtocolError(
            f"{method} {endpoint}: 'data' is not an object", method=method, endpoint=endpoint
        )
    return data


def _data_objects(
    body: Mapping[str, object], method: str, endpoint: str
) -> list[dict[str, object]]:
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ProtocolError(
            f"{method} {endpoint}: 'data' is not a list of objects",
            method=method,
            endpoint=endpoint,
        )
    return data


class _Records:
    """The plain PageDecoder: every answer parsed as JSON, rows kept as the API's records."""

    def decode(self, raw: bytes) -> None:
        return None

    def from_records(self, records: list[dict[str, object]]) -> list[dict[str, object]]:
        return records


_RECORDS = _Records()


def _booking_params(
    started_at: dt.datetime | None,
    ended_at: dt.datetime | None,
    status: str | None,
    order: str,
    sort: str,
) -> dict[str, str]:
    if status is not None and status not in BOOKING_STATUSES:
        raise ConfigError(f"status must be one of {sorted(BOOKING_STATUSES)}, got {status!r}")
    if order not in BOOKING_ORDERS:
        raise ConfigError(f"order must be one of {sorted(BOOKING_ORDERS)}, got {order!r}")
    if sort not in BOOKING_SORTS:
        raise ConfigError(f"sort must be one of {sorted(BOOKING_SORTS)}, got {sort!r}")
    params = {"order": order, "sort": sort}
    if started_at is not None:
        params["startedAt"] = format_instant(started_at, "started_at")
    if ended_at is not None:
        params["endedAt"] = format_instant(ended_at, "ended_at")
    if status is not None:
        params["status"] = status
    return params


class AsyncJicooClient:
    """The Jicoo API as typed async methods, with retries, rate limiting and safe paging.

    >>> async def main(settings: Settings) -> int:
    ...     async with AsyncJicooClient(settings) as client:
    ...         listing = await client.list_bookings(status="open")
    ...         return len(listing.records)

    ``limiter`` defaults to ``shared_limiter(settings)``: every client of one account in the
    process shares one budget.
    ``report`` accumulates every call's FetchReport over the client's life.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.limiter = limiter if limiter is not None else shared_limiter(settings)
        self.report = FetchReport()
        self._http = HttpCore(settings, limiter=self.limiter)
        self._key_check = asyncio.Lock()
        # None: not asked yet; True: the key reads bookings; else the refusal, raised again.
        self._key_reads: bool | AuthenticationError | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"AsyncJicooClient(base_url={redact_url(self.settings.base_url)!r})"

    # -- plumbing ---------------------------------------------------------------------------

    async def _measured(
        self, call: Callable[[FetchReport], Awaitable[_T]], into: FetchReport | None = None
    ) -> tuple[_T, FetchReport]:
        report = FetchReport()
        started = time.perf_counter()
        try:
            return await call(report), report
        finally:
            report.elapsed_s = time.perf_counter() - started
            self.report.merge(report)
            if into is not None:  # also when the call failed: its requests were spent
                into.merge(report)

    async def _list(
        self,
        endpoint: str,
        params: Mapping[str, str] | None = None,
        *,
        max_rows: int | None = None,
    ) -> Listing:
        paged = await self._list_decoded(endpoint, params or {}, _RECORDS, max_rows=max_rows)
        records = [record for page in paged.pages for record in page]
        return Listing(records, paged.total_count, paged.report)

    def _fetcher(
        self,
        endpoint: str,
        params: Mapping[str, str],
        decoder: PageDecoder[_R],
        report: FetchReport,
        per_page: int,
    ) -> Callable[[int], Awaitable[Page[_R]]]:
        async def fetch(number: int) -> Page[_R]:
            query: dict[str, str | int] = {**params, "page": number, "perPage": per_page}
            raw = await self._http.request_bytes(endpoint, report=report, params=query, page=number)
            # Decoded here, on the loop: a hop to a thread per page costs more than it saves.
            decoded = decoder.decode(raw)
            if decoded is not None:
                envelope, rows, keys = decoded
                return page_of(envelope, rows, keys, number=number, method="GET", endpoint=endpoint)
            body = json_answer(raw, method="GET", endpoint=endpoint, page=number)
            records = parse_page(body, number=number, method="GET", endpoint=endpoint)
            return page_of(
                body,
                decoder.from_records(records.rows),
                records.uids,
                number=number,
                method="GET",
                endpoint=endpoint,
            )

        return fetch

    async def _list_decoded(
        self,
        endpoint: str,
        params: Mapping[str, str],
        decoder: PageDecoder[_R],
        *,
        max_rows: int | None = None,
        first: Page[_R] | None = None,
        prefix: Prefix[_R] | None = None,
    ) -> PagedListing[_R]:
        per_page = self.settings.per_page

        async def walk(report: FetchReport) -> PagedListing[_R]:
            result = await walk_pages(
                self._fetcher(endpoint, params, decoder, report, per_page),
                per_page=per_page,
                concurrency=self.settings.page_concurrency,
                report=report,
                method="GET",
                endpoint=endpoint,
                max_rows=max_rows,
                first=first,
                prefix=prefix,
            )
            return PagedListing(result.pages, result.total_count, report)

        listing, _ = await self._measured(walk)
        return listing

    async def _first_page(
        self, endpoint: str, params: Mapping[str, str], decoder: PageDecoder[_R], per_page: int
    ) -> tuple[Page[_R], FetchReport]:
        async def read(report: FetchReport) -> Page[_R]:
            page = await self._fetcher(endpoint, params, decoder, report, per_page)(1)
            report.pages += 1
            return page

        return await self._measured(read)

    async def _call(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, object] | None = None,
        report: FetchReport | None = None,
    ) -> Mapping[str, object]:
        async def send(call_report: FetchReport) -> Mapping[str, object]:
            answer = await self._http.request(
                method, endpoint, report=call_report, params=params, json_body=json_body
            )
            call_report.pages += 1  # one answer, as a listing counts its pages
            return answer

        body, _ = await self._measured(send, into=report)
        return body

    async def check_key(self) -> None:
        """Raise ``AuthenticationError`` (401) or ``PermissionDeniedError`` (403) if the API
        refuses this client's key for listing bookings, the table every account reads.

        One request (``GET /v1/bookings``, one row), asked once per client. After a 403 on
        another endpoint it tells a key that may not read that endpoint (skip it) from a key
        the API refuses everywhere (a configuration error: the real API answers a missing or
        unknown key with 403 too)."""
        async with self._key_check:
            if self._key_reads is None:
                try:
                    await self._call("GET", "/v1/bookings", params={"page": "1", "perPage": "1"})
                    self._key_reads = True
                except AuthenticationError as exc:
                    self._key_reads = exc
        first = self._key_reads
        if isinstance(first, AuthenticationError):
            # A new instance per caller: each failed partition adds its own note to it.
            raise type(first)(
                str(first),
                status_code=first.status_code,
                method=first.method,
                endpoint=first.endpoint,
                errors=first.errors,
            )

    # -- bookings ---------------------------------------------------------------------------

    async def list_bookings(
        self,
        *,
        started_at: dt.datetime | None = None,
        ended_at: dt.datetime | None = None,
        status: str | None = None,
        order: str = "startedAt",
        sort: str = "asc",
        max_rows: int | None = None,
    ) -> Listing:
        """Bookings starting at/after ``started_at`` and ending at/before ``ended_at``.
        ``order`` is the field (startedAt|createdAt), ``sort`` the direction (asc|desc).
        With ``max_rows``, a window holding more rows raises ListingTooLargeError after
        page 1 (so callers can bound memory by listing narrower windows)."""
        params = _booking_params(started_at, ended_at, status, order, sort)
        return await self._list("/v1/bookings", params, max_rows=max_rows)

    async def list_bookings_pages(
        self,
        decoder: PageDecoder[_R],
        *,
        started_at: dt.datetime | None = None,
        ended_at: dt.datetime | None = None,
        status: str | None = None,
        order: str = "startedAt",
        sort: str = "asc",
        max_rows: int | None = None,
        first: Page[_R] | None = None,
        prefix: Prefix[_R] | None = None,
    ) -> PagedListing[_R]:
        """``list_bookings`` with each page's rows made by ``decoder`` from the raw answer
        (e.g. ``pages.PageBatches``: Arrow batches without a Python object per row).
        ``first`` is the listing's page 1 if already read (``first_bookings_page``); with
        ``prefix``, only the leading pages it asks for are read (see ``Prefix``)."""
        params = _booking_params(started_at, ended_at, status, order, sort)
        return await self._list_decoded(
            "/v1/bookings", params, decoder, max_rows=max_rows, first=first, prefix=prefix
        )

    async def first_bookings_page(
        self,
        decoder: PageDecoder[_R],
        *,
        started_at: dt.datetime | None = None,
        ended_at: dt.datetime | None = None,
        status: str | None = None,
        order: str = "startedAt",
        sort: str = "asc",
        count_only: bool = False,
    ) -> tuple[Page[_R], FetchReport]:
        """Page 1 of a bookings listing (its ``total_count`` says how many rows it holds) and
        what reading it cost. With ``count_only``, a page of one row: only the total is
        wanted. Hand a full page 1 to ``list_bookings_pages(first=...)``."""
        params = _booking_params(started_at, ended_at, status, order, sort)
        per_page = 1 if count_only else self.settings.per_page
        return await self._first_page("/v1/bookings", params, decoder, per_page)

    async def get_booking(self, uid: str) -> dict[str, object]:
        endpoint = f"/v1/bookings/{_segment(uid, 'uid')}"
        return _data_object(await self._call("GET", endpoint), "GET", endpoint)

    async def list_booking_contacts(
        self, uid: str, *, report: FetchReport | None = None
    ) -> list[dict[str, object]]:
        """A booking's contacts. ``report``, if given, also gets this call's counters
        (requests, retries, 429s...), e.g. to sum a fan-out's cost."""
        endpoint = f"/v1/bookings/{_segment(uid, 'uid')}/contacts"
        body = await self._call("GET", endpoint, report=report)
        return _data_objects(body, "GET", endpoint)

    async def cancel_booking(self, uid: str, *, reason: str | None = None) -> dict[str, object]:
        """Cancel a booking. Never resent after it left: a failure then is InDoubtError."""
        endpoint = f"/v1/bookings/{_segment(uid, 'uid')}/cancel"
        body: dict[str, object] = {} if reason is None else {"cancelReason": reason}
        return _data_object(await self._call("POST", endpoint, json_body=body), "POST", endpoint)

    async def reschedule_booking(
        self, uid: str, *, started_at: dt.datetime, time_zone: str
    ) -> dict[str, object]:
        """Move a booking (the server derives the end). Failure after sending: InDoubtError."""
        endpoint = f"/v1/bookings/{_segment(uid, 'uid')}/reschedule"
        body: dict[str, object] = {
            "startedAt": format_instant(started_at, "started_at"),
            "timeZone": time_zone,
        }
        return _data_object(await self._call("POST", endpoint, json_body=body), "POST", endpoint)

    # -- other listings ---------------------------------------------------------------------

    async def list_schedules(self) -> Listing:
        return await self._list("/v1/schedules")

    async def list_organization_users(self) -> Listing:
        return await self._list("/v1/organization_users")

    async def list_availability_calendars(self, user_id: str) -> Listing:
        return await self._list(
            "/v1/user_availability_calendars", {"userId": _require_id(user_id, "user_id")}
        )

    async def list_event_types(self) -> Listing:
        return await self._list("/v1/event_types")

    async def list_event_type_hosts(self, event_type_id: str) -> Listing:
        return await self._list(
            "/v1/event_type_hosts", {"eventTypeId": _require_id(event_type_id, "event_type_id")}
        )

    async def list_available_slots(
        self,
        event_type_uid: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        report: FetchReport | None = None,
    ) -> list[dict[str, object]]:
        """Free start times in [start, end), asked in windows of at most 7 days (the API's
        limit); a slot on a window edge is returned once (deduplicated on ``startedAt``).
        ``report``, if given, also gets the calls' counters."""
        endpoint = (
            f"/v1/event_types/{_segment(event_type_uid, 'event_type_uid')}/available_schedules"
        )
        format_instant(start, "start")
        format_instant(end, "end")
        if end <= start:
            raise ConfigError("end must be after start")
        windows: list[tuple[dt.datetime, dt.datetime]] = []
        cursor = start
        while cursor < end:
            windows.append((cursor, min(cursor + AVAILABLE_SLOTS_WINDOW, end)))
            cursor = windows[-1][1]
        gate = asyncio.Semaphore(self.settings.page_concurrency)

        async def window(bounds: tuple[dt.datetime, dt.datetime]) -> list[dict[str, object]]:
            params = {
                "periodStart": format_instant(bounds[0], "start"),
                "periodEnd": format_instant(bounds[1], "end"),
            }
            async with gate:
                body = await self._call("GET", endpoint, params=params, report=report)
            return _data_objects(body, "GET", endpoint)

        slots: dict[str, dict[str, object]] = {}
        for found in await asyncio.gather(*(window(bounds) for bounds in windows)):
            for slot in found:
                started = slot.get("startedAt")
                if not isinstance(started, str):
                    raise ProtocolError(
                        f"GET {endpoint}: a slot without a string 'startedAt'",
                        method="GET",
                        endpoint=endpoint,
                    )
                slots.setdefault(started, slot)
        return list(slots.values())


class JicooClient:
    """The synchronous facade: the same methods, run on a private event loop in a thread, so
    it works from any thread, including one that has no loop (Dagster ops, scripts).

    >>> with JicooClient(ConnectorConfig.from_env().settings()) as client:  # doctest: +SKIP
    ...     booking = client.get_booking("mzgdPJVBb7RE")
    """

    def __init__(
        self,
        settings: Settings,
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jicoo-client-loop", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def create() -> AsyncJicooClient:
            # Built on the private loop so the connection pool belongs to it.
            return AsyncJicooClient(settings, limiter=limiter)

        self._client = self._run(create())

    def _run(self, coroutine: Coroutine[object, object, _T]) -> _T:
        if self._closed:
            coroutine.close()
            raise RuntimeError("the JicooClient is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("JicooClient called from its own loop: use AsyncJicooClient")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    @property
    def report(self) -> FetchReport:
        return self._client.report

    @property
    def settings(self) -> Settings:
        return self._client.settings

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._run(self._client.aclose())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JicooClient(base_url={redact_url(self._client.settings.base_url)!r})"

    def list_bookings(
        self,
        *,
        started_at: dt.datetime | None = None,
        ended_at: dt.datetime | None = None,
        status: str | None = None,
        order: str = "startedAt",
        sort: str = "asc",
    ) -> Listing:
        return self._run(
            self._client.list_bookings(
                started_at=started_at, ended_at=ended_at, status=status, order=order, sort=sort
            )
        )

    def get_booking(self, uid: str) -> dict[str, object]:
        return self._run(self._client.get_booking(uid))

    def list_booking_contacts(self, uid: str) -> list[dict[str, object]]:
        return self._run(self._client.list_booking_contacts(uid))

    def cancel_booking(self, uid: str, *, reason: str | None = None) -> dict[str, object]:
        return self._run(self._client.cancel_booking(uid, reason=reason))

    def reschedule_booking(
        self, uid: str, *, started_at: dt.datetime, time_zone: str
    ) -> dict[str, object]:
        return self._run(
            self._client.reschedule_booking(uid, started_at=started_at, time_zone=time_zone)
        )

    def list_schedules(self) -> Listing:
        return self._run(self._client.list_schedules())

    def list_organization_users(self) -> Listing:
        return self._run(self._client.list_organization_users())

    def list_availability_calendars(self, user_id: str) -> Listing:
        return self._run(self._client.list_availability_calendars(user_id))

    def list_event_types(self) -> Listing:
        return self._run(self._client.list_event_types())

    def list_event_type_hosts(self, event_type_id: str) -> Listing:
        return self._run(self._client.list_event_type_hosts(event_type_id))

    def list_available_slots(
        self, event_type_uid: str, start: dt.datetime, end: dt.datetime
    ) -> list[dict[str, object]]:
        return self._run(self._client.list_available_slots(event_type_uid, start, end))
