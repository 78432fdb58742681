"""Which day partitions recorded events make stale, grouped into ranges one run each can refresh.

A day is stale if an event's booking now starts on it, or if the warehouse still holds the
booking on it (the day it was on before a reschedule, or any day a missed event left behind).
Stale days a few days apart may share one range (``join_gap_days``): the days between cost a
listing request each, a run of their own would cost a process start.
"""

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pyarrow.compute as pc

from jicoo_connector.extract.catalog.bookings import BOOKINGS
from jicoo_connector.storage import ParquetStore
from jicoo_connector.webhooks._store import StoredEvent

__all__ = ["RefreshPlan", "RefreshRange", "plan_refresh", "warehouse_days"]

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class RefreshRange:
    """Consecutive days to re-extract in one run, and the events that asked for them (the days
    between two stale days of a range, when it joined a gap, were asked for by none)."""

    start: dt.date
    end: dt.date
    events: tuple[StoredEvent, ...]


@dataclass(frozen=True, slots=True)
class RefreshPlan:
    """What a batch of events asks for: ranges to refresh, events ignored and days skipped."""

    ranges: tuple[RefreshRange, ...]
    ignored: tuple[StoredEvent, ...] = ()
    # Days outside [first_day, last_day] (no partition exists yet, or any more).
    outside: Mapping[dt.date, tuple[int, ...]] = field(default_factory=dict)

    @property
    def days(self) -> list[dt.date]:
        return [
            r.start + n * ONE_DAY for r in self.ranges for n in range((r.end - r.start).days + 1)
        ]


def _id(stored: StoredEvent) -> int:
    return stored.id


def warehouse_days(store: ParquetStore, uids: Collection[str]) -> dict[str, dt.date]:
    """The day partition each booking is on in the bookings Parquet (reads two columns)."""
    if not uids:
        return {}
    day_column = BOOKINGS.spec.partition_column
    table = store.dataset(BOOKINGS.spec).to_table(
        columns=["uid", day_column], filter=pc.field("uid").isin(sorted(uids))
    )
    found: dict[str, dt.date] = {}
    for uid, day in zip(table["uid"].to_pylist(), table[day_column].to_pylist(), strict=True):
        if isinstance(uid, str) and isinstance(day, dt.date):
            found[uid] = day
    return found


def plan_refresh(
    events: Iterable[StoredEvent],
    *,
    zone: str,
    previous: Mapping[str, dt.date],
    first_day: dt.date,
    last_day: dt.date,
    join_gap_days: int = 0,
) -> RefreshPlan:
    """Days each known event makes stale (its new start day in ``zone``, and the booking's day
    in ``previous``, the warehouse), merged into ranges of consecutive days; two stale days at
    most ``join_gap_days`` untouched days apart join one range."""
    tz = ZoneInfo(zone)
    by_day: dict[dt.date, list[StoredEvent]] = {}
    ignored: list[StoredEvent] = []
    outside: dict[dt.date, list[int]] = {}
    for stored in events:
        event = stored.event
        if not event.known:
            ignored.append(stored)
            continue
        days = {previous[event.booking_uid]} if event.booking_uid in previous else set()
        if event.started_at is not None:
            days.add(event.started_at.astimezone(tz).date())
        for day in days:
            if first_day <= day <= last_day:
                by_day.setdefault(day, []).append(stored)
            else:
                outside.setdefault(day, []).append(stored.id)
    runs: list[list[dt.date]] = []
    for day in sorted(by_day):
        if runs and (day - runs[-1][-1]).days <= join_gap_days + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    ranges = [
        RefreshRange(
            days[0],
            days[-1],
            tuple(sorted({s.id: s for day in days for s in by_day[day]}.values(), key=_id)),
        )
        for days in runs
    ]
    return RefreshPlan(
        ranges=tuple(ranges),
        ignored=tuple(ignored),
        outside={day: tuple(ids) for day, ids in sorted(outside.items())},
    )
