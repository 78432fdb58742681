"""Endpoints over real HTTP: paging, filters, ordering, validation, auth, 403 and 404 shapes."""

import datetime as dt
import math
from typing import Any

import httpx
import pytest

from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY, Clock, SandboxConfig
from jicoo_sandbox.server import SandboxServer
from tests.support.sandbox import LIMITED_KEY

# Parsed JSON bodies: the tests index into them freely.
Json = dict[str, Any]

BOOKINGS = "/v1/bookings"
TIMEOUT_S = 10.0
NOT_FOUND = {"code": "not_found", "message": "Record Not Found", "fields": {}}


def walk(client: httpx.Client, params: dict[str, str | int]) -> tuple[list[str], list[Json]]:
    """Every page of a booking query: (uids in order, page envelopes)."""
    uids: list[str] = []
    pages: list[Json] = []
    page = 1
    while True:
        response = client.get(BOOKINGS, params={**params, "page": page})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        uids += [b["uid"] for b in body["data"]]
        if "nextPage" not in body:
            return uids, pages
        assert body["nextPage"] == page + 1
        page += 1


def instant(value: object) -> dt.datetime:
    assert isinstance(value, str)
    return dt.datetime.fromisoformat(value)


def test_paging_returns_every_booking_exactly_once(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    uids, pages = walk(client, {"perPage": 100})
    expected = [b["uid"] for b in sandbox.store.all_bookings()]
    assert uids == expected
    assert len(set(uids)) == len(uids) == pages[0]["totalCount"]
    assert sum(p["count"] for p in pages) == pages[0]["totalCount"]
    assert len(pages) == pages[0]["numberOfPages"] == math.ceil(len(uids) / 100)
    assert [p["currentPage"] for p in pages] == list(range(1, len(pages) + 1))
    assert all("nextPage" in p for p in pages[:-1])
    assert "nextPage" not in pages[-1]
    assert {p["errors"] == {} for p in pages} == {True}


def test_default_page_size_and_page_past_the_end(client: httpx.Client) -> None:
    first = client.get(BOOKINGS).json()
    assert first["count"] == 20
    assert first["nextPage"] == 2
    beyond = client.get(BOOKINGS, params={"page": first["numberOfPages"] + 3}).json()
    assert beyond["data"] == []
    assert beyond["count"] == 0
    assert beyond["totalCount"] == first["totalCount"]
    assert beyond["numberOfPages"] == first["numberOfPages"]
    assert "nextPage" not in beyond


def test_all_statuses_are_listed_without_a_filter(client: httpx.Client) -> None:
    uids, _ = walk(client, {"perPage": 100})
    statuses = {client.get(f"{BOOKINGS}/{uid}").json()["data"]["status"] for uid in uids[:300]}
    assert statuses == {"open", "cancel", "request"}


def brute_force(
    bookings: list[Json],
    status: str | None,
    started: dt.datetime | None,
    ended: dt.datetime | None,
    order: str,
    desc: bool,
) -> list[str]:
    kept = [
        b
        for b in bookings
        if (status is None or b["status"] == status)
        and (started is None or instant(b["startedAt"]) >= started)
        and (ended is None or instant(b["endedAt"]) <= ended)
    ]
    kept.sort(key=lambda b: (instant(b[order]), b["uid"]), reverse=desc)
    return [b["uid"] for b in kept]


@pytest.mark.parametrize(
    ("status", "window", "order", "sort"),
    [
        ("open", None, None, None),
        ("cancel", None, None, "desc"),
        (None, (-10, 5), None, None),
        ("open", (-3, 3), "startedAt", "desc"),
        (None, (-20, 0), "createdAt", "asc"),
        ("cancel", None, "createdAt", "desc"),
    ],
)
def test_filters_and_order_match_a_brute_force_filter(
    sandbox: SandboxServer,
    client: httpx.Client,
    status: str | None,
    window: tuple[int, int] | None,
    order: str | None,
    sort: str | None,
) -> None:
    params: dict[str, str | int] = {"perPage": 100}
    started = ended = None
    if window is not None:
        today = dt.datetime.combine(sandbox.store.anchor, dt.time(15), dt.UTC)
        started = today + dt.timedelta(days=window[0])
        ended = today + dt.timedelta(days=window[1], minutes=30)
        # One bound with Z and millis, the other with an offset and no millis: both are accepted.
        params["startedAt"] = started.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        params["endedAt"] = ended.astimezone(dt.timezone(dt.timedelta(hours=9))).isoformat()
    for name, value in (("status", status), ("order", order), ("sort", sort)):
        if value is not None:
            params[name] = value
    uids, pages = walk(client, params)
    expected = brute_force(
        sandbox.store.all_bookings(), status, started, ended, order or "startedAt", sort == "desc"
    )
    assert uids == expected
    assert pages[0]["totalCount"] == len(expected) > 0


def test_endedat_filter_at_a_booking_end_is_inclusive(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    booking = sandbox.store.all_bookings()[500]
    body = client.get(
        BOOKINGS,
        params={
            "startedAt": str(booking["startedAt"]),
            "endedAt": str(booking["endedAt"]),
            "perPage": 100,
        },
    ).json()
    assert booking["uid"] in [b["uid"] for b in body["data"]]
    for b in body["data"]:
        assert instant(b["startedAt"]) >= instant(booking["startedAt"])
        assert instant(b["endedAt"]) <= instant(booking["endedAt"])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("perPage", "101"),
        ("perPage", "0"),
        ("perPage", "ten"),
        ("page", "0"),
        ("page", "1.5"),
        ("page", "-1"),
        ("status", "request"),
        ("sort", "up"),
        ("order", "name"),
        ("startedAt", "yesterday"),
        ("endedAt", "2024-03-01"),
        ("startedAt", "2024-03-01T20:00:00"),
    ],
)
def test_bad_query_parameters_are_422_naming_the_field(
    client: httpx.Client, name: str, value: str
) -> None:
    response = client.get(BOOKINGS, params={name: value})
    assert response.status_code == 422
    body = response.json()
    assert body["data"] is None
    assert body["errors"]["code"] == "invalid_parameter"
    assert list(body["errors"]["fields"]) == [name]
    assert name in body["errors"]["message"]


def _refusals(base_url: str) -> list[tuple[int, str]]:
    """(status, errors.code) for no key, a wrong key and Bearer auth (no X-Jicoo-Api-Key)."""
    answers = [
        httpx.get(f"{base_url}{BOOKINGS}", headers=headers, timeout=TIMEOUT_S)
        for headers in (
            {},
            {"X-Jicoo-Api-Key": "sk_test_wrong"},
            {"Authorization": f"Bearer {DEFAULT_SANDBOX_KEY}"},
        )
    ]
    return [(answer.status_code, answer.json()["errors"]["code"]) for answer in answers]


def test_missing_or_wrong_key_is_403_as_the_real_api_answered(sandbox: SandboxServer) -> None:
    assert _refusals(sandbox.base_url) == [(403, "unauthorized")] * 3
    upper = httpx.get(
        f"{sandbox.base_url}{BOOKINGS}",
        headers={"X-JICOO-API-KEY": sandbox.api_key},
        timeout=TIMEOUT_S,
    )
    assert upper.status_code == 200


def test_the_refusal_can_be_401_instead(clock: Clock) -> None:
    config = SandboxConfig(
        bookings=20, api_keys=(DEFAULT_SANDBOX_KEY,), auth_failure_status=401, clock=clock
    )
    with SandboxServer(config) as server:
        assert _refusals(server.base_url) == [(401, "unauthorized")] * 3
    with pytest.raises(ValueError, match="auth_failure_status"):
        SandboxConfig(auth_failure_status=400, clock=clock)


def test_denied_operation_is_403_only_for_that_key_and_operation(sandbox: SandboxServer) -> None:
    headers = {"X-Jicoo-Api-Key": LIMITED_KEY}
    denied = httpx.get(f"{sandbox.base_url}/v1/event_types", headers=headers, timeout=TIMEOUT_S)
    assert denied.status_code == 403
    assert denied.json()["errors"]["code"] == "forbidden"
    assert "listEventTypes" in denied.json()["errors"]["message"]
    allowed = httpx.get(f"{sandbox.base_url}{BOOKINGS}", headers=headers, timeout=TIMEOUT_S)
    assert allowed.status_code == 200
    main = httpx.get(
        f"{sandbox.base_url}/v1/event_types",
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        timeout=TIMEOUT_S,
    )
    assert main.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/bookings/nope",
        "/v1/bookings/nope/contacts",
        "/v1/event_types/nope",
        "/v1/organization_users/nope",
        "/v1/user_availability_calendars/nope",
        "/v1/no_such_thing",
    ],
)
def test_unknown_records_and_routes_are_404_in_the_error_shape(
    client: httpx.Client, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"data": None, "errors": NOT_FOUND}


def test_single_resources_and_contacts(sandbox: SandboxServer, client: httpx.Client) -> None:
    booking = sandbox.store.all_bookings()[7]
    got = client.get(f"{BOOKINGS}/{booking['uid']}").json()
    assert got == {"data": booking, "errors": {}}
    contacts = client.get(f"{BOOKINGS}/{booking['uid']}/contacts").json()["data"]
    assert 1 <= len(contacts) <= 3
    users = client.get("/v1/organization_users", params={"perPage": 100}).json()
    user = users["data"][0]
    assert client.get(f"/v1/organization_users/{user['uid']}").json()["data"] == user
    calendars = client.get("/v1/user_availability_calendars", params={"userId": user["uid"]})
    template = calendars.json()["data"][0]
    assert template["userId"] == user["uid"]
    one = client.get(f"/v1/user_availability_calendars/{template['uid']}").json()["data"]
    assert one == template
    event_type = client.get("/v1/event_types").json()["data"][0]
    assert client.get(f"/v1/event_types/{event_type['uid']}").json()["data"] == event_type
    hosts = client.get("/v1/event_type_hosts", params={"eventTypeId": event_type["uid"]}).json()
    assert hosts["totalCount"] >= 1
    assert hosts["data"][0]["userType"] == "host"


def test_required_query_parameters(client: httpx.Client) -> None:
    missing_user = client.get("/v1/user_availability_calendars")
    assert missing_user.status_code == 400
    assert list(missing_user.json()["errors"]["fields"]) == ["userId"]
    missing_type = client.get("/v1/event_type_hosts")
    assert missing_type.status_code == 422
    assert list(missing_type.json()["errors"]["fields"]) == ["eventTypeId"]


def test_available_schedules_window_rules(sandbox: SandboxServer, client: httpx.Client) -> None:
    uid = client.get("/v1/event_types").json()["data"][0]["uid"]
    path = f"/v1/event_types/{uid}/available_schedules"
    start = sandbox.config.clock().replace(microsecond=0) + dt.timedelta(days=1)

    def ask(**params: str) -> httpx.Response:
        return client.get(path, params=params)

    ok = ask(periodStart=start.isoformat(), periodEnd=(start + dt.timedelta(days=7)).isoformat())
    assert ok.status_code == 200
    slots = ok.json()["data"]
    assert slots
    assert all(s["remainingCapacity"] >= 1 for s in slots)
    assert all(start <= instant(s["startedAt"]) < start + dt.timedelta(days=7) for s in slots)
    too_long = ask(
        periodStart=start.isoformat(),
        periodEnd=(start + dt.timedelta(days=7, seconds=1)).isoformat(),
    )
    assert too_long.status_code == 422
    backwards = ask(periodStart=start.isoformat(), periodEnd=start.isoformat())
    assert backwards.status_code == 422
    missing = ask(periodStart=start.isoformat())
    assert missing.status_code == 422
    assert list(missing.json()["errors"]["fields"]) == ["periodEnd"]
    unknown = client.get(
        "/v1/event_types/nope/available_schedules",
        params={
            "periodStart": start.isoformat(),
            "periodEnd": (start + dt.timedelta(days=1)).isoformat(),
        },
    )
    assert unknown.status_code == 404


def test_lists_of_small_resources_page_like_bookings(client: httpx.Client) -> None:
    for path in ("/v1/organization_users", "/v1/event_types", "/v1/schedules"):
        first = client.get(path, params={"perPage": 3}).json()
        assert first["count"] == 3
        assert first["nextPage"] == 2
        assert first["numberOfPages"] == math.ceil(first["totalCount"] / 3)
        last = client.get(path, params={"perPage": 3, "page": first["numberOfPages"]}).json()
        assert "nextPage" not in last
        assert 1 <= last["count"] <= 3
        assert client.get(path, params={"perPage": 101}).status_code == 422
    schedules = client.get("/v1/schedules", params={"perPage": 100}).json()
    assert schedules["totalCount"] >= 20
    starts = [instant(s["startedAt"]) for s in schedules["data"]]
    assert starts == sorted(starts)
