"""The sandbox's records as the API shows them: bookings as JSON bytes, byte for byte what
``orjson.dumps`` makes of the Booking schema's dict; users, availability calendars, event types
and their hosts as dicts."""

from collections.abc import Sequence
from typing import Final

import orjson

from jicoo_sandbox.instants import MINUTES_PER_HOUR, format_ms, json_instant
from jicoo_sandbox.model import TEAM_ID, Booking, EventType, User

__all__ = [
    "BookingEncoder",
    "calendar_record",
    "event_type_host_records",
    "event_type_record",
    "user_record",
]

WEEKLY_FREQUENCY: Final = 2  # AvailabilityCalendarRule.frequencyType in the portal's examples
# Encoded strings the booking encoder keeps: seeded values repeat (a few hundred distinct names,
# zones, reasons); values sent through the API are encoded each time once the memo is full.
MAX_MEMO_STRINGS: Final = 4096
# Seeded starts and ends sit on the 15-minute grid (~100 a day): encoded once each, they save
# half the instant formatting of a cold page. Past the bound, instants are formatted each time.
MAX_MEMO_INSTANTS: Final = 65_536
JSON_NULL: Final = b"null"
# The Booking schema's keys in the order the API shows them; orjson.dumps of that dict, compact.
BOOKING_TEMPLATE: Final = (
    b'{"uid":%s,"eventTypeId":%s,"name":%s,"description":%s,"status":%s,"startedAt":%s,'
    b'"endedAt":%s,"locationId":%s,"url":%s,"phoneNumber":%s,"address":%s,"customLocation":%s,'
    b'"access":%s,"timeZone":%s,"priority":%s,"cancelReason":%s,"cancelledAt":%s,'
    b'"cancelledBy":%s,"hosts":%s,"createdAt":%s,"updatedAt":%s}'
)


class BookingEncoder:
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


def user_record(user: User) -> dict[str, object]:
    return {
        "uid": user.uid,
        "name": user.name,
        "email": user.email,
        "role": user.role,
        "profileImage": user.profile_image,
        "createdAt": format_ms(user.created),
        "updatedAt": format_ms(user.updated),
    }


def calendar_record(user: User) -> dict[str, object]:
    """The user's one availability template, one ``calendars`` entry per weekly rule."""
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


def event_type_record(et: EventType) -> dict[str, object]:
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


def event_type_host_records(et: EventType, users: Sequence[User]) -> list[dict[str, object]]:
    """Hosts, then notify-only members, each with its priority and place (``sort``)."""
    members = [(h, "host") for h in et.hosts] + [(h, "notifyHost") for h in et.notify]
    out: list[dict[str, object]] = []
    for sort, ((user_index, kind), priority) in enumerate(zip(members, et.priorities, strict=True)):
        user = users[user_index]
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
