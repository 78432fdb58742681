"""The store's booking JSON: byte for byte ``orjson.dumps`` of the API dict, prebuilt or lazy."""

import datetime as dt

import orjson
import pytest

import jicoo_sandbox.store as store_module
from jicoo_sandbox.config import SandboxConfig
from jicoo_sandbox.index import BookingQuery
from jicoo_sandbox.instants import format_ms, json_instant
from jicoo_sandbox.model import Booking, SeedData
from jicoo_sandbox.seed import build_seed
from jicoo_sandbox.store import BookingPatch, SandboxStore

ANCHOR = dt.date(2024, 6, 12)
SEED = 3
SMALL = 1200
PER_PAGE = 100
# Strings JSON must escape, or that a byte-level encoder could get wrong.
AWKWARD = 'say "hi" \\ back\nslash\t\x00\x1f \u2028 ✓ 予約 😀'


def config() -> SandboxConfig:
    return SandboxConfig(seed=SEED, bookings=SMALL, anchor_date=ANCHOR)


def reference(b: Booking, data: SeedData) -> dict[str, object]:
    """The Booking schema's dict, written out plainly: what the encoder must match."""
    return {
        "uid": b.uid,
        "eventTypeId": None if b.event_type is None else data.event_types[b.event_type].uid,
        "name": b.name,
        "description": b.description,
        "status": b.status,
        "startedAt": format_ms(b.start),
        "endedAt": format_ms(b.end),
        "locationId": b.location_id,
        "url": b.url,
        "phoneNumber": b.phone_number,
        "address": b.address,
        "customLocation": b.custom_location,
        "access": b.access,
        "timeZone": b.time_zone,
        "priority": b.priority,
        "cancelReason": b.cancel_reason,
        "cancelledAt": None if b.cancelled_at is None else format_ms(b.cancelled_at),
        "cancelledBy": b.cancelled_by,
        "hosts": [{"userId": user_id, "role": role} for user_id, role in b.hosts],
        "createdAt": format_ms(b.created),
        "updatedAt": format_ms(b.updated),
    }


def pages(store: SandboxStore) -> list[bytes]:
    out: list[bytes] = []
    for query in (BookingQuery(), BookingQuery(status="cancel", descending=True)):
        for offset in range(0, SMALL, PER_PAGE):
            out.extend(store.list_bookings(query, offset=offset, limit=PER_PAGE)[1])
    return out


def test_every_seeded_booking_is_the_plain_dicts_bytes() -> None:
    store = SandboxStore(config())
    data = build_seed(SEED, SMALL, ANCHOR, store.config.past_days, store.config.future_days)
    for booking in data.bookings:
        assert store.booking_json(booking.uid) == orjson.dumps(reference(booking, data))


@pytest.mark.parametrize("ms", [0, 1, 999, 86_399_999, 1_718_150_400_000, 1_718_236_799_123])
def test_json_instant_is_the_quoted_format_ms(ms: int) -> None:
    assert json_instant(ms) == orjson.dumps(format_ms(ms))


def test_awkward_strings_sent_through_the_api_are_escaped_like_orjson() -> None:
    store = SandboxStore(config())
    uid = str(store.all_bookings()[0]["uid"])
    patch = BookingPatch(sent=frozenset({"name", "description"}), name=AWKWARD, description="\\")
    changed, stored = store.update(uid, patch)
    assert stored
    raw = store.booking_json(uid)
    assert raw is not None
    assert raw == orjson.dumps(changed)
    assert orjson.loads(raw)["name"] == AWKWARD
    assert raw in store.list_bookings(BookingQuery(), offset=0, limit=PER_PAGE)[1]


def test_lazy_pages_equal_prebuilt_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    prebuilt = pages(SandboxStore(config()))
    monkeypatch.setattr(store_module, "PREBUILD_MAX_BOOKINGS", 0)
    lazy = SandboxStore(config())
    assert pages(lazy) == prebuilt
    # Read again from the cache they were just put in.
    assert pages(lazy) == prebuilt
