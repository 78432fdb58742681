"""The bookings by uid and in (startedAt, uid) order: all, per status, per host they block.

``GET /v1/bookings`` pages are cut from these orders without copying the whole set; the clash
check of the slot rules scans a host's order. No locks: the store holds its lock around calls.
"""

import bisect
import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from jicoo_sandbox.model import ALL_STATUSES, BLOCKING_STATUSES, Booking

__all__ = ["BookingIndex", "BookingQuery", "page_count"]


@dataclass(frozen=True, slots=True)
class BookingQuery:
    """Filters and order of ``GET /v1/bookings`` after validation (instants in ms)."""

    status: str | None = None
    started_from: int | None = None
    ended_to: int | None = None
    descending: bool = False
    order: str = "startedAt"


class _SortedUids:
    """Uids sorted by (start, uid), with the starts in a parallel list for bisect."""

    __slots__ = ("starts", "uids")

    def __init__(self, starts: list[int] | None = None, uids: list[str] | None = None) -> None:
        self.starts: list[int] = starts if starts is not None else []
        self.uids: list[str] = uids if uids is not None else []

    def _position(self, start: int, uid: str) -> int:
        lo = bisect.bisect_left(self.starts, start)
        hi = bisect.bisect_right(self.starts, start, lo)
        return bisect.bisect_left(self.uids, uid, lo, hi)

    def add(self, start: int, uid: str) -> None:
        at = self._position(start, uid)
        self.starts.insert(at, start)
        self.uids.insert(at, uid)

    def remove(self, start: int, uid: str) -> None:
        at = self._position(start, uid)
        if at >= len(self.uids) or self.uids[at] != uid:
            raise KeyError(uid)
        del self.starts[at]
        del self.uids[at]

    def append(self, start: int, uid: str) -> None:
        """Add at the end: only while building from bookings already in order."""
        self.starts.append(start)
        self.uids.append(uid)

    def __len__(self) -> int:
        return len(self.uids)


class BookingIndex:
    """Every booking by uid, and the orders that pages and the clash check read."""

    def __init__(self, bookings: Sequence[Booking], host_ids: Iterable[str]) -> None:
        self.by_uid: dict[str, Booking] = {b.uid: b for b in bookings}
        ordered = sorted(bookings, key=lambda b: (b.start, b.uid))
        self._all = _SortedUids([b.start for b in ordered], [b.uid for b in ordered])
        self._by_status = {status: _SortedUids() for status in ALL_STATUSES}
        self._by_host: dict[str, _SortedUids] = {uid: _SortedUids() for uid in host_ids}
        for booking in ordered:
            self._by_status[booking.status].append(booking.start, booking.uid)
            if booking.status in BLOCKING_STATUSES:
                for user_id, _ in booking.hosts:
                    self._by_host[user_id].append(booking.start, booking.uid)
        # The longest booking ever seen bounds the endedAt filter's and clash check's scans.
        self._max_span = max((b.end - b.start for b in bookings), default=0)
        self._created_cache: dict[tuple[str | None, int | None, int | None], list[str]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def ordered(self) -> list[str]:
        """Every uid in (startedAt, uid) order; the index's own list: read it, do not keep it."""
        return self._all.uids

    def uid_at(self, position: int) -> str:
        return self._all.uids[position]

    # -- changes --

    def insert(self, b: Booking) -> None:
        self.by_uid[b.uid] = b
        self._add(b)

    def delete(self, uid: str) -> Booking:
        booking = self.by_uid.pop(uid)
        self._remove(booking)
        return booking

    @contextlib.contextmanager
    def moving(self, b: Booking) -> Iterator[None]:
        """Change the booking's start, end, status or hosts inside: it is re-filed after."""
        self._remove(b)
        try:
            yield
        finally:
            self._add(b)

    def _remove(self, b: Booking) -> None:
        self._all.remove(b.start, b.uid)
        self._by_status[b.status].remove(b.start, b.uid)
        if b.status in BLOCKING_STATUSES:
            for user_id, _ in b.hosts:
                self._by_host[user_id].remove(b.start, b.uid)
        self._created_cache.clear()

    def _add(self, b: Booking) -> None:
        self._all.add(b.start, b.uid)
        self._by_status[b.status].add(b.start, b.uid)
        if b.status in BLOCKING_STATUSES:
            for user_id, _ in b.hosts:
                self._by_host.setdefault(user_id, _SortedUids()).add(b.start, b.uid)
        self._max_span = max(self._max_span, b.end - b.start)
        self._created_cache.clear()

    # -- reads --

    def page(self, query: BookingQuery, *, offset: int, limit: int) -> tuple[int, list[str]]:
        """(totalCount, uids of the page)."""
        index = self._all if query.status is None else self._by_status[query.status]
        if query.order == "createdAt":
            uids = self._created_order(index, query)
            total = len(uids)
            return total, _take(uids, 0, _page_positions(total, offset, limit, query.descending))
        starts = index.starts
        lo = 0 if query.started_from is None else bisect.bisect_left(starts, query.started_from)
        hi, mid, tail = len(starts), len(starts), list[str]()
        if query.ended_to is not None:
            # end <= E needs start <= E; and every start <= E - max_span surely ends by E.
            hi = max(lo, bisect.bisect_right(starts, query.ended_to))
            mid = max(lo, min(hi, bisect.bisect_right(starts, query.ended_to - self._max_span)))
            tail = [uid for uid in index.uids[mid:hi] if self.by_uid[uid].end <= query.ended_to]
        head = mid - lo
        total = head + len(tail)
        positions = _page_positions(total, offset, limit, query.descending)
        if positions and max(positions) < head:
            return total, _take(index.uids, lo, positions)
        return total, [index.uids[lo + i] if i < head else tail[i - head] for i in positions]

    def _created_order(self, index: _SortedUids, query: BookingQuery) -> list[str]:
        """createdAt order needs a sort; cached until the next change (slower path, O(n log n))."""
        key = (query.status, query.started_from, query.ended_to)
        cached = self._created_cache.get(key)
        if cached is not None:
            return cached
        lo = (
            0
            if query.started_from is None
            else bisect.bisect_left(index.starts, query.started_from)
        )
        picked = [self.by_uid[uid] for uid in index.uids[lo:]]
        if query.ended_to is not None:
            picked = [b for b in picked if b.end <= query.ended_to]
        picked.sort(key=lambda b: (b.created, b.uid))
        uids = [b.uid for b in picked]
        self._created_cache[key] = uids
        return uids

    def clash(
        self, host_ids: Iterable[str], start: int, end: int, exclude: str | None
    ) -> str | None:
        """The uid of an open/request booking of one of the hosts overlapping [start, end)."""
        for host_id in host_ids:
            index = self._by_host.get(host_id)
            if index is None:
                continue
            i0 = bisect.bisect_right(index.starts, start - self._max_span)
            i1 = bisect.bisect_left(index.starts, end)
            for uid in index.uids[i0:i1]:
                if uid != exclude and self.by_uid[uid].end > start:
                    return uid
        return None


def _page_positions(total: int, offset: int, limit: int, descending: bool) -> range:
    """Positions (in ascending order space) of one page; descending reads from the end."""
    stop = min(total, offset + limit)
    if offset >= stop:
        return range(0)
    if descending:
        return range(total - 1 - offset, total - 1 - stop, -1)
    return range(offset, stop)


def _take(uids: list[str], base: int, positions: range) -> list[str]:
    """``[uids[base + i] for i in positions]`` as one slice (positions are consecutive)."""
    if not positions:
        return []
    page = uids[base + min(positions) : base + max(positions) + 1]
    if positions.step < 0:
        page.reverse()
    return page


def page_count(total: int, per_page: int) -> int:
    """ceil(total / perPage): 0 for an empty result, since no page holds anything."""
    return math.ceil(total / per_page)
