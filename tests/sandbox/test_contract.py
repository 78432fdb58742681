"""Every endpoint's success and error bodies validate against openapi.yaml's response schemas."""

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from jicoo_sandbox.server import SandboxServer
from tests.support.sandbox import LIMITED_KEY

# Parsed JSON bodies: the tests index into them freely.
Json = dict[str, Any]

# The spec lives next to the repository (../shared/jicoo-api) and is never copied into it.
SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared/jicoo-api/openapi.yaml"
SPEC_URI = "urn:jicoo:openapi"
TIMEOUT_S = 10.0
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# In data, every key ending in "At" (startedAt, cancelledAt, createdAt...) holds a timestamp.
TIMESTAMP_KEYS = re.compile(r"At$")


@pytest.fixture(scope="module")
def spec() -> Json:
    if not SPEC_PATH.is_file():
        pytest.fail(
            f"openapi.yaml not found at {SPEC_PATH}; the contract tests need ../shared/jicoo-api "
            "next to the repository",
            pytrace=False,
        )
    loaded = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def registry(spec: Json) -> Registry[Any]:
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    return registry


def response_schema(spec: Json, template: str, method: str, status: int) -> Json:
    responses = spec["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} does not document {status}"
    entry = responses[str(status)]
    if "$ref" in entry:
        entry = spec["components"]["responses"][entry["$ref"].rsplit("/", 1)[1]]
    schema = entry["content"]["application/json"]["schema"]
    assert isinstance(schema, dict)
    return schema


def timestamps(value: object, where: str = "$") -> Iterator[tuple[str, object]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if TIMESTAMP_KEYS.search(key) and item is not None:
                yield f"{where}.{key}", item
            yield from timestamps(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from timestamps(item, f"{where}[{index}]")


def check(
    spec: Json,
    registry: Registry[Any],
    response: httpx.Response,
    template: str,
    status: int,
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    schema = response_schema(spec, template, response.request.method, status)
    # Wrap the schema so its "#/components/..." refs resolve inside the whole spec document.
    validator = Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/{ref_path(spec, schema)}"}, registry=registry
    )
    body = response.json()
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{template} {status}: " + "; ".join(
        f"{list(e.path)}: {e.message}" for e in errors[:5]
    )
    for where, value in timestamps(body["data"], "$.data"):
        assert isinstance(value, str), where
        assert TIMESTAMP.match(value), f"{where} = {value!r}"


def ref_path(spec: Json, schema: Json) -> str:
    """A JSON pointer to ``schema`` inside the spec (responses refer to component schemas)."""
    ref = schema.get("$ref")
    assert isinstance(ref, str), f"inline schema {schema}"
    assert ref.startswith("#/"), ref
    return ref[2:]


def window(sandbox: SandboxServer, days: int) -> dict[str, str]:
    start = sandbox.config.clock().replace(microsecond=0) + dt.timedelta(days=1)
    return {
        "periodStart": start.isoformat(),
        "periodEnd": (start + dt.timedelta(days=days)).isoformat(),
    }


def test_read_endpoints_match_their_success_schemas(
    spec: Json, registry: Registry[Any], sandbox: SandboxServer, client: httpx.Client
) -> None:
    bookings = sandbox.store.all_bookings()
    cancelled = next(b for b in bookings if b["status"] == "cancel")
    user = sandbox.store.users()[0]
    calendar = sandbox.store.calendars(str(user["uid"]))[0]
    event_type = sandbox.store.event_types()[0]
    cases = [
        ("/v1/bookings", "/v1/bookings", {"perPage": 100}),
        ("/v1/bookings", "/v1/bookings", {"status": "cancel", "page": 10_000}),
        ("/v1/bookings/{uid}", f"/v1/bookings/{cancelled['uid']}", {}),
        ("/v1/bookings/{uid}/contacts", f"/v1/bookings/{bookings[3]['uid']}/contacts", {}),
        ("/v1/schedules", "/v1/schedules", {"perPage": 100}),
        (
            "/v1/user_availability_calendars",
            "/v1/user_availability_calendars",
            {"userId": user["uid"]},
        ),
        (
            "/v1/user_availability_calendars/{uid}",
            f"/v1/user_availability_calendars/{calendar['uid']}",
            {},
        ),
        ("/v1/organization_users", "/v1/organization_users", {"perPage": 100}),
        ("/v1/organization_users/{userId}", f"/v1/organization_users/{user['uid']}", {}),
        ("/v1/event_types", "/v1/event_types", {"perPage": 100}),
        ("/v1/event_types/{uid}", f"/v1/event_types/{event_type['uid']}", {}),
        (
            "/v1/event_types/{uid}/available_schedules",
            f"/v1/event_types/{event_type['uid']}/available_schedules",
            window(sandbox, 7),
        ),
        ("/v1/event_type_hosts", "/v1/event_type_hosts", {"eventTypeId": event_type["uid"]}),
    ]
    for template, path, params in cases:
        assert isinstance(params, dict)
        check(spec, registry, client.get(str(path), params=params), str(template), 200)
    # Contacts of many bookings: nullable fields and Japanese answers all validate.
    for booking in bookings[:40]:
        response = client.get(f"/v1/bookings/{booking['uid']}/contacts")
        check(spec, registry, response, "/v1/bookings/{uid}/contacts", 200)


def test_write_endpoints_match_their_success_schemas(
    spec: Json, registry: Registry[Any], sandbox: SandboxServer, client: httpx.Client
) -> None:
    soon = sandbox.config.clock() + dt.timedelta(days=1)
    future = [
        b
        for b in sandbox.store.all_bookings()
        if b["status"] == "open" and dt.datetime.fromisoformat(str(b["startedAt"])) > soon
    ]
    first, second = future[0], future[1]
    slots = client.get(
        f"/v1/event_types/{first['eventTypeId']}/available_schedules", params=window(sandbox, 7)
    ).json()["data"]
    moved = client.post(
        f"/v1/bookings/{first['uid']}/reschedule",
        json={"timeZone": "Asia/Tokyo", "startedAt": slots[0]["startedAt"]},
    )
    check(spec, registry, moved, "/v1/bookings/{uid}/reschedule", 200)
    # As the portal's example shows it: `errors` is optional on a success body.
    assert list(moved.json()) == ["data"]
    patched = client.patch(f"/v1/bookings/{second['uid']}", json={"description": None})
    check(spec, registry, patched, "/v1/bookings/{uid}", 200)
    cancelled = client.post(f"/v1/bookings/{second['uid']}/cancel", json={"cancelReason": "r"})
    check(spec, registry, cancelled, "/v1/bookings/{uid}/cancel", 200)


def error_cases(
    sandbox: SandboxServer,
    client: httpx.Client,
    anonymous: httpx.Client,
    limited: httpx.Client,
) -> list[tuple[str, httpx.Response, int]]:
    """(path template, answer, documented status) for every error an operation documents."""
    cancelled = next(b for b in sandbox.store.all_bookings() if b["status"] == "cancel")
    done = f"/v1/bookings/{cancelled['uid']}"
    event_type = sandbox.store.event_types()[0]
    slots = f"/v1/event_types/{event_type['uid']}/available_schedules"
    booking, cancel = "/v1/bookings/{uid}", "/v1/bookings/{uid}/cancel"
    reschedule, calendar = "/v1/bookings/{uid}/reschedule", "/v1/user_availability_calendars/{uid}"
    open_slots, no_slots = "/v1/event_types/{uid}/available_schedules", "/v1/event_types/nope"
    return [
        ("/v1/bookings", anonymous.get("/v1/bookings"), 403),
        ("/v1/bookings", client.get("/v1/bookings", params={"perPage": 101}), 422),
        (booking, client.get("/v1/bookings/nope"), 404),
        (booking, client.patch("/v1/bookings/nope", json={}), 404),
        (booking, client.patch(done, json={"name": 1}), 422),
        ("/v1/bookings/{uid}/contacts", client.get("/v1/bookings/nope/contacts"), 404),
        (cancel, client.post(f"{done}/cancel"), 422),
        (cancel, client.post("/v1/bookings/nope/cancel"), 404),
        (cancel, anonymous.post("/v1/bookings/nope/cancel"), 403),
        (reschedule, client.post(f"{done}/reschedule", json={}), 422),
        (reschedule, client.post("/v1/bookings/nope/reschedule", json={}), 404),
        ("/v1/schedules", anonymous.get("/v1/schedules"), 403),
        ("/v1/user_availability_calendars", client.get("/v1/user_availability_calendars"), 400),
        (calendar, client.get("/v1/user_availability_calendars/nope"), 404),
        ("/v1/organization_users/{userId}", client.get("/v1/organization_users/nope"), 404),
        ("/v1/event_types", limited.get("/v1/event_types"), 403),
        ("/v1/event_types/{uid}", client.get("/v1/event_types/nope"), 404),
        (open_slots, client.get(slots, params=window(sandbox, 8)), 422),
        (open_slots, client.get(f"{no_slots}/available_schedules", params=window(sandbox, 1)), 404),
        ("/v1/event_type_hosts", client.get("/v1/event_type_hosts"), 422),
    ]


def test_error_bodies_match_the_documented_statuses(
    spec: Json, registry: Registry[Any], sandbox: SandboxServer, client: httpx.Client
) -> None:
    anonymous = httpx.Client(base_url=sandbox.base_url, timeout=TIMEOUT_S)
    limited = httpx.Client(
        base_url=sandbox.base_url, headers={"X-Jicoo-Api-Key": LIMITED_KEY}, timeout=TIMEOUT_S
    )
    with anonymous, limited:
        for template, response, status in error_cases(sandbox, client, anonymous, limited):
            check(spec, registry, response, template, status)
            assert set(response.json()["errors"]) == {"code", "message", "fields"}


def test_the_validator_rejects_a_body_that_breaks_the_schema(
    spec: Json, registry: Registry
) -> None:
    """Guards the harness itself: a missing required field must fail validation."""
    validator = Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/BookingListResponse"}, registry=registry
    )
    assert not validator.is_valid({"data": [], "errors": {}, "count": 0})
    assert not validator.is_valid(
        {
            "data": [{"uid": "x"}],
            "errors": {},
            "totalCount": 1,
            "count": 1,
            "currentPage": 1,
            "numberOfPages": 1,
        }
    )
    assert validator.is_valid(
        {
            "data": [],
            "errors": {},
            "totalCount": 0,
            "count": 0,
            "currentPage": 1,
            "numberOfPages": 0,
        }
    )


SLOT_RULES = ("slot_in_past", "slot_off_grid", "outside_availability", "slot_unavailable")


def _on_grid(moment: dt.datetime) -> dt.datetime:
    """The quarter hour at or before ``moment`` (the sandbox's slot grid)."""
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def _refused_start(sandbox: SandboxServer, client: httpx.Client, rule: str) -> tuple[Json, str]:
    """A future open booking and a start that breaks ``rule`` (and only the rules after it)."""
    now = sandbox.config.clock()
    future = [
        b
        for b in sandbox.store.all_bookings()
        if b["status"] == "open"
        and dt.datetime.fromisoformat(str(b["startedAt"])) > now + dt.timedelta(days=1)
    ]
    if rule == "slot_unavailable":
        by_type: dict[object, list[Json]] = {}
        for booking in future:
            by_type.setdefault(booking["eventTypeId"], []).append(booking)
        mover, other = next(pair for pair in by_type.values() if len(pair) >= 2)[:2]
        return mover, str(other["startedAt"])
    mover = future[0]
    if rule == "slot_in_past":
        start = _on_grid(now - dt.timedelta(days=1))
    elif rule == "slot_off_grid":
        slots = client.get(
            f"/v1/event_types/{mover['eventTypeId']}/available_schedules",
            params=window(sandbox, 7),
        ).json()["data"]
        start = dt.datetime.fromisoformat(slots[0]["startedAt"]) + dt.timedelta(minutes=7)
    else:
        # No seeded template opens on Sundays: noon of the host's Sunday after next.
        host = mover["hosts"][0]["userId"]
        zone_name = sandbox.store.calendars(host)[0]["timezone"]
        zone = ZoneInfo(str(zone_name))
        day = now.astimezone(zone).date() + dt.timedelta(days=8)
        day += dt.timedelta(days=(6 - day.weekday()) % 7)
        start = dt.datetime.combine(day, dt.time(12), zone)
    return mover, start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.mark.parametrize("rule", SLOT_RULES)
def test_a_refused_reschedule_names_the_slot_rule_in_the_documented_422(
    spec: Json, registry: Registry[Any], sandbox: SandboxServer, client: httpx.Client, rule: str
) -> None:
    mover, start = _refused_start(sandbox, client, rule)
    response = client.post(
        f"/v1/bookings/{mover['uid']}/reschedule",
        json={"timeZone": "Asia/Tokyo", "startedAt": start},
    )
    check(spec, registry, response, "/v1/bookings/{uid}/reschedule", 422)
    errors = response.json()["errors"]
    assert errors["code"] == rule
    assert list(errors["fields"]) == ["startedAt"]
    assert start[:16] in errors["message"]
    assert client.get(f"/v1/bookings/{mover['uid']}").json()["data"] == mover
