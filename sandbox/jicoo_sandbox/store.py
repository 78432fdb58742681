"""The sandbox's state: seeded data, sorted indexes, cached JSON, business rules, journal, drift.

Thread-safe (one lock): uvicorn serves from its thread while tests read and reset directly.
Imports no client code.
"""

import bisect
import contextlib
import datetime as dt
import gc
import logging
import math
import random
import threading
import time
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final, NamedTuple

import orjson

from jicoo_sandbox.config import SandboxConfig
from jicoo_sandbox.seed import (
    MS_PER_MINUTE,
    TEAM_ID,
    Booking,
    EventType,
    SeedData,
    User,
    booking_contacts,
    build_seed,
    fits_rules,
    format_ms,
    json_instant,
    schedule_count,
    schedule_record,
    short_uid,
)

__all__ = [
    "ALL_STATUSES",
    "BookingPatch",
    "BookingQuery",
    "JournalEntry",
    "SandboxError",
    "SandboxStore",
]

logger = logging.getLogger(__name__)

ALL_STATUSES: Final = ("open", "cancel", "request")
# Statuses that hold a host's time: a request awaits approval but its slot is already taken.
BLOCKING_STATUSES: Final = frozenset({"open", "request"})
SLOT_STEP_MS: Final = 15 * MS_PER_MINUTE
REMAINING_CAPACITY: Final = 1  # collective event types: one booking per slot
DRIFT_TRIES: Final = 20
DRIFT_MOVE_DAYS: Final = 7  # a whole week keeps weekday and local time, so availability holds
MS_PER_DAY: Final = 24 * 60 * MS_PER_MINUTE
DRIFT_METHOD: Final = "DRIFT"
WEEKLY_FREQUENCY: Final = 2  # AvailabilityCalendarRule.frequencyType in the portal's examples
MINUTES_PER_HOUR: Final = 60
CANCELLED_BY_API: Final = "host"  # an API key acts for the host side (README "Unknowns")
# Encoded strings the booking encoder keeps: seeded values repeat (a few hundred distinct names,
# zones, reasons); values sent through the API are encoded each time once the memo is full.
MAX_MEMO_STRINGS: Final = 4096
# Seeded starts and ends sit on the 15-minute grid (~100 a day): encoded once each, they save
# half the instant formatting of a cold page. Past the bound, instants are formatted each time.
MAX_MEMO_INSTANTS: Final = 65_536
JSON_NULL: Final = b"null"
# Up to this size every booking is serialised at build time (~7 us and ~700 bytes each), so no
# page is ever cold; above it, on first read (1M would add ~7 s to the build and ~700 MB).
PREBUILD_MAX_BOOKINGS: Final = 100_000
# The Booking schema's keys in the order the API shows them; orjson.dumps of that dict, compact.
BOOKING_TEMPLATE: Final = (
    b'{"uid":%s,"eventTypeId":%s,"name":%s,"description":%s,"status":%s,"startedAt":%s,'
    b'"endedAt":%s,"locationId":%s,"url":%s,"phoneNumber":%s,"address":%s,"customLocation":%s,'
    b'"access":%s,"timeZone":%s,"priority":%s,"cancelReason":%s,"cancelledAt":%s,'
    b'"cancelledBy":%s,"hosts":%s,"createdAt":%s,"updatedAt":%s}'
)


class SandboxError(Exception):
    """A request the sandbox refuses; the app turns it into the documented error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = {key: list(value) for key, value in (fields or {}).items()}


class JournalEntry(dict[str, object]):
    """A journal entry: a plain JSON-able dict whose keys also read as attributes."""

    def __getattr__(self, name: str) -> object:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True, slots=True)
class BookingQuery:
    """Filters and order of ``GET /v1/bookings`` after validation (instants in ms)."""

    status: str | None = None
    started_from: int | None = None
    ended_to: int | None = None
    descending: bool = False
    order: str = "startedAt"


@dataclass(frozen=True, slots=True)
class BookingPatch:
    """A validated PATCH body: ``sent`` names the API fields that were present."""

    sent: frozenset[str]
    name: str = ""
    description: str | None = None
    time_zone: str = ""
    start: int = 0
    end: int = 0
    hosts: tuple[tuple[str, str], ...] = ()
    priority: str | None = None


class _Index:
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

    def __len__(self) -> int:
        return len(self.uids)


@lru_cache(maxsize=1024)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def valid_zone(name: str) -> bool:
    """An IANA zone name tzdata knows (paths and empty names are refused)."""
    if not name or name.startswith("/") or ".." in name:
        return False
    try:
        _zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
ONE_MS: Final = dt.timedelta(milliseconds=1)


class SlotRefusal(NamedTuple):
    """Why a start is not a bookable slot: the 422 code and who is in the way (host or booking)."""

    code: str
    subject: str | None = None


class SandboxStore:
    """All sandbox data and the journal; every public method takes the lock.

    >>> store = SandboxStore(SandboxConfig(bookings=100))
    >>> total, items = store.list_bookings(BookingQuery(), offset=0, limit=5)
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._clock = config.clock
        # Fixed once: a reset must give back the same data even after midnight.
        self.anchor: dt.date = config.effective_anchor()
        self._lock = threading.RLock()
        self._journal: list[JournalEntry] = []
        self._seq = 0
        self._load()

    def now_ms(self) -> int:
        """The sandbox clock's "now" in epoch ms."""
        return (self._clock() - EPOCH) // ONE_MS

    # -- building ------------------------------------------------------------------------------

    def _load(self) -> None:
        started = time.perf_counter()
        with _gc_paused():
            self._build()
        logger.info(
            "sandbox store: %d bookings, %d users built in %.2f s",
            len(self._bookings),
            len(self._data.users),
            time.perf_counter() - started,
        )

    def _build(self) -> None:
        cfg = self.config
        data = build_seed(cfg.seed, cfg.bookings, self.anchor, cfg.past_days, cfg.future_days)
        self._data: SeedData = data
        self._users_by_uid: dict[str, User] = {user.uid: user for user in data.users}
        self._types_by_uid: dict[str, EventType] = {et.uid: et for et in data.event_types}
        self._bookings: dict[str, Booking] = {b.uid: b for b in data.bookings}
        ordered = sorted(data.bookings, key=lambda b: (b.start, b.uid))
        self._all = _Index([b.start for b in ordered], [b.uid for b in ordered])
        self._by_status = {status: _Index() for status in ALL_STATUSES}
        self._by_host: dict[str, _Index] = {user.uid: _Index() for user in data.users}
        for booking in ordered:
            index = self._by_status[booking.status]
            index.starts.append(booking.start)
            index.uids.append(booking.uid)
            if booking.status in BLOCKING_STATUSES:
                for user_id, _ in booking.hosts:
                    host = self._by_host[user_id]
                    host.starts.append(booking.start)
                    host.uids.append(booking.uid)
        # The longest booking ever seen bounds the endedAt filter's and clash check's scans.
        self._max_span = max((b.end - b.start for b in data.bookings), default=0)
        self._encoder = _BookingEncoder(data.event_types)
        self._json: dict[str, bytes] = {}
        if len(data.bookings) <= PREBUILD_MAX_BOOKINGS:
            encode = self._encoder.encode
            self._json = {b.uid: encode(b) for b in data.bookings}
        self._created_cache: dict[tuple[str | None, int | None, int | None], list[str]] = {}
        self._version = 0
        self._dirty = False
        self._schedules = schedule_count(cfg.bookings)

    def reset(self) -> None:
        """Back to the seeded state with an empty journal (the journal file is append-only)."""
        with self._lock:
            if self._dirty:
                self._load()
            self._journal = []
            self._seq = 0

    # -- journal -------------------------------------------------------------------------------

    def record(
        self,
        *,
        method: str,
        path: str,
        booking_uid: str | None,
        body: object,
        status: int | None,
        changed: bool,
        fault: str | None = None,
    ) -> None:
        """Append a journal entry (and a JSON line to ``config.journal_path`` when set)."""
        with self._lock:
            self._seq += 1
            entry = JournalEntry(
                seq=self._seq,
                time=format_ms(self.now_ms()),
                method=method,
                path=path,
                booking_uid=booking_uid,
                body=body,
                status=status,
                changed=changed,
                fault=fault,
            )
            self._journal.append(entry)
            if self.config.journal_path is not None:
                _append_line(self.config.journal_path, orjson.dumps(entry))

    def journal(self, since: int = 0) -> list[JournalEntry]:
        """Entries after ``since`` (seq restarts at 1 after a reset, so seq = position + 1)."""
        with self._lock:
            return [JournalEntry(e) for e in self._journal[max(0, since) :]]

    # -- serialisation -------------------------------------------------------------------------

    def _bytes(self, uid: str) -> bytes:
        cached = self._json.get(uid)
        if cached is None:
            cached = self._json[uid] = self._encoder.encode(self._bookings[uid])
        return cached

    # -- booking reads -------------------------------------------------------------------------

    def booking_json(self, uid: str) -> bytes | None:
        with self._lock:
            return self._bytes(uid) if uid in self._bookings else None

    def get_booking(self, uid: str) -> dict[str, object] | None:
        """The booking as the API shows it (a fresh copy), or None."""
        raw = self.booking_json(uid)
        return None if raw is None else _as_dict(orjson.loads(raw))

    def all_bookings(self) -> list[dict[str, object]]:
        """Every booking as the API shows it, in (startedAt, uid) order: the tests' oracle."""
        with self._lock:
            raw = [self._bytes(uid) for uid in self._all.uids]
        return [_as_dict(orjson.loads(item)) for item in raw]

    def booking_count(self) -> int:
        with self._lock:
            return len(self._bookings)

    def list_bookings(
        self, query: BookingQuery, *, offset: int, limit: int
    ) -> tuple[int, list[bytes]]:
        """(totalCount, serialised bookings of the page); pages never copy the whole set."""
        with self._lock:
            index = self._all if query.status is None else self._by_status[query.status]
            if query.order == "createdAt":
                uids = self._created_order(index, query)
                total = len(uids)
                positions = _page_positions(total, offset, limit, query.descending)
                return total, self._page_bytes(_take(uids, 0, positions))
            starts = index.starts
            lo = 0 if query.started_from is None else bisect.bisect_left(starts, query.started_from)
            hi, mid, tail = len(starts), len(starts), list[str]()
            if query.ended_to is not None:
                # end <= E needs start <= E; and every start <= E - max_span surely ends by E.
                hi = max(lo, bisect.bisect_right(starts, query.ended_to))
                mid = max(lo, min(hi, bisect.bisect_right(starts, query.ended_to - self._max_span)))
                tail = [
                    uid for uid in index.uids[mid:hi] if self._bookings[uid].end <= query.ended_to
                ]
            head = mid - lo
            total = head + len(tail)
            positions = _page_positions(total, offset, limit, query.descending)
            if positions and max(positions) < head:
                page = _take(index.uids, lo, positions)
            else:
                page = [index.uids[lo + i] if i < head else tail[i - head] for i in positions]
            return total, self._page_bytes(page)

    def _page_bytes(self, uids: list[str]) -> list[bytes]:
        try:
            return list(map(self._json.__getitem__, uids))  # warm: no Python-level loop
        except KeyError:
            return [self._bytes(uid) for uid in uids]

    def _created_order(self, index: _Index, query: BookingQuery) -> list[str]:
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
        picked = [self._bookings[uid] for uid in index.uids[lo:]]
        if query.ended_to is not None:
            picked = [b for b in picked if b.end <= query.ended_to]
        picked.sort(key=lambda b: (b.created, b.uid))
        uids = [b.uid for b in picked]
        self._created_cache[key] = uids
        return uids

    def contacts(self, uid: str) -> list[dict[str, object]] | None:
        with self._lock:
            booking = self._bookings.get(uid)
        return None if booking is None else booking_contacts(self.config.seed, booking)

    # -- other resources -----------------------------------------------------------------------

    def users(self) -> list[dict[str, object]]:
        return [self._user_dict(user) for user in self._data.users]

    def user(self, uid: str) -> dict[str, object] | None:
        found = self._users_by_uid.get(uid)
        return None if found is None else self._user_dict(found)

    @staticmethod
    def _user_dict(user: User) -> dict[str, object]:
        return {
            "uid": user.uid,
            "name": user.name,
            "email": user.email,
            "role": user.role,
            "profileImage": user.profile_image,
            "createdAt": format_ms(user.created),
            "updatedAt": format_ms(user.updated),
        }

    def calendars(self, user_id: str) -> list[dict[str, object]]:
        found = self._users_by_uid.get(user_id)
        return [] if found is None else [self._calendar_dict(found)]

    def calendar(self, uid: str) -> dict[str, object] | None:
        for user in self._data.users:
            if user.template_uid == uid:
                return self._calendar_dict(user)
        return None

    def _calendar_dict(self, user: User) -> dict[str, object]:
        return {
            "uid": user.template_uid,
            "teamId": TEAM_ID,
            "userId": user.uid,
            "name": user.template_name,
            "isDefault": 1,
            "timezone": user.timezone,
            "createdAt": format_ms(user.created),
            "updatedAt": format_ms(user.updated),
            "calendars": [
                {
                    "startHour": rule.start_min // MINUTES_PER_HOUR,
                    "startMinute": rule.start_min % MINUTES_PER_HOUR,
                    "endHour": rule.end_min // MINUTES_PER_HOUR,
                    "endMinute": rule.end_min % MINUTES_PER_HOUR,
                    "startedAt": format_ms(user.created),
                    "endedAt": None,
                    "wday": rule.wday,
                    "frequencyType": WEEKLY_FREQUENCY,
                    "frequencyInterval": 1,
                    "exceptions": None,
                }
                for rule in user.rules
            ],
        }

    def event_types(self) -> list[dict[str, object]]:
        return [self._event_type_dict(et) for et in self._data.event_types]

    def event_type(self, uid: str) -> dict[str, object] | None:
        found = self._types_by_uid.get(uid)
        return None if found is None else self._event_type_dict(found)

    @staticmethod
    def _event_type_dict(et: EventType) -> dict[str, object]:
        return {
            "uid": et.uid,
            "name": et.name,
            "description": et.description,
            "status": "enable",
            "duration": et.duration,
            "teamId": TEAM_ID,
            "url": f"https://www.jicoo.com/t/exampleteam/e/{et.uid}",
            "createdAt": format_ms(et.created),
            "updatedAt": format_ms(et.updated),
        }

    def event_type_hosts(self, event_type_id: str) -> list[dict[str, object]]:
        et = self._types_by_uid.get(event_type_id)
        if et is None:
            return []
        members = [(h, "host") for h in et.hosts] + [(h, "notifyHost") for h in et.notify]
        out: list[dict[str, object]] = []
        for sort, ((user_index, kind), priority) in enumerate(
            zip(members, et.priorities, strict=True)
        ):
            user = self._data.users[user_index]
            out.append(
                {
                    "uid": user.uid,
                    "name": user.name,
                    "email": user.email,
                    "profileImage": user.profile_image,
                    "role": "admin" if sort == 0 else "editor",
                    "priority": priority,
                    "userType": kind,
                    "sort": sort,
                }
            )
        return out

    def schedule_total(self) -> int:
        return self._schedules

    def schedules(self, offset: int, limit: int) -> list[dict[str, object]]:
        stop = min(self._schedules, offset + limit)
        return [
            schedule_record(self.config.seed, i, self._schedules, self._data)
            for i in range(offset, stop)
        ]

    def available_slots(
        self, uid: str, period_start: int, period_end: int
    ) -> list[dict[str, object]] | None:
        """Free start times: the grid steps of the period that ``_slot_refusal`` lets through."""
        with self._lock:
            et = self._types_by_uid.get(uid)
            if et is None:
                return None
            host_ids = [self._data.users[h].uid for h in et.hosts]
            duration = et.duration * MS_PER_MINUTE
            now = self.now_ms()
            start = -(-max(period_start, now) // SLOT_STEP_MS) * SLOT_STEP_MS
            out: list[dict[str, object]] = []
            while start < period_end:
                if self._slot_refusal(host_ids, start, start + duration, None, now) is None:
                    out.append(
                        {"startedAt": format_ms(start), "remainingCapacity": REMAINING_CAPACITY}
                    )
                start += SLOT_STEP_MS
            return out

    # -- rules ---------------------------------------------------------------------------------

    def _slot_refusal(
        self, host_ids: Sequence[str], start: int, end: int, exclude: str | None, now: int
    ) -> SlotRefusal | None:
        """Why [start, end) is not a slot ``available_schedules`` lists, or None if it is one.

        The one home of the slot rules, shared by the slot listing and reschedule: not in the
        past, on the grid (every seeded event type offers starts on the quarter hour), inside
        every host's availability, and a remaining capacity (one booking per host and slot).
        ``exclude`` is the booking being moved: its own current slot does not count against it.
        """
        if start < now:
            return SlotRefusal("slot_in_past")
        if start % SLOT_STEP_MS:
            return SlotRefusal("slot_off_grid")
        if (host := self._not_available(host_ids, start, end)) is not None:
            return SlotRefusal("outside_availability", host)
        if (other := self._clash(host_ids, start, end, exclude)) is not None:
            return SlotRefusal("slot_unavailable", other)
        return None

    def _clash(
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
                if uid != exclude and self._bookings[uid].end > start:
                    return uid
        return None

    def _not_available(self, host_ids: Iterable[str], start: int, end: int) -> str | None:
        for host_id in host_ids:
            user = self._users_by_uid.get(host_id)
            if user is None or not fits_rules(user.rules, _zone(user.timezone), start, end):
                return host_id
        return None

    def require_booking(self, uid: str) -> None:
        """404 (as a SandboxError) unless the booking exists."""
        with self._lock:
            self._found(uid)

    def _found(self, uid: str) -> Booking:
        booking = self._bookings.get(uid)
        if booking is None:
            raise SandboxError(404, "not_found", "Record Not Found")
        return booking

    def _unindex(self, b: Booking) -> None:
        self._all.remove(b.start, b.uid)
        self._by_status[b.status].remove(b.start, b.uid)
        if b.status in BLOCKING_STATUSES:
            for user_id, _ in b.hosts:
                self._by_host[user_id].remove(b.start, b.uid)

    def _index(self, b: Booking) -> None:
        self._all.add(b.start, b.uid)
        self._by_status[b.status].add(b.start, b.uid)
        if b.status in BLOCKING_STATUSES:
            for user_id, _ in b.hosts:
                self._by_host.setdefault(user_id, _Index()).add(b.start, b.uid)
        self._max_span = max(self._max_span, b.end - b.start)

    def _changed(self, uid: str) -> None:
        self._json.pop(uid, None)
        self._created_cache.clear()
        self._version += 1
        self._dirty = True

    def cancel(self, uid: str, reason: str | None) -> dict[str, object]:
        """open|request -> cancel; cancelling a cancelled booking is a 422 (README "Unknowns")."""
        with self._lock:
            b = self._found(uid)
            if b.status == "cancel":
                raise SandboxError(422, "already_cancelled", f"booking {uid} is already cancelled")
            self._unindex(b)
            now = self.now_ms()
            b.status, b.cancelled_at, b.cancelled_by = "cancel", now, CANCELLED_BY_API
            b.cancel_reason, b.updated = reason, max(now, b.updated + 1)
            self._index(b)
            self._changed(uid)
            return _as_dict(orjson.loads(self._bytes(uid)))

    def reschedule(self, uid: str, start: int, time_zone: str) -> dict[str, object]:
        """Move a booking to a slot ``available_schedules`` would list; else a 422 saying why."""
        with self._lock:
            b = self._found(uid)
            if b.status == "cancel":
                raise SandboxError(
                    422,
                    "booking_cancelled",
                    f"booking {uid} is cancelled and cannot be rescheduled",
                )
            span = (
                b.end - b.start
                if b.event_type is None
                else self._data.event_types[b.event_type].duration * MS_PER_MINUTE
            )
            end = start + span
            now = self.now_ms()
            refusal = self._slot_refusal([h for h, _ in b.hosts], start, end, uid, now)
            if refusal is not None:
                raise _slot_error(refusal, start, end)
            self._unindex(b)
            b.start, b.end, b.time_zone, b.updated = start, end, time_zone, max(now, b.updated + 1)
            self._index(b)
            self._changed(uid)
            return _as_dict(orjson.loads(self._bytes(uid)))

    def update(self, uid: str, patch: BookingPatch) -> tuple[dict[str, object], bool]:
        """PATCH: only the sent fields change; returns (booking, whether anything was stored)."""
        with self._lock:
            b = self._found(uid)
            sent = patch.sent
            start = patch.start if "startedAt" in sent else b.start
            end = patch.end if "endedAt" in sent else b.end
            if end <= start:
                raise SandboxError(
                    422,
                    "invalid_parameter",
                    "endedAt must be after startedAt",
                    {"endedAt": ["must be after startedAt"]},
                )
            if "hosts" in sent:
                unknown = [h for h, _ in patch.hosts if h not in self._users_by_uid]
                if unknown:
                    raise SandboxError(
                        422,
                        "invalid_parameter",
                        f"unknown host userId(s): {', '.join(unknown)}",
                        {"hosts": [f"unknown userId {h}" for h in unknown]},
                    )
            # updateMessage and isSendUpdates are instructions (notify guests), not booking fields.
            if not sent - {"updateMessage", "isSendUpdates"}:
                return _as_dict(orjson.loads(self._bytes(uid))), False
            self._unindex(b)
            b.start, b.end = start, end
            if "name" in sent:
                b.name = patch.name
            if "description" in sent:
                b.description = patch.description
            if "timeZone" in sent:
                b.time_zone = patch.time_zone
            if "priority" in sent:
                b.priority = patch.priority
            if "hosts" in sent:
                b.hosts = patch.hosts
            b.updated = max(self.now_ms(), b.updated + 1)
            self._index(b)
            self._changed(uid)
            return _as_dict(orjson.loads(self._bytes(uid))), True

    # -- drift (the fault injector shifts data between page requests) --------------------------

    def drift_insert(self, n: int, rng: random.Random) -> list[str]:
        """Add ``n`` bookings inside the seeded date range; returns their uids."""
        with self._lock:
            touched = []
            data = self._data
            for _ in range(n):
                uid = short_uid(rng)
                while uid in self._bookings:
                    uid = short_uid(rng)
                et_index = rng.randrange(len(data.event_types))
                et = data.event_types[et_index]
                host_ids = [data.users[h].uid for h in et.hosts]
                windows = data.windows[et.hosts[0]]
                start = end = 0
                # A busy host still gets a (cancelled) booking: the count is what must drift.
                status = "cancel"
                duration = et.duration * MS_PER_MINUTE
                for _ in range(DRIFT_TRIES):
                    if not windows:
                        break
                    win_start, win_end = rng.choice(windows)
                    positions = (win_end - win_start - duration) // SLOT_STEP_MS + 1
                    if positions <= 0:
                        continue
                    start = win_start + rng.randrange(positions) * SLOT_STEP_MS
                    end = start + duration
                    if self._not_available(host_ids, start, end) is None:
                        status = (
                            "open" if self._clash(host_ids, start, end, None) is None else "cancel"
                        )
                        break
                if end == 0:
                    start, end = data.range_start, data.range_start + duration
                now = self.now_ms()
                booking = Booking(
                    uid, et_index, f"{et.name} - drift", None, status, start, end, "zoom",
                    None, None, None, None, None, "Asia/Tokyo", None, None,
                    now if status == "cancel" else None, "guest" if status == "cancel" else None,
                    tuple((h, "admin" if i == 0 else "editor") for i, h in enumerate(host_ids)),
                    now, now,
                )  # fmt: skip
                self._bookings[uid] = booking
                self._index(booking)
                self._changed(uid)
                touched.append(uid)
            self._journal_drift("insert", touched)
            return touched

    def drift_delete(self, n: int, rng: random.Random) -> list[str]:
        """Remove ``n`` random bookings; returns their uids."""
        with self._lock:
            touched = []
            for _ in range(min(n, len(self._bookings))):
                uid = self._all.uids[rng.randrange(len(self._all))]
                booking = self._bookings.pop(uid)
                self._unindex(booking)
                self._changed(uid)
                touched.append(uid)
            self._journal_drift("delete", touched)
            return touched

    def drift_move(self, n: int, rng: random.Random) -> list[str]:
        """Shift ``n`` bookings by a week (same weekday, same local time) so their order changes."""
        with self._lock:
            touched: list[str] = []
            data = self._data
            for _ in range(n * DRIFT_TRIES):
                if len(touched) >= n or not self._all.uids:
                    break
                uid = self._all.uids[rng.randrange(len(self._all))]
                b = self._bookings[uid]
                if uid in touched:
                    continue
                shift = DRIFT_MOVE_DAYS * MS_PER_DAY * rng.choice((-1, 1))
                if not (data.range_start <= b.start + shift and b.end + shift <= data.range_end):
                    shift = -shift
                start, end = b.start + shift, b.end + shift
                if start < data.range_start or end > data.range_end:
                    continue
                host_ids = [user_id for user_id, _ in b.hosts]
                if b.status in BLOCKING_STATUSES and (
                    self._not_available(host_ids, start, end) is not None
                    or self._clash(host_ids, start, end, uid) is not None
                ):
                    continue
                self._unindex(b)
                b.start, b.end, b.updated = start, end, max(self.now_ms(), b.updated + 1)
                self._index(b)
                self._changed(uid)
                touched.append(uid)
            self._journal_drift("move", touched)
            return touched

    def _journal_drift(self, action: str, uids: list[str]) -> None:
        for uid in uids:
            self.record(
                method=DRIFT_METHOD,
                path="/v1/bookings",
                booking_uid=uid,
                body={"action": action},
                status=None,
                changed=True,
            )


def _slot_error(refusal: SlotRefusal, start: int, end: int) -> SandboxError:
    """The 422 of a refused reschedule: the code names the rule, the message the instant."""
    slot = f"{format_ms(start)}-{format_ms(end)}"
    messages = {
        "slot_in_past": (f"startedAt {format_ms(start)} is in the past", "must be in the future"),
        "slot_off_grid": (
            f"startedAt {format_ms(start)} is not on the event type's "
            f"{SLOT_STEP_MS // MS_PER_MINUTE}-minute slot grid",
            f"must start on a multiple of {SLOT_STEP_MS // MS_PER_MINUTE} minutes",
        ),
        "outside_availability": (
            f"{slot} is outside the availability of host {refusal.subject}",
            "the slot is outside the host's availability",
        ),
        "slot_unavailable": (
            f"{slot} has no remaining capacity: it clashes with booking {refusal.subject} "
            "of the same host",
            "the slot is already booked",
        ),
    }
    message, field_message = messages[refusal.code]
    return SandboxError(422, refusal.code, message, {"startedAt": [field_message]})


class _BookingEncoder:
    """A booking's API JSON, byte for byte ``orjson.dumps`` of the Booking schema's dict.

    Built without the dict: building it (22 keys, five formatted instants, a host list) cost
    twice as much as this whole encoder. Values many bookings share are encoded once;
    tests/sandbox/test_store.py holds the bytes to the plain dict's.
    """

    __slots__ = ("_event_type_ids", "_hosts", "_instants", "_strings")

    def __init__(self, event_types: Sequence[EventType]) -> None:
        self._event_type_ids = [orjson.dumps(et.uid) for et in event_types]
        self._strings: dict[str | None, bytes] = {None: JSON_NULL}
        self._hosts: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._instants: dict[int, bytes] = {}

    def _string(self, value: str | None) -> bytes:
        encoded = orjson.dumps(value)
        if len(self._strings) < MAX_MEMO_STRINGS:
            self._strings[value] = encoded
        return encoded

    def _host_list(self, hosts: tuple[tuple[str, str], ...]) -> bytes:
        encoded = orjson.dumps([{"userId": user_id, "role": role} for user_id, role in hosts])
        if len(self._hosts) < MAX_MEMO_STRINGS:
            self._hosts[hosts] = encoded
        return encoded

    def _slot(self, ms: int) -> bytes:
        encoded = json_instant(ms)
        if len(self._instants) < MAX_MEMO_INSTANTS:
            self._instants[ms] = encoded
        return encoded

    def encode(self, b: Booking) -> bytes:
        memo = self._strings.get
        miss = self._string
        slot = self._instants.get
        updated = json_instant(b.updated)
        cancelled = (
            JSON_NULL
            if b.cancelled_at is None
            else updated
            if b.cancelled_at == b.updated  # a seeded cancellation is its last update
            else json_instant(b.cancelled_at)
        )
        return BOOKING_TEMPLATE % (
            orjson.dumps(b.uid),
            JSON_NULL if b.event_type is None else self._event_type_ids[b.event_type],
            memo(b.name) or miss(b.name),
            memo(b.description) or miss(b.description),
            memo(b.status) or miss(b.status),
            slot(b.start) or self._slot(b.start),
            slot(b.end) or self._slot(b.end),
            memo(b.location_id) or miss(b.location_id),
            JSON_NULL if b.url is None else orjson.dumps(b.url),  # one per meeting: not memoised
            memo(b.phone_number) or miss(b.phone_number),
            memo(b.address) or miss(b.address),
            memo(b.custom_location) or miss(b.custom_location),
            memo(b.access) or miss(b.access),
            memo(b.time_zone) or miss(b.time_zone),
            memo(b.priority) or miss(b.priority),
            memo(b.cancel_reason) or miss(b.cancel_reason),
            cancelled,
            memo(b.cancelled_by) or miss(b.cancelled_by),
            self._hosts.get(b.hosts) or self._host_list(b.hosts),
            json_instant(b.created),
            updated,
        )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while millions of acyclic objects are made: each collection would walk them
    all again (about 3 of 17 s at 1M bookings). Freed by reference counting as ever."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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


def _as_dict(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TypeError("expected a JSON object")
    return value


def _append_line(path: Path, line: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(line + b"\n")
        handle.flush()


def page_count(total: int, per_page: int) -> int:
    """ceil(total / perPage): 0 for an empty result, since no page holds anything."""
    return math.ceil(total / per_page)
