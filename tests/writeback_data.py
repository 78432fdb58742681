"""Change sets built from the sandbox's current data: valid reschedules (free slots) and cancels."""

import datetime as dt
from collections.abc import Mapping

import httpx

from jicoo_connector.changes.plan import parse_instant
from jicoo_connector.sandbox.server import SandboxServer
from jicoo_connector.settings import ApiKey, Settings

HEADER = "change_id,action,booking_uid,new_started_at,time_zone,cancel_reason"
SLOT_SEARCH_DAYS = 7


def settings_for(sandbox: SandboxServer) -> Settings:
    return Settings(
        api_key=ApiKey(sandbox.api_key), base_url=sandbox.base_url, rate_limit=200, burst=200
    )


def _get(sandbox: SandboxServer, path: str, **params: str) -> list[dict[str, object]]:
    response = httpx.get(
        f"{sandbox.base_url}{path}",
        params=params,
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        timeout=30,
    )
    response.raise_for_status()
    data = response.json()["data"]
    assert isinstance(data, list)
    return data


def booking(sandbox: SandboxServer, uid: str) -> dict[str, object]:
    response = httpx.get(
        f"{sandbox.base_url}/v1/bookings/{uid}",
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        timeout=30,
    )
    response.raise_for_status()
    data = response.json()["data"]
    assert isinstance(data, dict)
    return data


def future_open_bookings(sandbox: SandboxServer, status: str = "open") -> list[dict[str, object]]:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    stamp = start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    found = _get(sandbox, "/v1/bookings", status=status, startedAt=stamp, perPage="100")
    return [b for b in found if isinstance(b.get("eventTypeId"), str)]


def free_slot(sandbox: SandboxServer, bk: Mapping[str, object], taken: set[str]) -> str | None:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    end = start + dt.timedelta(days=SLOT_SEARCH_DAYS - 1)
    slots = _get(
        sandbox,
        f"/v1/event_types/{bk['eventTypeId']}/available_schedules",
        periodStart=start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        periodEnd=end.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    )
    current = parse_instant(bk.get("startedAt"))
    for slot in slots:
        stamp = slot.get("startedAt")
        capacity = slot.get("remainingCapacity")
        if not isinstance(stamp, str) or not isinstance(capacity, int) or capacity < 1:
            continue
        instant = parse_instant(stamp)
        if instant is None or instant == current or stamp in taken:
            continue
        ends = instant + dt.timedelta(hours=2)
        if current is not None and instant - dt.timedelta(hours=2) < current < ends:
            continue  # keep away from the booking's own slot
        taken.add(stamp)
        return stamp
    return None


def build_csv(sandbox: SandboxServer, reschedules: int, cancels: int) -> tuple[str, list[str]]:
    """A change set of valid reschedules (distinct event types) and cancels of open bookings."""
    rows: list[str] = []
    uids: list[str] = []
    used_types: set[object] = set()
    taken: set[str] = set()
    candidates = future_open_bookings(sandbox)
    for bk in candidates:
        if len([r for r in rows if ",reschedule," in r]) >= reschedules:
            break
        if bk["eventTypeId"] in used_types:
            continue
        stamp = free_slot(sandbox, bk, taken)
        if stamp is None:
            continue
        used_types.add(bk["eventTypeId"])
        rows.append(f",reschedule,{bk['uid']},{stamp},Asia/Tokyo,")
        uids.append(str(bk["uid"]))
    for bk in candidates:
        if len(rows) >= reschedules + cancels:
            break
        if str(bk["uid"]) not in uids:
            rows.append(f",cancel,{bk['uid']},,,planned maintenance")
            uids.append(str(bk["uid"]))
    assert len(rows) == reschedules + cancels, "the sandbox offered too few bookings/slots"
    return HEADER + "\n" + "\n".join(rows) + "\n", uids
