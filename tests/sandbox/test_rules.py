"""Business rules over real HTTP: reschedule, cancel, PATCH, the journal and reset."""

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from jicoo_sandbox.server import SandboxServer

# Parsed JSON bodies: the tests index into them freely.
Json = dict[str, Any]

BOOKINGS = "/v1/bookings"
TIMEOUT_S = 10.0


def instant(value: object) -> dt.datetime:
    assert isinstance(value, str)
    return dt.datetime.fromisoformat(value)


def z(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def future_open(sandbox: SandboxServer) -> list[Json]:
    soon = sandbox.config.clock() + dt.timedelta(days=1)
    return [
        b
        for b in sandbox.store.all_bookings()
        if b["status"] == "open" and instant(b["startedAt"]) > soon
    ]


def durations(sandbox: SandboxServer) -> dict[object, object]:
    return {et["uid"]: et["duration"] for et in sandbox.store.event_types()}


def free_slot(client: httpx.Client, event_type_id: str, now: dt.datetime) -> str:
    start = now + dt.timedelta(days=1)
    response = client.get(
        f"/v1/event_types/{event_type_id}/available_schedules",
        params={"periodStart": z(start), "periodEnd": z(start + dt.timedelta(days=7))},
    )
    assert response.status_code == 200, response.text
    slots = response.json()["data"]
    assert slots, "the seeded hosts should have free slots next week"
    return str(slots[len(slots) // 2]["startedAt"])


def journal_for(sandbox: SandboxServer, uid: str) -> list[tuple[object, ...]]:
    return [
        (e["method"], e["status"], e["changed"])
        for e in sandbox.store.journal()
        if e["booking_uid"] == uid
    ]


def test_reschedule_to_a_free_slot_moves_the_booking(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    booking = future_open(sandbox)[0]
    slot = free_slot(client, booking["eventTypeId"], sandbox.config.clock())
    response = client.post(
        f"{BOOKINGS}/{booking['uid']}/reschedule",
        json={"timeZone": "America/New_York", "startedAt": slot},
    )
    assert response.status_code == 200, response.text
    moved = response.json()["data"]
    minutes = durations(sandbox)[booking["eventTypeId"]]
    assert isinstance(minutes, int)
    assert moved["startedAt"] == slot
    assert instant(moved["endedAt"]) == instant(slot) + dt.timedelta(minutes=minutes)
    assert moved["status"] == "open"
    assert moved["uid"] == booking["uid"]
    assert moved["timeZone"] == "America/New_York"
    assert instant(moved["updatedAt"]) > instant(booking["updatedAt"])
    assert client.get(f"{BOOKINGS}/{booking['uid']}").json()["data"] == moved
    assert journal_for(sandbox, booking["uid"]) == [("POST", 200, True)]
    # The slot is now taken: it no longer shows as available and nobody else can have it.
    start = instant(slot)
    again = client.get(
        f"/v1/event_types/{booking['eventTypeId']}/available_schedules",
        params={
            "periodStart": z(start - dt.timedelta(hours=1)),
            "periodEnd": z(start + dt.timedelta(hours=1)),
        },
    ).json()["data"]
    assert slot not in [s["startedAt"] for s in again]


def test_reschedule_accepts_an_offset_without_millis(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    booking = future_open(sandbox)[1]
    slot = instant(free_slot(client, booking["eventTypeId"], sandbox.config.clock()))
    local = slot.astimezone(ZoneInfo("Asia/Tokyo")).isoformat()  # e.g. ...T10:00:00+09:00
    response = client.post(
        f"{BOOKINGS}/{booking['uid']}/reschedule",
        json={"timeZone": "Asia/Tokyo", "startedAt": local},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["startedAt"] == z(slot)


def refused(response: httpx.Response, code: str) -> Json:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["data"] is None
    assert body["errors"]["code"] == code, body
    assert body["errors"]["message"]
    return dict(body["errors"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, None),
        ([], None),
        ({"startedAt": "2099-01-05T01:00:00.000Z"}, "timeZone"),
        ({"timeZone": "Asia/Tokyo"}, "startedAt"),
        ({"timeZone": "Mars/Olympus", "startedAt": "2099-01-05T01:00:00.000Z"}, "timeZone"),
        ({"timeZone": "Asia/Tokyo", "startedAt": "next monday"}, "startedAt"),
        ({"timeZone": "Asia/Tokyo", "startedAt": "2099-01-05T01:00:00"}, "startedAt"),
        ({"timeZone": 9, "startedAt": "2099-01-05T01:00:00.000Z"}, "timeZone"),
    ],
)
def test_reschedule_with_a_bad_body_is_422_and_journaled(
    sandbox: SandboxServer, client: httpx.Client, body: object, field: str | None
) -> None:
    booking = future_open(sandbox)[0]
    url = f"{BOOKINGS}/{booking['uid']}/reschedule"
    response = client.post(url) if body is None else client.post(url, json=body)
    errors = refused(response, "invalid_body" if field is None else "invalid_parameter")
    if field is not None:
        assert list(errors["fields"]) == [field]
    assert client.get(f"{BOOKINGS}/{booking['uid']}").json()["data"] == booking
    assert journal_for(sandbox, booking["uid"]) == [("POST", 422, False)]


def test_reschedule_into_the_past_is_refused(sandbox: SandboxServer, client: httpx.Client) -> None:
    booking = future_open(sandbox)[0]
    past = sandbox.config.clock() - dt.timedelta(hours=2)
    response = client.post(
        f"{BOOKINGS}/{booking['uid']}/reschedule",
        json={"timeZone": "Asia/Tokyo", "startedAt": z(past)},
    )
    assert "past" in refused(response, "slot_in_past")["message"]


def test_reschedule_outside_availability_is_refused(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    booking = future_open(sandbox)[0]
    host = booking["hosts"][0]["userId"]
    zone = ZoneInfo(
        client.get("/v1/user_availability_calendars", params={"userId": host}).json()["data"][0][
            "timezone"
        ]
    )
    # No seeded template opens on Sundays; 12:00 local on the Sunday two weeks ahead.
    day = sandbox.config.clock().astimezone(zone).date() + dt.timedelta(days=14)
    sunday = day + dt.timedelta(days=(6 - day.weekday()) % 7)
    noon = dt.datetime.combine(sunday, dt.time(12), zone)
    response = client.post(
        f"{BOOKINGS}/{booking['uid']}/reschedule",
        json={"timeZone": "Asia/Tokyo", "startedAt": z(noon)},
    )
    assert host in refused(response, "outside_availability")["message"]


def test_reschedule_running_past_the_window_end_is_refused(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    """Starting inside a window is not enough: the whole meeting must fit in it."""
    booking = future_open(sandbox)[0]
    host = booking["hosts"][0]["userId"]
    calendar = client.get("/v1/user_availability_calendars", params={"userId": host}).json()[
        "data"
    ][0]
    zone = ZoneInfo(calendar["timezone"])
    rule = max(calendar["calendars"], key=lambda r: r["endHour"])
    day = sandbox.config.clock().astimezone(zone).date() + dt.timedelta(days=8)
    while (day.weekday() + 1) % 7 != rule["wday"]:
        day += dt.timedelta(days=1)
    close = dt.datetime.combine(day, dt.time(rule["endHour"], rule["endMinute"]), zone)
    minutes = durations(sandbox)[booking["eventTypeId"]]
    assert isinstance(minutes, int)
    # On the grid, inside the window, but ending a quarter hour after it closes.
    start = close - dt.timedelta(minutes=minutes) + dt.timedelta(minutes=15)
    response = client.post(
        f"{BOOKINGS}/{booking['uid']}/reschedule",
        json={"timeZone": "Asia/Tokyo", "startedAt": z(start)},
    )
    refused(response, "outside_availability")


def test_reschedule_onto_another_open_booking_of_the_host_is_refused(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    candidates = future_open(sandbox)
    by_type: dict[str, list[Json]] = {}
    for booking in candidates:
        by_type.setdefault(booking["eventTypeId"], []).append(booking)
    mover, other = next(pair for pair in by_type.values() if len(pair) >= 2)[:2]
    response = client.post(
        f"{BOOKINGS}/{mover['uid']}/reschedule",
        json={"timeZone": "Asia/Tokyo", "startedAt": other["startedAt"]},
    )
    assert other["uid"] in refused(response, "slot_unavailable")["message"]
    # Its own slot does not clash with itself.
    same = client.post(
        f"{BOOKINGS}/{mover['uid']}/reschedule",
        json={"timeZone": "Asia/Tokyo", "startedAt": mover["startedAt"]},
    )
    assert same.status_code == 200, same.text


def test_reschedule_of_a_cancelled_or_unknown_booking(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    cancelled = next(b for b in sandbox.store.all_bookings() if b["status"] == "cancel")
    slot = "2099-01-05T01:00:00.000Z"
    response = client.post(
        f"{BOOKINGS}/{cancelled['uid']}/reschedule",
        json={"timeZone": "Asia/Tokyo", "startedAt": slot},
    )
    refused(response, "booking_cancelled")
    unknown = client.post(
        f"{BOOKINGS}/nope/reschedule", json={"timeZone": "Asia/Tokyo", "startedAt": slot}
    )
    assert unknown.status_code == 404
    assert journal_for(sandbox, "nope") == [("POST", 404, False)]


def test_cancel_then_cancel_again(sandbox: SandboxServer, client: httpx.Client) -> None:
    booking = future_open(sandbox)[0]
    before = sandbox.config.clock() - dt.timedelta(seconds=1)
    response = client.post(
        f"{BOOKINGS}/{booking['uid']}/cancel",
        json={"cancelReason": "体調不良", "reason": "ignored"},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "cancel"
    assert data["cancelledBy"] == "host"
    assert data["cancelReason"] == "体調不良"
    assert before <= instant(data["cancelledAt"]) <= sandbox.config.clock()
    assert data["startedAt"] == booking["startedAt"]
    again = client.post(f"{BOOKINGS}/{booking['uid']}/cancel")
    assert "already cancelled" in refused(again, "already_cancelled")["message"]
    assert journal_for(sandbox, booking["uid"]) == [("POST", 200, True), ("POST", 422, False)]


def test_cancel_with_an_empty_body_frees_the_slot(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    request = next(b for b in sandbox.store.all_bookings() if b["status"] == "request")
    response = client.post(f"{BOOKINGS}/{request['uid']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["cancelReason"] is None
    bad = client.post(
        f"{BOOKINGS}/{future_open(sandbox)[0]['uid']}/cancel", json={"cancelReason": 5}
    )
    assert list(refused(bad, "invalid_parameter")["fields"]) == ["cancelReason"]
    broken = client.post(
        f"{BOOKINGS}/{future_open(sandbox)[0]['uid']}/cancel",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    refused(broken, "invalid_body")
    assert sandbox.store.journal()[-1]["body"] == "{not json"


def test_patch_changes_only_the_sent_fields(sandbox: SandboxServer, client: httpx.Client) -> None:
    booking = future_open(sandbox)[0]
    response = client.patch(
        f"{BOOKINGS}/{booking['uid']}",
        json={"name": "新しい件名", "priority": "high", "isSendUpdates": False},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["name"] == "新しい件名"
    assert data["priority"] == "high"
    assert instant(data["updatedAt"]) > instant(booking["updatedAt"])
    untouched = {k: v for k, v in data.items() if k not in ("name", "priority", "updatedAt")}
    assert untouched == {
        k: v for k, v in booking.items() if k not in ("name", "priority", "updatedAt")
    }
    assert journal_for(sandbox, booking["uid"]) == [("PATCH", 200, True)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 5}, "name"),
        ({"priority": "urgent"}, "priority"),
        ({"isSendUpdates": "yes"}, "isSendUpdates"),
        ({"hosts": [{"userId": "x"}]}, "hosts"),
        ({"timeZone": "Nowhere/Land"}, "timeZone"),
        ({"endedAt": "2000-01-01T00:00:00Z"}, "endedAt"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_patch_validates_types(
    sandbox: SandboxServer, client: httpx.Client, body: Json, field: str
) -> None:
    booking = future_open(sandbox)[0]
    response = client.patch(f"{BOOKINGS}/{booking['uid']}", json=body)
    assert list(refused(response, "invalid_parameter")["fields"]) == [field]
    assert client.get(f"{BOOKINGS}/{booking['uid']}").json()["data"] == booking
    assert journal_for(sandbox, booking["uid"]) == [("PATCH", 422, False)]


def test_writes_need_the_key_and_are_journaled_anyway(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    booking = future_open(sandbox)[0]
    response = httpx.post(
        f"{sandbox.base_url}{BOOKINGS}/{booking['uid']}/cancel", timeout=TIMEOUT_S
    )
    assert response.status_code == 403
    assert journal_for(sandbox, booking["uid"]) == [("POST", 403, False)]
    assert client.get(f"{BOOKINGS}/{booking['uid']}").json()["data"]["status"] == "open"


def test_journal_endpoint_and_reset_restore_the_seeded_state(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    seeded = sandbox.store.all_bookings()
    booking = future_open(sandbox)[0]
    client.post(f"{BOOKINGS}/{booking['uid']}/cancel", json={"cancelReason": "x"})
    client.patch(f"{BOOKINGS}/{booking['uid']}", json={"name": "y"})
    journal = httpx.get(f"{sandbox.base_url}/_sandbox/journal", timeout=TIMEOUT_S).json()
    assert journal["count"] == 2
    first = journal["data"][0]
    assert set(first) == {
        "seq",
        "time",
        "method",
        "path",
        "booking_uid",
        "body",
        "status",
        "changed",
        "fault",
    }
    assert (first["seq"], first["path"], first["body"]) == (
        1,
        f"{BOOKINGS}/{booking['uid']}/cancel",
        {"cancelReason": "x"},
    )
    assert instant(first["time"]).tzinfo is not None
    since = httpx.get(
        f"{sandbox.base_url}/_sandbox/journal", params={"since": 1}, timeout=TIMEOUT_S
    )
    assert [e["seq"] for e in since.json()["data"]] == [2]
    assert sandbox.store.all_bookings() != seeded
    reset = httpx.post(f"{sandbox.base_url}/_sandbox/reset", timeout=TIMEOUT_S)
    assert reset.status_code == 200
    assert sandbox.store.all_bookings() == seeded
    assert sandbox.store.journal() == []


SLOT_RULE_CODES = {"slot_in_past", "slot_off_grid", "outside_availability", "slot_unavailable"}
PROBE_STEP = dt.timedelta(minutes=5)


def test_reschedule_accepts_exactly_the_starts_available_schedules_lists(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    """Every 5 minutes of the booking's own day: accepted if and only if listed, or overlapping
    the booking's own first slot (the listing counts it as taken; moving the booking frees it).
    Anything else is a 422 naming a slot rule. The day starts after now: future_open is > 1 day
    ahead."""
    for booking in future_open(sandbox):
        own_start, own_end = instant(booking["startedAt"]), instant(booking["endedAt"])
        day = own_start.replace(hour=0, minute=0, second=0, microsecond=0)
        listed = {
            instant(slot["startedAt"])
            for slot in client.get(
                f"/v1/event_types/{booking['eventTypeId']}/available_schedules",
                params={"periodStart": z(day), "periodEnd": z(day + dt.timedelta(days=1))},
            ).json()["data"]
        }
        if listed:  # a day with other free slots than the booking's own
            break
    else:
        raise AssertionError("no future booking's day has free slots")
    length = own_end - own_start
    accepted: set[dt.datetime] = set()
    codes: set[str] = set()
    start = day
    while start < day + dt.timedelta(days=1):
        response = client.post(
            f"{BOOKINGS}/{booking['uid']}/reschedule",
            json={"timeZone": "Asia/Tokyo", "startedAt": z(start)},
        )
        if response.status_code == httpx.codes.OK:
            accepted.add(start)
        else:
            codes.add(refused(response, response.json()["errors"]["code"])["code"])
        start += PROBE_STEP
    overlapping_own = {s for s in accepted if s < own_end and own_start < s + length}
    assert accepted - overlapping_own == listed
    assert own_start in accepted
    assert codes <= SLOT_RULE_CODES
    assert "slot_off_grid" in codes
