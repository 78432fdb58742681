"""Seeded data: deterministic, realistic, inside availability, never double-booked; drift."""

import datetime as dt
import itertools
import random
from collections import Counter, defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from jicoo_sandbox.config import SandboxConfig
from jicoo_sandbox.drift import drift_delete, drift_insert, drift_move
from jicoo_sandbox.store import SandboxStore

ANCHOR = dt.date(2024, 6, 12)
SMALL = 1500
BLOCKING = ("open", "request")


def parse(value: object) -> dt.datetime:
    assert isinstance(value, str)
    return dt.datetime.fromisoformat(value)


@pytest.fixture(scope="module")
def store() -> SandboxStore:
    return SandboxStore(SandboxConfig(seed=11, bookings=SMALL, anchor_date=ANCHOR))


def test_same_seed_gives_byte_identical_bookings(store: SandboxStore) -> None:
    again = SandboxStore(SandboxConfig(seed=11, bookings=SMALL, anchor_date=ANCHOR))
    assert orjson.dumps(again.all_bookings()) == orjson.dumps(store.all_bookings())
    uid = str(store.all_bookings()[0]["uid"])
    assert again.contacts(uid) == store.contacts(uid)
    assert again.users() == store.users()


def test_other_seed_or_anchor_gives_other_data(store: SandboxStore) -> None:
    other_seed = SandboxStore(SandboxConfig(seed=12, bookings=SMALL, anchor_date=ANCHOR))
    other_day = SandboxStore(
        SandboxConfig(seed=11, bookings=SMALL, anchor_date=ANCHOR + dt.timedelta(days=1))
    )
    mine = orjson.dumps(store.all_bookings())
    assert orjson.dumps(other_seed.all_bookings()) != mine
    assert orjson.dumps(other_day.all_bookings()) != mine


def test_bookings_span_the_configured_days_with_a_realistic_status_mix(
    store: SandboxStore,
) -> None:
    bookings = store.all_bookings()
    assert len(bookings) == SMALL
    assert len({b["uid"] for b in bookings}) == SMALL
    starts = [parse(b["startedAt"]) for b in bookings]
    first = dt.datetime.combine(ANCHOR - dt.timedelta(days=60), dt.time(), dt.UTC)
    last = dt.datetime.combine(ANCHOR + dt.timedelta(days=31), dt.time(), dt.UTC)
    assert first <= min(starts)
    assert max(starts) < last
    mix = Counter(str(b["status"]) for b in bookings)
    assert 0.72 < mix["open"] / SMALL < 0.88
    assert 0.07 < mix["cancel"] / SMALL < 0.17
    assert 0.04 < mix["request"] / SMALL < 0.12
    # A few bookings start between 00:00 and 01:00 JST: the day-boundary cases.
    assert any(
        0 <= parse(b["startedAt"]).astimezone(ZoneInfo("Asia/Tokyo")).hour < 1 for b in bookings
    )
    assert any("様" in str(b["name"]) for b in bookings)
    names = [str(u["name"]) for u in store.users()]
    assert any(not n.isascii() for n in names)
    assert any(n.isascii() for n in names)
    assert all(len(str(u["uid"])) == 28 for u in store.users())


def test_open_bookings_of_a_host_never_overlap(store: SandboxStore) -> None:
    by_host: dict[str, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
    for booking in store.all_bookings():
        if booking["status"] in BLOCKING:
            for host in booking["hosts"]:  # type: ignore[attr-defined]
                by_host[host["userId"]].append(
                    (parse(booking["startedAt"]), parse(booking["endedAt"]))
                )
    assert len(by_host) >= 8
    for intervals in by_host.values():
        intervals.sort()
        for (_, end), (next_start, _) in itertools.pairwise(intervals):
            assert end <= next_start


def test_every_seeded_booking_fits_inside_its_hosts_availability(store: SandboxStore) -> None:
    """Checked against the calendars the API serves, evaluated independently with zoneinfo."""
    templates = {}
    for user in store.users():
        (calendar,) = store.calendars(str(user["uid"]))
        templates[user["uid"]] = calendar
    for booking in store.all_bookings():
        for host in booking["hosts"]:  # type: ignore[attr-defined]
            calendar = templates[host["userId"]]
            zone = ZoneInfo(str(calendar["timezone"]))
            start = parse(booking["startedAt"]).astimezone(zone)
            end = parse(booking["endedAt"]).astimezone(zone)
            assert start.date() == end.date(), booking
            wday = (start.weekday() + 1) % 7
            minutes = (start.hour * 60 + start.minute, end.hour * 60 + end.minute)
            assert any(
                rule["wday"] == wday
                and rule["startHour"] * 60 + rule["startMinute"] <= minutes[0]
                and minutes[1] <= rule["endHour"] * 60 + rule["endMinute"]
                for rule in calendar["calendars"]  # type: ignore[attr-defined]
            ), (booking["uid"], start, end)


def test_durations_follow_the_event_types(store: SandboxStore) -> None:
    durations = {et["uid"]: et["duration"] for et in store.event_types()}
    assert set(durations.values()) <= {15, 30, 45, 60, 90}
    for booking in store.all_bookings():
        minutes = (parse(booking["endedAt"]) - parse(booking["startedAt"])).total_seconds() / 60
        assert minutes == durations[booking["eventTypeId"]]


def test_contacts_are_lazy_deterministic_and_varied(store: SandboxStore) -> None:
    uids = [str(b["uid"]) for b in store.all_bookings()[:50]]
    sizes = set()
    for uid in uids:
        contacts = store.contacts(uid)
        assert contacts is not None
        assert contacts == store.contacts(uid)
        sizes.add(len(contacts))
        for contact in contacts:
            assert contact["answers"]
    assert sizes <= {1, 2, 3}
    assert len(sizes) > 1
    assert store.contacts("no-such-booking") is None


def test_drift_primitives_shift_the_data_and_journal_themselves() -> None:
    store = SandboxStore(SandboxConfig(seed=3, bookings=400, anchor_date=ANCHOR))
    before = [b["uid"] for b in store.all_bookings()]
    rng = random.Random(1)
    inserted = drift_insert(store, 5, rng)
    deleted = drift_delete(store, 3, rng)
    moved_before = {uid: store.get_booking(str(uid)) for uid in before if uid not in deleted}
    moved = drift_move(store, 4, rng)
    assert len(inserted) == 5
    assert len(deleted) == 3
    assert len(moved) == 4
    after = [b["uid"] for b in store.all_bookings()]
    assert len(after) == 400 + 5 - 3
    assert set(inserted) <= set(after)
    assert not set(deleted) & set(after)
    for uid in moved:
        old, new = moved_before[uid], store.get_booking(uid)
        assert old is not None
        assert new is not None
        assert abs(parse(new["startedAt"]) - parse(old["startedAt"])) == dt.timedelta(days=7)
    # Each moved booking now has other neighbours: its place in the startedAt order changed.
    steady = [uid for uid in before if uid in after and uid not in moved]
    for uid in moved:
        earlier_before = {u for u in before[: before.index(uid)] if u in steady}
        earlier_after = {u for u in after[: after.index(uid)] if u in steady}
        assert earlier_before != earlier_after
    journal = store.journal()
    assert [e["method"] for e in journal] == ["DRIFT"] * 12
    assert [e.booking_uid for e in journal] == inserted + deleted + moved
    store.reset()
    assert [b["uid"] for b in store.all_bookings()] == before
    assert store.journal() == []


def test_journal_file_gets_one_json_line_per_entry(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    store = SandboxStore(SandboxConfig(bookings=50, anchor_date=ANCHOR, journal_path=path))
    store.record(
        method="POST", path="/v1/x", booking_uid="u1", body={"a": 1}, status=200, changed=True
    )
    store.record(
        method="POST", path="/v1/y", booking_uid=None, body=None, status=422, changed=False
    )
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert lines == [dict(e) for e in store.journal()]
    assert lines[0]["seq"] == 1
    assert lines[1]["status"] == 422


def test_building_a_hundred_thousand_bookings_works() -> None:
    store = SandboxStore(SandboxConfig(seed=5, bookings=100_000, anchor_date=ANCHOR))
    assert store.booking_count() == 100_000
    assert len(store.users()) >= 100_000 // 400
