"""plan_refresh: which days events make stale, and how they group into runs."""

import datetime as dt

from jicoo_connector.webhooks import StoredEvent, WebhookEvent, plan_refresh

ZONE = "Asia/Tokyo"
FIRST = dt.date(2026, 12, 1)
LAST = dt.date(2026, 12, 31)


def moved_to(event_id: int, day: int) -> StoredEvent:
    start = dt.datetime(2026, 12, day, 1, tzinfo=dt.UTC)  # 10:00 in Tokyo, that same day
    event = WebhookEvent("host_rescheduled", f"uid{event_id}", f"2026-11-30T00:00:0{event_id}Z",
                         start)  # fmt: skip
    return StoredEvent(event_id, event, "2026-11-30T00:00:00Z")


def ranges(days: list[int], gap: int) -> list[tuple[int, int, list[int]]]:
    events = [moved_to(n, day) for n, day in enumerate(days, start=1)]
    plan = plan_refresh(events, zone=ZONE, previous={}, first_day=FIRST, last_day=LAST,
                        join_gap_days=gap)  # fmt: skip
    return [(r.start.day, r.end.day, [s.id for s in r.events]) for r in plan.ranges]


def test_consecutive_days_are_one_range_and_a_gap_splits_them() -> None:
    assert ranges([10, 11, 14], gap=0) == [(10, 11, [1, 2]), (14, 14, [3])]


def test_days_up_to_the_gap_apart_join_one_range_farther_ones_do_not() -> None:
    assert ranges([10, 11, 14, 18], gap=2) == [(10, 14, [1, 2, 3]), (18, 18, [4])]
    assert ranges([10, 14], gap=3) == [(10, 14, [1, 2])]
    assert ranges([10, 14], gap=2) == [(10, 10, [1]), (14, 14, [2])]
