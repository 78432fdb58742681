"""The sandbox's state: the seeded data, its bookings' index (index.py) and cached JSON
(encoding.py), the business rules, the changes the API makes, and the journal.

Thread-safe (one lock): uvicorn serves from its thread while tests read and reset directly;
drift.py changes the data through the same lock. Imports no client code.
"""

import contextlib
import gc
import logging
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
from jicoo_sandbox.encoding import (
    BookingEncoder,
    calendar_record,
    event_type_host_records,
    event_type_record,
    user_record,
)
from jicoo_sandbox.index import BookingIndex, BookingQuery
from jicoo_sandbox.instants import EPOCH, MS_PER_MINUTE, ONE_MS, format_ms
from jicoo_sandbox.model import SLOT_STEP_MS, Booking, EventType, SeedData, User, fits_rules
from jicoo_sandbox.seed import booking_contacts, build_seed, schedule_count, schedule_record

__all__ = [
    "BookingPatch",
    "JournalEntry",
    "SandboxError",
    "SandboxStore",
    "valid_zone",
]

logger = logging.getLogger(__name__)

REMAINING_CAPACITY: Final = 1  # collective event types: one booking per slot
CANCELLED_BY_API: Final = "host"  # an API key acts for the host side (README "Unknowns")
# Up to this size every booking is serialised at build time (~7 us and ~700 bytes each), so no
# page is ever cold; above it, on first read (1M would add ~7 s to the build and ~700 MB).
PREBUILD_MAX_BOOKINGS: Final = 100_000


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
        self.anchor = config.effective_anchor()
        # Reentrant: drift.py holds it around a batch of the calls below.
        self.lock = threading.RLock()
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
            len(self.index),
            len(self.data.users),
            time.perf_counter() - started,
        )

    def _build(self) -> None:
        cfg = self.config
        data = build_seed(cfg.seed, cfg.bookings, self.anchor, cfg.past_days, cfg.future_days)
        self.data: SeedData = data
        self._users_by_uid: dict[str, User] = {user.uid: user for user in data.users}
        self._types_by_uid: dict[str, EventType] = {et.uid: et for et in data.event_types}
        self.index = BookingIndex(data.bookings, self._users_by_uid)
        self._encoder = BookingEncoder(data.event_types)
        self._json: dict[str, bytes] = {}
        if len(data.bookings) <= PREBUILD_MAX_BOOKINGS:
            encode = self._encoder.encode
            self._json = {b.uid: encode(b) for b in data.bookings}
        self._dirty = False
        self._schedules = schedule_count(cfg.bookings)

    def reset(self) -> None:
        """Back to the seeded state with an empty journal (the journal file is append-only)."""
        with self.lock:
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
        with self.lock:
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
        with self.lock:
            return [JournalEntry(e) for e in self._journal[max(0, since) :]]

    # -- booking reads -------------------------------------------------------------------------

    def _bytes(self, uid: str) -> bytes:
        cached = self._json.get(uid)
        if cached is None:
            cached = self._json[uid] = self._encoder.encode(self.index.by_uid[uid])
        return cached

    def _page_bytes(self, uids: list[str]) -> list[bytes]:
        try:
            return list(map(self._json.__getitem__, uids))  # warm: no Python-level loop
        except KeyError:
            return [self._bytes(uid) for uid in uids]

    def booking_json(self, uid: str) -> bytes | None:
        with self.lock:
            return self._bytes(uid) if uid in self.index.by_uid else None

    def get_booking(self, uid: str) -> dict[str, object] | None:
        """The booking as the API shows it (a fresh copy), or None."""
        raw = self.booking_json(uid)
        return None if raw is None else _as_dict(orjson.loads(raw))

    def all_bookings(self) -> list[dict[str, object]]:
        """Every booking as the API shows it, in (startedAt, uid) order: the tests' oracle."""
        with self.lock:
            raw = [self._bytes(uid) for uid in self.index.ordered()]
        return [_as_dict(orjson.loads(item)) for item in raw]

    def booking_count(self) -> int:
        with self.lock:
            return len(self.index)

    def list_bookings(
        self, query: BookingQuery, *, offset: int, limit: int
    ) -> tuple[int, list[bytes]]:
        """(totalCount, serialised bookings of the page); pages never copy the whole set."""
        with self.lock:
            total, uids = self.index.page(query, offset=offset, limit=limit)
            return total, self._page_bytes(uids)

    def contacts(self, uid: str) -> list[dict[str, object]] | None:
        with self.lock:
            booking = self.index.by_uid.get(uid)
        return None if booking is None else booking_contacts(self.config.seed, booking)

    # -- other resources -----------------------------------------------------------------------

    def users(self) -> list[dict[str, object]]:
        return [user_record(user) for user in self.data.users]

    def user(self, uid: str) -> dict[str, object] | None:
        found = self._users_by_uid.get(uid)
        return None if found is None else user_record(found)

    def calendars(self, user_id: str) -> list[dict[str, object]]:
        found = self._users_by_uid.get(user_id)
        return [] if found is None else [calendar_record(found)]

    def calendar(self, uid: str) -> dict[str, object] | None:
        for user in self.data.users:
            if user.template_uid == uid:
                return calendar_record(user)
        return None

    def event_types(self) -> list[dict[str, object]]:
        return [event_type_record(et) for et in self.data.event_types]

    def event_type(self, uid: str) -> dict[str, object] | None:
        found = self._types_by_uid.get(uid)
        return None if found is None else event_type_record(found)

    def event_type_hosts(self, event_type_id: str) -> list[dict[str, object]]:
        et = self._types_by_uid.get(event_type_id)
        return [] if et is None else event_type_host_records(et, self.data.users)

    def schedule_total(self) -> int:
        return self._schedules

    def schedules(self, offset: int, limit: int) -> list[dict[str, object]]:
        stop = min(self._schedules, offset + limit)
        return [
            schedule_record(self.config.seed, i, self._schedules, self.data)
            for i in range(offset, stop)
        ]

    def available_slots(
        self, uid: str, period_start: int, period_end: int
    ) -> list[dict[str, object]] | None:
        """Free start times: the grid steps of the period that ``_slot_refusal`` lets through."""
        with self.lock:
            et = self._types_by_uid.get(uid)
            if et is None:
                return None
            host_ids = [self.data.users[h].uid for h in et.hosts]
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
        if (host := self.unavailable_host(host_ids, start, end)) is not None:
            return SlotRefusal("outside_availability", host)
        if (other := self.index.clash(host_ids, start, end, exclude)) is not None:
            return SlotRefusal("slot_unavailable", other)
        return None

    def unavailable_host(self, host_ids: Iterable[str], start: int, end: int) -> str | None:
        """The first host whose availability does not hold [start, end), or None."""
        for host_id in host_ids:
            user = self._users_by_uid.get(host_id)
            if user is None or not fits_rules(user.rules, _zone(user.timezone), start, end):
                return host_id
        return None

    def require_booking(self, uid: str) -> None:
        """404 (as a SandboxError) unless the booking exists."""
        with self.lock:
            self._found(uid)

    def _found(self, uid: str) -> Booking:
        booking = self.index.by_uid.get(uid)
        if booking is None:
            raise SandboxError(404, "not_found", "Record Not Found")
        return booking

    # -- changes -------------------------------------------------------------------------------

    def _changed(self, uid: str) -> None:
        self._json.pop(uid, None)
        self._dirty = True

    def add(self, booking: Booking) -> None:
        """Store a new booking (drift.py's insert)."""
        with self.lock:
            self.index.insert(booking)
            self._changed(booking.uid)

    def remove(self, uid: str) -> None:
        """Delete a booking (drift.py's delete)."""
        with self.lock:
            self.index.delete(uid)
            self._changed(uid)

    def move(self, uid: str, start: int, end: int) -> None:
        """Move a booking to [start, end) as it stands, no rules asked (drift.py's move)."""
        with self.lock:
            b = self._found(uid)
            with self.index.moving(b):
                b.start, b.end, b.updated = start, end, max(self.now_ms(), b.updated + 1)
            self._changed(uid)

    def cancel(self, uid: str, reason: str | None) -> dict[str, object]:
        """open|request -> cancel; cancelling a cancelled booking is a 422 (README "Unknowns")."""
        with self.lock:
            b = self._found(uid)
            if b.status == "cancel":
                raise SandboxError(422, "already_cancelled", f"booking {uid} is already cancelled")
            with self.index.moving(b):
                now = self.now_ms()
                b.status, b.cancelled_at, b.cancelled_by = "cancel", now, CANCELLED_BY_API
                b.cancel_reason, b.updated = reason, max(now, b.updated + 1)
            self._changed(uid)
            return _as_dict(orjson.loads(self._bytes(uid)))

    def reschedule(self, uid: str, start: int, time_zone: str) -> dict[str, object]:
        """Move a booking to a slot ``available_schedules`` would list; else a 422 saying why."""
        with self.lock:
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
                else self.data.event_types[b.event_type].duration * MS_PER_MINUTE
            )
            end = start + span
            now = self.now_ms()
            refusal = self._slot_refusal([h for h, _ in b.hosts], start, end, uid, now)
            if refusal is not None:
                raise _slot_error(refusal, start, end)
            with self.index.moving(b):
                b.start, b.end, b.time_zone = start, end, time_zone
                b.updated = max(now, b.updated + 1)
            self._changed(uid)
            return _as_dict(orjson.loads(self._bytes(uid)))

    def update(self, uid: str, patch: BookingPatch) -> tuple[dict[str, object], bool]:
        """PATCH: only the sent fields change; returns (booking, whether anything was stored)."""
        with self.lock:
            b = self._found(uid)
            sent = patch.sent
            start = patch.start if "startedAt" in sent else b.start
            end = patch.end if "endedAt" in sent else b.end
            self._check_patch(patch, start, end)
            # updateMessage and isSendUpdates are instructions (notify guests), not booking fields.
            if not sent - {"updateMessage", "isSendUpdates"}:
                return _as_dict(orjson.loads(self._bytes(uid))), False
            with self.index.moving(b):
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
            self._changed(uid)
            return _as_dict(orjson.loads(self._bytes(uid))), True

    def _check_patch(self, patch: BookingPatch, start: int, end: int) -> None:
        if end <= start:
            raise SandboxError(
                422,
                "invalid_parameter",
                "endedAt must be after startedAt",
                {"endedAt": ["must be after startedAt"]},
            )
        if "hosts" in patch.sent:
            unknown = [h for h, _ in patch.hosts if h not in self._users_by_uid]
            if unknown:
                raise SandboxError(
                    422,
                    "invalid_parameter",
                    f"unknown host userId(s): {', '.join(unknown)}",
                    {"hosts": [f"unknown userId {h}" for h in unknown]},
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


def _as_dict(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TypeError("expected a JSON object")
    return value


def _append_line(path: Path, line: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(line + b"\n")
        handle.flush()
