"""Change sets built from the sandbox's current data: valid reschedules (free slots) and cancels."""

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import httpx
import psycopg

from jicoo_connector.changes import DONE_STATES, Ledger, ParsedChangeSet, is_postgres_url
from jicoo_connector.changes._changeset import parse_instant
from jicoo_sandbox.server import SandboxServer

HEADER = "change_id,action,booking_uid,new_started_at,time_zone,cancel_reason"
SLOT_SEARCH_DAYS = 7


def api_client(sandbox: SandboxServer) -> httpx.Client:
    """A client for many reads: one per request (``httpx.get``) builds a TLS context and opens a
    connection each time, about 20 ms, 20 s for a 1,000-row batch's read-back."""
    return httpx.Client(
        base_url=sandbox.base_url, headers={"X-Jicoo-Api-Key": sandbox.api_key}, timeout=30
    )


def _get(sandbox: SandboxServer, path: str, **params: str) -> list[dict[str, object]]:
    with api_client(sandbox) as http:
        response = http.get(path, params=params)
    response.raise_for_status()
    data = response.json()["data"]
    assert isinstance(data, list)
    return data


def booking(
    sandbox: SandboxServer, uid: str, http: httpx.Client | None = None
) -> dict[str, object]:
    """The booking as the API shows it now; ``http``: an ``api_client`` to reuse."""
    with contextlib.nullcontext(http) if http is not None else api_client(sandbox) as client:
        response = client.get(f"/v1/bookings/{uid}")
    response.raise_for_status()
    data = response.json()["data"]
    assert isinstance(data, dict)
    return data


def future_open_bookings(sandbox: SandboxServer, status: str = "open") -> list[dict[str, object]]:
    start = sandbox.config.clock() + dt.timedelta(days=2)
    stamp = start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    found = _get(sandbox, "/v1/bookings", status=status, startedAt=stamp, perPage="100")
    return [b for b in found if isinstance(b.get("eventTypeId"), str)]


def _interval(record: Mapping[str, object]) -> tuple[dt.datetime, dt.datetime] | None:
    start, end = parse_instant(record.get("startedAt")), parse_instant(record.get("endedAt"))
    return (start, end) if start is not None and end is not None else None


def host_ids(record: Mapping[str, object]) -> set[str]:
    hosts = record.get("hosts")
    if not isinstance(hosts, list):
        return set()
    return {str(h["userId"]) for h in hosts if isinstance(h, Mapping) and "userId" in h}


def _hosts_free(
    sandbox: SandboxServer,
    bk: Mapping[str, object],
    start: dt.datetime,
    chosen: list[tuple[set[str], dt.datetime, dt.datetime]],
) -> bool:
    """An event type's slot is free for *some* host; a reschedule keeps the booking's hosts, so
    check them against the store (the oracle) and against moves already in this batch."""
    own = _interval(bk)
    if own is None:
        return False
    end = start + (own[1] - own[0])
    hosts = host_ids(bk)
    for other in sandbox.store.all_bookings():
        if other["uid"] == bk["uid"] or other["status"] == "cancel":
            continue
        span = _interval(other)
        if span and hosts & host_ids(other) and span[0] < end and start < span[1]:
            return False
    return not any(h & hosts and s < end and start < e for h, s, e in chosen)


def free_slot(
    sandbox: SandboxServer,
    bk: Mapping[str, object],
    taken: set[str],
    chosen: list[tuple[set[str], dt.datetime, dt.datetime]] | None = None,
) -> str | None:
    """A future slot the booking can really move to; records it in ``taken``/``chosen``."""
    chosen = [] if chosen is None else chosen
    start = sandbox.config.clock() + dt.timedelta(days=1)
    end = start + dt.timedelta(days=SLOT_SEARCH_DAYS - 1)
    slots = _get(
        sandbox,
        f"/v1/event_types/{bk['eventTypeId']}/available_schedules",
        periodStart=start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        periodEnd=end.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    )
    current = parse_instant(bk.get("startedAt"))
    own = _interval(bk)
    for slot in slots:
        stamp = slot.get("startedAt")
        capacity = slot.get("remainingCapacity")
        if not isinstance(stamp, str) or not isinstance(capacity, int) or capacity < 1:
            continue
        instant = parse_instant(stamp)
        if instant is None or instant == current or stamp in taken or own is None:
            continue
        ends = instant + dt.timedelta(hours=2)
        if current is not None and instant - dt.timedelta(hours=2) < current < ends:
            continue  # keep away from the booking's own slot
        if not _hosts_free(sandbox, bk, instant, chosen):
            continue
        taken.add(stamp)
        chosen.append((host_ids(bk), instant, instant + (own[1] - own[0])))
        return stamp
    return None


def build_csv(sandbox: SandboxServer, reschedules: int, cancels: int) -> tuple[str, list[str]]:
    """A change set of valid reschedules (distinct event types) and cancels of open bookings."""
    rows: list[str] = []
    uids: list[str] = []
    used_types: set[object] = set()
    taken: set[str] = set()
    chosen: list[tuple[set[str], dt.datetime, dt.datetime]] = []
    candidates = future_open_bookings(sandbox)
    for bk in candidates:
        if len([r for r in rows if ",reschedule," in r]) >= reschedules:
            break
        if bk["eventTypeId"] in used_types:
            continue
        stamp = free_slot(sandbox, bk, taken, chosen)
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


def effective_posts(sandbox: SandboxServer) -> Counter[str]:
    return Counter(
        str(entry["booking_uid"])
        for entry in sandbox.store.journal()
        if entry["method"] == "POST" and entry["changed"]
    )


def all_posts(sandbox: SandboxServer) -> int:
    return sum(1 for entry in sandbox.store.journal() if entry["method"] == "POST")


def ledger_bytes(location: str) -> bytes:
    """Everything a ledger holds, as its storage keeps it (files, or the rows as text)."""
    if not is_postgres_url(location):
        wal = Path(f"{location}-wal")  # gone once the last connection checkpointed it
        return Path(location).read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    with psycopg.connect(location) as conn:
        rows = conn.execute("SELECT c::text FROM jicoo_ledger.changes c").fetchall()
    return "\n".join(row[0] for row in rows).encode()


def assert_server_matches(
    sandbox: SandboxServer, parsed: ParsedChangeSet, ledger: str | Path, batch_id: str = "batch"
) -> None:
    """Every change is final in the ledger and visible on the server."""
    with Ledger(ledger) as led:
        entries = {e.key: e for e in led.entries(batch_id)}
    with api_client(sandbox) as http:
        now_by_uid = {c.booking_uid: booking(sandbox, c.booking_uid, http) for c in parsed.changes}
    for change in parsed.changes:
        now = now_by_uid[change.booking_uid]
        assert entries[change.key].state in DONE_STATES
        if change.target is None:
            assert now["status"] == "cancel"
        else:
            assert parse_instant(now["startedAt"]) == change.new_started_at
