"""The seeded data, byte for byte: one digest of everything a store serves for a fixed seed.

Refactoring the sandbox must not change its data: the same seed, anchor and clock give the same
bookings, pages, resources, contacts, slots, drift and journal. If a change of the data is
intended, say so in CHANGELOG.md and put the new digest here.
"""

import datetime as dt
import hashlib
import random

import orjson

from jicoo_sandbox.config import SandboxConfig
from jicoo_sandbox.drift import drift_delete, drift_insert, drift_move
from jicoo_sandbox.index import BookingQuery
from jicoo_sandbox.store import BookingPatch, SandboxError, SandboxStore

ANCHOR = dt.date(2024, 6, 12)
# Noon in Tokyo on the anchor day: slots and drift read "now" from this fixed clock.
NOW = dt.datetime(2024, 6, 12, 3, 0, tzinfo=dt.UTC)
SEED = 11
BOOKINGS = 1500
PAGE = 37
SLOT_DAYS = 7
DRIFT_SEED = 5
GOLDEN_SHA256 = "9fc6036ccb0efca73d9faeca222ed836108a1ec262e9a31a3b9c8ace2e98d8cc"


def fixed_clock() -> dt.datetime:
    return NOW


def queries(store: SandboxStore) -> list[BookingQuery]:
    starts = [int(dt.datetime.fromisoformat(str(b["startedAt"])).timestamp() * 1000)
              for b in store.all_bookings()]  # fmt: skip
    middle = starts[len(starts) // 2]
    quarter = starts[len(starts) // 4]
    return [
        BookingQuery(),
        BookingQuery(descending=True),
        BookingQuery(status="cancel"),
        BookingQuery(status="request", descending=True),
        BookingQuery(started_from=quarter, ended_to=middle),
        BookingQuery(status="open", started_from=quarter, ended_to=middle, descending=True),
        BookingQuery(order="createdAt"),
        BookingQuery(status="open", order="createdAt", descending=True, started_from=middle),
    ]


def served(store: SandboxStore) -> list[object]:
    """Everything the store answers, in a fixed order, as JSON-able parts."""
    parts: list[object] = [store.all_bookings()]
    for query in queries(store):
        total, _ = store.list_bookings(query, offset=0, limit=0)
        pages = [store.list_bookings(query, offset=o, limit=PAGE) for o in range(0, total, PAGE)]
        parts.append([total, [[raw.decode() for raw in page] for _, page in pages]])
    users = store.users()
    parts.append(users)
    for user in users:
        calendars = store.calendars(str(user["uid"]))
        parts.append(calendars)
        parts.append([store.calendar(str(c["uid"])) for c in calendars])
        parts.append(store.user(str(user["uid"])))
    start_ms = int(NOW.timestamp() * 1000)
    week_ms = SLOT_DAYS * 24 * 3600 * 1000
    for event_type in store.event_types():
        uid = str(event_type["uid"])
        parts.append([store.event_type(uid), store.event_type_hosts(uid)])
        parts.append(store.available_slots(uid, start_ms, start_ms + week_ms))
    parts.append([store.schedule_total(), store.schedules(0, store.schedule_total())])
    parts.append([store.contacts(str(b["uid"])) for b in store.all_bookings()])
    return parts


def refusal(error: SandboxError) -> list[object]:
    return [error.status, error.code, error.message, error.fields]


def mutated(store: SandboxStore) -> list[object]:
    """Cancel, reschedule (into a free slot, and refused) and patch: results and refusals."""
    parts: list[object] = []
    start_ms = int(NOW.timestamp() * 1000)
    future = store.list_bookings(BookingQuery(status="open", started_from=start_ms), offset=0,
                                 limit=6)[1]  # fmt: skip
    uids = [str(orjson.loads(raw)["uid"]) for raw in future]
    parts.append(store.cancel(uids[0], "golden"))
    for uid in (uids[0], uids[1]):
        booking = store.get_booking(uid)
        assert booking is not None
        slots = store.available_slots(str(booking["eventTypeId"]), start_ms,
                                      start_ms + SLOT_DAYS * 24 * 3600 * 1000)  # fmt: skip
        assert slots
        target = int(dt.datetime.fromisoformat(str(slots[-1]["startedAt"])).timestamp() * 1000)
        try:
            parts.append(store.reschedule(uid, target, "Asia/Tokyo"))
        except SandboxError as error:
            parts.append(refusal(error))
        for bad in (start_ms - 3600_000, target + 60_000, target - 24 * 3600 * 1000 * 3):
            try:
                parts.append(store.reschedule(uids[2], bad, "Asia/Tokyo"))
            except SandboxError as error:
                parts.append(refusal(error))
    patch = BookingPatch(sent=frozenset({"name", "priority"}), name="golden", priority="high")
    parts.append(list(store.update(uids[3], patch)))
    parts.append([dict(e) for e in store.journal()])
    return parts


def drifted(store: SandboxStore) -> list[object]:
    rng = random.Random(DRIFT_SEED)
    touched = [drift_insert(store, 9, rng), drift_delete(store, 7, rng), drift_move(store, 8, rng)]
    return [touched, store.all_bookings(), [dict(e) for e in store.journal()]]


def digest() -> str:
    store = SandboxStore(
        SandboxConfig(seed=SEED, bookings=BOOKINGS, anchor_date=ANCHOR, clock=fixed_clock)
    )
    parts = [*served(store), *mutated(store), *drifted(store)]
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def test_a_seeded_store_serves_the_golden_bytes() -> None:
    assert digest() == GOLDEN_SHA256
