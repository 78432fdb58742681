"""The sandbox's records: users and their availability rules, event types, bookings, and the
seeded whole. Plain data; ``seed.py`` makes them, ``store.py`` keeps and changes them."""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final
from zoneinfo import ZoneInfo

from jicoo_sandbox.instants import MINUTES_PER_DAY, MS_PER_MINUTE, MS_PER_S

__all__ = [
    "ALL_STATUSES",
    "BLOCKING_STATUSES",
    "SLOT_STEP_MS",
    "TEAM_ID",
    "Booking",
    "EventType",
    "Rule",
    "SeedData",
    "User",
    "fits_rules",
]

ALL_STATUSES: Final = ("open", "cancel", "request")
# Statuses that hold a host's time: a request awaits approval but its slot is already taken.
BLOCKING_STATUSES: Final = frozenset({"open", "request"})
# Bookings start on a 15-minute grid, like the slots Jicoo offers on booking pages.
SLOT_STEP_MS: Final = 15 * MS_PER_MINUTE
TEAM_ID: Final = 39  # the integer teamId the portal example shows in availability templates


@dataclass(frozen=True, slots=True)
class Rule:
    """One weekly availability window in the template's local time, in minutes of the day."""

    wday: int
    start_min: int
    end_min: int


@dataclass(slots=True)
class User:
    """An organization member with one default availability template."""

    uid: str
    name: str
    email: str
    role: str
    profile_image: str | None
    timezone: str
    template_uid: str
    template_name: str
    rules: tuple[Rule, ...]
    created: int
    updated: int


@dataclass(slots=True)
class EventType:
    """A booking page; ``hosts`` are user indexes (all must attend), ``notify`` are notify-only."""

    uid: str
    name: str
    description: str | None
    duration: int
    hosts: tuple[int, ...]
    notify: tuple[int, ...]
    priorities: tuple[int, ...]
    created: int
    updated: int


@dataclass(slots=True)
class Booking:
    """Mutable booking state; instants are epoch milliseconds (UTC)."""

    uid: str
    event_type: int | None
    name: str
    description: str | None
    status: str
    start: int
    end: int
    location_id: str | None
    url: str | None
    phone_number: str | None
    address: str | None
    custom_location: str | None
    access: str | None
    time_zone: str
    priority: str | None
    cancel_reason: str | None
    cancelled_at: int | None
    cancelled_by: str | None
    hosts: tuple[tuple[str, str], ...]
    created: int
    updated: int


@dataclass(slots=True)
class SeedData:
    """Everything generated up front; ``range_start``/``range_end`` bound the booking days (ms)."""

    users: list[User]
    event_types: list[EventType]
    bookings: list[Booking]
    range_start: int
    range_end: int
    anchor_ms: int
    windows: list[list[tuple[int, int]]] = field(default_factory=list)


def fits_rules(rules: Sequence[Rule], zone: ZoneInfo, start_ms: int, end_ms: int) -> bool:
    """Does [start, end) lie inside one rule window, read in the template's time zone?"""
    if end_ms <= start_ms:
        return False
    local_start = dt.datetime.fromtimestamp(start_ms / MS_PER_S, zone)
    local_end = dt.datetime.fromtimestamp(end_ms / MS_PER_S, zone)
    start_min = local_start.hour * 60 + local_start.minute + local_start.second / 60
    end_min = local_end.hour * 60 + local_end.minute + local_end.second / 60
    if local_end.date() != local_start.date():
        # Only a window ending at 24:00 can hold a meeting that ends exactly at midnight.
        if local_end.date() - local_start.date() != dt.timedelta(days=1) or end_min != 0:
            return False
        end_min = MINUTES_PER_DAY
    wday = (local_start.weekday() + 1) % 7
    return any(
        rule.wday == wday and rule.start_min <= start_min and end_min <= rule.end_min
        for rule in rules
    )
