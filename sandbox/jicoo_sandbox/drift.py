"""Drift: bookings appear, vanish and move between two page requests, as on a busy account.

The fault injector's ``drift`` rules and churn (webhooks.py) call these. Each holds the store's
lock for the whole batch, journals every booking it touched as a ``DRIFT`` entry and returns
their uids; the same ``rng`` state gives the same drift.
"""

import random
from typing import Final

from jicoo_sandbox.instants import MS_PER_DAY, MS_PER_MINUTE
from jicoo_sandbox.model import BLOCKING_STATUSES, SLOT_STEP_MS, Booking, EventType
from jicoo_sandbox.seed import short_uid
from jicoo_sandbox.store import SandboxStore

__all__ = ["drift_delete", "drift_insert", "drift_move"]

DRIFT_TRIES: Final = 20
DRIFT_MOVE_DAYS: Final = 7  # a whole week keeps weekday and local time, so availability holds
DRIFT_METHOD: Final = "DRIFT"
DRIFT_ZONE: Final = "Asia/Tokyo"


def drift_insert(store: SandboxStore, n: int, rng: random.Random) -> list[str]:
    """Add ``n`` bookings inside the seeded date range; returns their uids."""
    with store.lock:
        touched = []
        for _ in range(n):
            booking = _new_booking(store, rng)
            store.add(booking)
            touched.append(booking.uid)
        _journal(store, "insert", touched)
        return touched


def drift_delete(store: SandboxStore, n: int, rng: random.Random) -> list[str]:
    """Remove ``n`` random bookings; returns their uids."""
    with store.lock:
        touched = []
        for _ in range(min(n, store.booking_count())):
            uid = store.index.uid_at(rng.randrange(len(store.index)))
            store.remove(uid)
            touched.append(uid)
        _journal(store, "delete", touched)
        return touched


def drift_move(store: SandboxStore, n: int, rng: random.Random) -> list[str]:
    """Shift ``n`` bookings by a week (same weekday, same local time) so their order changes."""
    with store.lock:
        touched: list[str] = []
        data = store.data
        for _ in range(n * DRIFT_TRIES):
            if len(touched) >= n or len(store.index) == 0:
                break
            uid = store.index.uid_at(rng.randrange(len(store.index)))
            b = store.index.by_uid[uid]
            if uid in touched:
                continue
            shift = DRIFT_MOVE_DAYS * MS_PER_DAY * rng.choice((-1, 1))
            if not (data.range_start <= b.start + shift and b.end + shift <= data.range_end):
                shift = -shift
            start, end = b.start + shift, b.end + shift
            if start < data.range_start or end > data.range_end:
                continue
            host_ids = [user_id for user_id, _ in b.hosts]
            if b.status in BLOCKING_STATUSES and (
                store.unavailable_host(host_ids, start, end) is not None
                or store.index.clash(host_ids, start, end, uid) is not None
            ):
                continue
            store.move(uid, start, end)
            touched.append(uid)
        _journal(store, "move", touched)
        return touched


def _new_booking(store: SandboxStore, rng: random.Random) -> Booking:
    """A booking of a random event type in a random free slot of its first host's windows;
    a busy host still gets a (cancelled) booking: the count is what must drift."""
    data = store.data
    uid = short_uid(rng)
    while uid in store.index.by_uid:
        uid = short_uid(rng)
    et_index = rng.randrange(len(data.event_types))
    et = data.event_types[et_index]
    host_ids = [data.users[h].uid for h in et.hosts]
    start, end, status = _slot(store, rng, et, host_ids)
    now = store.now_ms()
    return Booking(
        uid, et_index, f"{et.name} - drift", None, status, start, end, "zoom",
        None, None, None, None, None, DRIFT_ZONE, None, None,
        now if status == "cancel" else None, "guest" if status == "cancel" else None,
        tuple((h, "admin" if i == 0 else "editor") for i, h in enumerate(host_ids)),
        now, now,
    )  # fmt: skip


def _slot(
    store: SandboxStore, rng: random.Random, et: EventType, host_ids: list[str]
) -> tuple[int, int, str]:
    """(start, end, status): open where the hosts are free, cancelled where one is busy, and at
    the range's start when no window takes the meeting."""
    data = store.data
    windows = data.windows[et.hosts[0]]
    duration = et.duration * MS_PER_MINUTE
    start = end = 0
    status = "cancel"
    for _ in range(DRIFT_TRIES):
        if not windows:
            break
        win_start, win_end = rng.choice(windows)
        positions = (win_end - win_start - duration) // SLOT_STEP_MS + 1
        if positions <= 0:
            continue
        start = win_start + rng.randrange(positions) * SLOT_STEP_MS
        end = start + duration
        if store.unavailable_host(host_ids, start, end) is None:
            status = "open" if store.index.clash(host_ids, start, end, None) is None else "cancel"
            break
    if end == 0:
        start, end = data.range_start, data.range_start + duration
    return start, end, status


def _journal(store: SandboxStore, action: str, uids: list[str]) -> None:
    for uid in uids:
        store.record(
            method=DRIFT_METHOD,
            path="/v1/bookings",
            booking_uid=uid,
            body={"action": action},
            status=None,
            changed=True,
        )
